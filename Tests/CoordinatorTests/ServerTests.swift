import ClusterCore
import Coordinator
import Decoding
import Dispatch
import Foundation
import Inference
import Logging
import Preference
import TestKit
import ProcessSupport
import Synchronization
import Testing
import Wire
import ZeroMQ

/// The coordinator's shell in this process, against hand-driven worker and client sockets (no model runs).
@Suite(.serialized)
struct ServerTests {
    static let tinyModel = Fixtures.tinyA

    /// A running coordinator on a fresh ipc endpoint; `finish()` stops it and waits for its thread.
    final class Running {
        let server: CoordinatorServer
        /// The workers' endpoint.
        let endpoint: String
        /// The clients' endpoint (the default derived from `endpoint`).
        var clientEndpoint: String { endpoint + ".clients" }
        private let ended = DispatchSemaphore(value: 0)
        private var hasEnded = false
        private let socketPath: String

        init(
            stepDeadlineMs: UInt32 = 300, heartbeatMs: UInt32 = 100, pcm: String? = nil,
            curve: CurveKeyPair? = nil, allowList: CurveAllowList? = nil, workerAllowList: CurveAllowList? = nil,
            maxMessageBytes: Int = WireLimits.maxFrameBytes, logger: Logger? = nil
        ) throws {
            socketPath = "/tmp/mope-server-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
            endpoint = "ipc://" + socketPath
            var config = ClusterConfig(experts: [
                ExpertConfig(name: "concise", model: ServerTests.tinyModel),
                ExpertConfig(name: "friendly", model: ServerTests.tinyModel),
            ])
            config.coordinator = endpoint
            config.stepDeadlineMs = stepDeadlineMs
            config.openDeadlineMs = stepDeadlineMs
            config.heartbeatIntervalMs = heartbeatMs
            config.topK = 4
            config.pcm = pcm
            var settings = CoordinatorSettings(config: config)
            settings.logger = logger ?? Logger(label: "coordinator", level: .error)
            settings.drainGrace = .seconds(5)
            settings.curve = curve
            settings.curveAllowList = allowList
            settings.curveWorkerAllowList = workerAllowList
            settings.maxMessageBytes = maxMessageBytes
            server = try CoordinatorServer(settings: settings)
            let server = server
            let ended = ended
            Threads.start(name: "mope-test-server") {
                try? server.run()
                ended.signal()
            }
        }

        /// Waits until `run()` returned (true) or `timeout` passed (false).
        func waitForEnd(timeout: Double = 10) -> Bool {
            if !hasEnded { hasEnded = ended.wait(timeout: .now() + timeout) == .success }
            return hasEnded
        }

        func finish() {
            server.stop()
            _ = waitForEnd()
            unlink(socketPath)
            unlink(socketPath + ".clients")
        }
    }

    /// A DEALER speaking the protocol by hand.
    final class Peer {
        let socket: ZMQSocket

        init(_ endpoint: String, id: String? = nil, curve: CurveClientKeys? = nil) throws {
            socket = try ZMQSocket(.dealer)
            try socket.set(.linger, .zero)
            if let id { try socket.set(.routingID, Array(id.utf8)) }
            try curve?.apply(to: socket)
            try socket.connect(endpoint)
        }

        deinit { socket.close() }

        func send(_ message: Message) throws { try socket.send([WireCodec.encode(message)]) }

        /// The next message other than a heartbeat, within `timeout` seconds.
        func receive(timeout: Double = 10) throws -> Message? {
            let deadline = ContinuousClock.now.advanced(by: .milliseconds(Int64(timeout * 1000)))
            while ContinuousClock.now < deadline {
                guard let frames = try socket.receiveMultipart(timeout: ContinuousClock.now.duration(to: deadline)),
                    let payload = frames.last
                else { return nil }
                let message = try WireCodec.decode(payload)
                if message != .heartbeat { return message }
            }
            return nil
        }

        func hello(_ id: String, expert: String, vocabHash: UInt64) throws -> Message? {
            try send(.hello(Hello(
                workerID: id, expert: expert, modelFingerprint: "test", vocabSize: 448, vocabHash: vocabHash,
                eosTokenIDs: [0], contextLimit: 256, sessionCapacity: 8
            )))
            return try receive()
        }
    }

    @Test("a malformed frame from a client gets error badRequest and the coordinator keeps serving")
    func malformedFrame() throws {
        let running = try Running()
        defer { running.finish() }
        let client = try Peer(running.clientEndpoint)
        try client.socket.send([[0xFF, 0x00, 0x01]])
        guard case let .error(reply)? = try client.receive() else {
            Issue.record("no error reply")
            return
        }
        #expect(reply.code == .badRequest)
        try client.send(.generate(Generate(request: 7, prompt: "hi", preference: "concise", maxNewTokens: 2)))
        guard case let .error(second)? = try client.receive() else {
            Issue.record("no reply to the well-formed request")
            return
        }
        #expect(second.session == 7)
        #expect(second.code == .unavailable)
    }

    @Test("a client's status request is answered with the experts wanted and the workers registered")
    func statusThroughClient() throws {
        let running = try Running(heartbeatMs: 1000)
        defer { running.finish() }
        let client = try CoordinatorClient(endpoint: running.clientEndpoint)
        let before = try client.status(timeout: .seconds(10))
        #expect(before.experts.map(\.name) == ["concise", "friendly"])
        #expect(before.workers.isEmpty && !before.ready)
        let worker = try Peer(running.endpoint, id: "w1")
        guard case .welcome? = try worker.hello("w1", expert: "concise", vocabHash: running.server.tokenizer.vocabHash)
        else {
            Issue.record("not welcomed")
            return
        }
        let after = try client.status(timeout: .seconds(10))
        #expect(after.experts[0].workers == [
            WorkerStatus(id: "w1", sessions: 0, capacity: 8, draining: false, registrations: 1),
        ])
        #expect(after.missing == [MissingReplicas(expert: "friendly", wanted: 1, live: 0)])
    }

    @Test("status from a coordinator that does not answer times out naming the address")
    func statusTimeout() throws {
        let endpoint = "ipc:///tmp/mope-nobody-\(getpid()).sock"
        let client = try CoordinatorClient(endpoint: endpoint)
        #expect(throws: ClientError.timeout(endpoint: endpoint, seconds: 0.2)) {
            try client.status(timeout: .milliseconds(200))
        }
    }

    @Test("a frame over the maximum message size cuts the peer off unread; after reconnecting it is served")
    func oversizedFrame() throws {
        let running = try Running(maxMessageBytes: 4096)
        defer { running.finish() }
        let client = try Peer(running.clientEndpoint)
        // Undecodable, so were it read it would be answered with error badRequest for session 0.
        try client.socket.send([[UInt8](repeating: 0xFF, count: 8192)])
        var answer: ErrorReply?
        var request: UInt64 = 1
        while answer == nil && request < 300 {
            try client.send(.generate(Generate(request: request, prompt: "hi", preference: "concise", maxNewTokens: 2)))
            if case let .error(reply)? = try client.receive(timeout: 0.1) { answer = reply }
            request += 1
        }
        let reply = try #require(answer, "no reply after reconnecting")
        #expect(reply.session != 0)
        #expect(reply.code == .unavailable)
    }

    @Test("a worker whose vocabulary differs from the cluster tokenizer's is rejected with the reason")
    func vocabularyMismatch() throws {
        let running = try Running()
        defer { running.finish() }
        let worker = try Peer(running.endpoint, id: "w1")
        guard case let .reject(reject)? = try worker.hello("w1", expert: "concise", vocabHash: 1) else {
            Issue.record("no reject")
            return
        }
        #expect(reject.reason.contains("vocabulary"))
    }

    /// Keeps the lines a logger writes.
    final class LineSink: LogSink {
        let lines = Mutex<[String]>([])
        func write(_ event: LogEvent) { lines.withLock { $0.append(event.line) } }
    }

    @Test("a peer's identity is logged escaped, on the one line of its event")
    func identityEscaped() throws {
        let sink = LineSink()
        let running = try Running(logger: Logger(label: "coordinator", level: .info, sink: sink))
        defer { running.finish() }
        let worker = try Peer(running.endpoint, id: "w\n1\u{7}")
        guard case .reject? = try worker.hello("w\n1\u{7}", expert: "concise", vocabHash: 1) else {
            Issue.record("no reject")
            return
        }
        // The event is logged just after the reply is sent.
        let deadline = ContinuousClock.now.advanced(by: .seconds(10))
        var rejected: [String] = []
        while rejected.isEmpty && ContinuousClock.now < deadline {
            rejected = sink.lines.withLock { $0 }.filter { $0.contains("rejected worker") }
            if rejected.isEmpty { usleep(10_000) }
        }
        #expect(rejected.count == 1)
        #expect(rejected.first?.hasPrefix("WARN [coordinator] rejected worker w\\x0a1\\x07: ") == true, "\(rejected)")
        #expect(sink.lines.withLock { $0 }.allSatisfy { !$0.contains("\n") && !$0.contains("\u{7}") })
    }

    @Test("a registered worker drives a session to done; every step carries the token chosen before it")
    func sessionThroughFakeWorker() throws {
        let running = try Running(stepDeadlineMs: 5000, heartbeatMs: 1000)
        defer { running.finish() }
        let worker = try Peer(running.endpoint, id: "w1")
        guard case .welcome? = try worker.hello("w1", expert: "concise", vocabHash: running.server.tokenizer.vocabHash)
        else {
            Issue.record("not welcomed")
            return
        }
        let client = try Peer(running.clientEndpoint)
        try client.send(.generate(Generate(request: 3, prompt: "hi", preference: "concise", maxNewTokens: 3)))
        guard case let .open(open)? = try worker.receive() else {
            Issue.record("no open")
            return
        }
        // Step n's favourite is token 10 + n.
        func reply(step: UInt32) throws {
            try worker.send(.dist(Dist(
                session: open.session, step: step, ids: [10 + step, 50], logProbs: [-0.1, -3], tailMass: 0.05
            )))
        }
        try reply(step: 0)
        for step in UInt32(1)...2 {
            guard case let .step(message)? = try worker.receive() else {
                Issue.record("no step \(step)")
                return
            }
            #expect(message.step == step)
            #expect(message.token == 10 + step - 1)
            try reply(step: step)
        }
        var tokens: [UInt32] = []
        while let message = try client.receive() {
            if case let .token(event) = message { tokens.append(event.token) }
            if case let .done(done) = message {
                #expect(done.request == 3)
                #expect(done.tokens == 3)
                break
            }
        }
        #expect(tokens == [10, 11, 12])
        guard case let .close(close)? = try worker.receive() else {
            Issue.record("no close")
            return
        }
        #expect(close.session == open.session)
    }

    @Test("a worker that never answers is dropped at its deadline and the client is told, not left waiting")
    func silentWorker() throws {
        let running = try Running(stepDeadlineMs: 300, heartbeatMs: 100)
        defer { running.finish() }
        let worker = try Peer(running.endpoint, id: "w1")
        _ = try worker.hello("w1", expert: "concise", vocabHash: running.server.tokenizer.vocabHash)
        let client = try Peer(running.clientEndpoint)
        try client.send(.generate(Generate(request: 1, prompt: "hi", preference: "concise", maxNewTokens: 3)))
        guard case let .error(reply)? = try client.receive() else {
            Issue.record("no error for the client")
            return
        }
        #expect(reply.code == .unavailable)
    }

    @Test("a drain with nothing running ends run()")
    func drain() throws {
        let running = try Running()
        defer { running.finish() }
        running.server.drain()
        #expect(running.waitForEnd())
    }

    @Test("a config naming a PCM file makes the coordinator weigh the experts with it at every token")
    func learnedController() throws {
        let embeddings = try TokenEmbeddings(file: GGUFFile(path: Self.tinyModel))
        var parameters: [Float] = []
        var state: UInt64 = 12345
        let configuration = PCMConfiguration(hidden: 4, projection: 3, embeddingWidth: embeddings.width)
        for _ in 0..<configuration.parameterCount {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            parameters.append(Float(Int64(bitPattern: state >> 11) % 2000) / 1000 - 1)
        }
        let network = PCMNetwork(configuration: configuration, parameters: parameters)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("mope-pcm-\(getpid()).json").path
        try PCMFile.save(network, to: path)
        defer { unlink(path) }

        let running = try Running(stepDeadlineMs: 5000, heartbeatMs: 1000, pcm: path)
        defer { running.finish() }
        let hash = running.server.tokenizer.vocabHash
        let concise = try Peer(running.endpoint, id: "c")
        let friendly = try Peer(running.endpoint, id: "f")
        #expect(try concise.hello("c", expert: "concise", vocabHash: hash) != nil)
        #expect(try friendly.hello("f", expert: "friendly", vocabHash: hash) != nil)
        let client = try Peer(running.clientEndpoint)
        try client.send(.generate(Generate(
            request: 1, prompt: "hi there", preference: "concise, friendly", maxNewTokens: 2, trace: true
        )))
        let lists: [(peer: Peer, ids: [UInt32], logProbs: [Float])] = [
            (concise, [10, 11], [-0.2, -2.0]), (friendly, [11, 12], [-0.5, -1.2]),
        ]
        var sessions: [SessionID] = []
        for list in lists {
            guard case let .open(open)? = try list.peer.receive() else {
                Issue.record("no open")
                return
            }
            sessions.append(open.session)
        }
        for (list, session) in zip(lists, sessions) {
            try list.peer.send(.dist(Dist(session: session, step: 0, ids: list.ids, logProbs: list.logProbs,
                                          tailMass: 0.05)))
        }
        guard case let .token(event)? = try client.receive() else {
            Issue.record("no token")
            return
        }
        var controller = PCMController(network: network, embeddings: embeddings)
        let candidates = lists.map { TopKCandidates(ids: $0.ids, logProbs: $0.logProbs, tailMass: 0.05) }
        let prompt = running.server.tokenizer.tokenizer.encode("hi there", parseSpecial: false)
            .map { UInt32(bitPattern: $0) }
        let expected = controller.weights(
            preference: try PreferenceSpec.parse("concise, friendly"),
            experts: [ExpertDescriptor(name: "concise", dimension: .concise),
                      ExpertDescriptor(name: "friendly", dimension: .friendly)],
            context: ControllerContext(promptTokens: prompt, generatedTokens: [], step: 0, candidates: candidates)
        )
        #expect(abs(expected[0] - 0.5) > 0.01, "the test network must not be uniform")
        #expect(event.experts.map(\.expert) == ["concise", "friendly"])
        for (trace, weight) in zip(event.experts, expected) { #expect(abs(trace.weight - weight) < 1e-5) }
    }

    @Test("with an allow-list, a CURVE peer whose key is not listed never reaches the coordinator; a listed one does")
    func curveAllowList() throws {
        let server = try CurveKeyPair.generate()
        let listed = try CurveKeyPair.generate()
        let stranger = try CurveKeyPair.generate()
        let running = try Running(curve: server, allowList: CurveAllowList(keys: [listed.publicKey]))
        defer { running.finish() }
        let request = Message.generate(Generate(request: 1, prompt: "hi", preference: "concise", maxNewTokens: 2))

        let refused = try Peer(
            running.clientEndpoint, curve: CurveClientKeys(serverPublicKey: server.publicKey, keyPair: stranger)
        )
        try refused.socket.set(.sendTimeout, .milliseconds(100))
        _ = try? refused.socket.trySend([WireCodec.encode(request)])
        #expect(try refused.receive(timeout: 2) == nil)

        let admitted = try Peer(
            running.clientEndpoint, curve: CurveClientKeys(serverPublicKey: server.publicKey, keyPair: listed)
        )
        try admitted.send(request)
        guard case let .error(reply)? = try admitted.receive() else {
            Issue.record("the listed client got no answer")
            return
        }
        #expect(reply.code == .unavailable)
    }

    @Test("roles on separate endpoints: a client's key cannot reach the workers' endpoint, a hello on the clients' endpoint is refused")
    func rolesApart() throws {
        let server = try CurveKeyPair.generate()
        let worker = try CurveKeyPair.generate()
        let client = try CurveKeyPair.generate()
        let running = try Running(
            curve: server, allowList: CurveAllowList(keys: [client.publicKey]),
            workerAllowList: CurveAllowList(keys: [worker.publicKey])
        )
        defer { running.finish() }

        // The client's key on the workers' endpoint: the handshake is refused, the hello never arrives.
        let impostor = try Peer(
            running.endpoint, id: "evil", curve: CurveClientKeys(serverPublicKey: server.publicKey, keyPair: client)
        )
        try impostor.socket.set(.sendTimeout, .milliseconds(100))
        _ = try? impostor.socket.trySend([WireCodec.encode(.hello(Hello(
            workerID: "evil", expert: "concise", modelFingerprint: "test", vocabSize: 448,
            vocabHash: running.server.tokenizer.vocabHash, eosTokenIDs: [0], contextLimit: 256, sessionCapacity: 8
        )))])
        #expect(try impostor.receive(timeout: 2) == nil)

        // The client on its own endpoint: a hello there is refused with a reason, not registered.
        let admitted = try Peer(
            running.clientEndpoint, id: "evil", curve: CurveClientKeys(serverPublicKey: server.publicKey, keyPair: client)
        )
        guard case let .error(reply)? = try admitted.hello("evil", expert: "concise",
                                                          vocabHash: running.server.tokenizer.vocabHash) else {
            Issue.record("the hello on the clients' endpoint got no error")
            return
        }
        #expect(reply.code == .badRequest)

        // The worker's key on the workers' endpoint registers.
        let real = try Peer(
            running.endpoint, id: "w1", curve: CurveClientKeys(serverPublicKey: server.publicKey, keyPair: worker)
        )
        guard case .welcome? = try real.hello("w1", expert: "concise", vocabHash: running.server.tokenizer.vocabHash)
        else {
            Issue.record("the listed worker was not welcomed")
            return
        }
    }
}
