import ClusterCore
import Decoding
import Dispatch
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

    /// A message a user can act on.
    public var description: String {
        switch self {
        case let .rejected(reply):
            "the coordinator refused the request (\(reply.code)): \(reply.text)"
        case let .timeout(endpoint, seconds):
            "no answer from the coordinator at \(endpoint) within \(seconds) s; check that `mope coordinator` "
                + "runs there and is reachable, or raise --timeout"
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
/// A client is used by one thread at a time; run several clients for concurrent requests (one connection
/// each), or several requests in turn on one client.
public final class CoordinatorClient {
    /// The coordinator's endpoint.
    public let endpoint: String
    private let context: ZMQContext
    private let socket: ZMQSocket
    private var nextRequest: UInt64 = 1

    /// Connects to the coordinator at `endpoint` (connection happens in the background; nothing is sent yet).
    ///
    /// - Parameters:
    ///   - curve: the coordinator's CURVE public key and the client's key pair, when the coordinator runs with
    ///     CURVE.
    ///   - maxMessageBytes: the largest message accepted from the coordinator (`ZMQ_MAXMSGSIZE`); a larger one
    ///     drops the connection.
    public init(endpoint: String, curve: CurveClientKeys? = nil, maxMessageBytes: Int = WireLimits.maxFrameBytes)
        throws(ClientError)
    {
        self.endpoint = endpoint
        do {
            context = try ZMQContext()
            socket = try ZMQSocket(.dealer, context: context)
            try socket.set(.linger, .zero)
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
    /// - Throws: `ClientError.rejected` with the coordinator's error, `.timeout`, `.socket`.
    public func generate(
        _ request: Generate, timeout: Duration = .seconds(300), onToken: (TokenEvent) -> Void = { _ in }
    ) throws(ClientError) -> Done {
        var request = request
        if request.request == 0 {
            request.request = nextRequest
            nextRequest += 1
        } else {
            nextRequest = max(nextRequest, request.request &+ 1)
        }
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        do {
            try socket.send([WireCodec.encode(.generate(request))])
        } catch {
            throw .socket(error)
        }
        while true {
            let left = clock.now.duration(to: deadline)
            guard left > .zero else {
                let (seconds, attoseconds) = timeout.components
                throw .timeout(endpoint: endpoint, seconds: Double(seconds) + Double(attoseconds) * 1e-18)
            }
            let frames: [[UInt8]]?
            do {
                frames = try socket.receiveMultipart(timeout: left)
            } catch {
                throw .socket(error)
            }
            guard let frames, let payload = frames.last else { continue }
            guard let message = try? WireCodec.decode(payload) else { continue }
            switch message {
            case let .token(event) where event.request == request.request:
                onToken(event)
            case let .done(done) where done.request == request.request:
                return done
            case let .error(reply) where reply.session == request.request || reply.session == 0:
                throw .rejected(reply)
            default:
                continue  // A late reply to an earlier request that timed out.
            }
        }
    }
}
