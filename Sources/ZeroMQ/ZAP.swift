/// ZAP, the ZeroMQ Authentication Protocol (RFC 27): during every handshake on a socket of a context, libzmq
/// asks the handler bound at `ZAP.endpoint` in that context whether to accept the peer. This file holds the
/// pure part — request parsing, the reply, and a CURVE allow-list — so a shell only moves frames between a REP
/// socket and `CurveAllowList.answer(_:)`.
public enum ZAP {
    /// Where libzmq sends authentication requests (a REP socket bound here, in the same context).
    public static let endpoint = "inproc://zeromq.zap.01"
    /// The protocol version in every request and reply.
    public static let version = "1.0"
}

/// One authentication request.
public struct ZAPRequest: Sendable, Equatable {
    /// Echoed in the reply.
    public var requestID: [UInt8]
    /// The socket's ZAP domain (empty unless set).
    public var domain: String
    /// The peer's address (e.g. an IP address).
    public var address: String
    /// The peer's routing id, when it set one.
    public var routingID: [UInt8]
    /// "NULL", "PLAIN" or "CURVE".
    public var mechanism: String
    /// The mechanism's credentials: for CURVE, the client's 32-byte public key.
    public var credentials: [[UInt8]]

    /// Parses the frames of a request; nil when they are not a ZAP 1.0 request (too few frames, another
    /// version). A handler answers such frames with nothing: libzmq never sends them.
    public init?(frames: [[UInt8]]) {
        guard frames.count >= 6, String(decoding: frames[0], as: UTF8.self) == ZAP.version else { return nil }
        requestID = frames[1]
        domain = String(decoding: frames[2], as: UTF8.self)
        address = String(decoding: frames[3], as: UTF8.self)
        routingID = frames[4]
        mechanism = String(decoding: frames[5], as: UTF8.self)
        credentials = Array(frames[6...])
    }

    /// The CURVE client key as 40 Z85 characters; nil for another mechanism or a malformed key.
    public var curveClientKey: String? {
        guard mechanism == "CURVE", credentials.count == 1, credentials[0].count == 32 else { return nil }
        return Z85.encode(credentials[0])
    }
}

/// The answer to one request.
public struct ZAPReply: Sendable, Equatable {
    /// The request's id.
    public var requestID: [UInt8]
    /// True to accept the peer (status 200), false to refuse it (status 400).
    public var accepted: Bool
    /// Why (for the peer's logs; libzmq does not show it to the application).
    public var text: String
    /// The user id libzmq attaches to the peer's messages when accepted.
    public var userID: String

    /// A reply.
    public init(requestID: [UInt8], accepted: Bool, text: String, userID: String = "") {
        self.requestID = requestID
        self.accepted = accepted
        self.text = text
        self.userID = userID
    }

    /// The reply's frames: version, request id, status code, status text, user id, metadata (empty).
    public var frames: [[UInt8]] {
        [Array(ZAP.version.utf8), requestID, Array((accepted ? "200" : "400").utf8), Array(text.utf8),
         Array(userID.utf8), []]
    }
}

/// Accepts a CURVE peer only when its public key is on a list (an `authorized_keys` for ZeroMQ).
public struct CurveAllowList: Sendable, Equatable {
    /// The accepted public keys, 40 Z85 characters each.
    public let keys: Set<String>

    /// A list of Z85 public keys.
    /// - Throws: `ZAPListError.badKey` naming the first entry that is not a 32-byte key in Z85.
    public init(keys: [String]) throws(ZAPListError) {
        for (index, key) in keys.enumerated() where Z85.decode(key)?.count != 32 {
            throw .badKey(line: index + 1, key: key)
        }
        self.keys = Set(keys)
    }

    /// Parses an allow-list file's text: one Z85 public key per line; blank lines and lines starting with "#"
    /// are skipped, and anything after the key on its line (a comment naming the peer) is ignored.
    /// - Throws: `ZAPListError.badKey` with the line number of the first bad key, `.empty` without any key.
    public init(text: String) throws(ZAPListError) {
        var keys: [String] = []
        for (number, line) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let trimmed = line.drop { $0 == " " || $0 == "\t" }
            guard !trimmed.isEmpty, !trimmed.hasPrefix("#") else { continue }
            let key = String(trimmed.prefix { $0 != " " && $0 != "\t" })
            guard Z85.decode(key)?.count == 32 else { throw .badKey(line: number + 1, key: key) }
            keys.append(key)
        }
        guard !keys.isEmpty else { throw .empty }
        self.keys = Set(keys)
    }

    /// The decision for one request: CURVE peers whose key is listed are accepted (their key becomes the user
    /// id); everyone else is refused with the reason.
    public func answer(_ request: ZAPRequest) -> ZAPReply {
        guard request.mechanism == "CURVE" else {
            return ZAPReply(requestID: request.requestID, accepted: false,
                            text: "only CURVE peers are accepted, not \(request.mechanism)")
        }
        guard let key = request.curveClientKey else {
            return ZAPReply(requestID: request.requestID, accepted: false, text: "malformed CURVE credentials")
        }
        guard keys.contains(key) else {
            return ZAPReply(requestID: request.requestID, accepted: false, text: "the key \(key) is not authorized")
        }
        return ZAPReply(requestID: request.requestID, accepted: true, text: "OK", userID: key)
    }
}

/// Why an allow-list cannot be used.
public enum ZAPListError: Error, Sendable, Equatable, CustomStringConvertible {
    /// An entry is not a CURVE public key.
    case badKey(line: Int, key: String)
    /// The list holds no key (it would refuse everyone).
    case empty

    /// A message a user can act on.
    public var description: String {
        switch self {
        case let .badKey(line, key):
            "entry \(line) (\"\(key)\") is not a CURVE public key (40 Z85 characters, as `mope keygen` writes)"
        case .empty: "the list holds no key; add the public key of every worker and client that may connect"
        }
    }
}
