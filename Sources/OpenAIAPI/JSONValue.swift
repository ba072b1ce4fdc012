import Foundation

/// A JSON document as Foundation's `JSONDecoder` reads it, keeping the kind of every value (a number is not a
/// boolean, an integer keeps all its digits), so that the request readers can name the field of any wrong type.
public enum JSONValue: Sendable, Equatable, Decodable {
    case null
    case bool(Bool)
    /// An integer that fits in `Int64`.
    case integer(Int64)
    /// An integer above `Int64.max` that fits in `UInt64`.
    case unsigned(UInt64)
    /// Any other number.
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    /// Decodes one value of any kind.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Int64.self) {
            self = .integer(value)
        } else if let value = try? container.decode(UInt64.self) {
            self = .unsigned(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    /// Parses a whole document. Malformed JSON (or a body that is not UTF-8) is a 400 `invalid_json` error.
    public static func parse(_ bytes: [UInt8]) throws(APIError) -> JSONValue {
        guard !bytes.isEmpty else { throw .invalidJSON("the request body is empty; send a JSON object") }
        do {
            return try JSONDecoder().decode(JSONValue.self, from: Data(bytes))
        } catch let DecodingError.dataCorrupted(context) {
            let detail = (context.underlyingError as NSError?)?.userInfo[NSDebugDescriptionErrorKey] as? String
            throw .invalidJSON("the request body is not valid JSON" + (detail.map { ": \($0)" } ?? ""))
        } catch {
            throw .invalidJSON("the request body is not valid JSON")
        }
    }

    /// The name of the value's kind, for error messages ("a string", "an array", …).
    public var kindName: String {
        switch self {
        case .null: "null"
        case .bool: "a boolean"
        case .integer, .unsigned, .number: "a number"
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        }
    }

    /// The value as a Double, when it is a number.
    public var doubleValue: Double? {
        switch self {
        case let .integer(value): Double(value)
        case let .unsigned(value): Double(value)
        case let .number(value): value
        default: nil
        }
    }
}

/// Reads the fields of one JSON object, turning every missing or wrong-typed field into an `APIError` that names it.
struct FieldReader {
    let fields: [String: JSONValue]
    /// The path of the object, e.g. "messages[2]" ("" at the top).
    let path: String

    init(_ value: JSONValue, path: String = "") throws(APIError) {
        guard case let .object(fields) = value else {
            throw .invalidField(path.isEmpty ? "body" : path,
                                "\(path.isEmpty ? "the request body" : path) must be a JSON object, not \(value.kindName)")
        }
        self.fields = fields
        self.path = path
    }

    func name(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    /// A present, non-null field.
    func value(_ key: String) -> JSONValue? {
        guard let value = fields[key], value != .null else { return nil }
        return value
    }

    func string(_ key: String) throws(APIError) -> String? {
        guard let value = value(key) else { return nil }
        guard case let .string(text) = value else { throw wrongType(key, "a string", value) }
        return text
    }

    func bool(_ key: String) throws(APIError) -> Bool? {
        guard let value = value(key) else { return nil }
        guard case let .bool(flag) = value else { throw wrongType(key, "a boolean", value) }
        return flag
    }

    func number(_ key: String, in range: ClosedRange<Double>) throws(APIError) -> Double? {
        guard let value = value(key) else { return nil }
        guard let number = value.doubleValue else { throw wrongType(key, "a number", value) }
        guard number.isFinite, range.contains(number) else {
            throw .invalidField(name(key), "\(name(key)) must be between \(range.lowerBound) and \(range.upperBound), "
                + "not \(number)")
        }
        return number
    }

    func integer(_ key: String, in range: ClosedRange<Int64>) throws(APIError) -> Int64? {
        guard let value = value(key) else { return nil }
        let integer: Int64
        switch value {
        case let .integer(v): integer = v
        case .unsigned: integer = .max
        case let .number(v) where v.rounded() == v && abs(v) < 9.0e18: integer = Int64(v)
        default: throw wrongType(key, "an integer", value)
        }
        guard range.contains(integer) else {
            throw .invalidField(name(key), "\(name(key)) must be an integer between \(range.lowerBound) and "
                + "\(range.upperBound), not \(integer)")
        }
        return integer
    }

    func wrongType(_ key: String, _ wanted: String, _ value: JSONValue) -> APIError {
        .invalidField(name(key), "\(name(key)) must be \(wanted), not \(value.kindName)")
    }
}
