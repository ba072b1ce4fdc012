import Foundation
import Inference
import Wire
import WorkerCore
import ZeroMQ

#if canImport(Glibc)
import Glibc
#endif

// MARK: - Errors

/// Why a worker cannot start or had to stop.
public enum WorkerError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A setting is out of range; `reason` says which and why.
    case invalidSetting(name: String, reason: String)
    /// The model file could not be loaded (missing, unreadable, malformed or unsupported).
    case model(path: String, reason: String)
    /// The model's tokenizer data cannot be used.
    case tokenizer(path: String, reason: String)
    /// A ZeroMQ call failed (bad coordinator endpoint, bad CURVE key, context shut down).
    case socket(ZMQError)

    /// A message a user can act on.
    public var description: String {
        switch self {
        case let .invalidSetting(name, reason): "invalid worker setting \(name): \(reason)"
        case let .model(path, reason): "cannot load the model \(path): \(reason)"
        case let .tokenizer(path, reason): "cannot use the tokenizer of the model \(path): \(reason)"
        case let .socket(error): "ZeroMQ failure: \(error.description)"
        }
    }
}

// MARK: - Settings

/// Everything a worker needs, validated once by `validated(model:)` before the worker starts.
public struct WorkerSettings: Sendable, Equatable {
    /// The GGUF model file.
    public var modelPath: String
    /// The experts this process serves, at least one. Each registers on its own connection under its own id, so
    /// the coordinator sees one worker per entry; all of them share the model's weights, and every forward pass
    /// batches the pending sessions of all of them.
    public var experts: [HostedExpert]
    /// The coordinator's ROUTER endpoint.
    public var coordinator: String = "tcp://127.0.0.1:5555"
    /// Threads for the forward pass; nil means every core.
    public var threads: Int?
    /// The most sessions held at once.
    public var sessionCapacity: Int = 32
    /// Positions of each session's KV cache (prompt + generated); nil means min(2048, the model's context).
    public var kvCapacity: Int?
    /// The most prompt tokens one forward pass takes, so that decodes of other sessions wait at most one chunk.
    public var prefillChunk: Int = 128
    /// The heartbeat interval used until `welcome` gives the coordinator's; `hello` is repeated at this interval
    /// until the coordinator answers.
    public var defaultHeartbeatInterval: Duration = .seconds(1)
    /// The longest back-off before reconnecting to a silent coordinator (it doubles from one interval).
    public var maxReconnectDelay: Duration = .seconds(4)
    /// How long a draining worker waits for its sessions to be closed before it exits anyway.
    public var drainGrace: Duration = .seconds(30)
    /// Queue limit of the socket, in messages, each way.
    public var highWaterMark: Int32 = 10_000
    /// How long unsent messages are kept when the worker exits.
    public var linger: Duration = .seconds(1)
    /// The largest message a peer may send, in bytes (`ZMQ_MAXMSGSIZE`): a peer that sends a larger one is
    /// disconnected before the message is buffered. Default: the largest frame the codec accepts.
    public var maxMessageBytes: Int = WireLimits.maxFrameBytes
    /// How long to wait between attempts to reach the coordinator.
    public var reconnectInterval: Duration = .milliseconds(100)
    /// CURVE keys; nil for a plain connection.
    public var curve: CurveClientKeys?

    /// Creates settings with defaults for everything but the model and the expert's name.
    public init(modelPath: String, expert: String) {
        self.modelPath = modelPath
        experts = [HostedExpert(name: expert)]
    }

    /// Creates settings serving several experts of one model in one process.
    public init(modelPath: String, experts: [HostedExpert]) {
        self.modelPath = modelPath
        self.experts = experts
    }

    /// The first expert's name (the only one's, for a worker serving one expert).
    public var expert: String {
        get { experts.first?.name ?? "" }
        set { setFirst { $0.name = newValue } }
    }

    /// The first expert's system prompt.
    public var systemPrompt: String? {
        get { experts.first?.systemPrompt }
        set { setFirst { $0.systemPrompt = newValue } }
    }

    /// The first expert's worker id.
    public var workerID: String? {
        get { experts.first?.workerID }
        set { setFirst { $0.workerID = newValue } }
    }

    private mutating func setFirst(_ change: (inout HostedExpert) -> Void) {
        if experts.isEmpty { experts = [HostedExpert(name: "")] }
        change(&experts[0])
    }

    /// The thread count: `threads`, else every active core.
    public var resolvedThreads: Int { threads ?? max(1, ProcessInfo.processInfo.activeProcessorCount) }

    /// The KV capacity for a model whose context holds `contextLength` positions.
    public func resolvedKVCapacity(contextLength: Int) -> Int {
        kvCapacity ?? min(2048, contextLength)
    }

    /// These settings checked against the model, with every default filled in.
    /// - Throws: `WorkerError.invalidSetting` naming the first bad setting.
    public func validated(contextLength: Int) throws(WorkerError) -> WorkerSettings {
        var s = self
        for i in s.experts.indices { s.experts[i].workerID = s.experts[i].resolvedWorkerID }
        s.threads = resolvedThreads
        s.kvCapacity = resolvedKVCapacity(contextLength: contextLength)
        func bad(_ name: String, _ reason: String) -> WorkerError { .invalidSetting(name: name, reason: reason) }
        guard !experts.isEmpty else { throw bad("expert", "a worker serves at least one expert") }
        for expert in s.experts {
            guard !expert.name.isEmpty else { throw bad("expert", "the expert's name is empty") }
            guard let id = expert.workerID, !id.isEmpty, id.utf8.count <= 255 else {
                throw bad("id", "a worker id has 1 to 255 bytes")
            }
        }
        if let name = Self.firstRepeated(s.experts.map(\.name)) {
            throw bad("expert", "the expert \(name) is listed twice (replicas belong in separate processes)")
        }
        if let id = Self.firstRepeated(s.experts.compactMap(\.workerID)) {
            throw bad("id", "the worker id \(id) is used twice")
        }
        guard !coordinator.isEmpty else { throw bad("coordinator", "the coordinator's endpoint is empty") }
        guard let threads = s.threads, (1...1024).contains(threads) else {
            throw bad("threads", "use 1 to 1024 threads")
        }
        guard sessionCapacity >= 1 else { throw bad("capacity", "a worker holds at least 1 session") }
        guard let kv = s.kvCapacity, kv >= 2, kv <= contextLength else {
            throw bad("kv-capacity", "use 2 to \(contextLength) positions (the model's context)")
        }
        guard prefillChunk >= 1 else { throw bad("prefill-chunk", "a forward pass takes at least 1 prompt token") }
        guard defaultHeartbeatInterval >= .milliseconds(1), maxReconnectDelay >= .zero else {
            throw bad("heartbeat", "intervals must be positive")
        }
        guard drainGrace >= .zero else { throw bad("drain-grace", "the grace period cannot be negative") }
        guard highWaterMark >= 0 else { throw bad("high-water-mark", "cannot be negative") }
        guard maxMessageBytes > 0 else { throw bad("max-message-bytes", "must be positive") }
        if let curve {
            guard Z85.decode(curve.serverPublicKey)?.count == 32 else {
                throw bad("curve-server-key-file", "a CURVE public key is 40 Z85 characters")
            }
        }
        return s
    }

    private static func firstRepeated(_ values: [String]) -> String? {
        var seen: Set<String> = []
        return values.first { !seen.insert($0).inserted }
    }

    static func hostName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "host" }
        let name = String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return name.isEmpty ? "host" : name
    }
}

/// One expert served by a worker process.
public struct HostedExpert: Sendable, Equatable {
    /// The expert's name (replicas share a name).
    public var name: String
    /// The system prompt put before every chat request; it replaces the template's default system prompt.
    /// Nil keeps the template's default.
    public var systemPrompt: String?
    /// The id it registers under (its routing identity); nil means "<name>-<hostname>-<pid>".
    public var workerID: String?
    /// A logit-bias file (`LogitBias`, made by `mope tune`) added to the expert's logits; nil: none.
    public var biasPath: String?
    /// A LoRA adapter file applied (unmerged) to this expert's sessions; nil: the base model.
    public var loraPath: String?
    /// The adapter's strength.
    public var loraScale: Float = 1

    public init(
        name: String, systemPrompt: String? = nil, workerID: String? = nil, biasPath: String? = nil,
        loraPath: String? = nil, loraScale: Float = 1
    ) {
        self.loraPath = loraPath
        self.loraScale = loraScale
        self.name = name
        self.systemPrompt = systemPrompt
        self.workerID = workerID
        self.biasPath = biasPath
    }

    /// The worker id: `workerID`, else "<name>-<hostname>-<pid>".
    public var resolvedWorkerID: String {
        if let workerID { return workerID }
        return "\(name)-\(WorkerSettings.hostName())-\(getpid())"
    }
}

// MARK: - Exit

/// How a worker's loop ended.
public enum WorkerExit: Sendable, Equatable {
    /// It drained (after SIGTERM/SIGINT or `drain()`): every session closed, or the grace period ran out.
    case drained(abandonedSessions: Int)
    /// The coordinator refused it; the reason is the coordinator's.
    case rejected(reason: String)
    /// `stop()` ended it at once.
    case stopped
}
