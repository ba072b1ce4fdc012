/// Why a frame could not be decoded.
///
/// Field names are dotted paths into the message as declared in `Messages.swift`
/// (e.g. `"dist.logProbs"`, `"open.request.chat.content"`); offsets count bytes from the frame's start.
public enum WireError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The frame has no bytes at all.
    case empty
    /// The frame ends inside `field`, which starts at byte `offset`: the sender's frame was cut short.
    case truncated(field: String, offset: Int)
    /// The message is complete but `count` more bytes follow it.
    case trailingBytes(count: Int)
    /// The first byte is a protocol version this build does not speak.
    case unknownVersion(UInt8)
    /// The second byte names no message kind of this protocol version.
    case unknownKind(UInt8)
    /// An enum field (request, error code, merge mode, finish reason) holds a tag that names no case.
    case unknownTag(field: String, tag: UInt8)
    /// A string field's bytes are not valid UTF-8.
    case invalidUTF8(field: String)
    /// The frame is larger than `WireLimits.maxFrameBytes`.
    case oversized(bytes: Int, limit: Int)
    /// A length or count is larger than the limit `WireLimits` sets for that field.
    case countOverLimit(field: String, count: Int, limit: Int)
    /// A field holds a value no valid message has (`reason` says which rule it breaks).
    case invalidValue(field: String, reason: String)

    /// What went wrong, and what to check.
    public var description: String {
        switch self {
        case .empty:
            return "empty frame: a message needs at least a version byte and a kind byte"
        case .truncated(let field, let offset):
            return "truncated frame: it ends inside field '\(field)' (which starts at byte \(offset)); "
                + "the sender's message was cut short or is not a mope frame"
        case .trailingBytes(let count):
            return "\(count) unexpected byte(s) after the end of the message: the peer may speak a newer "
                + "protocol revision, or the frame is corrupt"
        case .unknownVersion(let version):
            return "unknown protocol version \(version) (this build speaks version \(WireProtocol.version)): "
                + "run the same mope release on every node"
        case .unknownKind(let kind):
            return "unknown message kind \(kind) for protocol version \(WireProtocol.version): "
                + "run the same mope release on every node"
        case .unknownTag(let field, let tag):
            return "field '\(field)' holds tag \(tag), which names no case: the peer runs another mope release "
                + "or the frame is corrupt"
        case .invalidUTF8(let field):
            return "field '\(field)' is not valid UTF-8: send text as UTF-8"
        case .oversized(let bytes, let limit):
            return "frame of \(bytes) bytes exceeds the \(limit)-byte limit: send a shorter request"
        case .countOverLimit(let field, let count, let limit):
            return "field '\(field)' has \(count) entries (or bytes), over the limit of \(limit): "
                + "send a shorter request or a smaller top-k"
        case .invalidValue(let field, let reason):
            return "field '\(field)' is invalid: \(reason)"
        }
    }
}
