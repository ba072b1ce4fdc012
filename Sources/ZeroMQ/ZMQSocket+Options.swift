import CZeroMQ

/// A socket option with the Swift type of its value, for `ZMQSocket.set(_:_:)` and `ZMQSocket.get(_:)`.
///
/// ```swift
/// try socket.set(.sendHighWaterMark, 1_000)
/// try socket.set(.routerMandatory, true)
/// try socket.set(.heartbeatInterval, .seconds(1))
/// let linger = try socket.get(.linger)   // Duration? (nil: wait forever)
/// ```
///
/// Times are `Duration`s, sent to libzmq in whole milliseconds (rounded up). Where libzmq uses `-1` for
/// "no limit" the Swift type is optional and `nil` means no limit.
public struct ZMQOption<Value>: Sendable, CustomStringConvertible {
    /// The libzmq option number (`ZMQ_SNDHWM`, …).
    public let code: Int32
    /// The libzmq name, e.g. `ZMQ_SNDHWM`, used in error messages.
    public let name: String
    let storage: ZMQOptionStorage
    let encode: @Sendable (Value) -> ZMQOptionRaw
    let decode: @Sendable (ZMQOptionRaw) -> Value

    /// The libzmq name of the option.
    public var description: String { name }
}

/// How an option's value is held by libzmq.
enum ZMQOptionStorage: Sendable {
    case int32
    case int64
    /// Bytes, read into a buffer of this capacity.
    case bytes(capacity: Int)
    /// A NUL-terminated string, read into a buffer of this capacity.
    case string(capacity: Int)
}

/// An option value as passed to `zmq_setsockopt` / read from `zmq_getsockopt`.
enum ZMQOptionRaw: Sendable {
    case int32(Int32)
    case int64(Int64)
    case bytes([UInt8])
}

extension ZMQOptionRaw {
    var int32: Int32 {
        switch self {
        case .int32(let value): value
        case .int64(let value): Int32(clamping: value)
        case .bytes: 0
        }
    }

    var int64: Int64 {
        switch self {
        case .int32(let value): Int64(value)
        case .int64(let value): value
        case .bytes: 0
        }
    }

    var bytes: [UInt8] {
        if case .bytes(let value) = self { return value }
        return []
    }
}

// MARK: - Option constructors

extension ZMQOption {
    static func make(
        _ code: Int32, _ name: String, _ storage: ZMQOptionStorage,
        encode: @escaping @Sendable (Value) -> ZMQOptionRaw, decode: @escaping @Sendable (ZMQOptionRaw) -> Value
    ) -> ZMQOption {
        ZMQOption(code: code, name: name, storage: storage, encode: encode, decode: decode)
    }
}

extension ZMQOption where Value == Int32 {
    static func int32(_ code: Int32, _ name: String) -> Self {
        make(code, name, .int32, encode: { .int32($0) }, decode: { $0.int32 })
    }

    /// `ZMQ_SNDHWM`: how many outgoing messages may queue per peer before sends block (or, on a ROUTER or PUB,
    /// are dropped — or fail with `isTimeout` on a ROUTER with `routerMandatory`). 0 means no limit.
    public static var sendHighWaterMark: Self { int32(ZMQ_SNDHWM, "ZMQ_SNDHWM") }

    /// `ZMQ_RCVHWM`: how many incoming messages may queue per peer before libzmq stops reading from it.
    /// 0 means no limit.
    public static var receiveHighWaterMark: Self { int32(ZMQ_RCVHWM, "ZMQ_RCVHWM") }
}

extension ZMQOption where Value == Bool {
    static func bool(_ code: Int32, _ name: String) -> Self {
        make(code, name, .int32, encode: { .int32($0 ? 1 : 0) }, decode: { $0.int32 != 0 })
    }

    /// `ZMQ_ROUTER_MANDATORY` (ROUTER, write-only in libzmq 4.3): a send to an unknown or gone routing id
    /// fails with `isHostUnreachable` instead of being dropped silently, and a send to a peer whose queue
    /// is full fails with `isTimeout` instead of being dropped.
    public static var routerMandatory: Self { bool(ZMQ_ROUTER_MANDATORY, "ZMQ_ROUTER_MANDATORY") }

    /// `ZMQ_ROUTER_HANDOVER` (ROUTER, write-only): a new connection with a routing id already in use takes it
    /// over (a restarted worker reconnecting with its old id) instead of being refused.
    public static var routerHandover: Self { bool(ZMQ_ROUTER_HANDOVER, "ZMQ_ROUTER_HANDOVER") }

    /// `ZMQ_IMMEDIATE`: queue messages only to completed connections, so sends block (or `trySend` returns
    /// false) while no peer is connected instead of queueing for a peer that may never come.
    public static var immediate: Self { bool(ZMQ_IMMEDIATE, "ZMQ_IMMEDIATE") }

    /// `ZMQ_CURVE_SERVER`: act as a CURVE server; set `curveSecretKey` (and `curvePublicKey`) with it, before
    /// `bind`. Clients then need the server's public key as their `curveServerKey`.
    public static var curveServer: Self { bool(ZMQ_CURVE_SERVER, "ZMQ_CURVE_SERVER") }

    /// `ZMQ_IPV6`: enable IPv6 on tcp endpoints (off by default).
    public static var ipv6: Self { bool(ZMQ_IPV6, "ZMQ_IPV6") }
}

extension ZMQOption where Value == Duration {
    static func milliseconds(_ code: Int32, _ name: String) -> Self {
        make(
            code, name, .int32,
            encode: { .int32(Int32(clamping: ZMQPoller.milliseconds($0))) },
            decode: { .milliseconds($0.int32) }
        )
    }

    /// `ZMQ_HEARTBEAT_IVL`: send a ZMTP PING on each connection this often (0: no heartbeats). Together with
    /// `heartbeatTimeout` this detects a dead peer on a connection that carries no traffic.
    public static var heartbeatInterval: Self { milliseconds(ZMQ_HEARTBEAT_IVL, "ZMQ_HEARTBEAT_IVL") }

    /// `ZMQ_HEARTBEAT_TIMEOUT`: close a connection when no traffic arrives this long after a PING
    /// (0: the heartbeat interval).
    public static var heartbeatTimeout: Self { milliseconds(ZMQ_HEARTBEAT_TIMEOUT, "ZMQ_HEARTBEAT_TIMEOUT") }

    /// `ZMQ_HEARTBEAT_TTL`: asks the peer to close the connection when it hears nothing from this socket for
    /// this long (sent in deciseconds, so rounded to 100 ms; at most 6553.5 s).
    public static var heartbeatTTL: Self { milliseconds(ZMQ_HEARTBEAT_TTL, "ZMQ_HEARTBEAT_TTL") }

    /// `ZMQ_RECONNECT_IVL`: how long a connecting socket waits before reconnecting after a connection breaks
    /// or is refused (libzmq default 100 ms).
    public static var reconnectInterval: Self { milliseconds(ZMQ_RECONNECT_IVL, "ZMQ_RECONNECT_IVL") }

    /// `ZMQ_RECONNECT_IVL_MAX`: the longest reconnect wait; with a value above `reconnectInterval` the wait
    /// doubles after each failed attempt up to it (0: always `reconnectInterval`).
    public static var reconnectIntervalMax: Self { milliseconds(ZMQ_RECONNECT_IVL_MAX, "ZMQ_RECONNECT_IVL_MAX") }
}

extension ZMQOption where Value == Duration? {
    static func optionalMilliseconds(_ code: Int32, _ name: String) -> Self {
        make(
            code, name, .int32,
            encode: { .int32($0.map { Int32(clamping: ZMQPoller.milliseconds($0)) } ?? -1) },
            decode: { $0.int32 < 0 ? nil : .milliseconds($0.int32) }
        )
    }

    /// `ZMQ_LINGER`: how long unsent messages are kept after `close()` (`nil`: until delivered, which can
    /// hang context termination; 0: dropped at once). `ZMQSocket` sets `ZMQSocket.defaultLinger` at creation.
    public static var linger: Self { optionalMilliseconds(ZMQ_LINGER, "ZMQ_LINGER") }

    /// `ZMQ_SNDTIMEO`: how long a blocking `send` waits before failing with `isTimeout` (`nil`: forever).
    public static var sendTimeout: Self { optionalMilliseconds(ZMQ_SNDTIMEO, "ZMQ_SNDTIMEO") }

    /// `ZMQ_RCVTIMEO`: how long `receiveMultipart(timeout: nil)` waits before returning `nil` (`nil`: forever).
    public static var receiveTimeout: Self { optionalMilliseconds(ZMQ_RCVTIMEO, "ZMQ_RCVTIMEO") }
}

extension ZMQOption where Value == Int64? {
    /// `ZMQ_MAXMSGSIZE`: the largest message accepted from a peer, in bytes; a peer that sends a larger one is
    /// disconnected (`nil`: no limit). A guard against untrusted peers.
    public static var maxMessageSize: Self {
        make(
            ZMQ_MAXMSGSIZE, "ZMQ_MAXMSGSIZE", .int64,
            encode: { .int64($0 ?? -1) },
            decode: { $0.int64 < 0 ? nil : $0.int64 }
        )
    }
}

extension ZMQOption where Value == [UInt8] {
    static func bytes(_ code: Int32, _ name: String, capacity: Int) -> Self {
        make(code, name, .bytes(capacity: capacity), encode: { .bytes($0) }, decode: { $0.bytes })
    }

    /// `ZMQ_ROUTING_ID`: the id a ROUTER peer sees for this socket (1–255 bytes, not starting with a zero
    /// byte); set before `connect`. Without one a ROUTER assigns a random id per connection.
    public static var routingID: Self { bytes(ZMQ_ROUTING_ID, "ZMQ_ROUTING_ID", capacity: 255) }

    /// `ZMQ_SUBSCRIBE` (SUB, write-only): receive messages whose first frame starts with these bytes
    /// (empty: every message). See also `ZMQSocket.subscribe(_:)`.
    public static var subscribe: Self { bytes(ZMQ_SUBSCRIBE, "ZMQ_SUBSCRIBE", capacity: 0) }

    /// `ZMQ_UNSUBSCRIBE` (SUB, write-only): removes one earlier subscription to these bytes.
    public static var unsubscribe: Self { bytes(ZMQ_UNSUBSCRIBE, "ZMQ_UNSUBSCRIBE", capacity: 0) }
}

extension ZMQOption where Value == String {
    static func string(_ code: Int32, _ name: String, capacity: Int) -> Self {
        make(
            code, name, .string(capacity: capacity),
            encode: { .bytes(Array($0.utf8)) },
            decode: { String(decoding: $0.bytes, as: UTF8.self) }
        )
    }

    /// `ZMQ_CURVE_PUBLICKEY`: this socket's CURVE public key as 40 Z85 characters (see `CurveKeyPair`).
    /// A CURVE client sets its own key pair and `curveServerKey`; a server sets its key pair and `curveServer`.
    public static var curvePublicKey: Self { string(ZMQ_CURVE_PUBLICKEY, "ZMQ_CURVE_PUBLICKEY", capacity: 41) }

    /// `ZMQ_CURVE_SECRETKEY`: this socket's CURVE secret key as 40 Z85 characters.
    public static var curveSecretKey: Self { string(ZMQ_CURVE_SECRETKEY, "ZMQ_CURVE_SECRETKEY", capacity: 41) }

    /// `ZMQ_CURVE_SERVERKEY` (client): the server's CURVE public key as 40 Z85 characters; setting it makes the
    /// socket a CURVE client. Set before `connect`.
    public static var curveServerKey: Self { string(ZMQ_CURVE_SERVERKEY, "ZMQ_CURVE_SERVERKEY", capacity: 41) }

    /// `ZMQ_ZAP_DOMAIN`: the domain named in this socket's ZAP requests, so one handler can apply a different
    /// policy per socket (e.g. one allow-list per endpoint). Set before `bind`.
    public static var zapDomain: Self { string(ZMQ_ZAP_DOMAIN, "ZMQ_ZAP_DOMAIN", capacity: 256) }

    /// `ZMQ_LAST_ENDPOINT` (read-only): the last endpoint bound or connected, with wildcards resolved.
    public static var lastEndpoint: Self { string(ZMQ_LAST_ENDPOINT, "ZMQ_LAST_ENDPOINT", capacity: 4096) }
}

// MARK: - Setting and getting

extension ZMQSocket {
    /// Sets `option` to `value` (`zmq_setsockopt`).
    ///
    /// - Throws: `ZMQError` from `zmq_setsockopt` naming the option: `EINVAL` for an option this socket type
    ///   does not have or a value out of range (e.g. a Z85 key that is not 40 characters).
    public func set<Value>(_ option: ZMQOption<Value>, _ value: Value) throws(ZMQError) {
        let handle = try requireOpen("zmq_setsockopt")
        let raw = option.encode(value)
        _ = try zmqCall("zmq_setsockopt", detail: option.name) {
            switch raw {
            case .int32(var number):
                return zmq_setsockopt(handle, option.code, &number, MemoryLayout<Int32>.size)
            case .int64(var number):
                return zmq_setsockopt(handle, option.code, &number, MemoryLayout<Int64>.size)
            case .bytes(let bytes):
                return bytes.withUnsafeBytes { zmq_setsockopt(handle, option.code, $0.baseAddress, $0.count) }
            }
        }
    }

    /// Reads the current value of `option` (`zmq_getsockopt`).
    ///
    /// - Throws: `ZMQError` from `zmq_getsockopt` naming the option; `EINVAL` for write-only options
    ///   (`routerMandatory`, `routerHandover`, `subscribe`, `unsubscribe`).
    public func get<Value>(_ option: ZMQOption<Value>) throws(ZMQError) -> Value {
        let handle = try requireOpen("zmq_getsockopt")
        let raw: ZMQOptionRaw
        switch option.storage {
        case .int32:
            var number: Int32 = 0
            var size = MemoryLayout<Int32>.size
            _ = try zmqCall("zmq_getsockopt", detail: option.name) {
                zmq_getsockopt(handle, option.code, &number, &size)
            }
            raw = .int32(number)
        case .int64:
            var number: Int64 = 0
            var size = MemoryLayout<Int64>.size
            _ = try zmqCall("zmq_getsockopt", detail: option.name) {
                zmq_getsockopt(handle, option.code, &number, &size)
            }
            raw = .int64(number)
        case .bytes(let capacity), .string(let capacity):
            var buffer = [UInt8](repeating: 0, count: max(capacity, 1))
            var size = buffer.count
            _ = try zmqCall("zmq_getsockopt", detail: option.name) {
                buffer.withUnsafeMutableBytes { zmq_getsockopt(handle, option.code, $0.baseAddress, &size) }
            }
            var bytes = Array(buffer.prefix(size))
            if case .string = option.storage, let end = bytes.firstIndex(of: 0) {
                bytes.removeSubrange(end...)
            }
            raw = .bytes(bytes)
        }
        return option.decode(raw)
    }

    /// Subscribes a SUB socket to messages whose first frame starts with `prefix` (empty: all messages).
    ///
    /// - Throws: `ZMQError` from `zmq_setsockopt` (`EINVAL` on a socket that is not SUB or XSUB).
    public func subscribe(_ prefix: [UInt8] = []) throws(ZMQError) {
        try set(.subscribe, prefix)
    }

    /// Removes one subscription to `prefix` made by `subscribe(_:)`.
    ///
    /// - Throws: `ZMQError` from `zmq_setsockopt`.
    public func unsubscribe(_ prefix: [UInt8] = []) throws(ZMQError) {
        try set(.unsubscribe, prefix)
    }
}
