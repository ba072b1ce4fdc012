import ClusterCore
import Decoding
import Dispatch
import Foundation
import Wire
import ZeroMQ

/// Why a client request failed.
public enum ClientError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The coordinator answered with an `error` (its code and reason).
    case rejected(ErrorReply)
    /// No `done` arrived within the request's deadline (the coordinator is down, unreachable or overloaded).
    case timeout(endpoint: String, seconds: Double)
    /// ZeroMQ failed (a bad endpoint, a closed context).
    case socket(ZMQError)
    /// No connection to the coordinator came up within the client's connect timeout (nothing was sent).
    case unreachable(endpoint: String, seconds: Double)
    /// The caller cancelled the request (`isCancelled` said so); the connection is closed with the client.
    case cancelled

    /// A message a user can act on.
    public var description: String {
        switch self {
        case let .rejected(reply):
            "the coordinator refused the request (\(reply.code)): \(reply.text)"
        case let .timeout(endpoint, seconds):
            "no answer from the coordinator at \(endpoint) within \(seconds) s; check that `mope coordinator` "
                + "runs there and is reachable, or raise --timeout"
        case let .unreachable(endpoint, seconds):
            "no connection to the coordinator at \(endpoint) within \(seconds) s; check that `mope coordinator` "
                + "runs there and is reachable"
        case .cancelled:
            "the request was cancelled"
        case let .socket(error):
            error.isBadEndpoint
                ? "invalid coordinator address: \(error.message); use tcp://host:port or ipc:///path"
                : "ZeroMQ failed in the client: \(error)"
        }
    }

    /// The coordinator's error code, when it answered with one.
    public var code: ErrorCode? {
        if case let .rejected(reply) = self { return reply.code }
        return nil
    }
}

/// A client of the coordinator: one DEALER connected to its ROUTER.
///
/// `generate` sends a `Generate`, calls `onToken` for every `token` event as it arrives, and returns the `done`
/// (or throws the coordinator's `error`, or `timeout` when the whole request takes longer than its deadline).
/// `status` asks for the cluster's state. A client is used by one thread at a time; run several clients for concurrent requests (one connection
/// each), or several requests in turn on one client.
public final class CoordinatorClient {
    /// The coordinator's endpoint.
    public let endpoint: String
    private let context: ZMQContext
    private let socket: ZMQSocket
    private var nextRequest: UInt64 = 1
    private let connectTimeout: Duration?

    /// Connects to the coordinator at `endpoint` (connection happens in the background; nothing is sent yet).
    ///
    /// - Parameters:
    ///   - curve: the coordinator's CURVE public key and the client's key pair, when the coordinator runs with
    ///     CURVE.
    ///   - connectTimeout: when set, a request is sent only over a completed connection and fails with
    ///     `unreachable` when none comes up within this time (instead of waiting for the request's deadline).
    ///   - maxMessageBytes: the largest message accepted from the coordinator (`ZMQ_MAXMSGSIZE`); a larger one
    ///     drops the connection.
    public init(
        endpoint: String, curve: CurveClientKeys? = nil, connectTimeout: Duration? = nil,
        maxMessageBytes: Int = WireLimits.maxFrameBytes
    ) throws(ClientError) {
        self.endpoint = endpoint
        self.connectTimeout = connectTimeout
        do {
            context = try ZMQContext()
            socket = try ZMQSocket(.dealer, context: context)
            try socket.set(.linger, .zero)
            if connectTimeout != nil { try socket.set(.immediate, true) }
            try socket.set(.maxMessageSize, Int64(maxMessageBytes))
            try socket.set(.sendHighWaterMark, 1000)
            try socket.set(.receiveHighWaterMark, 100_000)
            try curve?.apply(to: socket)
            try socket.connect(endpoint)
        } catch {
            throw .socket(error)
        }
    }

    deinit {
        socket.close()
        context.shutdown()
    }

    /// Runs one generation request.
    ///
    /// - Parameters:
    ///   - request: the request; a `request` id of 0 is replaced by the client's own counter.
    ///   - timeout: the deadline of the whole request.
    ///   - onToken: called with every token event, in order, as it arrives.
    /// - Returns: the coordinator's `done`.
    /// - Throws: `ClientError.rejected` with the coordinator's error, `.timeout`, `.unreachable` (with a connect
    ///   timeout), `.socket`.
    public func generate(
        _ request: Generate, timeout: Duration = .seconds(300), onToken: (TokenEvent) -> Void = { _ in }
    ) throws(ClientError) -> Done {
        try run(request, timeout: timeout, isCancelled: nil, onToken: onToken)
    }

    /// Runs one generation request that the caller may cancel: `isCancelled` is polled while waiting (every
    /// 50 ms at most), and when it says true the request ends with `ClientError.cancelled`. Close the client
    /// then: the coordinator cancels the session of a client that is gone, at its next token.
    public func generate(
        _ request: Generate, timeout: Duration = .seconds(300), isCancelled: @escaping () -> Bool,
        onToken: (TokenEvent) -> Void
    ) throws(ClientError) -> Done {
        try run(request, timeout: timeout, isCancelled: isCancelled, onToken: onToken)
    }

    private func run(
        _ request: Generate, timeout: Duration, isCancelled: (() -> Bool)?, onToken: (TokenEvent) -> Void
    ) throws(ClientError) -> Done {
        var request = request
        if request.request == 0 {
            request.request = nextRequest
            nextRequest += 1
        } else {
            nextRequest = max(nextRequest, request.request &+ 1)
        }
        return try exchange(.generate(request), timeout: timeout, isCancelled: isCancelled) {
            message throws(ClientError) in
            switch message {
            case let .token(event) where event.request == request.request:
                onToken(event)
                return nil
            case let .done(done) where done.request == request.request:
                return done
            case let .error(reply) where reply.session == request.request || reply.session == 0:
                throw .rejected(reply)
            default:
                return nil  // A late reply to an earlier request that timed out.
            }
        }
    }

    /// Asks the coordinator for the cluster's state (workers per expert, sessions, drain).
    ///
    /// - Parameter timeout: how long to wait for the answer.
    /// - Throws: `ClientError.timeout` when no answer comes (the coordinator is down or unreachable),
    ///   `.rejected` when it refuses the request, `.socket`.
    public func status(timeout: Duration = .seconds(5)) throws(ClientError) -> ClusterStatus {
        let id = nextRequest
        nextRequest += 1
        return try exchange(.status(StatusRequest(request: id)), timeout: timeout, isCancelled: nil) {
            message throws(ClientError) in
            switch message {
            case let .statusReply(reply) where reply.request == id:
                return reply.status
            case let .error(reply) where reply.session == id || reply.session == 0:
                throw .rejected(reply)
            default:
                return nil  // A late reply to an earlier request.
            }
        }
    }

    /// Sends `message` and hands every decoded reply to `handle` until it returns a result, within `timeout`
    /// (and while `isCancelled` says false).
    private func exchange<T>(
        _ message: Message, timeout: Duration, isCancelled: (() -> Bool)?, handle: (Message) throws(ClientError) -> T?
    ) throws(ClientError) -> T {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        let frame = WireCodec.encode(message)
        do {
            if let connectTimeout {
                let connectBy = clock.now.advanced(by: connectTimeout)
                while try !socket.trySend([frame]) {
                    guard clock.now < connectBy else {
                        let (seconds, attoseconds) = connectTimeout.components
                        throw ClientError.unreachable(
                            endpoint: endpoint, seconds: Double(seconds) + Double(attoseconds) * 1e-18
                        )
                    }
                    if isCancelled?() == true { throw ClientError.cancelled }
                    Thread.sleep(forTimeInterval: 0.005)
                }
            } else {
                try socket.send([frame])
            }
        } catch let error as ClientError {
            throw error
        } catch let error as ZMQError {
            throw .socket(error)
        } catch {
            throw .cancelled
        }
        while true {
            if isCancelled?() == true { throw .cancelled }
            let left = clock.now.duration(to: deadline)
            guard left > .zero else {
                let (seconds, attoseconds) = timeout.components
                throw .timeout(endpoint: endpoint, seconds: Double(seconds) + Double(attoseconds) * 1e-18)
            }
            let frames: [[UInt8]]?
            do {
                frames = try socket.receiveMultipart(timeout: isCancelled == nil ? left : min(left, .milliseconds(50)))
            } catch {
                throw .socket(error)
            }
            guard let frames, let payload = frames.last else { continue }
            guard let reply = try? WireCodec.decode(payload) else { continue }
            if let result = try handle(reply) { return result }
        }
    }
}
