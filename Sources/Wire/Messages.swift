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
/// (or `error` with session = the request id). `status` (c→coordinator) asks for the cluster's state; the
/// coordinator answers `statusReply` with the same request id (see `ClusterStatus`). A client waiting for a
/// request sends `heartbeat` when it has heard nothing for an interval and the coordinator answers `heartbeat`,
/// so a dead coordinator is noticed in two intervals. `setPreference` (c→coordinator) changes a running
/// request's preference from its next token; the coordinator answers `preferenceSet` with that token's index.
public enum WireProtocol {
    /// The protocol version this build speaks. A frame whose first byte differs is rejected.
    /// Version 2 added `ExpertTrace.tailMass`; version 3 made the sampling fields and the merge mode of `generate`
    /// optional (unset ones take the cluster's defaults); version 4 made `generate` carry a `Request` (multi-turn
    /// chat or raw text) in place of one prompt string, and `done` the prompt's token count and each expert's mean
    /// weight; version 5 added `generate`'s preference schedule and resume tokens, `done`'s queue wait, the
    /// `overloaded` error code, the client's `heartbeat`, and `setPreference` / `preferenceSet` (kinds 40-41).
    public static let version: UInt8 = 5
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
    case status(StatusRequest)
    case statusReply(StatusReply)
    case setPreference(SetPreference)
    case preferenceSet(PreferenceSet)

    /// The type byte that follows the version byte in a frame.
    public enum Kind: UInt8, Sendable, CaseIterable {
        case hello = 1, welcome = 2, reject = 3, heartbeat = 4, goodbye = 5
        case open = 10, step = 11, replay = 12, dist = 13, close = 14, error = 15
        case generate = 20, token = 21, done = 22
        case status = 30, statusReply = 31
        case setPreference = 40, preferenceSet = 41
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
        case .status: .status
        case .statusReply: .statusReply
        case .setPreference: .setPreference
        case .preferenceSet: .preferenceSet
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
    /// Every replica of an expert the request needs is at capacity and the admission queue is full, or the
    /// request waited in it longer than the cluster allows (client-facing; retry later).
    case overloaded = 10
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
///
/// The input is a `Request`: chat turns (system/user/assistant, in order) that the coordinator passes to every
/// expert through its chat template — each expert's own system prompt first, then the coordinator's preference
/// turn (`ClusterConfig.expertSystemTurn`), then the request's own system text — or raw text that every expert
/// tokenizes as is (no template, no system prompt).
public struct Generate: Sendable, Equatable {
    /// The client's id for this request; every `token`, `done` and `error` reply carries it.
    public var request: UInt64
    /// What to continue: chat turns or raw text.
    public var input: Request
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
    /// Later preferences, each from a token index on (ascending `fromToken`); `preference` holds before the
    /// first. The experts taken part are those any of them names.
    public var schedule: [PreferenceChange]
    /// Tokens already generated and sent to the user by another coordinator that was lost: the session
    /// rebuilds the experts' state from them (`replay`) and goes on from the next token, with the sampler where
    /// it would have been, so that the text is the one the lost coordinator would have produced.
    public var resume: [UInt32]

    /// A request of any input.
    public init(
        request: UInt64, input: Request, preference: String, maxNewTokens: UInt32,
        sampling: SamplingRequest = SamplingRequest(), merge: MergeMode? = nil,
        stop: [String] = [], trace: Bool = false, schedule: [PreferenceChange] = [], resume: [UInt32] = []
    ) {
        self.schedule = schedule
        self.resume = resume
        self.request = request
        self.input = input
        self.preference = preference
        self.maxNewTokens = maxNewTokens
        self.sampling = sampling
        self.merge = merge
        self.stop = stop
        self.trace = trace
    }

    /// A one-turn chat request: `prompt` as the user's message.
    public init(
        request: UInt64, prompt: String, preference: String, maxNewTokens: UInt32,
        sampling: SamplingRequest = SamplingRequest(), merge: MergeMode? = nil,
        stop: [String] = [], trace: Bool = false, schedule: [PreferenceChange] = [], resume: [UInt32] = []
    ) {
        self.init(
            request: request, input: .chat([ChatTurn(role: "user", content: prompt)]), preference: preference,
            maxNewTokens: maxNewTokens, sampling: sampling, merge: merge, stop: stop, trace: trace,
            schedule: schedule, resume: resume
        )
    }

    /// The text the request is about: the last user turn of a chat (the whole text of a raw request), e.g. for
    /// the preference controller's prompt features.
    public var prompt: String {
        switch input {
        case let .raw(text): text
        case let .chat(turns): turns.last(where: { $0.role == "user" })?.content ?? turns.last?.content ?? ""
        }
    }

    /// The roles a chat turn may have.
    public static let chatRoles: Set<String> = ["system", "user", "assistant"]

    /// Why the input cannot be served (nil when it can): an empty raw text, no turns, an unknown role, or turns
    /// whose contents are all empty.
    public var inputProblem: String? {
        switch input {
        case let .raw(text):
            return text.isEmpty ? "the prompt is empty" : nil
        case let .chat(turns):
            guard !turns.isEmpty else { return "the request has no messages" }
            if let index = turns.firstIndex(where: { !Self.chatRoles.contains($0.role) }) {
                return "message \(index) has the role \"\(turns[index].role)\"; use system, user or assistant"
            }
            guard turns.contains(where: { !$0.content.isEmpty && $0.role != "system" }) else {
                return "the prompt is empty"
            }
            return scheduleProblem
        }
    }

    private var scheduleProblem: String? {
        for (index, change) in schedule.enumerated() where index > 0 && change.fromToken < schedule[index - 1].fromToken {
            return "the preference schedule must be in ascending from_token order (entry \(index))"
        }
        return nil
    }
}

/// A preference that holds from one token of the answer on.
public struct PreferenceChange: Sendable, Equatable {
    /// The index (0 = the first generated token) of the first token decided with `preference`.
    public var fromToken: UInt32
    /// The preference, in the text form `generate` takes.
    public var preference: String

    /// A change.
    public init(fromToken: UInt32, preference: String) {
        self.fromToken = fromToken
        self.preference = preference
    }
}

/// A client changes the preference of its running request `request` (on the connection that sent it).
public struct SetPreference: Sendable, Equatable {
    /// The client's id of the running request.
    public var request: UInt64
    /// The new preference, in the text form `generate` takes.
    public var preference: String

    /// A change request.
    public init(request: UInt64, preference: String) {
        self.request = request
        self.preference = preference
    }
}

/// The coordinator applied a `setPreference`: the token of index `fromToken` is the first decided with it.
public struct PreferenceSet: Sendable, Equatable {
    /// The client's id of the request.
    public var request: UInt64
    /// The first token index the new preference decides.
    public var fromToken: UInt32

    /// An acknowledgement.
    public init(request: UInt64, fromToken: UInt32) {
        self.request = request
        self.fromToken = fromToken
    }
}

/// One expert's part in a whole answer.
public struct ExpertUsage: Sendable, Equatable {
    /// The expert's name.
    public var expert: String
    /// Its mean weight α over the answer's steps (0 when it was lost before the first).
    public var meanWeight: Float
    /// The mean forward-pass time of its `dist` replies during the decoding steps (after the prefill), in
    /// microseconds (0 when it answered none).
    public var meanStepMicros: UInt32

    /// An entry.
    public init(expert: String, meanWeight: Float, meanStepMicros: UInt32 = 0) {
        self.expert = expert
        self.meanWeight = meanWeight
        self.meanStepMicros = meanStepMicros
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
    /// The input's length in the cluster tokenizer's tokens: every turn's content (or the raw text), without the
    /// chat template or any system prompt the experts add.
    public var promptTokens: UInt32
    /// The experts the request involved, in the cluster's order, with their mean weights.
    public var experts: [ExpertUsage]
    /// How long the request waited in the admission queue before its session started, in microseconds.
    public var queuedMicros: UInt64

    public init(
        request: UInt64, finish: FinishReason, tokens: UInt32, text: String, lostExperts: [String] = [],
        failovers: UInt32 = 0, elapsedMicros: UInt64 = 0, promptTokens: UInt32 = 0, experts: [ExpertUsage] = [],
        queuedMicros: UInt64 = 0
    ) {
        self.queuedMicros = queuedMicros
        self.promptTokens = promptTokens
        self.experts = experts
        self.request = request
        self.finish = finish
        self.tokens = tokens
        self.text = text
        self.lostExperts = lostExperts
        self.failovers = failovers
        self.elapsedMicros = elapsedMicros
    }
}
