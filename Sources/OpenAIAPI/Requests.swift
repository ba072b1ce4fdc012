import Foundation
import Preference
import Wire

/// The generation settings `/v1/chat/completions` and `/v1/completions` share.
public struct GenerationOptions: Sendable, Equatable {
    /// The model name the client asked for (echoed in the answer; the cluster serves one merged model).
    public var model: String
    /// Stream the answer as server-sent events.
    public var stream: Bool
    /// With `stream`: send a last chunk with the usage (`stream_options.include_usage`).
    public var includeUsage: Bool
    /// `max_tokens` (or `max_completion_tokens`); nil: the cluster's default.
    public var maxTokens: UInt32?
    /// `temperature`, 0…2; nil: the cluster's default.
    public var temperature: Float?
    /// `top_p`, (0, 1]; nil: the cluster's default.
    public var topP: Float?
    /// `seed`; nil: the cluster's default.
    public var seed: UInt64?
    /// `stop`: a string or up to `maxStops` strings.
    public var stop: [String]
    /// mope's `preference`, in the text form `mope generate --preference` takes (canonical, "" for none).
    public var preference: String
    /// mope's `merge`: "probability" or "logit"; nil: the cluster's default.
    public var merge: MergeMode?
    /// mope's `preference_schedule`: `[{"from_token": N, "preference": …}]`, ascending; each preference (text or
    /// object, as `preference`) decides the tokens from index N on.
    public var schedule: [PreferenceChange] = []

    /// The most stop strings a request may give.
    public static let maxStops = 16

    /// Defaults: nothing set.
    public init(
        model: String = APIModel.defaultID, stream: Bool = false, includeUsage: Bool = false,
        maxTokens: UInt32? = nil, temperature: Float? = nil, topP: Float? = nil, seed: UInt64? = nil,
        stop: [String] = [], preference: String = "", merge: MergeMode? = nil
    ) {
        self.model = model
        self.stream = stream
        self.includeUsage = includeUsage
        self.maxTokens = maxTokens
        self.temperature = temperature
        self.topP = topP
        self.seed = seed
        self.stop = stop
        self.preference = preference
        self.merge = merge
    }

    /// Reads the shared fields of a request object.
    init(_ fields: FieldReader) throws(APIError) {
        self.init()
        if let model = try fields.string("model") { self.model = model }
        stream = try fields.bool("stream") ?? false
        if let options = fields.value("stream_options") {
            let reader = try FieldReader(options, path: "stream_options")
            includeUsage = try reader.bool("include_usage") ?? false
        }
        if let n = try fields.integer("n", in: 1...1_000_000), n != 1 {
            throw .invalidField("n", "n must be 1: the cluster gives one answer per request")
        }
        let limit = Int64(UInt32.max)
        if let tokens = try fields.integer("max_tokens", in: 1...limit) {
            maxTokens = UInt32(tokens)
        } else if let tokens = try fields.integer("max_completion_tokens", in: 1...limit) {
            maxTokens = UInt32(tokens)
        }
        temperature = try fields.number("temperature", in: 0...2).map { Float($0) }
        if let topP = try fields.number("top_p", in: 0...1) {
            guard topP > 0 else { throw .invalidField("top_p", "top_p must be above 0 and at most 1, not 0") }
            self.topP = Float(topP)
        }
        if let value = fields.value("seed") {
            switch value {
            case let .integer(seed): self.seed = UInt64(bitPattern: seed)
            case let .unsigned(seed): self.seed = seed
            default: throw fields.wrongType("seed", "an integer", value)
            }
        }
        stop = try Self.stops(fields)
        preference = try Self.preference(fields)
        if let name = try fields.string("merge") {
            guard let mode = MergeMode(name: name) else {
                throw .invalidField("merge", "merge must be \"probability\" or \"logit\", not \"\(name)\"")
            }
            merge = mode
        }
        schedule = try Self.schedule(fields)
    }

    private static func schedule(_ fields: FieldReader) throws(APIError) -> [PreferenceChange] {
        guard let value = fields.value("preference_schedule") else { return [] }
        guard case let .array(items) = value else {
            throw .invalidField("preference_schedule", "preference_schedule must be an array of "
                + "{\"from_token\": N, \"preference\": …} objects, not \(value.kindName)")
        }
        guard items.count <= WireLimits.maxScheduleEntries else {
            throw .invalidField("preference_schedule", "preference_schedule holds \(items.count) entries; at most "
                + "\(WireLimits.maxScheduleEntries)")
        }
        var changes: [PreferenceChange] = []
        for (index, item) in items.enumerated() {
            let path = "preference_schedule[\(index)]"
            let entry = try FieldReader(item, path: path)
            guard let from = try entry.integer("from_token", in: 0...Int64(UInt32.max)) else {
                throw .invalidField("\(path).from_token", "\(path).from_token is required (a token index ≥ 0)")
            }
            guard entry.value("preference") != nil else {
                throw .invalidField("\(path).preference", "\(path).preference is required")
            }
            let preference: String
            do {
                preference = try Self.preference(entry)
            } catch {
                var named = error
                if named.param == "preference" { named.param = "\(path).preference" }
                throw named
            }
            if let last = changes.last, UInt32(from) < last.fromToken {
                throw .invalidField("\(path).from_token", "preference_schedule must be in ascending from_token order")
            }
            changes.append(PreferenceChange(fromToken: UInt32(from), preference: preference))
        }
        return changes
    }

    private static func stops(_ fields: FieldReader) throws(APIError) -> [String] {
        guard let value = fields.value("stop") else { return [] }
        let stops: [String]
        switch value {
        case let .string(text):
            stops = [text]
        case let .array(items):
            var strings: [String] = []
            for (index, item) in items.enumerated() {
                guard case let .string(text) = item else {
                    throw .invalidField("stop[\(index)]", "stop[\(index)] must be a string, not \(item.kindName)")
                }
                strings.append(text)
            }
            stops = strings
        default:
            throw .invalidField("stop", "stop must be a string or an array of strings, not \(value.kindName)")
        }
        guard stops.count <= maxStops else {
            throw .invalidField("stop", "stop holds \(stops.count) strings; at most \(maxStops)")
        }
        if let index = stops.firstIndex(where: \.isEmpty) {
            let field: String
            if case .string = value { field = "stop" } else { field = "stop[\(index)]" }
            throw .invalidField(field, "a stop string must not be empty")
        }
        return stops
    }

    /// The preference as `PreferenceSpec`'s canonical text: from the text form, or from an object of dimension
    /// weights (`{"concise": 2, "friendly": 1}`).
    static func preference(_ fields: FieldReader) throws(APIError) -> String {
        guard let value = fields.value("preference") else { return "" }
        switch value {
        case let .string(text):
            do {
                return try PreferenceSpec.parse(text).description
            } catch {
                throw .invalidField("preference", "preference: \(error.description)")
            }
        case let .object(weights):
            var terms: [PreferenceSpec.Term] = []
            for key in weights.keys.sorted() {
                let field = "preference.\(key)"
                guard let dimension = PreferenceSpec.dimension(named: key) else {
                    let names = PreferenceDimension.allCases.map(\.rawValue).joined(separator: ", ")
                    throw .invalidField(field, "\(field) names no dimension; use one of \(names)")
                }
                guard let weight = weights[key]?.doubleValue else {
                    throw .invalidField(field, "\(field) must be a number, not \(weights[key]?.kindName ?? "null")")
                }
                guard weight.isFinite, weight >= 0 else {
                    throw .invalidField(field, "\(field) must be a weight ≥ 0, not \(weight)")
                }
                if weight > 0 { terms.append(PreferenceSpec.Term(dimension: dimension, weight: Float(weight))) }
            }
            do {
                return try PreferenceSpec(terms).description
            } catch {
                throw .invalidField("preference", "preference: \(error.description)")
            }
        default:
            throw .invalidField("preference", "preference must be a string (\"concise, friendly\") or an object of "
                + "dimension weights ({\"concise\": 1}), not \(value.kindName)")
        }
    }

    /// The coordinator's request for `input`.
    public func generate(_ input: Request) -> Generate {
        Generate(
            request: 0, input: input, preference: preference, maxNewTokens: maxTokens ?? 0,
            sampling: SamplingRequest(temperature: temperature, topP: topP, seed: seed), merge: merge, stop: stop,
            schedule: schedule
        )
    }
}

/// `POST /v1/chat/completions`.
public struct ChatCompletionRequest: Sendable, Equatable {
    /// The conversation, in order: system, user and assistant turns.
    public var messages: [ChatTurn]
    /// The settings.
    public var options: GenerationOptions

    /// A request.
    public init(messages: [ChatTurn], options: GenerationOptions = GenerationOptions()) {
        self.messages = messages
        self.options = options
    }

    /// Reads a request body. Every malformed or wrong-typed input is a 400 naming the field.
    public static func parse(_ body: [UInt8]) throws(APIError) -> ChatCompletionRequest {
        let fields = try FieldReader(try JSONValue.parse(body))
        guard let value = fields.value("messages") else {
            throw .invalidField("messages", "messages is required: an array of {\"role\", \"content\"} objects")
        }
        guard case let .array(items) = value else { throw fields.wrongType("messages", "an array", value) }
        guard !items.isEmpty else { throw .invalidField("messages", "messages must hold at least one message") }
        var messages: [ChatTurn] = []
        for (index, item) in items.enumerated() {
            let path = "messages[\(index)]"
            let message = try FieldReader(item, path: path)
            guard let role = try message.string("role") else {
                throw .invalidField("\(path).role", "\(path).role is required: system, user or assistant")
            }
            guard Generate.chatRoles.contains(role) else {
                throw .invalidField("\(path).role", "\(path).role is \"\(role)\"; use system, user or assistant")
            }
            messages.append(ChatTurn(role: role, content: try content(message, path: path)))
        }
        guard messages.contains(where: { $0.role != "system" && !$0.content.isEmpty }) else {
            throw .invalidField("messages", "messages hold no user or assistant text")
        }
        return ChatCompletionRequest(messages: messages, options: try GenerationOptions(fields))
    }

    /// A message's content: a string, or an array of `{"type": "text", "text": …}` parts (joined).
    private static func content(_ message: FieldReader, path: String) throws(APIError) -> String {
        guard let value = message.value("content") else { return "" }
        switch value {
        case let .string(text):
            return text
        case let .array(parts):
            var text = ""
            for (index, part) in parts.enumerated() {
                let partPath = "\(path).content[\(index)]"
                let reader = try FieldReader(part, path: partPath)
                guard try reader.string("type") == "text" else {
                    throw .invalidField("\(partPath).type", "\(partPath).type must be \"text\" (only text is served)")
                }
                guard let partText = try reader.string("text") else {
                    throw .invalidField("\(partPath).text", "\(partPath).text is required")
                }
                text += partText
            }
            return text
        default:
            throw message.wrongType("content", "a string or an array of text parts", value)
        }
    }

    /// The coordinator's request.
    public var generate: Generate { options.generate(.chat(messages)) }
}

/// `POST /v1/completions`: raw text continued as is (no chat template).
public struct CompletionRequest: Sendable, Equatable {
    /// The text to continue.
    public var prompt: String
    /// The settings.
    public var options: GenerationOptions

    /// A request.
    public init(prompt: String, options: GenerationOptions = GenerationOptions()) {
        self.prompt = prompt
        self.options = options
    }

    /// Reads a request body. Every malformed or wrong-typed input is a 400 naming the field.
    public static func parse(_ body: [UInt8]) throws(APIError) -> CompletionRequest {
        let fields = try FieldReader(try JSONValue.parse(body))
        guard let value = fields.value("prompt") else {
            throw .invalidField("prompt", "prompt is required: the text to continue")
        }
        let prompt: String
        switch value {
        case let .string(text):
            prompt = text
        case let .array(items) where items.count == 1:
            guard case let .string(text) = items[0] else {
                throw .invalidField("prompt[0]", "prompt[0] must be a string, not \(items[0].kindName)")
            }
            prompt = text
        case .array:
            throw .invalidField("prompt", "prompt must be one string (the cluster answers one prompt per request)")
        default:
            throw fields.wrongType("prompt", "a string", value)
        }
        guard !prompt.isEmpty else { throw .invalidField("prompt", "prompt must not be empty") }
        if let echo = try fields.bool("echo"), echo {
            throw .invalidField("echo", "echo is not supported")
        }
        return CompletionRequest(prompt: prompt, options: try GenerationOptions(fields))
    }

    /// The coordinator's request.
    public var generate: Generate { options.generate(.raw(prompt)) }
}

/// `POST /v1/mope/sessions/{id}/preference`: `{"preference": …}` (text or an object of weights, as in a
/// generation request).
public struct PreferenceUpdate: Sendable, Equatable {
    /// The preference in canonical text form.
    public var preference: String

    /// Parses the body.
    public static func parse(_ body: [UInt8]) throws(APIError) -> PreferenceUpdate {
        let fields = try FieldReader(try JSONValue.parse(body))
        guard fields.value("preference") != nil else {
            throw .invalidField("preference", "preference is required")
        }
        return PreferenceUpdate(preference: try GenerationOptions.preference(fields))
    }
}
