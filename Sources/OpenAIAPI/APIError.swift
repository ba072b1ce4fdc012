import Foundation

/// An error as the API answers it: an HTTP status and OpenAI's error object
/// `{"error":{"message":…,"type":…,"param":…,"code":…}}`.
public struct APIError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The HTTP status.
    public var status: Int
    /// What went wrong, for a person.
    public var message: String
    /// OpenAI's error type, e.g. "invalid_request_error".
    public var type: String
    /// The request field at fault (e.g. "messages[1].role"), when one is.
    public var param: String?
    /// A stable code, e.g. "invalid_type", "not_found".
    public var code: String?

    /// An error.
    public init(status: Int, message: String, type: String, param: String? = nil, code: String? = nil) {
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
    }

    /// The message.
    public var description: String { "\(status) \(message)" }

    /// 400: the body is not JSON.
    public static func invalidJSON(_ message: String) -> APIError {
        APIError(status: 400, message: message, type: "invalid_request_error", code: "invalid_json")
    }

    /// 400: a field is missing, of the wrong type or out of range.
    public static func invalidField(_ field: String, _ message: String) -> APIError {
        APIError(status: 400, message: message, type: "invalid_request_error", param: field, code: "invalid_value")
    }

    /// 404: no such path.
    public static func notFound(_ path: String) -> APIError {
        APIError(status: 404, message: "no route for \(path); see /v1/models, /v1/chat/completions, /v1/completions",
                 type: "invalid_request_error", code: "not_found")
    }

    /// 405: the path exists, the method does not.
    public static func methodNotAllowed(_ method: String, _ path: String, allowed: String) -> APIError {
        APIError(status: 405, message: "\(path) does not take \(method); use \(allowed)",
                 type: "invalid_request_error", code: "method_not_allowed")
    }

    /// 413: the body is over the limit.
    public static func tooLarge(limit: Int) -> APIError {
        APIError(status: 413, message: "the request body is larger than \(limit) bytes",
                 type: "invalid_request_error", code: "request_too_large")
    }

    /// 503: the cluster cannot serve the request now.
    public static func unavailable(_ message: String, code: String = "unavailable") -> APIError {
        APIError(status: 503, message: message, type: "service_unavailable", code: code)
    }

    /// 429: every replica is busy and the admission queue is full; retry after `retryAfterSeconds`.
    public static func overloaded(_ message: String) -> APIError {
        APIError(status: 429, message: message, type: "rate_limit_error", code: "overloaded")
    }

    /// The seconds a 429 answer's `Retry-After` header suggests.
    public static let retryAfterSeconds = 1

    /// 504: the request ran past its deadline.
    public static func timeout(_ message: String) -> APIError {
        APIError(status: 504, message: message, type: "timeout", code: "timeout")
    }

    /// 500: the server failed.
    public static func internalError(_ message: String) -> APIError {
        APIError(status: 500, message: message, type: "server_error", code: "internal_error")
    }

    /// The JSON body: `{"error":{"message","type","param","code"}}` (absent param and code are null).
    public var body: [UInt8] {
        let object: [String: Any] = ["error": [
            "message": message, "type": type, "param": param ?? NSNull(), "code": code ?? NSNull(),
        ] as [String: Any]]
        return JSON.bytes(object)
    }
}

/// JSON output helpers over Foundation's `JSONSerialization`.
enum JSON {
    /// The bytes of a JSON object built of Foundation values (keys sorted, so the output is stable).
    static func bytes(_ object: Any) -> [UInt8] {
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]) else {
            return Array(#"{"error":{"message":"the server could not encode its answer","type":"server_error","param":null,"code":"internal_error"}}"#.utf8)
        }
        return [UInt8](data)
    }
}
