import Foundation
import Inference
import Synchronization
import Testing
import Wire
import WorkerCore
import ZeroMQ

@testable import Expert

/// Paths and shared model of the worker tests.
enum WorkerFixtures {
    /// Tests/Fixtures/tiny-a.gguf.
    static let tinyA = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/tiny-a.gguf").path

    /// The tiny model, loaded once.
    static let model: Result<LanguageModel, any Error> = Result { try LanguageModel(path: tinyA, threads: 1) }

    /// A chat request of one user turn.
    static func chat(_ text: String) -> Request { .chat([ChatTurn(role: "user", content: text)]) }
}

/// A ROUTER socket playing the coordinator.
final class FakeCoordinator {
    let socket: ZMQSocket
    let endpoint: String
    /// The worker's routing id, once a message came from it.
    var peer: [UInt8]?

    init() throws {
        socket = try ZMQSocket(.router)
        try socket.set(.routerMandatory, true)
        try socket.set(.routerHandover, true)
        try socket.set(.linger, .zero)
        try socket.bind("tcp://127.0.0.1:*")
        endpoint = try socket.lastEndpoint
    }

    deinit { socket.close() }

    /// The next message (heartbeats skipped unless `keepHeartbeats`), or nil after `timeout`.
    func receive(timeout: Duration = .seconds(20), keepHeartbeats: Bool = false) throws -> Message? {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while clock.now < deadline {
            guard let frames = try socket.receiveMultipart(timeout: clock.now.duration(to: deadline)) else {
                return nil
            }
            guard frames.count == 2 else { continue }
            peer = frames[0]
            let message = try WireCodec.decode(frames[1])
            if message == .heartbeat && !keepHeartbeats { continue }
            return message
        }
        return nil
    }

    /// Waits for the worker's `hello` and answers `welcome`. This fake coordinator sends no heartbeats, so the
    /// default interval is long: a test that computes a reference for a while on a loaded machine must not make
    /// the worker take the coordinator for dead. Liveness tests pass a short interval.
    func register(heartbeatMs: UInt32 = 60_000) throws -> Hello {
        guard case .hello(let hello)? = try receive() else { throw TestFailure("no hello from the worker") }
        try send(.welcome(Welcome(heartbeatIntervalMs: heartbeatMs)))
        return hello
    }

    func send(_ message: Message) throws {
        try sendRaw(WireCodec.encode(message))
    }

    /// Sends `message` to the worker connection whose routing id is `id`.
    func send(_ message: Message, to id: String) throws {
        try socket.send([Array(id.utf8), WireCodec.encode(message)])
    }

    /// The next message that is not a heartbeat, with the routing id of the connection it came on.
    func receiveFrom(timeout: Duration = .seconds(20)) throws -> (id: String, message: Message)? {
        guard let message = try receive(timeout: timeout), let peer else { return nil }
        return (String(decoding: peer, as: UTF8.self), message)
    }

    func sendRaw(_ bytes: [UInt8]) throws {
        guard let peer else { throw TestFailure("no worker has spoken yet") }
        try socket.send([peer, bytes])
    }

    /// Sends `message` and returns the next reply that is not a heartbeat.
    func ask(_ message: Message) throws -> Message {
        try send(message)
        guard let reply = try receive() else { throw TestFailure("no reply to \(message.kind)") }
        return reply
    }

    /// Sends `message` and expects a `dist`.
    func dist(_ message: Message) throws -> Dist {
        let reply = try ask(message)
        guard case .dist(let dist) = reply else { throw TestFailure("expected dist, got \(reply)") }
        return dist
    }

    /// Sends `message` and expects an `error`.
    func error(_ message: Message) throws -> ErrorReply {
        let reply = try ask(message)
        guard case .error(let error) = reply else { throw TestFailure("expected error, got \(reply)") }
        return error
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A worker running on its own thread against a fake coordinator; `finish()` stops it and returns how it ended.
final class RunningWorker {
    let worker: Worker
    let coordinator: FakeCoordinator
    /// How the worker's thread ended, once it has.
    private let outcome = Outcome()

    private final class Outcome: Sendable {
        let value = Mutex<Result<WorkerExit, WorkerError>?>(nil)
    }

    init(
        systemPrompt: String? = "You answer briefly.", capacity: Int = 8, prefillChunk: Int = 128,
        configure: (inout WorkerSettings) -> Void = { _ in }
    ) throws {
        let model = try WorkerFixtures.model.get()
        coordinator = try FakeCoordinator()
        var settings = WorkerSettings(modelPath: WorkerFixtures.tinyA, expert: "concise")
        settings.systemPrompt = systemPrompt
        settings.coordinator = coordinator.endpoint
        settings.workerID = "concise-test-\(UUID().uuidString.prefix(8))"
        settings.sessionCapacity = capacity
        settings.prefillChunk = prefillChunk
        settings.drainGrace = .seconds(30)
        configure(&settings)
        let worker = try Worker(settings: settings, model: model)
        self.worker = worker
        // A thread of its own, started here: a `Task` would need a free thread of the cooperative pool,
        // which other tests blocking in socket receives can hold for as long as their deadlines.
        let outcome = self.outcome
        let thread = Thread {
            // Named from inside, through the kernel's own file: Foundation does not name the system thread on
            // Linux, and threadCPUTicks finds it by this name.
            try? "mope-worker-test".write(toFile: "/proc/thread-self/comm", atomically: false, encoding: .utf8)
            let result: Result<WorkerExit, WorkerError>
            do throws(WorkerError) {
                result = .success(try worker.run())
            } catch {
                result = .failure(error)
            }
            outcome.value.withLock { $0 = result }
        }
        thread.name = "mope-worker-test"
        thread.stackSize = 8 << 20
        thread.start()
    }

    /// Waits for the worker's thread to end, sleeping (not blocking a thread) between looks.
    private func result() async throws -> WorkerExit {
        while true {
            if let result = outcome.value.withLock({ $0 }) { return try result.get() }
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    /// Stops the worker (if still running) and returns how it ended.
    @discardableResult
    func finish() async throws -> WorkerExit {
        worker.stop()
        return try await result()
    }

    /// Waits for the worker to end by itself.
    func exit() async throws -> WorkerExit { try await result() }

    /// Runs `body` with a new worker and always stops the worker afterwards.
    static func with(
        systemPrompt: String? = "You answer briefly.", capacity: Int = 8, prefillChunk: Int = 128,
        configure: (inout WorkerSettings) -> Void = { _ in }, _ body: (RunningWorker) async throws -> Void
    ) async throws {
        let running = try RunningWorker(
            systemPrompt: systemPrompt, capacity: capacity, prefillChunk: prefillChunk, configure: configure
        )
        do {
            try await body(running)
        } catch {
            _ = try? await running.finish()
            throw error
        }
        _ = try await running.finish()
    }
}

/// What a local run of the same model gives, to compare the worker's replies with.
struct LocalReference {
    let model: LanguageModel
    let prompt: WorkerPrompt

    init(systemPrompt: String?) throws {
        model = try WorkerFixtures.model.get()
        prompt = try WorkerPrompt(model: model, systemPrompt: systemPrompt)
    }

    /// The top-k after the prompt and each of `tokens` (step 0, 1, …, tokens.count).
    func steps(_ request: Request, tokens: [UInt32], k: Int) throws -> [TopK] {
        let promptTokens = try prompt.tokens(for: request).map { Int32(bitPattern: $0) }
        let cache = try model.makeCache()
        var out = [TopK(logits: try model.forward(cache: cache, tokens: promptTokens), k: k)]
        for token in tokens {
            out.append(TopK(logits: try model.forward(cache: cache, tokens: [Int32(bitPattern: token)]), k: k))
        }
        return out
    }

    /// The greedy continuation of `request`: `count` tokens.
    func greedy(_ request: Request, count: Int) throws -> [UInt32] {
        let promptTokens = try prompt.tokens(for: request).map { Int32(bitPattern: $0) }
        let cache = try model.makeCache()
        var logits = try model.forward(cache: cache, tokens: promptTokens)
        var out: [UInt32] = []
        for _ in 0..<count {
            let next = TopK(logits: logits, k: 1).ids[0]
            out.append(UInt32(bitPattern: next))
            logits = try model.forward(cache: cache, tokens: [next])
        }
        return out
    }
}

/// Whether a worker's `dist` matches a local top-k: same ids, log-probabilities within `tolerance`.
func matches(_ dist: Dist, _ reference: TopK, tolerance: Float = 1e-3) -> Bool {
    guard dist.ids == reference.ids.map({ UInt32(bitPattern: $0) }) else { return false }
    return zip(dist.logProbs, reference.logProbs).allSatisfy { abs($0 - $1) <= tolerance }
        && abs(dist.tailMass - reference.tailMass) <= tolerance
}

/// CPU time so far, in clock ticks (utime + stime of /proc/self/task/TID/stat), of this process's threads whose
/// name starts with `prefix`.
func threadCPUTicks(named prefix: String) -> Int {
    let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
    var ticks = 0
    for task in tasks {
        let name = (try? String(contentsOfFile: "/proc/self/task/\(task)/comm", encoding: .utf8)) ?? ""
        guard name.hasPrefix(prefix),
              let stat = try? String(contentsOfFile: "/proc/self/task/\(task)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")")
        else { continue }
        // Fields after the command name: state is field 3, utime 14 and stime 15.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        if fields.count > 12, let user = Int(fields[11]), let system = Int(fields[12]) { ticks += user + system }
    }
    return ticks
}
