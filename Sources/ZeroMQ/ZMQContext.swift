import CZeroMQ

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A libzmq context: the I/O threads and bookkeeping that sockets are created in.
///
/// Most programs need one context; `ZMQContext.shared` is created on first use and lives for the
/// process. A context owned by a `ZMQContext` is terminated (`zmq_ctx_term`) when the object is released;
/// every `ZMQSocket` holds a strong reference to its context, so termination happens only after all its
/// sockets are closed, and waits at most for their linger period.
///
/// `@unchecked Sendable`: libzmq contexts are thread-safe, and the handle is never changed after `init`.
public final class ZMQContext: @unchecked Sendable {
    /// The process-wide context, created on first use and never terminated.
    public static let shared = ZMQContext(deferringFailure: ())

    /// The libzmq context, or `nil` if `zmq_ctx_new` failed for the shared context.
    let handle: UnsafeMutableRawPointer?
    private let creationError: ZMQError?

    /// Creates a context with `ioThreads` I/O threads (libzmq's default is one, ample for one process).
    ///
    /// - Throws: `ZMQError` from `zmq_ctx_new` (out of memory or file descriptors) or `zmq_ctx_set`.
    public init(ioThreads: Int32 = 1) throws(ZMQError) {
        guard let handle = zmq_ctx_new() else { throw ZMQError.last("zmq_ctx_new") }
        self.handle = handle
        self.creationError = nil
        if ioThreads != 1 {
            _ = try zmqCall("zmq_ctx_set", detail: "ZMQ_IO_THREADS=\(ioThreads)") {
                zmq_ctx_set(handle, ZMQ_IO_THREADS, ioThreads)
            }
        }
    }

    /// The shared context cannot throw from its initialiser; a failure is kept and reported by the first
    /// socket created in it.
    private init(deferringFailure: Void) {
        let handle = zmq_ctx_new()
        self.handle = handle
        self.creationError = handle == nil ? ZMQError.last("zmq_ctx_new") : nil
    }

    /// The context's handle, or the error that prevented its creation.
    func requireHandle() throws(ZMQError) -> UnsafeMutableRawPointer {
        guard let handle else {
            throw creationError ?? ZMQError(errno: EFAULT, function: "zmq_ctx_new")
        }
        return handle
    }

    /// Shuts the context down (`zmq_ctx_shutdown`): every blocking call on its sockets, in any thread,
    /// returns at once with an error whose `isTerminated` is true, and later calls fail the same way.
    /// Sockets must still be closed. Use it to stop threads blocked in `receiveMultipart` or `ZMQPoller.poll`.
    public func shutdown() {
        guard let handle else { return }
        _ = zmq_ctx_shutdown(handle)
    }

    deinit {
        guard let handle else { return }
        _ = try? zmqCall("zmq_ctx_term") { zmq_ctx_term(handle) }
    }
}
