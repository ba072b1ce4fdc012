import Decoding
import Preference
import Testing
import Wire

@testable import ClusterCore

/// Workers answer for what they send: strikes, eviction, and a placement no peer can game by its name or claims.
@Suite struct AccountabilityTests {
    let h = CoordinatorCoreTests()
    let second: UInt64 = 1_000_000_000

    func strikes(_ core: inout CoordinatorCore) -> [String] {
        core.takeEvents().compactMap { if case let .workerStrike(id, reason) = $0 { "\(id): \(reason)" } else { nil } }
    }

    @Test("equally loaded replicas take turns; the id's sort order decides nothing")
    func tiesRotate() {
        var members = Membership(heartbeatIntervalMs: 1000)
        _ = members.onHello(hello("z"), now: 0)
        _ = members.onHello(hello("0"), now: 0)
        var picks: [WorkerID] = []
        for _ in 0..<4 {
            guard let worker = members.chooseReplica(expert: "concise")?.id else { break }
            members.placed(worker)
            picks.append(worker)
        }
        #expect(picks == ["z", "0", "z", "0"])
    }

    @Test("a worker claiming a huge capacity is believed only up to the cap and gets sessions by load like the rest")
    func capacityClaimsAreCapped() {
        var core = CoordinatorCore(config: ClusterConfig(experts: [ExpertConfig(name: "concise", model: "m",
                                                                                 replicas: 2)]))
        _ = core.onWorkerMessage(.hello(hello("honest", capacity: 4)), from: "honest", now: 0)
        _ = core.onWorkerMessage(.hello(hello("0", capacity: .max)), from: "0", now: 0)
        #expect(core.membership.workers["0"]?.sessionCapacity == core.config.maxWorkerSessions)
        for request in UInt64(1)...4 {
            let generate = Generate(request: request, prompt: "Hi", preference: "concise", maxNewTokens: 2)
            _ = core.onGenerate(generate, from: CoordinatorCoreTests.client, now: 0,
                                resources: CoordinatorCoreTests.noText)
        }
        #expect(core.membership.workers["0"]?.load == 2)
        #expect(core.membership.workers["honest"]?.load == 2)
    }

    @Test("a worker that heartbeats but lets a deadline pass is struck and avoided by new sessions until it answers")
    func silentWorkerCostsOneDeadline() {
        var core = h.cluster()
        _ = core.onGenerate(h.generate(preference: "concise"), from: CoordinatorCoreTests.client, now: 0,
                            resources: CoordinatorCoreTests.noText)
        #expect(core.session(1)?.expertWorkers == ["c1"])
        let late = (UInt64(core.config.openDeadlineMs) / 1000 + 1) * second
        for worker in ["c1", "c2", "f1"] { _ = core.onWorkerMessage(.heartbeat, from: worker, now: late - 1) }
        _ = core.onTick(now: late)
        #expect(core.session(1)?.expertWorkers == ["c2"])
        #expect(strikes(&core) == ["c1: missed a deadline"])
        #expect(core.membership.workers["c1"]?.missedDeadline == true)

        // c1 is idle and c2 busy, but c1 went silent: the next session goes to c2.
        let next = Generate(request: 6, prompt: "Hi", preference: "concise", maxNewTokens: 2)
        let out = core.onGenerate(next, from: CoordinatorCoreTests.client, now: late,
                                  resources: CoordinatorCoreTests.noText)
        #expect(h.workerSends(out).map(\.0) == ["c2"])
    }

    @Test("one silence is one strike, however many sessions it held up")
    func oneSilenceOneStrike() {
        var core = h.cluster()
        for request in UInt64(1)...4 {
            let generate = Generate(request: request, prompt: "Hi", preference: "concise", maxNewTokens: 2)
            _ = core.onGenerate(generate, from: CoordinatorCoreTests.client, now: 0,
                                resources: CoordinatorCoreTests.noText)
        }
        #expect(core.membership.workers["c1"]?.load == 2)
        let late = (UInt64(core.config.openDeadlineMs) / 1000 + 1) * second
        for worker in ["c1", "c2", "f1"] { _ = core.onWorkerMessage(.heartbeat, from: worker, now: late - 1) }
        _ = core.takeEvents()
        _ = core.onTick(now: late)
        let struck = strikes(&core)
        #expect(struck.filter { $0.hasPrefix("c1:") } == ["c1: missed a deadline"])
        #expect(core.membership.workers["c1"] != nil)
    }

    @Test("malformed and foreign answers are strikes; past the limit the worker is evicted and its id refused a while")
    func evictionAndCooldown() {
        var core = h.cluster()
        _ = core.onGenerate(h.generate(preference: "concise"), from: CoordinatorCoreTests.client, now: 0,
                            resources: CoordinatorCoreTests.noText)
        // c1 holds session 1: an out-of-vocabulary id there; f1 holds nothing: answers to sessions it never had.
        _ = core.onWorkerMessage(h.dist(1, 0, 10_000), from: "c1", now: 1)
        #expect(strikes(&core) == ["c1: sent a malformed or out-of-vocabulary distribution"])
        for session in [SessionID(1), 99, 100] {
            _ = core.onWorkerMessage(h.dist(session, 0, 5), from: "f1", now: 2)
        }
        let events = core.takeEvents()
        #expect(events.filter { if case .workerStrike("f1", _) = $0 { true } else { false } }.count == 3)
        #expect(events.contains { if case .workerDead("f1", _) = $0 { true } else { false } })
        #expect(core.membership.workers["f1"] == nil)

        let again = core.onWorkerMessage(.hello(hello("f1", expert: "friendly")), from: "f1", now: second)
        guard case let .sendToWorker("f1", .reject(reject))? = again.first else {
            Issue.record("expected a rejection, got \(again)")
            return
        }
        #expect(reject.reason.contains("evicted"))
        let cooled = core.membership.cooldownNanos + 3
        #expect(core.onWorkerMessage(.hello(hello("f1", expert: "friendly")), from: "f1", now: cooled)
            == [.sendToWorker("f1", .welcome(Welcome(heartbeatIntervalMs: 1000)))])
    }
}
