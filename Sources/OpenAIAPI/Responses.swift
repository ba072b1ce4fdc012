import Foundation
import Wire

/// The model the API lists: the cluster's merged experts, served under one id.
public enum APIModel {
    /// The id `/v1/models` lists and answers carry when the request names none.
    public static let defaultID = "mope"

    /// The body of `GET /v1/models`: one model per id, OpenAI's list shape.
    public static func list(ids: [String], created: Int) -> [UInt8] {
        JSON.bytes([
            "object": "list",
            "data": ids.map { ["id": $0, "object": "model", "created": created, "owned_by": "mope"] as [String: Any] },
        ] as [String: Any])
    }
}

/// What identifies one answer in every object of it: id, creation time and model name.
public struct AnswerIdentity: Sendable, Equatable {
    /// e.g. "chatcmpl-42".
    public var id: String
    /// Unix time in seconds.
    public var created: Int
    /// The model name (the request's `model`).
    public var model: String

    /// An identity.
    public init(id: String, created: Int, model: String) {
        self.id = id
        self.created = created
        self.model = model
    }
}

/// Builds the answers of `/v1/chat/completions` and `/v1/completions`, whole and as stream chunks.
public enum Answers {
    /// OpenAI's finish reason: "stop" for an end of sequence or a stop string, "length" for the token limit or a
    /// full context.
    public static func finishReason(_ finish: FinishReason) -> String {
        switch finish {
        case .endOfSequence, .stopString: "stop"
        case .maxTokens, .contextFull: "length"
        }
    }

    /// `usage`: prompt, completion and total tokens.
    public static func usage(_ done: Done) -> [String: Any] {
        ["prompt_tokens": Int(done.promptTokens), "completion_tokens": Int(done.tokens),
         "total_tokens": Int(done.promptTokens) + Int(done.tokens)]
    }

    /// The `mope` object: the experts used with their mean weights, experts lost (the answer is then degraded),
    /// failovers, the preference and the mode the experts were merged with.
    public static func mope(_ done: Done, options: GenerationOptions, session: String? = nil) -> [String: Any] {
        var object: [String: Any] = [
            "queued_ms": Double(done.queuedMicros) / 1000,
            "experts": done.experts.map {
                ["name": $0.expert, "mean_weight": Double($0.meanWeight),
                 "mean_step_ms": Double($0.meanStepMicros) / 1000] as [String: Any]
            },
            "lost_experts": done.lostExperts,
            "degraded": !done.lostExperts.isEmpty,
            "failovers": Int(done.failovers),
            "preference": options.preference,
            "elapsed_ms": Double(done.elapsedMicros) / 1000,
        ]
        if let merge = options.merge { object["merge"] = merge.name }
        if let session { object["session"] = session }
        return object
    }

    /// The whole `chat.completion` object.
    public static func chatCompletion(_ done: Done, identity: AnswerIdentity, options: GenerationOptions) -> [UInt8] {
        JSON.bytes([
            "id": identity.id, "object": "chat.completion", "created": identity.created, "model": identity.model,
            "choices": [[
                "index": 0, "message": ["role": "assistant", "content": done.text] as [String: Any],
                "finish_reason": finishReason(done.finish), "logprobs": NSNull(),
            ] as [String: Any]],
            "usage": usage(done), "mope": mope(done, options: options, session: identity.id),
        ] as [String: Any])
    }

    /// The whole `text_completion` object.
    public static func completion(_ done: Done, identity: AnswerIdentity, options: GenerationOptions) -> [UInt8] {
        JSON.bytes([
            "id": identity.id, "object": "text_completion", "created": identity.created, "model": identity.model,
            "choices": [[
                "index": 0, "text": done.text, "finish_reason": finishReason(done.finish), "logprobs": NSNull(),
            ] as [String: Any]],
            "usage": usage(done), "mope": mope(done, options: options, session: identity.id),
        ] as [String: Any])
    }

    /// One `chat.completion.chunk`: the first carries the role, the others text; the last has the finish reason
    /// (and the `mope` object), an empty delta and no text.
    public static func chatChunk(
        identity: AnswerIdentity, role: Bool = false, text: String? = nil, finish: FinishReason? = nil,
        done: Done? = nil, options: GenerationOptions? = nil
    ) -> [UInt8] {
        var delta: [String: Any] = [:]
        if role { delta["role"] = "assistant" }
        if let text { delta["content"] = text }
        // The first chunk names the session, for `POST /v1/mope/sessions/{id}/preference` while it streams.
        let opening: [String: Any]? = role && done == nil ? ["session": identity.id] : nil
        var chunk: [String: Any] = [
            "id": identity.id, "object": "chat.completion.chunk", "created": identity.created,
            "model": identity.model,
            "choices": [[
                "index": 0, "delta": delta, "logprobs": NSNull(),
                "finish_reason": finish.map { finishReason($0) as Any } ?? NSNull(),
            ] as [String: Any]],
        ]
        if let done, let options { chunk["mope"] = mope(done, options: options, session: identity.id) }
        if let opening { chunk["mope"] = opening }
        return SSE.event(JSON.bytes(chunk))
    }

    /// One streamed `text_completion` chunk.
    public static func completionChunk(
        identity: AnswerIdentity, text: String, finish: FinishReason? = nil, done: Done? = nil,
        options: GenerationOptions? = nil
    ) -> [UInt8] {
        var chunk: [String: Any] = [
            "id": identity.id, "object": "text_completion", "created": identity.created, "model": identity.model,
            "choices": [[
                "index": 0, "text": text, "logprobs": NSNull(),
                "finish_reason": finish.map { finishReason($0) as Any } ?? NSNull(),
            ] as [String: Any]],
        ]
        if let done, let options { chunk["mope"] = mope(done, options: options, session: identity.id) }
        return SSE.event(JSON.bytes(chunk))
    }

    /// The usage chunk sent last when the request asked for `stream_options.include_usage`: no choices.
    public static func usageChunk(identity: AnswerIdentity, object: String, done: Done) -> [UInt8] {
        SSE.event(JSON.bytes([
            "id": identity.id, "object": object, "created": identity.created, "model": identity.model,
            "choices": [] as [Any], "usage": usage(done),
        ] as [String: Any]))
    }
}

/// Server-sent events as OpenAI streams them: `data: JSON` and a blank line per event, `data: [DONE]` at the end.
public enum SSE {
    /// One event carrying `json`.
    public static func event(_ json: [UInt8]) -> [UInt8] { Array("data: ".utf8) + json + Array("\n\n".utf8) }

    /// The end of the stream.
    public static let done: [UInt8] = Array("data: [DONE]\n\n".utf8)

    /// An error in the middle of a stream (the status line was already sent): the error object as an event.
    public static func error(_ error: APIError) -> [UInt8] { event(error.body) }
}

extension APIError {
    /// The API error for a coordinator's error reply: 400 for a bad request or a prompt that does not fit, 503 when
    /// no live worker can serve it (or the coordinator drains or is full), 429 when the admission queue is full,
    /// 504 past the deadline, 500 otherwise.
    public init(reply: ErrorReply) {
        switch reply.code {
        case .badRequest:
            self.init(status: 400, message: reply.text, type: "invalid_request_error", code: "invalid_request")
        case .contextFull:
            self.init(status: 400, message: reply.text, type: "invalid_request_error",
                      param: "messages", code: "context_length_exceeded")
        case .unavailable, .capacity, .draining:
            self = .unavailable(reply.text)
        case .timeout:
            self = .timeout(reply.text)
        case .overloaded:
            self = .overloaded(reply.text)
        case .desync, .unknownSession, .internal:
            self = .internalError(reply.text)
        }
    }
}

/// The endpoints of the API.
public enum APIRoute: Sendable, Equatable {
    case chatCompletions, completions, models, health, ready, metrics
    /// `POST /v1/mope/sessions/{id}/preference`: change a running answer's preference (`id`: the answer's `id`).
    case sessionPreference(id: String)

    private static let table: [(path: String, method: String, route: APIRoute)] = [
        ("/v1/chat/completions", "POST", .chatCompletions), ("/v1/completions", "POST", .completions),
        ("/v1/models", "GET", .models), ("/health", "GET", .health), ("/ready", "GET", .ready),
        ("/metrics", "GET", .metrics),
    ]

    /// The route of a request: 404 for an unknown path, 405 for a known path with another method (HEAD is
    /// allowed where GET is).
    public static func match(method: String, path: String) -> Result<APIRoute, APIError> {
        var path = path
        if path.count > 1, path.hasSuffix("/") { path.removeLast() }
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        if parts.count == 6, parts[0].isEmpty, parts[1] == "v1", parts[2] == "mope", parts[3] == "sessions",
           !parts[4].isEmpty, parts[5] == "preference"
        {
            guard method == "POST" else { return .failure(.methodNotAllowed(method, path, allowed: "POST")) }
            return .success(.sessionPreference(id: String(parts[4])))
        }
        guard let entry = table.first(where: { $0.path == path }) else { return .failure(.notFound(path)) }
        guard method == entry.method || (method == "HEAD" && entry.method == "GET") else {
            return .failure(.methodNotAllowed(method, path, allowed: entry.method))
        }
        return .success(entry.route)
    }

    /// The label the metrics use.
    public var name: String {
        switch self {
        case .chatCompletions: "chat_completions"
        case .completions: "completions"
        case .models: "models"
        case .health: "health"
        case .ready: "ready"
        case .metrics: "metrics"
        case .sessionPreference: "session_preference"
        }
    }
}
