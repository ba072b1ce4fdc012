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
    /// The coordinator went silent mid-request: neither a reply nor an answer to the client's heartbeats came
    /// for two heartbeat intervals (it died, or cannot be reached). `tokensSent` tokens had been passed on.
    case coordinatorLost(endpoint: String, tokensSent: Int, seconds: Double)

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
        case let .coordinatorLost(endpoint, tokens, seconds):
            "the coordinator at \(endpoint) stopped answering (nothing for \(seconds) s) after \(tokens) "
                + "tokens of the answer were sent; no other coordinator could resume it"
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
    private let heartbeatInterval: Duration?

    /// Connects to the coordinator at `endpoint` (connection happens in the background; nothing is sent yet).
    ///
    /// - Parameters:
    ///   - curve: the coordinator's CURVE public key and the client's key pair, when the coordinator runs with
    ///     CURVE.
    ///   - connectTimeout: when set, a request is sent only over a completed connection and fails with
    ///     `unreachable` when none comes up within this time (instead of waiting for the request's deadline).
    ///   - maxMessageBytes: the largest message accepted from the coordinator (`ZMQ_MAXMSGSIZE`); a larger one
    ///     drops the connection.
    ///   - heartbeatInterval: while a generation waits, the client sends `heartbeat` after an interval without a
    ///     message from the coordinator, and gives up with `coordinatorLost` after two (nil: only the request's
    ///     deadline ends the wait).
    public init(
        endpoint: String, curve: CurveClientKeys? = nil, connectTimeout: Duration? = nil,
        maxMessageBytes: Int = WireLimits.maxFrameBytes, heartbeatInterval: Duration? = nil
    ) throws(ClientError) {
        self.endpoint = endpoint
        self.connectTimeout = connectTimeout
        self.heartbeatInterval = heartbeatInterval
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
        try run(request, timeout: timeout, control: nil, onToken: onToken)
    }

    /// Runs one generation request under `control`: the caller may cancel it (`ClientError.cancelled`) or change
    /// its preference from another thread while it runs (the change is sent on this connection).
    public func generate(
        _ request: Generate, timeout: Duration = .seconds(300), control: GenerationControl,
        onToken: (TokenEvent) -> Void
    ) throws(ClientError) -> Done {
        try run(request, timeout: timeout, control: control, onToken: onToken)
    }

    /// Runs one generation request that the caller may cancel: `isCancelled` is polled while waiting (every
    /// 50 ms at most), and when it says true the request ends with `ClientError.cancelled`. Close the client
    /// then: the coordinator cancels the session of a client that is gone, at its next token.
    public func generate(
        _ request: Generate, timeout: Duration = .seconds(300), isCancelled: @escaping () -> Bool,
        onToken: (TokenEvent) -> Void
    ) throws(ClientError) -> Done {
        try run(request, timeout: timeout, control: GenerationControl(isCancelled: isCancelled), onToken: onToken)
    }

    private func run(
        _ request: Generate, timeout: Duration, control: GenerationControl?, onToken: (TokenEvent) -> Void
    ) throws(ClientError) -> Done {
        var request = request
        if request.request == 0 {
            request.request = nextRequest
            nextRequest += 1
        } else {
            nextRequest = max(nextRequest, request.request &+ 1)
        }
        var tokens = 0
        let pending = control.map { control in
            { () -> Message? in
                control.takePending().map { .setPreference(SetPreference(request: request.request, preference: $0)) }
            }
        }
        return try exchange(
            .generate(request), timeout: timeout, isCancelled: control.map { control in { control.isCancelled } },
            heartbeat: heartbeatInterval, tokensSent: { tokens }, outgoing: pending
        ) {
            message throws(ClientError) in
            switch message {
            case let .token(event) where event.request == request.request:
                tokens += 1
                onToken(event)
                return nil
            case let .preferenceSet(set) where set.request == request.request:
                control?.acknowledge(fromToken: set.fromToken)
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
        return try exchange(.status(StatusRequest(request: id)), timeout: timeout, isCancelled: nil, heartbeat: nil) {
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
        _ message: Message, timeout: Duration, isCancelled: (() -> Bool)?, heartbeat: Duration?,
        tokensSent: () -> Int = { 0 }, outgoing: (() -> Message?)? = nil,
        handle: (Message) throws(ClientError) -> T?
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
        var lastHeard = clock.now
        var lastPing = clock.now
        while true {
            if isCancelled?() == true { throw .cancelled }
            if let outgoing, let extra = outgoing() {
                do {
                    _ = try socket.trySend([WireCodec.encode(extra)])
                } catch {
                    throw .socket(error)
                }
            }
            let left = clock.now.duration(to: deadline)
            guard left > .zero else {
                let (seconds, attoseconds) = timeout.components
                throw .timeout(endpoint: endpoint, seconds: Double(seconds) + Double(attoseconds) * 1e-18)
            }
            var wait = isCancelled == nil && outgoing == nil ? left : min(left, .milliseconds(50))
            if let heartbeat {
                let silent = lastHeard.duration(to: clock.now)
                if silent >= heartbeat * 2 {
                    let (seconds, attoseconds) = silent.components
                    throw .coordinatorLost(endpoint: endpoint, tokensSent: tokensSent(),
                                           seconds: Double(seconds) + Double(attoseconds) * 1e-18)
                }
                if silent >= heartbeat, lastPing.duration(to: clock.now) >= heartbeat {
                    // Best effort: a full queue means the link is down, which the silence will tell.
                    _ = try? socket.trySend([WireCodec.encode(.heartbeat)])
                    lastPing = clock.now
                }
                wait = min(wait, max(.milliseconds(1), min(heartbeat, heartbeat * 2 - silent)))
            }
            let frames: [[UInt8]]?
            do {
                frames = try socket.receiveMultipart(timeout: wait)
            } catch {
                throw .socket(error)
            }
            guard let frames, let payload = frames.last else { continue }
            lastHeard = clock.now
            guard let reply = try? WireCodec.decode(payload) else { continue }
            if let result = try handle(reply) { return result }
        }
    }
}

/// What another thread may do to a running generation: cancel it, or change its preference from the next token
/// (`CoordinatorClient.generate(_:timeout:control:onToken:)`). Safe to use from any thread.
public final class GenerationControl: @unchecked Sendable {
    // Invariant: every stored property below is read and written with `condition` locked.
    private let condition = NSCondition()
    private var cancelled = false
    private let externalCancel: (() -> Bool)?
    private var pending: String?
    private var waiting: String?
    private var acknowledged: UInt32?
    private var ended = false

    /// A control; `isCancelled`, when given, is asked as well as `cancel()`.
    public init(isCancelled: (() -> Bool)? = nil) { externalCancel = isCancelled }

    /// Stops the generation at its next poll.
    public func cancel() {
        condition.lock()
        cancelled = true
        condition.broadcast()
        condition.unlock()
    }

    /// Whether `cancel()` was called (or the caller's own check says so).
    public var isCancelled: Bool {
        condition.lock()
        let own = cancelled
        condition.unlock()
        return own || externalCancel?() == true
    }

    /// Changes the preference of the running request and waits for the coordinator's acknowledgement: the index
    /// of the first token decided with it. Nil when the generation ended (or was not acknowledged) within
    /// `timeout`, or another change is in progress.
    public func changePreference(_ preference: String, timeout: Duration) -> UInt32? {
        condition.lock()
        defer { condition.unlock() }
        guard !ended, pending == nil, waiting == nil else { return nil }
        pending = preference
        acknowledged = nil
        let (seconds, attoseconds) = timeout.components
        let limit = Date(timeIntervalSinceNow: Double(seconds) + Double(attoseconds) * 1e-18)
        while acknowledged == nil, !ended, !cancelled {
            if !condition.wait(until: limit) { break }
        }
        defer {
            pending = nil
            waiting = nil
        }
        return acknowledged
    }

    /// The change to send, if one waits (the generation's thread sends it).
    func takePending() -> String? {
        condition.lock()
        defer { condition.unlock() }
        guard let text = pending else { return nil }
        pending = nil
        waiting = text
        return text
    }

    /// The coordinator applied the change from token `fromToken`.
    func acknowledge(fromToken: UInt32) {
        condition.lock()
        if let text = waiting { applied.append(PreferenceChange(fromToken: fromToken, preference: text)) }
        acknowledged = fromToken
        waiting = nil
        condition.broadcast()
        condition.unlock()
    }

    private var applied: [PreferenceChange] = []

    /// The changes the coordinator acknowledged, in order (a resumed request carries them in its schedule).
    public var appliedChanges: [PreferenceChange] {
        condition.lock()
        defer { condition.unlock() }
        return applied
    }

    /// The generation ended: no change can be applied any more.
    public func end() {
        condition.lock()
        ended = true
        condition.broadcast()
        condition.unlock()
    }
}

// MARK: - Several coordinators

/// Runs generations against a list of coordinators: a request goes to the first that accepts a connection, and
/// when that coordinator dies mid-answer (noticed by the client's heartbeats within two intervals) the request
/// resumes on the next one from the tokens already sent (`Generate.resume`, with the same seed and the
/// preference changes acknowledged so far), so the text is the one the first would have given.
public struct CoordinatorPool: Sendable {
    /// The coordinators' client endpoints, in order of preference.
    public let endpoints: [String]
    /// The CURVE keys for every coordinator, when they run CURVE.
    public let curve: CurveClientKeys?
    /// How long to wait for a connection to each coordinator (nil: a request waits for one until its deadline).
    public let connectTimeout: Duration?
    /// The client heartbeat interval (a coordinator silent for two is taken for lost).
    public let heartbeatInterval: Duration

    /// A pool.
    public init(endpoints: [String], curve: CurveClientKeys?, connectTimeout: Duration?, heartbeatInterval: Duration) {
        self.endpoints = endpoints
        self.curve = curve
        self.connectTimeout = connectTimeout
        self.heartbeatInterval = heartbeatInterval
    }

    /// Runs `request`, starting with the coordinator at index `first`. Returns the `done` (its `failovers`
    /// count coordinator changes too) and the index of the coordinator that finished it.
    ///
    /// - Throws: the last coordinator's error; `coordinatorLost` with every token sent when the last one left
    ///   was lost (or none other answered after a loss).
    public func generate(
        _ request: Generate, first: Int = 0, timeout: Duration, control: GenerationControl? = nil,
        onFailover: (_ from: String, _ tokens: Int) -> Void = { _, _ in }, onToken: (TokenEvent) -> Void
    ) throws(ClientError) -> (done: Done, index: Int) {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        let control = control ?? GenerationControl()
        defer { control.end() }
        var tokens: [UInt32] = []
        var lost: ClientError?
        var moves: UInt32 = 0
        for attempt in 0..<max(1, endpoints.count) {
            let index = (first + attempt) % max(1, endpoints.count)
            guard index < endpoints.count else { break }
            var attemptRequest = request
            attemptRequest.resume = tokens
            // The changes acknowledged so far replace the request's own schedule from the first of them on.
            let changes = control.appliedChanges
            if let firstChange = changes.first {
                attemptRequest.schedule = request.schedule.filter { $0.fromToken < firstChange.fromToken } + changes
            }
            do throws(ClientError) {
                let left = clock.now.duration(to: deadline)
                guard left > .zero else {
                    let (seconds, attoseconds) = timeout.components
                    throw .timeout(endpoint: endpoints[index], seconds: Double(seconds) + Double(attoseconds) * 1e-18)
                }
                let client = try CoordinatorClient(
                    endpoint: endpoints[index], curve: curve, connectTimeout: connectTimeout,
                    heartbeatInterval: heartbeatInterval
                )
                var done = try client.generate(attemptRequest, timeout: left, control: control) { event in
                    tokens.append(event.token)
                    onToken(event)
                }
                done.failovers += moves
                return (done, index)
            } catch {
                switch error {
                case .unreachable where attempt + 1 < endpoints.count:
                    continue
                case let .coordinatorLost(endpoint, _, seconds):
                    let total = ClientError.coordinatorLost(endpoint: endpoint, tokensSent: tokens.count,
                                                            seconds: seconds)
                    guard attempt + 1 < endpoints.count else { throw total }
                    lost = total
                    moves += 1
                    onFailover(endpoint, tokens.count)
                    continue
                case .unreachable, .timeout:
                    throw lost ?? error
                default:
                    throw error
                }
            }
        }
        throw lost ?? .unreachable(endpoint: endpoints.joined(separator: ","), seconds: 0)
    }
}
