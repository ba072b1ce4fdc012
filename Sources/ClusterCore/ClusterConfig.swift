import Decoding
import Foundation
import Preference
import Wire

// MARK: - Errors

/// Why a cluster config cannot be used. Every case names the field (a key path such as `experts[2].model`).
public enum ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The file could not be read.
    case unreadable(path: String, reason: String)
    /// The text is not valid JSON.
    case notJSON(reason: String)
    /// A required field is absent.
    case missingField(String)
    /// A field has a value of the wrong type or out of range.
    case invalidValue(field: String, reason: String)
    /// A field the config does not know (often a typo); `suggestion` is the closest known field.
    case unknownField(String, suggestion: String?)

    /// A message a user can act on.
    public var description: String {
        switch self {
        case let .unreadable(path, reason): "cannot read the cluster config \(path): \(reason)"
        case let .notJSON(reason): "the cluster config is not valid JSON: \(reason)"
        case let .missingField(field): "the cluster config lacks the required field \(field)"
        case let .invalidValue(field, reason): "invalid value for \(field) in the cluster config: \(reason)"
        case let .unknownField(field, suggestion):
            "unknown field \(field) in the cluster config" + (suggestion.map { "; did you mean \($0)?" } ?? "")
        }
    }

    /// The key path of the field concerned, if any.
    public var field: String? {
        switch self {
        case .unreadable, .notJSON: nil
        case let .missingField(field), let .invalidValue(field, _), let .unknownField(field, _): field
        }
    }
}

// MARK: - Config

/// The cluster's settings, read once at start-up from JSON (every field but `experts` has a default).
///
/// ```json
/// { "coordinator": "tcp://127.0.0.1:5555", "heartbeatIntervalMs": 1000, "stepDeadlineMs": 5000,
///   "openDeadlineMs": 30000, "topK": 64, "maxNewTokens": 256, "merge": "probability",
///   "sampling": { "temperature": 0, "topP": 1, "topK": 0, "seed": 0 },
///   "experts": [ { "name": "concise", "dimension": "concise", "model": "models/m.gguf", "replicas": 1 } ],
///   "pcm": "pcm/pcm.json", "tokenizer": "models/tokenizer.gguf", "sharedWorkers": false, "expertContext": "own", "preferencePrompts": {} }
/// ```
public struct ClusterConfig: Sendable, Equatable {
    /// The coordinator's worker endpoint: expert workers connect to this ROUTER (and only workers may register).
    public var coordinator: String = "tcp://127.0.0.1:5555"
    /// The coordinator's client endpoint, where `generate` requests arrive; nil: derived from `coordinator`
    /// (see `clientEndpoint`).
    public var clientEndpointOverride: String?

    /// Where clients connect: the config's `clientEndpoint`, else derived from `coordinator`: for tcp the next
    /// port (`tcp://127.0.0.1:5555` → `tcp://127.0.0.1:5556`), for ipc and inproc a sibling (`ipc:///run/c.sock`
    /// → `ipc:///run/c.sock.clients`).
    public var clientEndpoint: String { clientEndpointOverride ?? Self.clientEndpoint(for: coordinator) }

    /// The client endpoint that goes with worker endpoint `coordinator`.
    public static func clientEndpoint(for coordinator: String) -> String {
        if coordinator.hasPrefix("tcp://"), let colon = coordinator.lastIndex(of: ":"),
           let port = UInt16(coordinator[coordinator.index(after: colon)...]), port < UInt16.max
        {
            return coordinator[..<colon] + ":\(port + 1)"
        }
        return coordinator + ".clients"
    }
    /// How often each side sends a heartbeat when otherwise silent; 3 missed intervals mean dead.
    public var heartbeatIntervalMs: UInt32 = 1000
    /// How long the coordinator waits for a `dist` after a `step`.
    public var stepDeadlineMs: UInt32 = 5000
    /// How long it waits for a `dist` after an `open` or a `replay` (prefill may be long).
    public var openDeadlineMs: UInt32 = 30000
    /// The experts of the cluster.
    public var experts: [ExpertConfig] = []
    /// Sampling used when a request does not say.
    public var sampling: SamplingConfig = SamplingConfig()
    /// How many candidates each worker returns per step.
    public var topK: UInt16 = 64
    /// The most tokens a request generates when it does not say.
    public var maxNewTokens: UInt32 = 256
    /// How expert distributions are combined by default.
    public var merge: MergeMode = .probability
    /// The learned Preference Control Model (a `mope train` output file) that weighs the experts at every token;
    /// a relative path is found from the working directory or beside the config. Nil: the uniform controller.
    public var pcm: String?
    /// The file the coordinator reads the cluster's tokenizer (and the PCM's token embeddings) from: a small
    /// tokenizer file (`mope tokenizer-file`), so that the coordinator's machine needs no weights. Nil: the first
    /// expert's model file. A relative path is found as `pcm` is.
    public var tokenizer: String?
    /// The tokenizer file the coordinator reads: `tokenizer`, else the first expert's model.
    public var tokenizerSource: String? { tokenizer ?? experts.first?.model }
    /// Whether `mope cluster` starts one worker process per replica for all the experts that use the same model
    /// file (each keeps its own connection and id; the process loads the weights once and batches their sessions
    /// into one forward pass), rather than one process per expert replica. Faster when the experts outnumber the
    /// cores; a crash then takes every expert of the process at once. Nil (the default): `workerTopology(cores:)`
    /// decides.
    public var sharedWorkers: Bool?
    /// How many strikes (missed deadlines, malformed or foreign answers) within a minute evict a worker.
    public var strikeLimit: UInt32 = 3
    /// How long an evicted worker's id is refused.
    public var evictionCooldownMs: UInt32 = 60_000
    /// The most sessions the coordinator believes one worker holds, whatever its `hello` claims.
    public var maxWorkerSessions: UInt32 = 256
    /// The most requests that wait for capacity at once: when every live replica of an expert a request needs
    /// holds as many sessions as it can, the request waits in a FIFO queue of this length; beyond it the request is
    /// refused with `error overloaded` (HTTP 429). 0 refuses at once.
    public var admissionQueueLength: UInt32 = 256
    /// How long a request may wait in the admission queue before it is refused with `error overloaded`.
    public var admissionQueueWaitMs: UInt32 = 30_000
    /// What each expert is told of the request's preference (`ExpertContext`). With "own+preference" or
    /// "preference" the coordinator sends the experts a system turn holding the preference's dimensions' prompts
    /// (`preferencePrompts`, in dimension order, joined by spaces); a worker puts its own system prompt before it,
    /// so with "preference" every expert has an empty `systemPrompt`. The PCM must have been trained the same way
    /// (the dimensions file's `context` in `mope train --experts`).
    public var expertContext: ExpertContext = .own
    /// The prompt of each dimension that words the user's preference for the experts (every dimension, when
    /// `expertContext` is not "own").
    public var preferencePrompts: [PreferenceDimension: String] = [:]

    /// Creates a config; every field has its default.
    public init(experts: [ExpertConfig] = []) { self.experts = experts }

    /// Reads, decodes and validates a config file.
    public static func load(contentsOf path: String) throws(ConfigError) -> ClusterConfig {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw .unreadable(path: path, reason: error.localizedDescription)
        }
        let config = try decode(data)
        try config.validate()
        return config
    }

    /// Decodes a config from JSON (without `validate()`).
    public static func decode(_ data: Data) throws(ConfigError) -> ClusterConfig {
        do {
            return try JSONDecoder().decode(ClusterConfig.self, from: data)
        } catch let error as ConfigError {
            throw error
        } catch let error as DecodingError {
            throw ConfigError(error)
        } catch {
            throw .notJSON(reason: "\(error)")
        }
    }

    /// The JSON text of this config (pretty, sorted keys).
    public func encoded() -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return (try? encoder.encode(self)) ?? Data()
    }

    /// Checks every value once, at start-up.
    public func validate() throws(ConfigError) {
        let schemes = ["tcp://", "ipc://", "inproc://"]
        guard let scheme = schemes.first(where: coordinator.hasPrefix), coordinator.count > scheme.count else {
            throw .invalidValue(
                field: "coordinator", reason: "\"\(coordinator)\" is not a ZeroMQ endpoint such as tcp://127.0.0.1:5555"
            )
        }
        if let clientEndpointOverride {
            guard let scheme = schemes.first(where: clientEndpointOverride.hasPrefix),
                  clientEndpointOverride.count > scheme.count
            else {
                throw .invalidValue(field: "clientEndpoint",
                                    reason: "\"\(clientEndpointOverride)\" is not a ZeroMQ endpoint")
            }
        }
        guard clientEndpoint != coordinator else {
            throw .invalidValue(field: "clientEndpoint", reason: "must differ from \"coordinator\" (the workers')")
        }
        for (field, value) in [
            ("heartbeatIntervalMs", heartbeatIntervalMs), ("stepDeadlineMs", stepDeadlineMs),
            ("openDeadlineMs", openDeadlineMs), ("maxNewTokens", maxNewTokens), ("strikeLimit", strikeLimit),
            ("maxWorkerSessions", maxWorkerSessions), ("admissionQueueWaitMs", admissionQueueWaitMs),
        ] where value == 0 {
            throw .invalidValue(field: field, reason: "must be greater than 0")
        }
        guard admissionQueueLength <= 1_000_000 else {
            throw .invalidValue(field: "admissionQueueLength", reason: "\(admissionQueueLength) is over 1000000")
        }
        guard (1...1024).contains(topK) else {
            throw .invalidValue(field: "topK", reason: "\(topK) is outside 1…1024")
        }
        guard !experts.isEmpty else {
            throw .invalidValue(field: "experts", reason: "list at least one expert")
        }
        guard experts.count <= 64 else {
            throw .invalidValue(field: "experts", reason: "at most 64 experts (\(experts.count) listed)")
        }
        var names = Set<String>()
        for (index, expert) in experts.enumerated() {
            let path = "experts[\(index)]"
            guard !expert.name.isEmpty else { throw .invalidValue(field: "\(path).name", reason: "must not be empty") }
            guard names.insert(expert.name).inserted else {
                throw .invalidValue(field: "\(path).name", reason: "\"\(expert.name)\" is listed twice")
            }
            guard !expert.model.isEmpty else {
                throw .invalidValue(field: "\(path).model", reason: "give the path of the expert's GGUF model")
            }
            guard (1...64).contains(expert.replicas) else {
                throw .invalidValue(field: "\(path).replicas", reason: "\(expert.replicas) is outside 1…64")
            }
        }
        try sampling.validate(path: "sampling")
        if let pcm, pcm.isEmpty {
            throw .invalidValue(field: "pcm", reason: "give the path of a PCM file, or leave the field out")
        }
        if let tokenizer, tokenizer.isEmpty {
            throw .invalidValue(field: "tokenizer", reason: "give the path of a tokenizer or model file, or leave the field out")
        }
        if expertContext != .own {
            if let missing = PreferenceDimension.allCases.first(where: { (preferencePrompts[$0] ?? "").isEmpty }) {
                throw .invalidValue(field: "preferencePrompts.\(missing.rawValue)",
                                    reason: "expertContext \"\(expertContext)\" needs a prompt for every dimension")
            }
        }
        if expertContext == .preference,
           let index = experts.firstIndex(where: { !($0.systemPrompt ?? "").isEmpty })
        {
            throw .invalidValue(field: "experts[\(index)].systemPrompt",
                                reason: "with expertContext \"preference\" the experts see the preference in place of "
                                    + "a prompt of their own: set it to \"\"")
        }
    }

    /// The system turn the experts are sent with a request of `preference`: `PreferencePrompts.joined` over
    /// `preferencePrompts` (the prompts of its dimensions of positive weight, in dimension order, joined by spaces);
    /// nil with "own" experts or a preference that names no dimension.
    public func expertSystemTurn(for preference: PreferenceSpec) -> String? {
        guard expertContext != .own else { return nil }
        let text = PreferencePrompts(preferencePrompts).joined(preference)
        return text.isEmpty ? nil : text
    }

    /// The experts as the preference controller sees them.
    public var expertDescriptors: [ExpertDescriptor] {
        experts.map { ExpertDescriptor(name: $0.name, dimension: $0.dimension) }
    }

    /// The worker processes of a local cluster (`mope cluster`), in start order. Each expert replica gets the id
    /// NAME, or NAME-N (N from 1) when the expert has several replicas. With `shared` (default: `sharedWorkers`),
    /// replica N of every expert on the same model file shares a process; otherwise each replica is a process.
    public func workerProcesses(shared: Bool? = nil) -> [WorkerProcessPlan] {
        let shared = shared ?? sharedWorkers ?? false
        let replicas = experts.map(\.replicas).max() ?? 0
        var plans: [WorkerProcessPlan] = []
        for replica in 0..<replicas {
            var byModel: [String: Int] = [:]
            for expert in experts where expert.replicas > replica {
                let id = expert.replicas > 1 ? "\(expert.name)-\(replica + 1)" : expert.name
                if shared, let index = byModel[expert.model] {
                    plans[index].experts.append(expert.name)
                    plans[index].ids.append(id)
                } else {
                    byModel[expert.model] = plans.count
                    plans.append(WorkerProcessPlan(model: expert.model, experts: [expert.name], ids: [id]))
                }
            }
        }
        return plans
    }
}

/// How `mope cluster` lays its experts out in worker processes, and why.
public struct WorkerTopology: Sendable, Equatable {
    /// Whether the experts of one model file share a process.
    public var shared: Bool
    /// One line for the launcher's output, e.g. "shared workers (chosen; 3 experts of one model file, 2 cores)".
    public var reason: String
}

extension ClusterConfig {
    /// The topology of a local cluster on a machine with `cores` cores: `override` when given (a command-line
    /// flag), else `sharedWorkers` when the config sets it, else shared exactly when some model file serves more
    /// experts than there are cores. One process per expert then runs more compute threads than cores and its
    /// passes of one row each queue for them, while a shared process runs one pass of several rows, which the
    /// packed kernels make little dearer than one row (docs/benchmarks.md).
    public func workerTopology(cores: Int, override: Bool? = nil) -> WorkerTopology {
        let perModel = Dictionary(grouping: experts, by: \.model).values.map(\.count).max() ?? 0
        let facts = "\(perModel) expert\(perModel == 1 ? "" : "s") of one model file, \(cores) core\(cores == 1 ? "" : "s")"
        let (shared, why): (Bool, String) = if let override {
            (override, "set on the command line")
        } else if let sharedWorkers {
            (sharedWorkers, "set by the config")
        } else {
            (perModel > cores, "chosen")
        }
        return WorkerTopology(shared: shared, reason: (shared ? "shared workers" : "one process per expert")
            + " (\(why); \(facts))")
    }
}

/// One worker process of a local cluster: the model file and the experts it serves with their worker ids.
public struct WorkerProcessPlan: Sendable, Equatable {
    /// The model file, as the config gives it.
    public var model: String
    /// The experts' names.
    public var experts: [String]
    /// Their worker ids, in the same order.
    public var ids: [String]

    public init(model: String, experts: [String], ids: [String]) {
        self.model = model
        self.experts = experts
        self.ids = ids
    }
}

/// One expert of the cluster: a model, a system prompt and how many worker processes serve it.
public struct ExpertConfig: Sendable, Equatable {
    /// The expert's name; workers announce it in `hello`.
    public var name: String
    /// The preference dimension it serves (defaults to the dimension its name names, if any).
    public var dimension: PreferenceDimension?
    /// Its system prompt (defaults to the dimension's Personalized Soups prompt; empty: none of its own).
    public var systemPrompt: String?
    /// The path of its GGUF model.
    public var model: String
    /// How many workers serve it.
    public var replicas: Int = 1
    /// The path of its logit-bias file (made by `mope tune`; relative paths as for `model`), nil: none.
    public var bias: String?
    /// The path of its LoRA adapter (GGUF, `general.type = adapter`; relative paths as for `model`), applied
    /// unmerged on top of `model`, so experts of one model file with different adapters still share a process.
    public var lora: String?
    /// The adapter's strength (1: as trained).
    public var loraScale: Float = 1

    /// Creates an expert.
    public init(
        name: String, dimension: PreferenceDimension? = nil, systemPrompt: String? = nil, model: String,
        replicas: Int = 1, bias: String? = nil, lora: String? = nil, loraScale: Float = 1
    ) {
        self.lora = lora
        self.loraScale = loraScale
        self.name = name
        self.dimension = dimension ?? PreferenceDimension(rawValue: name)
        self.systemPrompt = systemPrompt ?? self.dimension?.defaultPrompt
        self.model = model
        self.replicas = replicas
        self.bias = bias
    }
}

/// Default sampling parameters.
public struct SamplingConfig: Sendable, Equatable {
    /// 0 means greedy.
    public var temperature: Float = 0
    /// Nucleus threshold in (0, 1]; 1 disables it.
    public var topP: Float = 1
    /// Keep only the k most likely merged tokens; 0 disables it.
    public var topK: UInt32 = 0
    /// The random generator's seed.
    public var seed: UInt64 = 0

    /// Creates sampling defaults.
    public init(temperature: Float = 0, topP: Float = 1, topK: UInt32 = 0, seed: UInt64 = 0) {
        self.temperature = temperature
        self.topP = topP
        self.topK = topK
        self.seed = seed
    }

    /// As protocol parameters.
    public var parameters: SamplingParameters {
        SamplingParameters(temperature: temperature, topP: topP, topK: topK, seed: seed)
    }

    func validate(path: String) throws(ConfigError) {
        guard temperature.isFinite, temperature >= 0 else {
            throw .invalidValue(field: "\(path).temperature", reason: "must be 0 (greedy) or a positive number")
        }
        guard topP.isFinite, topP > 0, topP <= 1 else {
            throw .invalidValue(field: "\(path).topP", reason: "must be in (0, 1]")
        }
    }
}

// MARK: - Coding

extension ClusterConfig: Codable {
    enum CodingKeys: String, CodingKey, CaseIterable {
        case coordinator, clientEndpoint, heartbeatIntervalMs, stepDeadlineMs, openDeadlineMs, experts, sampling, topK
        case maxNewTokens, merge, pcm, tokenizer, sharedWorkers, expertContext, preferencePrompts
        case strikeLimit, evictionCooldownMs, maxWorkerSessions, admissionQueueLength, admissionQueueWaitMs
    }

    /// Decodes a config; absent fields take their defaults, unknown fields are an error.
    public init(from decoder: any Decoder) throws {
        try rejectUnknownKeys(decoder, known: CodingKeys.allCases.map(\.rawValue))
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init()
        coordinator = try c.decodeIfPresent(String.self, forKey: .coordinator) ?? coordinator
        clientEndpointOverride = try c.decodeIfPresent(String.self, forKey: .clientEndpoint)
        heartbeatIntervalMs = try c.integer(UInt32.self, forKey: .heartbeatIntervalMs) ?? heartbeatIntervalMs
        stepDeadlineMs = try c.integer(UInt32.self, forKey: .stepDeadlineMs) ?? stepDeadlineMs
        openDeadlineMs = try c.integer(UInt32.self, forKey: .openDeadlineMs) ?? openDeadlineMs
        guard c.contains(.experts) else { throw ConfigError.missingField("experts") }
        experts = try c.decode([ExpertConfig].self, forKey: .experts)
        sampling = try c.decodeIfPresent(SamplingConfig.self, forKey: .sampling) ?? sampling
        topK = try c.integer(UInt16.self, forKey: .topK) ?? topK
        maxNewTokens = try c.integer(UInt32.self, forKey: .maxNewTokens) ?? maxNewTokens
        pcm = try c.decodeIfPresent(String.self, forKey: .pcm)
        tokenizer = try c.decodeIfPresent(String.self, forKey: .tokenizer)
        sharedWorkers = try c.decodeIfPresent(Bool.self, forKey: .sharedWorkers)
        strikeLimit = try c.integer(UInt32.self, forKey: .strikeLimit) ?? strikeLimit
        evictionCooldownMs = try c.integer(UInt32.self, forKey: .evictionCooldownMs) ?? evictionCooldownMs
        maxWorkerSessions = try c.integer(UInt32.self, forKey: .maxWorkerSessions) ?? maxWorkerSessions
        admissionQueueLength = try c.integer(UInt32.self, forKey: .admissionQueueLength) ?? admissionQueueLength
        admissionQueueWaitMs = try c.integer(UInt32.self, forKey: .admissionQueueWaitMs) ?? admissionQueueWaitMs
        if let name = try c.decodeIfPresent(String.self, forKey: .expertContext) {
            guard let context = ExpertContext(rawValue: name) else {
                let known = ExpertContext.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")
                throw ConfigError.invalidValue(field: keyPath(c.codingPath, "expertContext"),
                                               reason: "\"\(name)\" is not one of \(known)")
            }
            expertContext = context
        }
        for (key, text) in try c.decodeIfPresent([String: String].self, forKey: .preferencePrompts) ?? [:] {
            guard let dimension = PreferenceDimension(rawValue: key.lowercased()) else {
                let known = PreferenceDimension.allCases.map(\.rawValue).joined(separator: ", ")
                throw ConfigError.invalidValue(field: keyPath(c.codingPath, "preferencePrompts"),
                                               reason: "\"\(key)\" is not one of \(known)")
            }
            preferencePrompts[dimension] = text
        }
        if let name = try c.decodeIfPresent(String.self, forKey: .merge) {
            guard let mode = MergeMode(name: name) else {
                throw ConfigError.invalidValue(
                    field: keyPath(c.codingPath, "merge"), reason: "\"\(name)\" is not \"probability\" or \"logit\""
                )
            }
            merge = mode
        }
    }

    /// Encodes every field.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(coordinator, forKey: .coordinator)
        try c.encodeIfPresent(clientEndpointOverride, forKey: .clientEndpoint)
        try c.encode(heartbeatIntervalMs, forKey: .heartbeatIntervalMs)
        try c.encode(stepDeadlineMs, forKey: .stepDeadlineMs)
        try c.encode(openDeadlineMs, forKey: .openDeadlineMs)
        try c.encode(experts, forKey: .experts)
        try c.encode(sampling, forKey: .sampling)
        try c.encode(topK, forKey: .topK)
        try c.encode(maxNewTokens, forKey: .maxNewTokens)
        try c.encode(merge.name, forKey: .merge)
        try c.encodeIfPresent(pcm, forKey: .pcm)
        try c.encodeIfPresent(tokenizer, forKey: .tokenizer)
        try c.encodeIfPresent(sharedWorkers, forKey: .sharedWorkers)
        try c.encode(strikeLimit, forKey: .strikeLimit)
        try c.encode(evictionCooldownMs, forKey: .evictionCooldownMs)
        try c.encode(maxWorkerSessions, forKey: .maxWorkerSessions)
        try c.encode(admissionQueueLength, forKey: .admissionQueueLength)
        try c.encode(admissionQueueWaitMs, forKey: .admissionQueueWaitMs)
        if expertContext != .own { try c.encode(expertContext.rawValue, forKey: .expertContext) }
        if !preferencePrompts.isEmpty {
            let table = Dictionary(uniqueKeysWithValues: preferencePrompts.map { ($0.key.rawValue, $0.value) })
            try c.encode(table, forKey: .preferencePrompts)
        }
    }
}

extension ExpertConfig: Codable {
    enum CodingKeys: String, CodingKey, CaseIterable {
        case name, dimension, systemPrompt, model, replicas, bias, lora, loraScale
    }

    /// Decodes an expert; `name` and `model` are required.
    public init(from decoder: any Decoder) throws {
        try rejectUnknownKeys(decoder, known: CodingKeys.allCases.map(\.rawValue))
        let c = try decoder.container(keyedBy: CodingKeys.self)
        for key in [CodingKeys.name, .model] where !c.contains(key) {
            throw ConfigError.missingField(keyPath(c.codingPath, key.rawValue))
        }
        let name = try c.decode(String.self, forKey: .name)
        var dimension: PreferenceDimension?
        if let text = try c.decodeIfPresent(String.self, forKey: .dimension) {
            guard let value = PreferenceDimension(rawValue: text.lowercased()) else {
                let known = PreferenceDimension.allCases.map(\.rawValue).joined(separator: ", ")
                throw ConfigError.invalidValue(
                    field: keyPath(c.codingPath, "dimension"), reason: "\"\(text)\" is not one of \(known)"
                )
            }
            dimension = value
        }
        self.init(
            name: name,
            dimension: dimension,
            systemPrompt: try c.decodeIfPresent(String.self, forKey: .systemPrompt),
            model: try c.decode(String.self, forKey: .model),
            replicas: try c.integer(Int.self, forKey: .replicas) ?? 1,
            bias: try c.decodeIfPresent(String.self, forKey: .bias),
            lora: try c.decodeIfPresent(String.self, forKey: .lora),
            loraScale: try c.decodeIfPresent(Float.self, forKey: .loraScale) ?? 1
        )
    }

    /// Encodes every field.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encodeIfPresent(dimension?.rawValue, forKey: .dimension)
        try c.encodeIfPresent(systemPrompt, forKey: .systemPrompt)
        try c.encode(model, forKey: .model)
        try c.encode(replicas, forKey: .replicas)
        try c.encodeIfPresent(bias, forKey: .bias)
        try c.encodeIfPresent(lora, forKey: .lora)
        if loraScale != 1 { try c.encode(loraScale, forKey: .loraScale) }
    }
}

extension SamplingConfig: Codable {
    enum CodingKeys: String, CodingKey, CaseIterable {
        case temperature, topP, topK, seed
    }

    /// Decodes sampling defaults; every field is optional.
    public init(from decoder: any Decoder) throws {
        try rejectUnknownKeys(decoder, known: CodingKeys.allCases.map(\.rawValue))
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init()
        temperature = try c.decodeIfPresent(Float.self, forKey: .temperature) ?? temperature
        topP = try c.decodeIfPresent(Float.self, forKey: .topP) ?? topP
        topK = try c.integer(UInt32.self, forKey: .topK) ?? topK
        seed = try c.integer(UInt64.self, forKey: .seed) ?? seed
    }

    /// Encodes every field.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(temperature, forKey: .temperature)
        try c.encode(topP, forKey: .topP)
        try c.encode(topK, forKey: .topK)
        try c.encode(seed, forKey: .seed)
    }
}

// MARK: - Helpers

extension KeyedDecodingContainer {
    /// An optional whole number; a value of the wrong type or out of range is an error naming the field.
    fileprivate func integer<T: FixedWidthInteger & Decodable>(_ type: T.Type, forKey key: Key) throws -> T? {
        guard contains(key), try !decodeNil(forKey: key) else { return nil }
        if let value = try? decode(T.self, forKey: key) { return value }
        let field = keyPath(codingPath, key.stringValue)
        guard let number = try? decode(Double.self, forKey: key) else {
            throw ConfigError.invalidValue(field: field, reason: "expected a whole number")
        }
        throw ConfigError.invalidValue(field: field, reason: "\(number) is not a whole number in \(T.min)…\(T.max)")
    }
}

private struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

/// Throws `unknownField` for a key the type does not know.
private func rejectUnknownKeys(_ decoder: any Decoder, known: [String]) throws {
    let container: KeyedDecodingContainer<AnyKey>
    do {
        container = try decoder.container(keyedBy: AnyKey.self)
    } catch {
        throw ConfigError.invalidValue(field: keyPath(decoder.codingPath), reason: "expected an object")
    }
    for key in container.allKeys.map(\.stringValue).sorted() where !known.contains(key) {
        let suggestion = known.min { distance(key, $0) < distance(key, $1) }
        let close = suggestion.map { distance(key, $0) <= max(2, key.count / 3) } ?? false
        throw ConfigError.unknownField(keyPath(decoder.codingPath, key), suggestion: close ? suggestion : nil)
    }
}

/// "experts[2].model" from a coding path and a last key.
func keyPath(_ path: [any CodingKey], _ last: String? = nil) -> String {
    var text = ""
    for key in path {
        if let index = key.intValue {
            text += "[\(index)]"
        } else {
            text += text.isEmpty ? key.stringValue : ".\(key.stringValue)"
        }
    }
    if let last { text += text.isEmpty ? last : ".\(last)" }
    return text.isEmpty ? "<root>" : text
}

extension ConfigError {
    /// The config error a decoding error means.
    init(_ error: DecodingError) {
        switch error {
        case let .keyNotFound(key, context):
            self = .missingField(keyPath(context.codingPath, key.stringValue))
        case let .typeMismatch(type, context):
            self = .invalidValue(field: keyPath(context.codingPath), reason: "expected \(describe(type))")
        case let .valueNotFound(type, context):
            self = .invalidValue(field: keyPath(context.codingPath), reason: "expected \(describe(type)), found null")
        case let .dataCorrupted(context):
            if context.codingPath.isEmpty {
                self = .notJSON(reason: context.underlyingError.map { "\($0)" } ?? context.debugDescription)
            } else {
                self = .invalidValue(field: keyPath(context.codingPath), reason: context.debugDescription)
            }
        @unknown default:
            self = .notJSON(reason: "\(error)")
        }
    }
}

private func describe(_ type: Any.Type) -> String {
    switch type {
    case is String.Type: "a string"
    case is Float.Type, is Double.Type: "a number"
    case is UInt16.Type, is UInt32.Type, is UInt64.Type, is Int.Type: "a whole number"
    case is [ExpertConfig].Type: "a list of experts"
    default: "a value of type \(type)"
    }
}

private func distance(_ a: String, _ b: String) -> Int {
    let a = Array(a.lowercased().utf8), b = Array(b.lowercased().utf8)
    if a.isEmpty { return b.count }
    var previous = Array(0...b.count)
    var current = previous
    for i in 1...a.count {
        current[0] = i
        for j in stride(from: 1, through: b.count, by: 1) {
            current[j] = min(previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1), previous[j] + 1, current[j - 1] + 1)
        }
        swap(&previous, &current)
    }
    return previous[b.count]
}
