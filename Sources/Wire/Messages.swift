/// The mope protocol: the messages exchanged between expert workers, the coordinator and clients.
///
/// Every message travels as one ZeroMQ frame (after the routing frame, where a ROUTER adds one).
/// The frame starts with the protocol version byte, then the message type byte, then the message's
/// fields, little-endian and length-prefixed (see `WireCodec`). The codec is pure: no I/O.
///
/// Worker ↔ coordinator (see DESIGN.md, "Protocol"):
///
/// | message | direction | meaning |
/// |---|---|---|
/// | `hello` | w→c | registration: who the worker is and what model it serves |
/// | `welcome` / `reject` | c→w | accepted settings / the reason the worker is refused |
/// | `heartbeat` | both | a sign of life (any message counts as one) |
/// | `goodbye` | w→c | the worker is draining: it takes no new sessions |
/// | `open` | c→w | start a session: apply the template, prefill, reply `dist` for step 0 |
/// | `step` | c→w | the token chosen at step n−1; reply `dist` for step n |
/// | `replay` | c→w | rebuild a lost KV cache from the request and every token chosen so far |
/// | `dist` | w→c | the top-k next-token log-probabilities for one step |
/// | `close` | c→w | free the session's KV cache |
/// | `error` | w→c | a typed failure for one session |
///
/// Client ↔ coordinator: `generate` (c→coordinator), then a stream of `token` and one `done`
/// (or `error` with session = the request id).
public enum WireProtocol {
    /// The protocol version this build speaks. A frame whose first byte differs is rejected.
    /// Version 2 added `ExpertTrace.tailMass`; version 3 made the sampling fields and the merge mode of `generate`
    /// optional (unset ones take the cluster's defaults).
    public static let version: UInt8 = 3
}

/// A session (one generation request) as numbered by the coordinator.
public typealias SessionID = UInt64

/// Every message of the protocol.
public enum Message: Sendable, Equatable {
    case hello(Hello)
    case welcome(Welcome)
    case reject(Reject)
    case heartbeat
    case goodbye(Goodbye)
    case open(Open)
    case step(Step)
    case replay(Replay)
    case dist(Dist)
    case close(Close)
    case error(ErrorReply)
    case generate(Generate)
    case token(TokenEvent)
    case done(Done)

    /// The type byte that follows the version byte in a frame.
    public enum Kind: UInt8, Sendable, CaseIterable {
        case hello = 1, welcome = 2, reject = 3, heartbeat = 4, goodbye = 5
        case open = 10, step = 11, replay = 12, dist = 13, close = 14, error = 15
        case generate = 20, token = 21, done = 22
    }

    /// The kind of this message.
    public var kind: Kind {
        switch self {
        case .hello: .hello
        case .welcome: .welcome
        case .reject: .reject
        case .heartbeat: .heartbeat
        case .goodbye: .goodbye
        case .open: .open
        case .step: .step
        case .replay: .replay
        case .dist: .dist
        case .close: .close
        case .error: .error
        case .generate: .generate
        case .token: .token
        case .done: .done
        }
    }
}

// MARK: - Registration

/// A worker's registration: sent once on connect, and again if the coordinator forgets it.
public struct Hello: Sendable, Equatable {
    /// The protocol version the worker speaks.
    public var protocolVersion: UInt8
    /// A worker id unique in the cluster (also its ZeroMQ routing identity).
    public var workerID: String
    /// The expert this worker serves (e.g. "concise"); replicas share a name.
    public var expert: String
    /// A fingerprint of the model file (weights + metadata), to tell replicas of the same model.
    public var modelFingerprint: String
    /// Size of the vocabulary; every expert of a cluster must share one tokenizer.
    public var vocabSize: UInt32
    /// A hash over every token's bytes; a worker whose hash differs from the cluster's is rejected.
    public var vocabHash: UInt64
    /// Token ids that end a generation.
    public var eosTokenIDs: [UInt32]
    /// The most tokens a session may hold (prompt + generated).
    public var contextLimit: UInt32
    /// The most sessions the worker holds at once.
    public var sessionCapacity: UInt32

    public init(
        protocolVersion: UInt8 = WireProtocol.version, workerID: String, expert: String, modelFingerprint: String,
        vocabSize: UInt32, vocabHash: UInt64, eosTokenIDs: [UInt32], contextLimit: UInt32, sessionCapacity: UInt32
    ) {
        self.protocolVersion = protocolVersion
        self.workerID = workerID
        self.expert = expert
        self.modelFingerprint = modelFingerprint
        self.vocabSize = vocabSize
        self.vocabHash = vocabHash
        self.eosTokenIDs = eosTokenIDs
        self.contextLimit = contextLimit
        self.sessionCapacity = sessionCapacity
    }
}

/// The coordinator accepts a worker.
public struct Welcome: Sendable, Equatable {
    /// How often each side sends a heartbeat when otherwise silent; 3 missed intervals mean dead.
    public var heartbeatIntervalMs: UInt32
    public init(heartbeatIntervalMs: UInt32) { self.heartbeatIntervalMs = heartbeatIntervalMs }
}

/// The coordinator refuses a worker; the worker logs the reason and exits.
public struct Reject: Sendable, Equatable {
    public var reason: String
    public init(reason: String) { self.reason = reason }
}

/// A worker is draining (SIGTERM): it finishes its sessions but takes no new ones.
public struct Goodbye: Sendable, Equatable {
    public var reason: String
    public init(reason: String) { self.reason = reason }
}

// MARK: - Sessions

/// One message of a chat request.
public struct ChatTurn: Sendable, Equatable, Codable {
    /// "system", "user" or "assistant".
    public var role: String
    public var content: String
    public init(role: String, content: String) {
        self.role = role
        self.content = content
    }
}

/// What a session asks for: chat turns (the worker applies its template and its own system prompt)
/// or raw text tokenized as is.
public enum Request: Sendable, Equatable {
    case chat([ChatTurn])
    case raw(String)
}

/// Start a session on a worker.
public struct Open: Sendable, Equatable {
    public var session: SessionID
    public var request: Request
    /// How many next-token candidates each `dist` carries.
    public var topK: UInt16
    /// The most tokens the session will generate; the worker refuses a prompt that would not fit.
    public var maxNewTokens: UInt32

    public init(session: SessionID, request: Request, topK: UInt16, maxNewTokens: UInt32) {
        self.session = session
        self.request = request
        self.topK = topK
        self.maxNewTokens = maxNewTokens
    }
}

/// Advance a session by one token.
public struct Step: Sendable, Equatable {
    public var session: SessionID
    /// The step whose distribution is asked for (≥ 1).
    public var step: UInt32
    /// The token chosen at step − 1.
    public var token: UInt32

    public init(session: SessionID, step: UInt32, token: UInt32) {
        self.session = session
        self.step = step
        self.token = token
    }
}

/// Rebuild a session from scratch: open + every chosen token. The reply is `dist` for step
/// `tokens.count`.
public struct Replay: Sendable, Equatable {
    public var session: SessionID
    public var request: Request
    public var topK: UInt16
    public var maxNewTokens: UInt32
    public var tokens: [UInt32]

    public init(session: SessionID, request: Request, topK: UInt16, maxNewTokens: UInt32, tokens: [UInt32]) {
        self.session = session
        self.request = request
        self.topK = topK
        self.maxNewTokens = maxNewTokens
        self.tokens = tokens
    }
}

/// Where a worker's time went for one reply.
public struct WorkerTiming: Sendable, Equatable {
    /// Microseconds between receiving the request and starting its forward pass.
    public var queueMicros: UInt32
    /// Microseconds of the forward pass (shared by every session of the batch).
    public var computeMicros: UInt32
    /// How many sessions shared the forward pass.
    public var batchSize: UInt16

    public init(queueMicros: UInt32 = 0, computeMicros: UInt32 = 0, batchSize: UInt16 = 1) {
        self.queueMicros = queueMicros
        self.computeMicros = computeMicros
        self.batchSize = batchSize
    }
}

/// One step's next-token distribution from one worker: the top-k ids with their natural-log
/// probabilities (descending), and the probability mass of every token outside the list.
public struct Dist: Sendable, Equatable {
    public var session: SessionID
    public var step: UInt32
    public var ids: [UInt32]
    public var logProbs: [Float]
    public var tailMass: Float
    public var timing: WorkerTiming

    public init(
        session: SessionID, step: UInt32, ids: [UInt32], logProbs: [Float], tailMass: Float,
        timing: WorkerTiming = WorkerTiming()
    ) {
        self.session = session
        self.step = step
        self.ids = ids
        self.logProbs = logProbs
        self.tailMass = tailMass
        self.timing = timing
    }
}

/// Free a session.
public struct Close: Sendable, Equatable {
    public var session: SessionID
    public init(session: SessionID) { self.session = session }
}

/// Why a request failed.
public enum ErrorCode: UInt8, Sendable, Equatable, CaseIterable {
    /// A step that does not follow the session's last step; the coordinator answers with `replay`.
    case desync = 1
    /// No such session on this worker (never opened, closed, or lost in a restart).
    case unknownSession = 2
    /// The worker holds as many sessions as it can.
    case capacity = 3
    /// The prompt plus the tokens to generate exceed the model's context.
    case contextFull = 4
    /// The request is malformed (empty prompt, bad token id, bad parameter).
    case badRequest = 5
    /// The worker failed internally; the session is lost on it.
    case `internal` = 6
    /// The worker is draining and takes no new sessions.
    case draining = 7
    /// No live worker could serve the request (client-facing).
    case unavailable = 8
    /// The request ran past its deadline (client-facing).
    case timeout = 9
}

/// A typed failure, for one session (or, client-facing, one request).
public struct ErrorReply: Sendable, Equatable {
    public var session: SessionID
    public var code: ErrorCode
    public var text: String

    public init(session: SessionID, code: ErrorCode, text: String) {
        self.session = session
        self.code = code
        self.text = text
    }
}

// MARK: - Client

/// How the coordinator turns merged distributions into tokens.
public struct SamplingParameters: Sendable, Equatable {
    /// 0 means greedy.
    public var temperature: Float
    /// Nucleus sampling threshold in (0, 1]; 1 disables it.
    public var topP: Float
    /// Keep only the k most likely merged tokens; 0 disables it.
    public var topK: UInt32
    /// Seed of the sampler's random generator; the same seed gives the same text.
    public var seed: UInt64

    public init(temperature: Float = 0, topP: Float = 1, topK: UInt32 = 0, seed: UInt64 = 0) {
        self.temperature = temperature
        self.topP = topP
        self.topK = topK
        self.seed = seed
    }
}

/// How expert distributions are combined.
public enum MergeMode: UInt8, Sendable, Equatable, CaseIterable {
    /// π(y) = Σ α_i π_i(y): the paper's mixture of probabilities (the default).
    case probability = 0
    /// log π(y) ∝ Σ α_i log π_i(y): a product of experts.
    case logit = 1

    /// The name configs and command lines use: "probability" or "logit".
    public var name: String {
        switch self {
        case .probability: "probability"
        case .logit: "logit"
        }
    }

    /// The mode of a name ("probability" or "logit"); nil for any other text.
    public init?(name: String) {
        guard let mode = Self.allCases.first(where: { $0.name == name }) else { return nil }
        self = mode
    }
}

/// The sampling a request asks for. A field left nil takes the cluster's default (the `sampling` of the
/// coordinator's config), so a client can set the temperature alone and keep the cluster's seed.
public struct SamplingRequest: Sendable, Equatable {
    public var temperature: Float?
    public var topP: Float?
    public var topK: UInt32?
    public var seed: UInt64?

    /// Leaves every field to the cluster's default, unless given.
    public init(temperature: Float? = nil, topP: Float? = nil, topK: UInt32? = nil, seed: UInt64? = nil) {
        self.temperature = temperature
        self.topP = topP
        self.topK = topK
        self.seed = seed
    }

    /// The parameters to use: this request's fields, and `defaults` where it leaves one unset.
    public func resolved(defaults: SamplingParameters) -> SamplingParameters {
        SamplingParameters(
            temperature: temperature ?? defaults.temperature, topP: topP ?? defaults.topP,
            topK: topK ?? defaults.topK, seed: seed ?? defaults.seed
        )
    }
}

/// A client's generation request.
public struct Generate: Sendable, Equatable {
    /// The client's id for this request; every `token`, `done` and `error` reply carries it.
    public var request: UInt64
    /// The user's message.
    public var prompt: String
    /// The stated preference, e.g. "concise, friendly"; empty means every expert equally.
    public var preference: String
    /// The most new tokens; 0 means the cluster's default.
    public var maxNewTokens: UInt32
    /// Sampling; unset fields take the cluster's defaults.
    public var sampling: SamplingRequest
    /// How to combine the experts; nil means the cluster's default.
    public var merge: MergeMode?
    /// Strings that end the generation when they appear in the text (not included in it).
    public var stop: [String]
    /// Send each expert's top-k and the weights with every token (for `--trace`).
    public var trace: Bool

    public init(
        request: UInt64, prompt: String, preference: String, maxNewTokens: UInt32,
        sampling: SamplingRequest = SamplingRequest(), merge: MergeMode? = nil,
        stop: [String] = [], trace: Bool = false
    ) {
        self.request = request
        self.prompt = prompt
        self.preference = preference
        self.maxNewTokens = maxNewTokens
        self.sampling = sampling
        self.merge = merge
        self.stop = stop
        self.trace = trace
    }
}

/// One expert's part in a traced step: its weight and the list it answered with (empty when it was lost).
public struct ExpertTrace: Sendable, Equatable {
    /// The expert's name.
    public var expert: String
    /// Its weight α in the merge of this step.
    public var weight: Float
    /// Its top-k token ids, most likely first.
    public var ids: [UInt32]
    /// Their natural-log probabilities.
    public var logProbs: [Float]
    /// The probability mass outside its list (what the merge spreads over the tokens it did not list).
    public var tailMass: Float

    /// A trace entry.
    public init(expert: String, weight: Float, ids: [UInt32], logProbs: [Float], tailMass: Float = 0) {
        self.expert = expert
        self.weight = weight
        self.ids = ids
        self.logProbs = logProbs
        self.tailMass = tailMass
    }
}

/// One decided token, streamed to the client.
public struct TokenEvent: Sendable, Equatable {
    public var request: UInt64
    public var step: UInt32
    public var token: UInt32
    /// The text this token completes (may be empty while a multi-byte character is incomplete).
    public var text: String
    /// Per expert: its weight and (when traced) its top-k; empty when not traced.
    public var experts: [ExpertTrace]

    public init(request: UInt64, step: UInt32, token: UInt32, text: String, experts: [ExpertTrace] = []) {
        self.request = request
        self.step = step
        self.token = token
        self.text = text
        self.experts = experts
    }
}

/// Why a generation ended.
public enum FinishReason: UInt8, Sendable, Equatable, CaseIterable {
    case endOfSequence = 1
    case stopString = 2
    case maxTokens = 3
    case contextFull = 4
}

/// The end of a generation.
public struct Done: Sendable, Equatable {
    public var request: UInt64
    public var finish: FinishReason
    public var tokens: UInt32
    /// The full generated text.
    public var text: String
    /// Experts lost during the request and dropped from the mixture (weights renormalised).
    public var lostExperts: [String]
    /// Sessions moved to a replica by replay during the request.
    public var failovers: UInt32
    /// Wall time from the request's arrival to its end, in microseconds.
    public var elapsedMicros: UInt64

    public init(
        request: UInt64, finish: FinishReason, tokens: UInt32, text: String, lostExperts: [String] = [],
        failovers: UInt32 = 0, elapsedMicros: UInt64 = 0
    ) {
        self.request = request
        self.finish = finish
        self.tokens = tokens
        self.text = text
        self.lostExperts = lostExperts
        self.failovers = failovers
        self.elapsedMicros = elapsedMicros
    }
}
