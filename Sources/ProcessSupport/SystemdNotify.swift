import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The service manager's readiness protocol (`sd_notify`): when systemd starts a `Type=notify` unit it names a
/// datagram socket in `$NOTIFY_SOCKET`, and the service sends it newline-separated `KEY=VALUE` assignments:
/// `READY=1` once it does what it is there for, `STOPPING=1` when it begins to shut down, `STATUS=text` for
/// `systemctl status`.
///
/// Without `$NOTIFY_SOCKET` every call does nothing. The address is a file-system path (`/run/…`) or, with a
/// leading `@`, a name in Linux's abstract socket namespace; other kinds (`vsock:`) are not supported and are
/// ignored. Each message is one `sendto` on a fresh `AF_UNIX` `SOCK_DGRAM` socket; a failure is returned, never
/// thrown (a service must not stop because its manager went away).
public enum SystemdNotify {
    /// The socket named by `$NOTIFY_SOCKET`, nil when it is unset or empty.
    public static var socket: String? {
        guard let value = getenv("NOTIFY_SOCKET") else { return nil }
        let text = String(cString: value)
        return text.isEmpty ? nil : text
    }

    /// Whether a service manager listens (`$NOTIFY_SOCKET` is set).
    public static var isEnabled: Bool { socket != nil }

    /// The message for `assignments`, one `KEY=VALUE` per line; a value's line breaks become spaces, since a
    /// line break ends an assignment.
    public static func message(_ assignments: [(key: String, value: String)]) -> String {
        assignments.map { key, value in
            let flat = String(value.map { $0 == "\n" || $0 == "\r" ? " " : $0 })
            return "\(key)=\(flat)"
        }.joined(separator: "\n")
    }

    /// Sends `READY=1` (and `STATUS=status`).
    @discardableResult
    public static func ready(status: String? = nil) -> Bool {
        send([("READY", "1")] + (status.map { [("STATUS", $0)] } ?? []))
    }

    /// Sends `STOPPING=1` (and `STATUS=status`).
    @discardableResult
    public static func stopping(status: String? = nil) -> Bool {
        send([("STOPPING", "1")] + (status.map { [("STATUS", $0)] } ?? []))
    }

    /// Sends `STATUS=text`.
    @discardableResult
    public static func status(_ text: String) -> Bool { send([("STATUS", text)]) }

    /// Sends `assignments` to `$NOTIFY_SOCKET`; false when it is unset or the datagram could not be sent.
    @discardableResult
    public static func send(_ assignments: [(key: String, value: String)]) -> Bool {
        guard let socket else { return false }
        return send(message(assignments), to: socket)
    }

    /// Sends `text` as one datagram to the socket `address` (a path, or `@name` for an abstract socket).
    /// - Returns: whether the whole datagram was sent.
    public static func send(_ text: String, to address: String) -> Bool {
        guard let (address, length) = socketAddress(address) else { return false }
        var storage = address
        let fd = Glibc.socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        let sent = withUnsafePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
                bytes.withUnsafeBytes { buffer in
                    sendto(fd, buffer.baseAddress, buffer.count, Int32(MSG_NOSIGNAL), address, length)
                }
            }
        }
        return sent == bytes.count
    }

    /// The `sockaddr_un` of `address` and its length: a path (NUL-terminated), or for `@name` a leading NUL and
    /// the name's bytes (an abstract name's length is exactly what is given). Nil for an empty name, a name too
    /// long for `sun_path`, or an address of another kind.
    public static func socketAddress(_ address: String) -> (sockaddr_un, socklen_t)? {
        var storage = sockaddr_un()
        storage.sun_family = sa_family_t(AF_UNIX)
        let abstract = address.hasPrefix("@")
        guard abstract || address.hasPrefix("/") else { return nil }
        var name = Array(address.utf8)
        if abstract { name[0] = 0 }
        let capacity = MemoryLayout.size(ofValue: storage.sun_path)
        // A path keeps room for its terminating NUL; an abstract name may fill the field.
        guard name.count > (abstract ? 1 : 0), name.count <= (abstract ? capacity : capacity - 1) else { return nil }
        withUnsafeMutableBytes(of: &storage.sun_path) { field in
            field.copyBytes(from: name)
        }
        let offset = MemoryLayout<sockaddr_un>.offset(of: \.sun_path) ?? 2
        return (storage, socklen_t(offset + name.count + (abstract ? 0 : 1)))
    }
}

/// Readiness made of several parts (the experts of a worker process, each registered on its own connection):
/// `mark` records one part and says, exactly once, when the last one needed came in.
public final class ReadinessLatch: Sendable {
    private let state = Mutex<(seen: Set<String>, fired: Bool)>(([], false))
    /// How many distinct parts make the process ready.
    public let needed: Int

    /// A latch that opens once `needed` distinct parts were marked.
    public init(needed: Int) { self.needed = needed }

    /// Records `part`; true for the call that completes the set, false before and after.
    public func mark(_ part: String) -> Bool {
        state.withLock { state in
            state.seen.insert(part)
            guard !state.fired, state.seen.count >= needed else { return false }
            state.fired = true
            return true
        }
    }

    /// Whether every part came in.
    public var isOpen: Bool { state.withLock { $0.fired } }
}
