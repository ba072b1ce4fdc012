import CZeroMQ

/// A small Swift API over libzmq: contexts, sockets, multipart messages, a poller, options and CURVE keys.
///
/// mope's processes talk over ZeroMQ: the coordinator binds a ROUTER, each expert worker connects a
/// DEALER (see DESIGN.md, "Protocol"). This module is the only place that calls libzmq.
///
/// - `ZMQContext`: owns the libzmq context; `ZMQContext.shared` serves a whole process.
/// - `ZMQSocket`: one socket of a `ZMQSocketType`; `bind`/`connect`, `send(_:)` and `trySend(_:)` of
///   multipart messages (`[[UInt8]]`, or `send(buffers:)` from memory the caller owns),
///   `receiveMultipart(timeout:)` and `tryReceiveMultipart()`. One thread uses a socket at a time.
/// - `ZMQOption`: typed socket options for `ZMQSocket.set(_:_:)` / `get(_:)`: high-water marks, linger,
///   routing id, `routerMandatory`, heartbeats, reconnect interval, timeouts, `immediate`, subscriptions,
///   CURVE keys.
/// - `ZMQPoller`: waits on several sockets at once (`zmq_poll`).
/// - `CurveKeyPair` and `Z85`: CURVE keys for encrypted, authenticated connections.
/// - `ZMQError`: every failure, with the errno, the failing libzmq function and libzmq's text.
///
/// Conventions: nothing traps on a libzmq failure; every failure throws `ZMQError`. Calls interrupted by a
/// signal (`EINTR`) are retried inside the module, and waits with a timeout keep their deadline across
/// retries. Blocking calls block the calling thread: run them on a thread the caller owns, not on Swift's
/// cooperative pool, and use `ZMQContext.shutdown()` to wake threads blocked in them.
///
/// ```swift
/// let router = try ZMQSocket(.router)
/// try router.set(.routerMandatory, true)
/// try router.bind("tcp://127.0.0.1:*")
/// let endpoint = try router.lastEndpoint        // tcp://127.0.0.1:41234
/// if let message = try router.receiveMultipart(timeout: .seconds(1)) {
///     try router.send(message)                  // [routing id, frames…] goes back to the sender
/// }
/// ```
public enum ZMQLibrary {
    /// The version of the libzmq linked at run time, e.g. `(4, 3, 4)`.
    public static var version: (major: Int32, minor: Int32, patch: Int32) {
        var major: Int32 = 0
        var minor: Int32 = 0
        var patch: Int32 = 0
        zmq_version(&major, &minor, &patch)
        return (major, minor, patch)
    }

    /// Whether libzmq supports a capability, e.g. `"curve"` or `"ipc"` (`zmq_has`).
    public static func has(_ capability: String) -> Bool {
        zmq_has(capability) != 0
    }
}
