import Decoding
import Foundation
import Preference
import Testing
import Wire

@testable import ClusterCore

/// The admission queue, the client's heartbeat, preference changes and resumed requests, driven on the pure core.
@Suite struct AdmissionTests {
    static let noText = SessionResources(decoder: TableDecoder(table: [:]), controller: UniformController())
    let second: UInt64 = 1_000_000_000

    /// A coordinator with one expert, concise, on one worker c1 that holds one session; a queue of `queue`.
    func busyCluster(queue: UInt32 = 2, waitMs: UInt32 = 1000) -> CoordinatorCore {
        var config = ClusterConfig(experts: [ExpertConfig(name: "concise", model: "m")])
        config.topK = 4
        config.admissionQueueLength = queue
        config.admissionQueueWaitMs = waitMs
        var core = CoordinatorCore(config: config)
        _ = core.onWorkerMessage(.hello(hello("c1", expert: "concise", capacity: 1)), from: "c1", now: 0)
        return core
    }

    func request(_ id: UInt64, maxNewTokens: UInt32 = 1) -> Generate {
        Generate(request: id, prompt: "Hi", preference: "concise", maxNewTokens: maxNewTokens)
    }

    func client(_ n: UInt8) -> ClientID { [n] }

    func opens(_ out: [CoordinatorDirective]) -> [WorkerID] {
        out.compactMap { if case let .sendToWorker(w, .open) = $0 { w } else { nil } }
    }

    func replies(_ out: [CoordinatorDirective], to client: ClientID) -> [Message] {
        out.compactMap { if case let .sendToClient(c, m) = $0, c == client { m } else { nil } }
    }

    func errorCode(_ messages: [Message]) -> ErrorCode? {
        messages.lazy.compactMap { if case let .error(reply) = $0 { reply.code } else { nil } }.first
    }

    func dist(_ session: SessionID, _ step: UInt32, _ token: UInt32) -> Message {
        .dist(Dist(session: session, step: step, ids: [token], logProbs: [-0.1], tailMass: 0.1))
    }

    @Test("a request for a busy expert waits in the queue, starts in order when the worker frees, with its wait")
    func queuesWhileBusy() throws {
        var core = busyCluster()
        #expect(opens(core.onGenerate(request(1), from: client(1), now: 0, resources: Self.noText)) == ["c1"])
        // The worker is full: the next two wait, and nothing is sent to anyone for them.
        #expect(core.onGenerate(request(2), from: client(2), now: 10, resources: Self.noText).isEmpty)
        #expect(core.onGenerate(request(3), from: client(3), now: 20, resources: Self.noText).isEmpty)
        #expect(core.status.sessionsQueued == 2)
        #expect(core.queuedCount == 2)
        #expect(core.oldestQueueWait(now: 110) == 100)
        #expect(core.status(now: 2_000_010).oldestQueuedMicros == 2000)

        // The first finishes (one token): the oldest waiting request starts on the freed worker.
        let out = core.onWorkerMessage(dist(1, 0, 5), from: "c1", now: 1000)
        guard case .done? = replies(out, to: client(1)).last else {
            Issue.record("expected done for the first request, got \(out)")
            return
        }
        #expect(opens(out) == ["c1"])
        #expect(core.status.sessionsQueued == 1)
        let started = try #require(core.session(2))
        #expect(started.request.request == 2)
        #expect(started.queuedMicros == (1000 - 10) / 1000)
        let second = core.onWorkerMessage(dist(2, 0, 5), from: "c1", now: 5000)
        guard case let .done(done)? = replies(second, to: client(2)).last else {
            Issue.record("expected done for the second request, got \(second)")
            return
        }
        #expect(done.queuedMicros == 0)  // (1000 - 10) ns rounds to 0 µs
        #expect(done.lostExperts.isEmpty)
        #expect(try #require(core.session(3)).request.request == 3)
    }

    @Test("over the queue's length a request is refused with error overloaded, not degraded or unavailable")
    func fullQueueRefuses() {
        var core = busyCluster(queue: 1)
        _ = core.onGenerate(request(1), from: client(1), now: 0, resources: Self.noText)
        #expect(core.onGenerate(request(2), from: client(2), now: 0, resources: Self.noText).isEmpty)
        let refused = core.onGenerate(request(3), from: client(3), now: 0, resources: Self.noText)
        #expect(errorCode(replies(refused, to: client(3))) == .overloaded)
        #expect(core.sessionCount == 1)

        // A queue of 0 refuses at once.
        var none = busyCluster(queue: 0)
        _ = none.onGenerate(request(1), from: client(1), now: 0, resources: Self.noText)
        let out = none.onGenerate(request(2), from: client(2), now: 0, resources: Self.noText)
        #expect(errorCode(replies(out, to: client(2))) == .overloaded)
    }

    @Test("a request that waits past the queue's wait is refused with error overloaded")
    func waitExpires() throws {
        var core = busyCluster(waitMs: 1000)
        _ = core.onGenerate(request(1), from: client(1), now: 0, resources: Self.noText)
        _ = core.onGenerate(request(2), from: client(2), now: 0, resources: Self.noText)
        let deadline = try #require(core.nextDeadline)
        #expect(deadline <= second)
        #expect(core.onTick(now: second / 2).allSatisfy { if case .sendToClient = $0 { false } else { true } })
        let out = core.onTick(now: second)
        #expect(errorCode(replies(out, to: client(2))) == .overloaded)
        #expect(core.queuedCount == 0)
    }

    @Test("a queued request of a client that goes away is dropped; a drain refuses the queue")
    func goneAndDrain() {
        var core = busyCluster()
        _ = core.onGenerate(request(1), from: client(1), now: 0, resources: Self.noText)
        _ = core.onGenerate(request(2), from: client(2), now: 0, resources: Self.noText)
        _ = core.onGenerate(request(3), from: client(3), now: 0, resources: Self.noText)
        _ = core.onClientGone(client(2), now: 1)
        #expect(core.queuedCount == 1)
        core.beginDrain(now: 2, graceNanos: second)
        let out = core.onTick(now: 3)
        #expect(errorCode(replies(out, to: client(3))) == .draining)
        #expect(core.queuedCount == 0)
    }

    @Test("an expert with no live worker at all is still refused at once as unavailable, not queued")
    func noWorkerIsNotQueued() {
        var config = ClusterConfig(experts: [ExpertConfig(name: "concise", model: "m")])
        config.topK = 4
        var core = CoordinatorCore(config: config)
        let out = core.onGenerate(request(1), from: client(1), now: 0, resources: Self.noText)
        #expect(errorCode(replies(out, to: client(1))) == .unavailable)
        #expect(core.queuedCount == 0)
    }

    @Test("the config's queue fields have defaults, are validated and round-trip")
    func configFields() throws {
        let config = ClusterConfig(experts: [ExpertConfig(name: "concise", model: "m")])
        #expect(config.admissionQueueLength == 256)
        #expect(config.admissionQueueWaitMs == 30_000)
        var zeroWait = config
        zeroWait.admissionQueueWaitMs = 0
        #expect(throws: ConfigError.self) { try zeroWait.validate() }
        var changed = config
        changed.admissionQueueLength = 3
        changed.admissionQueueWaitMs = 70
        let decoded = try ClusterConfig.decode(changed.encoded())
        #expect(decoded.admissionQueueLength == 3)
        #expect(decoded.admissionQueueWaitMs == 70)
    }

    @Test("a client's heartbeat is answered with a heartbeat")
    func heartbeat() {
        var core = busyCluster()
        let out = core.onFrame(identity: client(4), payload: WireCodec.encode(.heartbeat), on: .clients, now: 0)
        #expect(out == [.sendToClient(client(4), .heartbeat)])
    }

    @Test("setPreference changes a running session from its next token and is acknowledged with that index")
    func setPreference() throws {
        var core = busyCluster()
        _ = core.onGenerate(request(1, maxNewTokens: 5), from: client(1), now: 0, resources: Self.noText)
        _ = core.onWorkerMessage(dist(1, 0, 5), from: "c1", now: 1)
        _ = core.onWorkerMessage(dist(1, 1, 5), from: "c1", now: 2)
        let change = Message.setPreference(SetPreference(request: 1, preference: "concise:2, friendly"))
        let out = core.onFrame(identity: client(1), payload: WireCodec.encode(change), on: .clients, now: 3)
        #expect(replies(out, to: client(1)) == [.preferenceSet(PreferenceSet(request: 1, fromToken: 2))])
        #expect(core.session(1)?.preference == (try PreferenceSpec.parse("concise:2, friendly")))
        // A change for no known request is dropped.
        let stray = Message.setPreference(SetPreference(request: 9, preference: "concise"))
        #expect(core.onFrame(identity: client(1), payload: WireCodec.encode(stray), on: .clients, now: 4).isEmpty)
    }
}

/// Resumed requests and preference schedules, on one session.
@Suite struct ResumeAndScheduleTests {
    let cluster = FakeCluster(replicas: ["concise": ["c1"], "friendly": ["f1"]])

    /// Two candidates per expert at every step, so that a seeded draw matters.
    func wide(_ session: SessionID, _ step: UInt32, expert: Int) -> Dist {
        let a = UInt32(10 + (step * 7 + UInt32(expert) * 3) % 20)
        return Dist(session: session, step: step, ids: [a, a + 30, a + 50], logProbs: [log(0.4), log(0.35), log(0.2)],
                    tailMass: 0.05)
    }

    func session(resume: [UInt32] = [], schedule: [ScheduledPreference] = [], preference: String = "concise, friendly",
                 temperature: Float = 1, maxNewTokens: UInt32 = 12) throws -> CoordinatorSession {
        let request = Generate(
            request: 3, prompt: "Hi", preference: preference, maxNewTokens: maxNewTokens,
            sampling: SamplingRequest(temperature: temperature, seed: 42), resume: resume
        )
        return CoordinatorSession(
            id: 9, request: request, preference: try PreferenceSpec.parse(preference),
            experts: [SessionExpert(name: "concise", dimension: .concise),
                      SessionExpert(name: "friendly", dimension: .friendly)],
            settings: SessionSettings(topK: 4, stepDeadlineMs: 100, openDeadlineMs: 1000, vocabSize: 100,
                                      eosTokenIDs: [0]),
            controller: UniformController(), decoder: TableDecoder(table: [:]), schedule: schedule, now: 0
        )
    }

    /// Runs a session to its end with `wide` dists; returns every token it emitted and the done.
    func run(_ session: inout CoordinatorSession, candidates: (UInt32, Int) -> Dist) -> ([UInt32], Done?) {
        var tokens: [UInt32] = []
        var out = session.start(now: 0, chooseReplica: cluster.choose)
        var finished: Done?
        var guardSteps = 0
        while finished == nil, guardSteps < 100 {
            guardSteps += 1
            tokens += emitted(out).map(\.token)
            if let d = done(out) {
                finished = d
                break
            }
            let step = session.step
            out = session.onDist(candidates(step, 0), from: "c1", now: 1, chooseReplica: cluster.choose)
            out += session.onDist(candidates(step, 1), from: "f1", now: 1, chooseReplica: cluster.choose)
        }
        return (tokens, finished)
    }

    @Test("a request resumed from its first tokens gives the same later tokens and text as one run whole (seeded)")
    func resumeMatches() throws {
        var whole = try session()
        let (all, wholeDone) = run(&whole) { wide(9, $0, expert: $1) }
        #expect(all.count == 12)
        for k in [1, 5, 11] {
            var resumed = try session(resume: Array(all.prefix(k)))
            let start = resumed.start(now: 0, chooseReplica: cluster.choose)
            // The experts get a replay of the tokens so far, not an open.
            #expect(sends(start).allSatisfy { if case let .replay(r) = $0.1 { r.tokens == Array(all.prefix(k)) } else { false } })
            var rest: [UInt32] = []
            var out: [SessionDirective] = []
            var finished: Done?
            while finished == nil {
                let step = resumed.step
                out = resumed.onDist(wide(9, step, expert: 0), from: "c1", now: 1, chooseReplica: cluster.choose)
                out += resumed.onDist(wide(9, step, expert: 1), from: "f1", now: 1, chooseReplica: cluster.choose)
                rest += emitted(out).map(\.token)
                finished = done(out)
            }
            #expect(Array(all.prefix(k)) + rest == all, "resumed after \(k)")
            #expect(finished?.text == wholeDone?.text)
            #expect(finished?.tokens == 12)
        }
    }

    @Test("done reports each expert's mean compute time over the decoding steps, without the prefill")
    func stepTimes() throws {
        var session = try session(temperature: 0, maxNewTokens: 3)
        _ = session.start(now: 0, chooseReplica: cluster.choose)
        var out: [SessionDirective] = []
        for step in UInt32(0)..<3 {
            for (expert, worker) in [(0, "c1"), (1, "f1")] {
                var reply = wide(9, step, expert: expert)
                // The prefill (step 0) is slow; decoding steps take 100 µs (concise) and 300 µs (friendly).
                reply.timing = WorkerTiming(computeMicros: step == 0 ? 50_000 : UInt32(100 + 200 * expert))
                out = session.onDist(reply, from: worker, now: 1, chooseReplica: cluster.choose)
            }
        }
        let finished = try #require(done(out))
        #expect(finished.experts.map(\.meanStepMicros) == [100, 300])
    }

    @Test("a scheduled preference decides the tokens from its index on")
    func scheduleApplies() throws {
        // concise always offers 5, friendly 6: greedy, the weighted expert's token wins.
        func peakedBy(_ step: UInt32, _ expert: Int) -> Dist {
            Dist(session: 9, step: step, ids: [expert == 0 ? 5 : 6], logProbs: [log(0.9)], tailMass: 0.1)
        }
        let change = ScheduledPreference(fromToken: 2, preference: try PreferenceSpec.parse("friendly"))
        var scheduled = try session(schedule: [change], preference: "concise", temperature: 0, maxNewTokens: 4)
        let (tokens, _) = run(&scheduled, candidates: peakedBy)
        #expect(tokens == [5, 5, 6, 6])

        var posted = try session(preference: "concise", temperature: 0, maxNewTokens: 4)
        var out = posted.start(now: 0, chooseReplica: cluster.choose)
        var seen: [UInt32] = []
        for step in UInt32(0)..<4 {
            if step == 1 { #expect(posted.setPreference(try PreferenceSpec.parse("friendly")) == 1) }
            out = posted.onDist(peakedBy(step, 0), from: "c1", now: 1, chooseReplica: cluster.choose)
            out += posted.onDist(peakedBy(step, 1), from: "f1", now: 1, chooseReplica: cluster.choose)
            seen += emitted(out).map(\.token)
        }
        #expect(seen == [5, 6, 6, 6])
    }
}
