import Decoding
import Foundation
import Preference
import Testing
import Wire

@testable import ClusterCore

@Suite struct CoordinatorCoreTests {
    static let client: ClientID = [0, 1, 2]
    static let noText = SessionResources(decoder: TableDecoder(table: [:]), controller: UniformController())
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

    func generate(maxNewTokens: UInt32 = 2, preference: String = "concise, friendly") -> Generate {
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

    @Test("experts that see the preference are opened with it as a system turn before the prompt")
    func expertSystemTurn() throws {
        for context in ExpertContext.allCases {
            var config = ClusterConfig(experts: [
                ExpertConfig(name: "concise", systemPrompt: context == .preference ? "" : nil, model: "m"),
                ExpertConfig(name: "friendly", systemPrompt: context == .preference ? "" : nil, model: "m"),
            ])
            config.expertContext = context
            for d in PreferenceDimension.allCases { config.preferencePrompts[d] = "Be \(d.rawValue)." }
            try config.validate()
            var core = CoordinatorCore(config: config)
            for (id, expert) in [("c1", "concise"), ("f1", "friendly")] {
                _ = core.onWorkerMessage(.hello(hello(id, expert: expert)), from: id, now: 0)
            }
            // The preference's dimensions in dimension order, whatever order the request names them in.
            let out = core.onGenerate(generate(preference: "friendly, concise"), from: Self.client, now: 0,
                                      resources: Self.noText)
            let user = ChatTurn(role: "user", content: "Hi")
            let expected: Request = context == .own
                ? .chat([user]) : .chat([ChatTurn(role: "system", content: "Be concise. Be friendly."), user])
            #expect(workerSends(out).count == 2)
            for (_, message) in workerSends(out) {
                guard case let .open(open) = message else {
                    Issue.record("expected open, got \(message)")
                    continue
                }
                #expect(open.request == expected, "\(context)")
            }
        }
    }

    @Test("a generate request is opened on one worker per expert, streamed to the client and closed")
    func endToEnd() throws {
        var core = cluster()
        let decoder = TableDecoder(table: [5: "a", 6: "b"])
        let resources = SessionResources(decoder: decoder, controller: UniformController())
        let opened = core.onGenerate(generate(), from: Self.client, now: 0, resources: resources)
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

    @Test("a silent worker is dead once its outstanding request's deadline passes; its sessions move to a replica")
    func deadWorkerFailsOver() throws {
        var core = cluster()
        _ = core.onGenerate(generate(), from: Self.client, now: 0, resources: Self.noText)
        let openDeadline = UInt64(core.config.openDeadlineMs) / 1000 + 1
        _ = core.onWorkerMessage(dist(1, 0, 5), from: "f1", now: second / 2)
        for t in 1...openDeadline {
            _ = core.onWorkerMessage(.heartbeat, from: "c2", now: t * second)
            _ = core.onWorkerMessage(.heartbeat, from: "f1", now: t * second)
        }
        let out = core.onTick(now: openDeadline * second)
        let replays = workerSends(out).filter { if case .replay = $0.1 { true } else { false } }
        #expect(replays.map(\.0) == ["c2"])
        #expect(core.membership.workers["c1"] == nil)
        #expect(core.membership.workers["c2"]?.load == 1)
        #expect(core.session(1)?.failovers == 1)
    }

    @Test("a worker busy with a request (a long prefill) is not taken for dead before that request's deadline")
    func busyWorkerIsNotDeadEarly() throws {
        var core = cluster()
        _ = core.onGenerate(generate(), from: Self.client, now: 0, resources: Self.noText)
        for t in [UInt64(1), 2, 3, 4] {
            _ = core.onWorkerMessage(.heartbeat, from: "c2", now: t * second)
            _ = core.onWorkerMessage(.heartbeat, from: "f1", now: t * second)
        }
        let out = core.onTick(now: 4 * second)
        #expect(workerSends(out).allSatisfy { if case .replay = $0.1 { false } else { true } })
        #expect(core.membership.workers["c1"] != nil)
        #expect(core.session(1)?.failovers == 0)
    }

    @Test("requests the coordinator cannot serve are refused with a typed error")
    func refusals() {
        var core = cluster()
        let unknown = core.onGenerate(
            generate(preference: "consise"), from: Self.client, now: 0, resources: Self.noText
        )
        guard case let .error(reply)? = clientMessages(unknown).first else {
            Issue.record("expected an error")
            return
        }
        #expect(reply.code == .badRequest)
        #expect(reply.text.contains("concise"))

        var empty = CoordinatorCore(config: ClusterConfig(experts: [ExpertConfig(name: "concise", model: "m")]))
        let none = empty.onGenerate(generate(), from: Self.client, now: 0, resources: Self.noText)
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
        _ = core.onGenerate(generate(), from: Self.client, now: 0, resources: Self.noText)
        let out = core.onClientGone(Self.client, now: 1)
        #expect(Set(workerSends(out).map(\.0)) == ["c1", "f1"])
        #expect(core.sessionCount == 0)
        #expect(core.membership.workers.values.allSatisfy { $0.load == 0 })
    }

    // MARK: Frames, policy and drain (the shell only moves bytes; these decide)

    func frame(_ message: Message) -> [UInt8] { WireCodec.encode(message) }

    func errorCode(_ message: Message) -> ErrorCode? {
        if case let .error(reply) = message { reply.code } else { nil }
    }

    @Test("frames are decoded by the core: garbage from a client gets error badRequest, from a worker only a log")
    func malformedFrames() {
        var core = cluster()
        let fromClient = core.onFrame(identity: Self.client, payload: [0xFF, 0x00, 0x13], on: .clients, now: 1)
        guard case let .error(reply)? = clientMessages(fromClient).first else {
            Issue.record("expected an error, got \(fromClient)")
            return
        }
        #expect(reply.code == .badRequest)
        #expect(core.onFrame(identity: Array("c1".utf8), payload: [0xFF], on: .workers, now: 1).isEmpty)
        let events = core.takeEvents()
        #expect(events.contains { if case .malformedFrame(from: "c1", _) = $0 { true } else { false } })
        #expect(events.contains { if case .malformedFrame(from: nil, _) = $0 { true } else { false } })
        #expect(core.takeEvents().isEmpty)
    }

    @Test("a generate frame opens a session; a worker's message from an unregistered identity is ignored")
    func framesRoute() {
        var core = cluster()
        let out = core.onFrame(identity: Self.client, payload: frame(.generate(generate())), on: .clients, now: 0)
        #expect(workerSends(out).map(\.0) == ["c1", "f1"])
        #expect(core.onFrame(identity: Array("zz".utf8), payload: frame(dist(1, 0, 5)), on: .workers, now: 1).isEmpty)
        let wrongKind = core.onFrame(
            identity: Self.client, payload: frame(.welcome(Welcome(heartbeatIntervalMs: 1))), on: .clients, now: 1
        )
        guard case let .error(reply)? = clientMessages(wrongKind).first else {
            Issue.record("expected an error, got \(wrongKind)")
            return
        }
        #expect(reply.text.contains("generate"))
    }

    @Test("a worker whose vocabulary differs from the cluster tokenizer's is rejected with the reason")
    func vocabularyMismatch() {
        var policy = CoordinatorPolicy()
        policy.vocabHash = 0xABC
        policy.vocabSource = "model.gguf"
        var core = CoordinatorCore(config: ClusterConfig(experts: [ExpertConfig(name: "concise", model: "m")]),
                                   policy: policy)
        let out = core.onFrame(identity: Array("w".utf8), payload: frame(.hello(hello("w", vocabHash: 0xDEF))), on: .workers,
                               now: 0)
        guard case let .sendToWorker("w", .reject(reject))? = out.first else {
            Issue.record("expected a rejection, got \(out)")
            return
        }
        // The peer learns what to fix, not the cluster's vocabulary or where it was read from; the log has both.
        #expect(reject.reason.contains("vocabulary"))
        #expect(!reject.reason.contains("abc") && !reject.reason.contains("model.gguf"))
        let logged = core.takeEvents().compactMap { event -> String? in
            if case let .workerRejected(_, reason) = event { return reason }
            return nil
        }
        #expect(logged.contains { $0.contains("abc") && $0.contains("model.gguf") })
        #expect(core.membership.workers.isEmpty)
        let ok = core.onFrame(identity: Array("v".utf8), payload: frame(.hello(hello("v"))), on: .workers, now: 0)
        #expect(ok == [.sendToWorker("v", .welcome(Welcome(heartbeatIntervalMs: 1000)))])
        #expect(core.takeEvents().contains(.workerRegistered("v", expert: "concise")))
    }

    @Test("roles never mix: a hello on the client endpoint registers nothing, a generate on the worker endpoint opens nothing")
    func endpointsKeepRoles() {
        var core = cluster()
        let impostor = core.onFrame(
            identity: Array("evil".utf8), payload: frame(.hello(hello("evil"))), on: .clients, now: 0
        )
        guard case let .error(reply)? = clientMessages(impostor).first else {
            Issue.record("expected an error, got \(impostor)")
            return
        }
        #expect(reply.code == .badRequest)
        #expect(core.membership.workers["evil"] == nil)
        #expect(core.onFrame(identity: Self.client, payload: frame(.generate(generate())), on: .workers, now: 0)
            .isEmpty)
        #expect(core.activeSessionCount == 0)
    }

    @Test("a hello for an unknown expert or another vocabulary is refused without naming the cluster's experts or vocabulary")
    func rejectionsDiscloseNothing() {
        var core = cluster()
        let probes = [hello("p1", expert: "nosuch"), hello("p2", vocabHash: 0x9999)]
        for probe in probes {
            let out = core.onFrame(identity: Array(probe.workerID.utf8), payload: frame(.hello(probe)), on: .workers,
                                   now: 0)
            guard case let .sendToWorker(_, .reject(reject))? = out.first else {
                Issue.record("expected a rejection, got \(out)")
                continue
            }
            #expect(!reject.reason.lowercased().contains("abc"), "\(reject.reason)")
            for expert in core.config.experts where expert.name != probe.expert {
                #expect(!reject.reason.contains(expert.name), "\(reject.reason)")
            }
        }
    }

    @Test("a request id already in flight on a connection is refused; after its outcome it may be used again")
    func duplicateRequest() {
        var core = cluster()
        _ = core.onGenerate(generate(maxNewTokens: 1), from: Self.client, now: 0, resources: Self.noText)
        let again = core.onGenerate(generate(), from: Self.client, now: 0, resources: Self.noText)
        #expect(clientMessages(again).map(errorCode) == [.badRequest])
        _ = core.onWorkerMessage(dist(1, 0, 5), from: "c1", now: 1)
        let done = core.onWorkerMessage(dist(1, 0, 5), from: "f1", now: 2)
        #expect(clientMessages(done).contains { if case .done = $0 { true } else { false } })
        let reuse = core.onGenerate(generate(), from: Self.client, now: 3, resources: Self.noText)
        #expect(workerSends(reuse).count == 2)
    }

    @Test("the session limit refuses new requests with error unavailable")
    func sessionLimit() {
        var policy = CoordinatorPolicy()
        policy.maxSessions = 1
        var core = CoordinatorCore(config: cluster().config, policy: policy)
        _ = core.onWorkerMessage(.hello(hello("c1")), from: "c1", now: 0)
        _ = core.onGenerate(generate(), from: Self.client, now: 0, resources: Self.noText)
        let second = core.onGenerate(
            Generate(request: 6, prompt: "Hi", preference: "concise", maxNewTokens: 2), from: Self.client, now: 0,
            resources: Self.noText
        )
        #expect(clientMessages(second).map(errorCode) == [.unavailable])
    }

    @Test("only the experts the preference names are asked, unless every expert is selected")
    func expertSelection() {
        var core = cluster()
        let named = core.onGenerate(generate(preference: "friendly"), from: Self.client, now: 0, resources: Self.noText)
        #expect(workerSends(named).map(\.0) == ["f1"])
        var policy = CoordinatorPolicy()
        policy.expertSelection = .all
        var all = CoordinatorCore(config: core.config, policy: policy)
        _ = all.onWorkerMessage(.hello(hello("c1")), from: "c1", now: 0)
        _ = all.onWorkerMessage(.hello(hello("f1", expert: "friendly")), from: "f1", now: 0)
        let out = all.onGenerate(generate(preference: "friendly"), from: Self.client, now: 0, resources: Self.noText)
        #expect(workerSends(out).map(\.0) == ["c1", "f1"])
    }

    @Test("a worker that registers again has its sessions rebuilt on it by replay")
    func reRegistrationReplays() {
        var core = cluster()
        _ = core.onGenerate(generate(), from: Self.client, now: 0, resources: Self.noText)
        let out = core.onWorkerMessage(.hello(hello("c1")), from: "c1", now: second)
        let replays = workerSends(out).filter { if case .replay = $0.1 { true } else { false } }
        #expect(replays.map(\.0) == ["c1"])
        #expect(core.session(1)?.state == .opening)
    }

    @Test("a drain refuses new requests, lets running sessions finish, and is finished when none is left")
    func drainFinishes() {
        var core = cluster()
        _ = core.onGenerate(generate(maxNewTokens: 1), from: Self.client, now: 0, resources: Self.noText)
        core.beginDrain(now: 0, graceNanos: 60 * second)
        let refused = core.onGenerate(
            Generate(request: 9, prompt: "Hi", preference: "concise", maxNewTokens: 2), from: Self.client, now: 0,
            resources: Self.noText
        )
        #expect(clientMessages(refused).map(errorCode) == [.draining])
        _ = core.onTick(now: 1)
        #expect(!core.isFinished)
        _ = core.onWorkerMessage(dist(1, 0, 5), from: "c1", now: 2)
        _ = core.onWorkerMessage(dist(1, 0, 5), from: "f1", now: 3)
        _ = core.onTick(now: 4)
        #expect(core.isFinished)
        #expect(core.takeEvents().contains(.drained))
    }

    @Test("when the drain's grace runs out, running sessions fail with error draining and workers get close")
    func drainExpires() {
        var core = cluster()
        _ = core.onGenerate(generate(), from: Self.client, now: 0, resources: Self.noText)
        core.beginDrain(now: 0, graceNanos: second)
        #expect(core.nextDeadline ?? .max <= second)
        for t in [UInt64(1), 2] {
            for worker in ["c1", "c2", "f1"] { _ = core.onWorkerMessage(.heartbeat, from: worker, now: t * second / 2) }
        }
        let out = core.onTick(now: second)
        #expect(clientMessages(out).map(errorCode) == [.draining])
        #expect(Set(workerSends(out).filter { if case .close = $0.1 { true } else { false } }.map(\.0)) == ["c1", "f1"])
        #expect(core.isFinished)
    }
}

@Suite struct SessionTimingTests {
    func dist(step: UInt32, queue: UInt32, compute: UInt32) -> Dist {
        Dist(session: 1, step: step, ids: [1], logProbs: [0], tailMass: 0,
             timing: WorkerTiming(queueMicros: queue, computeMicros: compute, batchSize: 1))
    }

    @Test("per step the slowest expert counts; decoding figures leave out step 0 and run from the first token")
    func sums() {
        var timing = SessionTiming()
        #expect(timing.decodeWallMicros == 0)
        timing.add(dist(step: 0, queue: 10, compute: 500))
        timing.add(dist(step: 0, queue: 0, compute: 700))
        timing.tokenSent(now: 1_000_000)
        timing.add(dist(step: 1, queue: 5, compute: 100))
        timing.add(dist(step: 1, queue: 50, compute: 90))
        timing.tokenSent(now: 1_200_000)  // only the first token starts the decoding time
        timing.add(dist(step: 2, queue: 0, compute: 120))
        timing.finished(now: 1_400_000)
        #expect(timing.computeMicros == 700 + 100 + 120)
        #expect(timing.serviceMicros == 700 + 140 + 120)
        #expect(timing.decodeComputeMicros == 100 + 120)
        #expect(timing.decodeWallMicros == 400)
    }

    @Test("a session that ends at step 0 has no decoding time")
    func prefillOnly() {
        var timing = SessionTiming()
        timing.add(dist(step: 0, queue: 0, compute: 300))
        timing.tokenSent(now: 5_000)
        timing.finished(now: 5_000)
        #expect(timing.computeMicros == 300)
        #expect(timing.decodeComputeMicros == 0)
        #expect(timing.decodeWallMicros == 0)
    }
}
