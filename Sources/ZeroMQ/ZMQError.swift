import CZeroMQ

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A failed libzmq call: the error number, the C function that failed and libzmq's text for the error.
///
/// Every throwing call of this module throws `ZMQError`. Interrupted calls (`EINTR`) are retried inside the
/// module and never surface. The helpers (`isTimeout`, `isHostUnreachable`, `isTerminated`) name the
/// conditions callers commonly act on.
public struct ZMQError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The error number (`errno` as reported by `zmq_errno()`), e.g. `EAGAIN`, `EHOSTUNREACH`, `ETERM`.
    public let errno: Int32
    /// The libzmq function that failed, e.g. `"zmq_bind"`.
    public let function: String
    /// What the call was acting on, where that helps (e.g. the endpoint of a failed bind), or `nil`.
    public let detail: String?

    /// Creates an error for `function` failing with `errno`, optionally naming what it acted on.
    public init(errno: Int32, function: String, detail: String? = nil) {
        self.errno = errno
        self.function = function
        self.detail = detail
    }

    /// libzmq's description of `errno` (`zmq_strerror`).
    public var message: String {
        String(cString: zmq_strerror(errno))
    }

    /// The operation could not complete in time or without blocking (`EAGAIN`): a send or receive
    /// timeout expired, a `ZMQ_DONTWAIT` call found nothing to do, or a high-water mark was reached.
    public var isTimeout: Bool { errno == EAGAIN }

    /// A ROUTER with `routerMandatory` was asked to send to a peer it does not know or no longer has
    /// (`EHOSTUNREACH`): the peer disconnected, died, or never connected.
    public var isHostUnreachable: Bool { errno == EHOSTUNREACH }

    /// The socket's context was shut down or terminated (`ETERM`): the socket should be closed.
    public var isTerminated: Bool { errno == ZMQError.eterm }

    /// The socket was already closed (`ENOTSOCK`).
    public var isClosedSocket: Bool { errno == ENOTSOCK }

    /// The endpoint string is malformed or names an unsupported transport
    /// (`EINVAL`, `EPROTONOSUPPORT`, `ENOENT` for an endpoint that is not bound or connected).
    public var isBadEndpoint: Bool {
        errno == EINVAL || errno == EPROTONOSUPPORT || errno == ENOENT
    }

    /// One line: the function, what it acted on, and libzmq's text with the number,
    /// e.g. `zmq_bind(tcp://nowhere:x) failed: Invalid argument (errno 22)`.
    public var description: String {
        let subject = detail.map { "\(function)(\($0))" } ?? function
        return "\(subject) failed: \(message) (errno \(errno))"
    }

    static let eterm: Int32 = ETERM

    /// The error of the last libzmq call on this thread.
    static func last(_ function: String, detail: String? = nil) -> ZMQError {
        ZMQError(errno: zmq_errno(), function: function, detail: detail)
    }
}

/// Runs a libzmq call that returns a negative number on failure, retrying it while it fails with `EINTR`.
///
/// This is the one place where interrupted calls are retried; every call of the module goes through it.
/// `body` is called again on each retry, so a call with a deadline recomputes its remaining time there.
@inline(__always)
func zmqCall(
    _ function: String, detail: @autoclosure () -> String? = nil, _ body: () -> Int32
) throws(ZMQError) -> Int32 {
    while true {
        let result = body()
        if result >= 0 { return result }
        let code = zmq_errno()
        if code == EINTR { continue }
        throw ZMQError(errno: code, function: function, detail: detail())
    }
}
