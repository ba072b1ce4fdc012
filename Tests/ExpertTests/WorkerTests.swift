import Foundation
import Inference
import Testing
import Wire
import WorkerCore
import ZeroMQ

@testable import Expert

/// The worker shell, run for real on its own thread against a ROUTER socket acting as the coordinator.
@Suite(.serialized) struct WorkerTests {
    static let question = WorkerFixtures.chat("What is the capital of France?")

    @Test("hello carries the model's vocabulary size and hash, EOS ids, context and capacity, and repeats until welcome")
    func registration() async throws {
        try await RunningWorker.with(capacity: 5, configure: { $0.defaultHeartbeatInterval = .milliseconds(200) }) { running in
            let model = try WorkerFixtures.model.get()
            let first = try #require(try running.coordinator.receive())
            guard case .hello(let hello) = first else {
                Issue.record("expected hello, got \(first)")
                return
            }
            #expect(hello.workerID == running.worker.id)
            #expect(hello.expert == "concise")
            #expect(hello.vocabSize == UInt32(model.vocabularySize))
            #expect(hello.vocabHash == UInt64(model.vocabularyHash, radix: 16))
            #expect(hello.modelFingerprint == model.fingerprint)
            #expect(hello.contextLimit == UInt32(model.configuration.contextLength))
            #expect(hello.sessionCapacity == 5)
            #expect(hello.eosTokenIDs.contains(UInt32(try #require(model.vocabulary.eosTokenID))))
            // Not answered: the worker says hello again.
            let again = try #require(try running.coordinator.receive())
            #expect(again == .hello(hello))
            try running.coordinator.send(.welcome(Welcome(heartbeatIntervalMs: 200)))
            // Once welcomed, a silent worker sends heartbeats, not hellos.
            let next = try running.coordinator.receive(keepHeartbeats: true)
            #expect(next == .heartbeat)
        }
    }

    @Test("open replies dist 0 equal to the model's own top-k; steps follow a local greedy run")
    func openAndSteps() async throws {
        try await RunningWorker.with { running in
            let coordinator = running.coordinator
            _ = try coordinator.register()
            let reference = try LocalReference(systemPrompt: "You answer briefly.")
            let greedy = try reference.greedy(Self.question, count: 6)
            let expected = try reference.steps(Self.question, tokens: greedy, k: 8)

            let dist0 = try coordinator.dist(.open(Open(session: 7, request: Self.question, topK: 8, maxNewTokens: 32)))
            #expect(dist0.session == 7 && dist0.step == 0)
            #expect(matches(dist0, expected[0]), "\(dist0) vs \(expected[0])")
            #expect(dist0.timing.batchSize == 1)
            for (i, token) in greedy.enumerated() {
                let step = UInt32(i + 1)
                let dist = try coordinator.dist(.step(Step(session: 7, step: step, token: token)))
                #expect(dist.step == step)
                #expect(matches(dist, expected[i + 1]), "step \(step): \(dist) vs \(expected[i + 1])")
            }
        }
    }

    @Test("one process, two experts: each registers and answers with its own prompt; a step to one alone is answered")
    func twoExpertsInOneProcess() async throws {
        let suffix = UUID().uuidString.prefix(8)
        let (briefID, warmID) = ("brief-\(suffix)", "warm-\(suffix)")
        let prompts = ["You answer briefly.", "You are warm and kind."]
        try await RunningWorker.with(configure: {
            $0.experts = [
                HostedExpert(name: "brief", systemPrompt: prompts[0], workerID: briefID),
                HostedExpert(name: "warm", systemPrompt: prompts[1], workerID: warmID),
            ]
        }) { running in
            let coordinator = running.coordinator
            #expect(running.worker.id == "\(briefID)+\(warmID)")
            var hellos: [String: Hello] = [:]
            while hellos.count < 2, let (id, message) = try coordinator.receiveFrom() {
                guard case .hello(let hello) = message else { continue }
                #expect(hello.workerID == id)
                hellos[id] = hello
            }
            #expect(hellos[briefID]?.expert == "brief")
            #expect(hellos[warmID]?.expert == "warm")
            for id in [briefID, warmID] { try coordinator.send(.welcome(Welcome(heartbeatIntervalMs: 60_000)), to: id) }

            let ids = [briefID, warmID]
            let references = try prompts.map { try LocalReference(systemPrompt: $0) }
            let tokens = try references[0].greedy(Self.question, count: 3)
            let expected = try references.map { try $0.steps(Self.question, tokens: tokens, k: 8) }
            // The system prompts differ, so the two experts' distributions differ: each must be its own.
            #expect(expected[0][0].ids != expected[1][0].ids || expected[0][0].logProbs != expected[1][0].logProbs)

            /// Sends `message(i)` to each expert in `which` and checks every reply against the expert's reference.
            func exchange(_ which: [Int], step: Int, _ message: (Int) -> Message) throws {
                for i in which { try coordinator.send(message(i), to: ids[i]) }
                var answered: Set<Int> = []
                while answered.count < which.count {
                    guard let (id, reply) = try coordinator.receiveFrom() else {
                        throw TestFailure("no reply to step \(step) from \(which.filter { !answered.contains($0) })")
                    }
                    let i = try #require(ids.firstIndex(of: id))
                    guard case .dist(let dist) = reply else { throw TestFailure("expected dist, got \(reply)") }
                    #expect(dist.step == UInt32(step))
                    #expect(matches(dist, expected[i][step]), "expert \(i) step \(step): \(dist)")
                    answered.insert(i)
                }
            }
            try exchange([0, 1], step: 0) { _ in
                .open(Open(session: 5, request: Self.question, topK: 8, maxNewTokens: 16))
            }
            try exchange([0, 1], step: 1) { _ in .step(Step(session: 5, step: 1, token: tokens[0])) }
            // Step 2 reaches the first expert only: the worker waits for the other's step a moment, then answers.
            try exchange([0], step: 2) { _ in .step(Step(session: 5, step: 2, token: tokens[1])) }
            try exchange([1], step: 2) { _ in .step(Step(session: 5, step: 2, token: tokens[1])) }
            try exchange([0, 1], step: 3) { _ in .step(Step(session: 5, step: 3, token: tokens[2])) }
        }
    }

    @Test("a repeated step gets the same dist; a skipped step is a desync; replay rebuilds the same distributions")
    func repeatSkipReplay() async throws {
        try await RunningWorker.with { running in
            let coordinator = running.coordinator
            _ = try coordinator.register()
            let reference = try LocalReference(systemPrompt: "You answer briefly.")
            let greedy = try reference.greedy(Self.question, count: 3)
            let expected = try reference.steps(Self.question, tokens: greedy, k: 4)

            _ = try coordinator.dist(.open(Open(session: 1, request: Self.question, topK: 4, maxNewTokens: 16)))
            let first = try coordinator.dist(.step(Step(session: 1, step: 1, token: greedy[0])))
            let repeated = try coordinator.dist(.step(Step(session: 1, step: 1, token: greedy[0])))
            #expect(repeated == first)

            let skipped = try coordinator.error(.step(Step(session: 1, step: 3, token: greedy[2])))
            #expect(skipped.code == .desync && skipped.session == 1)

            let replayed = try coordinator.dist(
                .replay(Replay(session: 1, request: Self.question, topK: 4, maxNewTokens: 16, tokens: Array(greedy[0..<2])))
            )
            #expect(replayed.step == 2)
            #expect(matches(replayed, expected[2]), "\(replayed) vs \(expected[2])")
            let after = try coordinator.dist(.step(Step(session: 1, step: 3, token: greedy[2])))
            #expect(matches(after, expected[3]))

            // A replay of a session the worker never saw (a failover) also rebuilds it.
            let moved = try coordinator.dist(
                .replay(Replay(session: 2, request: Self.question, topK: 4, maxNewTokens: 16, tokens: greedy))
            )
            #expect(moved.step == 3 && matches(moved, expected[3]))
        }
    }

    @Test("typed errors (unknown session, context full, bad token, empty prompt, capacity) leave the worker serving")
    func typedErrors() async throws {
        try await RunningWorker.with(capacity: 1) { running in
            let coordinator = running.coordinator
            _ = try coordinator.register()
            let model = try WorkerFixtures.model.get()

            let unknown = try coordinator.error(.step(Step(session: 99, step: 1, token: 5)))
            #expect(unknown.code == .unknownSession && unknown.session == 99)

            let long = Request.raw(String(repeating: "the capital of France is Paris. ", count: 200))
            let full = try coordinator.error(.open(Open(session: 3, request: long, topK: 4, maxNewTokens: 8)))
            #expect(full.code == .contextFull)
            let tooMany = try coordinator.error(
                .open(Open(session: 4, request: Self.question, topK: 4, maxNewTokens: UInt32(model.configuration.contextLength)))
            )
            #expect(tooMany.code == .contextFull)

            let empty = try coordinator.error(.open(Open(session: 5, request: .raw(""), topK: 4, maxNewTokens: 8)))
            #expect(empty.code == .badRequest)

            _ = try coordinator.dist(.open(Open(session: 6, request: Self.question, topK: 4, maxNewTokens: 8)))
            let badToken = try coordinator.error(.step(Step(session: 6, step: 1, token: UInt32(model.vocabularySize))))
            #expect(badToken.code == .badRequest)
            let noRoom = try coordinator.error(.open(Open(session: 8, request: Self.question, topK: 4, maxNewTokens: 8)))
            #expect(noRoom.code == .capacity)

            // Still serving the session it holds.
            let dist = try coordinator.dist(.step(Step(session: 6, step: 1, token: 5)))
            #expect(dist.step == 1)
        }
    }

    @Test("a malformed frame is dropped and the worker keeps serving")
    func malformedFrame() async throws {
        try await RunningWorker.with { running in
            let coordinator = running.coordinator
            _ = try coordinator.register()
            try coordinator.sendRaw([WireProtocol.version, 200, 1, 2, 3])
            try coordinator.sendRaw([])
            var truncated = WireCodec.encode(.open(Open(session: 1, request: Self.question, topK: 4, maxNewTokens: 8)))
            truncated.removeLast(3)
            try coordinator.sendRaw(truncated)
            let dist = try coordinator.dist(.open(Open(session: 2, request: Self.question, topK: 4, maxNewTokens: 8)))
            #expect(dist.session == 2 && dist.step == 0)
        }
    }

    @Test("sessions batched together get the same distributions as each alone", arguments: [128, 3])
    func batching(prefillChunk: Int) async throws {
        try await RunningWorker.with(prefillChunk: prefillChunk) { running in
            let coordinator = running.coordinator
            _ = try coordinator.register()
            let reference = try LocalReference(systemPrompt: "You answer briefly.")
            let requests = [Self.question, WorkerFixtures.chat("Name three colours, please.")]
            let greedy = try requests.map { try reference.greedy($0, count: 4) }
            let expected = try requests.indices.map { try reference.steps(requests[$0], tokens: greedy[$0], k: 6) }

            // Both opens arrive before the worker computes: their prefills share forward passes.
            for (i, request) in requests.enumerated() {
                try coordinator.send(.open(Open(session: UInt64(10 + i), request: request, topK: 6, maxNewTokens: 16)))
            }
            var pending = Set([10, 11].map { SessionID($0) })
            var bySession: [SessionID: [Dist]] = [:]
            var sawBatch = false
            for step in 0...greedy[0].count {
                while !pending.isEmpty {
                    guard case .dist(let dist)? = try coordinator.receive() else {
                        Issue.record("expected a dist at step \(step)")
                        return
                    }
                    #expect(dist.step == UInt32(step))
                    pending.remove(dist.session)
                    bySession[dist.session, default: []].append(dist)
                    if dist.timing.batchSize > 1 { sawBatch = true }
                }
                guard step < greedy[0].count else { break }
                for i in requests.indices {
                    let token = greedy[i][step]
                    try coordinator.send(.step(Step(session: UInt64(10 + i), step: UInt32(step + 1), token: token)))
                    pending.insert(UInt64(10 + i))
                }
            }
            for i in requests.indices {
                let dists = try #require(bySession[UInt64(10 + i)])
                #expect(dists.count == expected[i].count)
                for (dist, top) in zip(dists, expected[i]) {
                    #expect(matches(dist, top), "session \(10 + i) step \(dist.step): \(dist) vs \(top)")
                }
            }
            #expect(sawBatch, "at least one forward pass served both sessions")
        }
    }

    @Test("drain says goodbye, refuses new sessions, serves open ones and exits when they are closed")
    func drain() async throws {
        let running = try RunningWorker()
        let coordinator = running.coordinator
        _ = try coordinator.register()
        _ = try coordinator.dist(.open(Open(session: 1, request: Self.question, topK: 4, maxNewTokens: 8)))
        running.worker.drain()
        let goodbye = try #require(try coordinator.receive())
        guard case .goodbye = goodbye else {
            Issue.record("expected goodbye, got \(goodbye)")
            _ = try await running.finish()
            return
        }
        let refused = try coordinator.error(.open(Open(session: 2, request: Self.question, topK: 4, maxNewTokens: 8)))
        #expect(refused.code == .draining)
        let dist = try coordinator.dist(.step(Step(session: 1, step: 1, token: 5)))
        #expect(dist.step == 1)
        try coordinator.send(.close(Close(session: 1)))
        #expect(try await running.exit() == .drained(abandonedSessions: 0))
    }

    @Test("a worker of two experts drains both: goodbye on each, and it exits once the last session of either closes")
    func drainTwoExperts() async throws {
        let suffix = UUID().uuidString.prefix(8)
        let ids = ["brief-\(suffix)", "warm-\(suffix)"]
        let running = try RunningWorker(configure: {
            $0.experts = [
                HostedExpert(name: "brief", systemPrompt: "You answer briefly.", workerID: ids[0]),
                HostedExpert(name: "warm", systemPrompt: "You are warm and kind.", workerID: ids[1]),
            ]
        })
        let coordinator = running.coordinator
        var welcomed: Set<String> = []
        while welcomed.count < 2, let (id, message) = try coordinator.receiveFrom() {
            guard case .hello = message, !welcomed.contains(id) else { continue }
            try coordinator.send(.welcome(Welcome(heartbeatIntervalMs: 60_000)), to: id)
            welcomed.insert(id)
        }
        // A session on the second expert only.
        try coordinator.send(.open(Open(session: 3, request: Self.question, topK: 4, maxNewTokens: 8)), to: ids[1])
        guard case (ids[1], .dist)? = try coordinator.receiveFrom() else {
            Issue.record("expected dist 0 from \(ids[1])")
            _ = try await running.finish()
            return
        }
        running.worker.drain()
        var goodbyes: Set<String> = []
        while goodbyes.count < 2, let (id, message) = try coordinator.receiveFrom() {
            if case .goodbye = message { goodbyes.insert(id) }
        }
        #expect(goodbyes == Set(ids))
        // The first expert has drained (it had no session) while the other serves on: messages to the drained one
        // must not make the loop spin.
        for _ in 0..<5 { try coordinator.send(.heartbeat, to: ids[0]) }
        try await Task.sleep(for: .milliseconds(200))
        let before = threadCPUTicks(named: "mope-worker-tes")
        try await Task.sleep(for: .seconds(1))
        let spent = threadCPUTicks(named: "mope-worker-tes") - before
        #expect(spent < 30, "the worker's thread used \(spent) ticks of CPU in 1 s while idle")
        // The expert with an open session still serves it.
        try coordinator.send(.step(Step(session: 3, step: 1, token: 5)), to: ids[1])
        guard case (ids[1], .dist(let dist))? = try coordinator.receiveFrom() else {
            Issue.record("expected dist 1 from \(ids[1])")
            _ = try await running.finish()
            return
        }
        #expect(dist.step == 1)
        try coordinator.send(.close(Close(session: 3)), to: ids[1])
        #expect(try await running.exit() == .drained(abandonedSessions: 0))
    }

    @Test("a drain with sessions left ends after the grace period")
    func drainGrace() async throws {
        let running = try RunningWorker { $0.drainGrace = .milliseconds(300) }
        let coordinator = running.coordinator
        _ = try coordinator.register(heartbeatMs: 60_000)
        _ = try coordinator.dist(.open(Open(session: 1, request: Self.question, topK: 4, maxNewTokens: 8)))
        running.worker.drain()
        #expect(try await running.exit() == .drained(abandonedSessions: 1))
    }

    @Test("a silent coordinator is taken for gone: sessions are dropped and the worker registers again")
    func coordinatorLost() async throws {
        try await RunningWorker.with(configure: { $0.maxReconnectDelay = .milliseconds(100) }) { running in
            let coordinator = running.coordinator
            _ = try coordinator.register(heartbeatMs: 100)
            _ = try coordinator.dist(.open(Open(session: 1, request: Self.question, topK: 4, maxNewTokens: 8)))
            // Say nothing for more than 3 intervals: the next non-heartbeat message is a new hello.
            let hello = try #require(try coordinator.receive())
            guard case .hello = hello else {
                Issue.record("expected hello, got \(hello)")
                return
            }
            try coordinator.send(.welcome(Welcome(heartbeatIntervalMs: 60_000)))
            let lost = try coordinator.error(.step(Step(session: 1, step: 1, token: 5)))
            #expect(lost.code == .unknownSession)
        }
    }

    @Test("a reject ends the worker with the coordinator's reason")
    func rejected() async throws {
        let running = try RunningWorker()
        let coordinator = running.coordinator
        _ = try #require(try coordinator.receive())
        try coordinator.send(.reject(Reject(reason: "vocabulary differs")))
        #expect(try await running.exit() == .rejected(reason: "vocabulary differs"))
    }

    @Test("a tuned expert's logit bias is added to every row before the top-k")
    func logitBias() async throws {
        let model = try WorkerFixtures.model.get()
        let reference = try LocalReference(systemPrompt: "You answer briefly.")
        let greedy = try reference.greedy(Self.question, count: 3)
        let plain = try reference.steps(Self.question, tokens: greedy, k: 8)
        // Push up a token outside the plain step-0 top 8, and push down the plain favourite.
        let outsider = try #require((0..<Int32(model.vocabularySize)).first { !plain[0].ids.contains($0) })
        let bias = try LogitBias(vocabularySize: model.vocabularySize,
                                 entries: [(outsider, 30), (plain[0].ids[0], -30)],
                                 hidden: (0..<model.hiddenWidth).map { 0.05 * cos(Float($0)) })
        let values = try bias.logits(model: model)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("bias-\(UUID()).json").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try bias.encoded().write(to: URL(fileURLWithPath: path))
        // The expected rows: the local logits plus the bias.
        let promptTokens = try reference.prompt.tokens(for: Self.question).map { Int32(bitPattern: $0) }
        let cache = try model.makeCache()
        var rows = [try model.forward(cache: cache, tokens: promptTokens)]
        for token in greedy { rows.append(try model.forward(cache: cache, tokens: [Int32(bitPattern: token)])) }
        let expected = rows.map { row in
            var biased = row
            biased.withUnsafeMutableBufferPointer { LogitBias.apply(values, to: $0) }
            return TopK(logits: biased, k: 8)
        }
        #expect(expected[0].ids[0] == outsider && !expected[0].ids.contains(plain[0].ids[0]))
        try await RunningWorker.with(configure: { $0.experts[0].biasPath = path }) { running in
            let coordinator = running.coordinator
            _ = try coordinator.register()
            let dist0 = try coordinator.dist(.open(Open(session: 3, request: Self.question, topK: 8, maxNewTokens: 8)))
            #expect(matches(dist0, expected[0]), "\(dist0) vs \(expected[0])")
            for (i, token) in greedy.enumerated() {
                let dist = try coordinator.dist(.step(Step(session: 3, step: UInt32(i + 1), token: token)))
                #expect(matches(dist, expected[i + 1]), "step \(i + 1)")
            }
        }
        // A bias file for another vocabulary, or no file, stops the worker before it starts, naming the file.
        let foreign = FileManager.default.temporaryDirectory.appendingPathComponent("bias-\(UUID()).json").path
        defer { try? FileManager.default.removeItem(atPath: foreign) }
        try LogitBias(vocabularySize: 7, entries: [(1, 1)]).encoded().write(to: URL(fileURLWithPath: foreign))
        for bad in [foreign, "/nonexistent/bias.json"] {
            var settings = WorkerSettings(modelPath: WorkerFixtures.tinyA, expert: "concise")
            settings.experts[0].biasPath = bad
            #expect {
                _ = try Worker(settings: settings, model: model)
            } throws: { error in
                guard case WorkerError.invalidSetting = error else { return false }
                return "\(error)".contains(bad)
            }
        }
    }

    @Test("a missing model file is an error naming the file")
    func missingModel() throws {
        let settings = WorkerSettings(modelPath: "/nonexistent/model.gguf", expert: "concise")
        #expect {
            _ = try Worker(settings: settings)
        } throws: { error in
            guard case WorkerError.model(let path, _) = error else { return false }
            return path == "/nonexistent/model.gguf" && "\(error)".contains("/nonexistent/model.gguf")
        }
    }

    @Test("the expert's system prompt replaces the template's default and leads a request's own system turn")
    func systemPrompt() throws {
        let model = try WorkerFixtures.model.get()
        let prompt = try WorkerPrompt(model: model, systemPrompt: "Be brief.")
        let plain = try prompt.text(for: [ChatTurn(role: "user", content: "Hi")])
        #expect(plain == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
        let withOwn = try prompt.text(for: [ChatTurn(role: "system", content: "Use French."),
                                            ChatTurn(role: "user", content: "Hi")])
        #expect(withOwn.hasPrefix("<|im_start|>system\nBe brief.\n\nUse French.<|im_end|>\n"))
        let rawTokens = try prompt.tokens(for: .raw("Hi"))
        #expect(!rawTokens.isEmpty)
        #expect(throws: WorkerPromptError.self) {
            _ = try prompt.tokens(for: .chat([ChatTurn(role: "", content: "x")]))
        }
        // An empty system prompt is none: the request's own system turn is rendered as it is.
        let none = try WorkerPrompt(model: model, systemPrompt: "")
        #expect(none.systemPrompt == nil)
        let turns = [ChatTurn(role: "system", content: "Use French."), ChatTurn(role: "user", content: "Hi")]
        #expect(try none.text(for: turns).hasPrefix("<|im_start|>system\nUse French.<|im_end|>\n"))
    }
}
