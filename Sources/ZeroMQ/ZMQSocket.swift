import CZeroMQ

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The kind of a ZeroMQ socket, which fixes its messaging pattern and the peers it can talk to.
public enum ZMQSocketType: Sendable, CaseIterable, CustomStringConvertible {
    /// Exclusive pair: one peer, both directions.
    case pair
    /// Publisher: sends to every subscriber; never receives.
    case pub
    /// Subscriber: receives messages whose first frame starts with a subscribed prefix.
    case sub
    /// Requester: strict send, receive, send, … with a REP or ROUTER peer.
    case req
    /// Replier: strict receive, send, … with a REQ or DEALER peer.
    case rep
    /// Asynchronous requester: round-robins sends over its peers, fair-queues receives.
    case dealer
    /// Asynchronous replier: prefixes each received message with the sender's routing id and routes each
    /// sent message by its first frame.
    case router
    /// Pipeline consumer: fair-queues from PUSH peers.
    case pull
    /// Pipeline producer: round-robins over PULL peers.
    case push
    /// Publisher that also receives subscription messages.
    case xpub
    /// Subscriber that sends subscriptions as messages.
    case xsub

    /// The libzmq constant (`ZMQ_ROUTER`, …).
    public var rawValue: Int32 {
        switch self {
        case .pair: ZMQ_PAIR
        case .pub: ZMQ_PUB
        case .sub: ZMQ_SUB
        case .req: ZMQ_REQ
        case .rep: ZMQ_REP
        case .dealer: ZMQ_DEALER
        case .router: ZMQ_ROUTER
        case .pull: ZMQ_PULL
        case .push: ZMQ_PUSH
        case .xpub: ZMQ_XPUB
        case .xsub: ZMQ_XSUB
        }
    }

    /// The libzmq name without prefix, e.g. `ROUTER`.
    public var description: String {
        switch self {
        case .pair: "PAIR"
        case .pub: "PUB"
        case .sub: "SUB"
        case .req: "REQ"
        case .rep: "REP"
        case .dealer: "DEALER"
        case .router: "ROUTER"
        case .pull: "PULL"
        case .push: "PUSH"
        case .xpub: "XPUB"
        case .xsub: "XSUB"
        }
    }
}

/// A ZeroMQ socket: bind or connect it, then send and receive multipart messages.
///
/// **Threading.** A socket is not thread-safe: one thread at a time may use it. It may be created on one
/// thread and handed to another (hence `@unchecked Sendable`), as long as the first thread no longer uses
/// it; the owner makes sure calls never overlap. `close()` too is a call on the socket: make it from the
/// thread that uses the socket, or after that thread has finished with it.
///
/// **Lifetime.** `close()` closes the socket at once (pending outgoing messages are kept for the linger
/// period, which this type sets to one second at creation instead of libzmq's "forever", so closing never
/// hangs a process); `deinit` closes it if `close()` was not called. Every later call throws a
/// `ZMQError` whose `isClosedSocket` is true. The socket keeps its `ZMQContext` alive.
///
/// **Messages.** A message is a list of frames (`[[UInt8]]`); libzmq delivers the frames of a message all
/// together or not at all. A ROUTER prefixes each received message with the sender's routing id and takes
/// the first frame of each sent message as the destination's routing id.
public final class ZMQSocket: @unchecked Sendable {
    /// The socket's type, fixed at creation.
    public let type: ZMQSocketType
    /// The context the socket lives in; kept alive as long as the socket.
    public let context: ZMQContext
    /// The libzmq socket, `nil` once closed.
    private(set) var handle: UnsafeMutableRawPointer?

    /// The linger period set on every new socket.
    public static let defaultLinger: Duration = .seconds(1)

    /// Creates a socket of `type` in `context`.
    ///
    /// The socket's linger period is set to `ZMQSocket.defaultLinger` (libzmq's default is to wait forever
    /// for unsent messages when the context terminates).
    ///
    /// - Throws: `ZMQError` from `zmq_socket` (e.g. the context was terminated, or too many sockets).
    public init(_ type: ZMQSocketType, context: ZMQContext = .shared) throws(ZMQError) {
        self.type = type
        self.context = context
        let contextHandle = try context.requireHandle()
        guard let handle = zmq_socket(contextHandle, type.rawValue) else {
            throw ZMQError.last("zmq_socket", detail: type.description)
        }
        self.handle = handle
        try set(.linger, ZMQSocket.defaultLinger)
    }

    deinit {
        close()
    }

    /// Whether `close()` has been called.
    public var isClosed: Bool { handle == nil }

    /// Closes the socket (`zmq_close`). Unsent messages are delivered in the background for at most the
    /// linger period. Calling it again does nothing.
    public func close() {
        guard let handle else { return }
        self.handle = nil
        _ = zmq_close(handle)
    }

    /// The open handle, or an `ENOTSOCK` error naming `function` once the socket is closed.
    @inline(__always)
    func requireOpen(_ function: String) throws(ZMQError) -> UnsafeMutableRawPointer {
        guard let handle else {
            throw ZMQError(errno: ENOTSOCK, function: function, detail: "socket is closed")
        }
        return handle
    }

    // MARK: Endpoints

    /// Binds to `endpoint`, e.g. `tcp://127.0.0.1:5555`, `tcp://127.0.0.1:*` (an ephemeral port: read
    /// `lastEndpoint` afterwards), `ipc:///tmp/mope.sock` or `inproc://name`.
    ///
    /// - Throws: `ZMQError` from `zmq_bind` naming the endpoint (malformed, unsupported transport,
    ///   address in use, …).
    public func bind(_ endpoint: String) throws(ZMQError) {
        let handle = try requireOpen("zmq_bind")
        _ = try zmqCall("zmq_bind", detail: endpoint) { zmq_bind(handle, endpoint) }
    }

    /// Connects to `endpoint`. The connection is made in the background and re-made after it breaks
    /// (see `ZMQOption.reconnectInterval`), so this succeeds before any peer listens.
    ///
    /// - Throws: `ZMQError` from `zmq_connect` naming the endpoint (malformed or unsupported transport).
    public func connect(_ endpoint: String) throws(ZMQError) {
        let handle = try requireOpen("zmq_connect")
        _ = try zmqCall("zmq_connect", detail: endpoint) { zmq_connect(handle, endpoint) }
    }

    /// Stops listening on `endpoint`, which must be the string bound (or `lastEndpoint` for a wildcard bind).
    ///
    /// - Throws: `ZMQError` from `zmq_unbind` (`ENOENT` if the endpoint is not bound).
    public func unbind(_ endpoint: String) throws(ZMQError) {
        let handle = try requireOpen("zmq_unbind")
        _ = try zmqCall("zmq_unbind", detail: endpoint) { zmq_unbind(handle, endpoint) }
    }

    /// Drops the connection to `endpoint` made by `connect`.
    ///
    /// - Throws: `ZMQError` from `zmq_disconnect` (`ENOENT` if the endpoint is not connected).
    public func disconnect(_ endpoint: String) throws(ZMQError) {
        let handle = try requireOpen("zmq_disconnect")
        _ = try zmqCall("zmq_disconnect", detail: endpoint) { zmq_disconnect(handle, endpoint) }
    }

    /// The endpoint of the last `bind` or `connect` with the port resolved, e.g. `tcp://127.0.0.1:41234`
    /// after binding `tcp://127.0.0.1:*`; empty if the socket was never bound or connected.
    public var lastEndpoint: String {
        get throws(ZMQError) { try get(.lastEndpoint) }
    }

    // MARK: Sending

    /// Sends one message made of `frames`, blocking while the socket cannot accept it (its high-water mark
    /// is reached, or a REQ/REP socket is in the wrong state), for at most the `sendTimeout`.
    ///
    /// libzmq copies each frame into its own message buffer; the arrays may be reused at once.
    ///
    /// - Throws: `ZMQError` from `zmq_send`: `isTimeout` when the send timeout expired, `isHostUnreachable`
    ///   when a ROUTER with `routerMandatory` has no peer with the routing id in the first frame,
    ///   `EINVAL` for an empty frame list.
    public func send(_ frames: [[UInt8]]) throws(ZMQError) {
        _ = try sendFrames(frames, dontWait: false)
    }

    /// Sends one message made of `frames` if that can be done without blocking (`ZMQ_DONTWAIT`).
    ///
    /// - Returns: `false` if the message was not sent because the socket would have blocked
    ///   (high-water mark reached, no peer yet for a socket that needs one); `true` once it is queued.
    /// - Throws: `ZMQError` from `zmq_send` for every other failure (e.g. `isHostUnreachable`).
    @discardableResult
    public func trySend(_ frames: [[UInt8]]) throws(ZMQError) -> Bool {
        try sendFrames(frames, dontWait: true)
    }

    /// Sends one message whose frames are the given byte buffers, blocking like `send(_:)`.
    ///
    /// The fast path for callers that already hold their bytes in memory they own (an encoder's buffer, a
    /// `Span`): no Swift arrays are allocated; libzmq copies each buffer once into its message before
    /// this returns, so the memory may be reused at once.
    ///
    /// - Throws: `ZMQError` from `zmq_send`, as `send(_:)`.
    public func send(buffers: [UnsafeRawBufferPointer]) throws(ZMQError) {
        _ = try sendBuffers(buffers, dontWait: false)
    }

    /// Sends the buffers as one message if that can be done without blocking; see `send(buffers:)` and
    /// `trySend(_:)`.
    ///
    /// - Returns: `false` if the socket would have blocked, `true` once the message is queued.
    @discardableResult
    public func trySend(buffers: [UnsafeRawBufferPointer]) throws(ZMQError) -> Bool {
        try sendBuffers(buffers, dontWait: true)
    }

    private func sendFrames(_ frames: [[UInt8]], dontWait: Bool) throws(ZMQError) -> Bool {
        try sendParts(count: frames.count, dontWait: dontWait) { handle, index, flags in
            frames[index].withUnsafeBytes { zmq_send(handle, $0.baseAddress, $0.count, flags) }
        }
    }

    private func sendBuffers(_ buffers: [UnsafeRawBufferPointer], dontWait: Bool) throws(ZMQError) -> Bool {
        try sendParts(count: buffers.count, dontWait: dontWait) { handle, index, flags in
            zmq_send(handle, buffers[index].baseAddress, buffers[index].count, flags)
        }
    }

    /// Sends `count` parts with `ZMQ_SNDMORE` on all but the last. Only the first part can block or fail
    /// for want of room (libzmq checks the high-water mark per message, not per part).
    private func sendParts(
        count: Int, dontWait: Bool, _ sendPart: (UnsafeMutableRawPointer, Int, Int32) -> Int32
    ) throws(ZMQError) -> Bool {
        let handle = try requireOpen("zmq_send")
        guard count > 0 else {
            throw ZMQError(errno: EINVAL, function: "zmq_send", detail: "a message needs at least one frame")
        }
        let wait = dontWait ? ZMQ_DONTWAIT : 0
        for index in 0..<count {
            let flags = wait | (index < count - 1 ? ZMQ_SNDMORE : 0)
            do throws(ZMQError) {
                _ = try zmqCall("zmq_send") { sendPart(handle, index, flags) }
            } catch {
                if index == 0 && dontWait && error.isTimeout { return false }
                throw error
            }
        }
        return true
    }

    // MARK: Receiving

    /// Receives one message, waiting at most `timeout` for it (`nil`: wait until one arrives, or for the
    /// `receiveTimeout` if one is set).
    ///
    /// A message already queued is returned at once. The wait uses `zmq_poll` against a deadline computed
    /// at the call, so interruptions do not extend it.
    ///
    /// - Returns: the message's frames, or `nil` if none arrived in time.
    /// - Throws: `ZMQError` from `zmq_poll` or `zmq_msg_recv` (e.g. `isTerminated` after the context was shut
    ///   down, `isClosedSocket`, or `EFSM` for a REQ socket that has not sent).
    public func receiveMultipart(timeout: Duration?) throws(ZMQError) -> [[UInt8]]? {
        let handle = try requireOpen("zmq_msg_recv")
        guard let timeout else { return try receiveFrames(handle, dontWait: false) }
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while true {
            if let frames = try receiveFrames(handle, dontWait: true) { return frames }
            let now = clock.now
            if now >= deadline { return nil }
            _ = try pollIn(handle, deadline: deadline, clock: clock)
        }
    }

    /// Receives one message if one is queued, without blocking (`ZMQ_DONTWAIT`).
    ///
    /// - Returns: the message's frames, or `nil` if no message is waiting.
    /// - Throws: `ZMQError` from `zmq_msg_recv` for failures other than "nothing to receive".
    public func tryReceiveMultipart() throws(ZMQError) -> [[UInt8]]? {
        let handle = try requireOpen("zmq_msg_recv")
        return try receiveFrames(handle, dontWait: true)
    }

    /// Waits until `handle` is readable or `deadline` passes; retried after interruptions with the time left.
    private func pollIn(
        _ handle: UnsafeMutableRawPointer, deadline: ContinuousClock.Instant, clock: ContinuousClock
    ) throws(ZMQError) -> Int32 {
        var item = zmq_pollitem_t(socket: handle, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0)
        return try zmqCall("zmq_poll") {
            zmq_poll(&item, 1, ZMQPoller.milliseconds(until: deadline, clock: clock))
        }
    }

    /// Receives the frames of one message; `nil` when the first frame would block (`EAGAIN`).
    /// The later frames of a message are already queued once its first frame has arrived.
    private func receiveFrames(_ handle: UnsafeMutableRawPointer, dontWait: Bool) throws(ZMQError) -> [[UInt8]]? {
        try withUnsafeTemporaryAllocation(of: zmq_msg_t.self, capacity: 1) { (buffer) throws(ZMQError) in
            guard let message = buffer.baseAddress else {
                throw ZMQError(errno: ENOMEM, function: "zmq_msg_init", detail: "no room for a message")
            }
            _ = zmq_msg_init(message)
            defer { _ = zmq_msg_close(message) }
            var frames: [[UInt8]] = []
            while true {
                let flags = frames.isEmpty && dontWait ? ZMQ_DONTWAIT : 0
                do throws(ZMQError) {
                    _ = try zmqCall("zmq_msg_recv") { zmq_msg_recv(message, handle, flags) }
                } catch {
                    if frames.isEmpty && error.isTimeout { return nil }
                    throw error
                }
                let size = zmq_msg_size(message)
                let data = zmq_msg_data(message)
                frames.append(
                    [UInt8](unsafeUninitializedCapacity: size) { bytes, initialized in
                        if size > 0, let data, let base = bytes.baseAddress { memcpy(base, data, size) }
                        initialized = size
                    }
                )
                if zmq_msg_more(message) == 0 { return frames }
            }
        }
    }
}
