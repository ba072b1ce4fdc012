import Foundation
import Preference
import Testing
import Wire

@testable import Coordinator

@Suite struct CoordinatorCoreTests {
    static let client: ClientID = [0, 1, 2]
    let second: UInt64 = 1_000_000_000

    /// A coordinator with concise (workers c1, c2) and friendly (f1) registered.
    func cluster() -> CoordinatorCore {
        var config = ClusterConfig(experts: [
            ExpertConfig(name: "concise", model: "m", replicas: 2), ExpertConfig(name: "friendly", model: "m"),
        ])
        config.topK = 4
        var core = CoordinatorCore(config: config)
        for (id, expert) in [("c1", "concise"), ("c2", "concise"), ("f1", "friendly")] {
            let out = core.onWorkerMessage(.hello(hello(id, expert: expert)), from: id, now: 0)
            #expect(out == [.sendToWorker(id, .welcome(Welcome(heartbeatIntervalMs: 1000)))])
        }
        return core
    }

    func generate(maxNewTokens: UInt32 = 2, preference: String = "concise") -> Generate {
        Generate(request: 5, prompt: "Hi", preference: preference, maxNewTokens: maxNewTokens)
    }

    func workerSends(_ out: [CoordinatorDirective]) -> [(WorkerID, Message)] {
        out.compactMap { if case let .sendToWorker(w, m) = $0 { (w, m) } else { nil } }
    }

    func clientMessages(_ out: [CoordinatorDirective]) -> [Message] {
        out.compactMap { if case let .sendToClient(_, m) = $0 { m } else { nil } }
    }

    func dist(_ session: SessionID, _ step: UInt32, _ token: UInt32) -> Message {
        .dist(Dist(session: session, step: step, ids: [token], logProbs: [-0.1], tailMass: 0.1))
    }

    @Test("a generate request is opened on one worker per expert, streamed to the client and closed")
    func endToEnd() throws {
        var core = cluster()
        let decoder = TableDecoder(table: [5: "a", 6: "b"])
        let opened = core.onGenerate(generate(), from: Self.client, now: 0, decoder: decoder)
        #expect(workerSends(opened).map(\.0) == ["c1", "f1"])
        #expect(core.membership.workers["c1"]?.load == 1)
        let session = try #require(core.session(1))
        #expect(session.request.request == 5)

        #expect(core.onWorkerMessage(dist(1, 0, 5), from: "c1", now: 1).isEmpty)
        let first = core.onWorkerMessage(dist(1, 0, 5), from: "f1", now: 2)
        #expect(clientMessages(first) == [.token(TokenEvent(request: 5, step: 0, token: 5, text: "a"))])
        _ = core.onWorkerMessage(dist(1, 1, 6), from: "c1", now: 3)
        let last = core.onWorkerMessage(dist(1, 1, 6), from: "f1", now: 4)
        guard case let .done(done)? = clientMessages(last).last else {
            Issue.record("expected done, got \(last)")
            return
        }
        #expect(done.text == "ab")
        #expect(done.finish == .maxTokens)
        #expect(Set(workerSends(last).map(\.0)) == ["c1", "f1"])
        #expect(core.membership.workers.values.allSatisfy { $0.load == 0 })
        _ = core.onTick(now: 10 * second)
        #expect(core.sessionCount == 0)
    }

    @Test("a worker that stops answering heartbeats is declared dead and its sessions move to a replica")
    func deadWorkerFailsOver() throws {
        var core = cluster()
        _ = core.onGenerate(generate(), from: Self.client, now: 0, decoder: TableDecoder(table: [:]))
        for t in [UInt64(1), 2] {
            _ = core.onWorkerMessage(.heartbeat, from: "c2", now: t * second)
            _ = core.onWorkerMessage(.heartbeat, from: "f1", now: t * second)
        }
        let out = core.onTick(now: 3 * second)
        let replays = workerSends(out).filter { if case .replay = $0.1 { true } else { false } }
        #expect(replays.map(\.0) == ["c2"])
        #expect(core.membership.workers["c1"] == nil)
        #expect(core.membership.workers["c2"]?.load == 1)
        #expect(core.session(1)?.failovers == 1)
    }

    @Test("requests the coordinator cannot serve are refused with a typed error")
    func refusals() {
        var core = cluster()
        let unknown = core.onGenerate(generate(preference: "consise"), from: Self.client, now: 0,
                                      decoder: TableDecoder(table: [:]))
        guard case let .error(reply)? = clientMessages(unknown).first else {
            Issue.record("expected an error")
            return
        }
        #expect(reply.code == .badRequest)
        #expect(reply.text.contains("concise"))

        var empty = CoordinatorCore(config: ClusterConfig(experts: [ExpertConfig(name: "concise", model: "m")]))
        let none = empty.onGenerate(generate(), from: Self.client, now: 0, decoder: TableDecoder(table: [:]))
        guard case let .error(unavailable)? = clientMessages(none).first else {
            Issue.record("expected an error")
            return
        }
        #expect(unavailable.code == .unavailable)
    }

    @Test("a hello whose id differs from the connection's identity is rejected")
    func identityMismatch() {
        var core = cluster()
        let out = core.onWorkerMessage(.hello(hello("x1")), from: "x2", now: 0)
        guard case .sendToWorker("x2", .reject)? = out.first else {
            Issue.record("expected a rejection, got \(out)")
            return
        }
    }

    @Test("a client that goes away has its sessions closed on the workers")
    func clientGone() {
        var core = cluster()
        _ = core.onGenerate(generate(), from: Self.client, now: 0, decoder: TableDecoder(table: [:]))
        let out = core.onClientGone(Self.client, now: 1)
        #expect(Set(workerSends(out).map(\.0)) == ["c1", "f1"])
        #expect(core.sessionCount == 0)
        #expect(core.membership.workers.values.allSatisfy { $0.load == 0 })
    }
}
