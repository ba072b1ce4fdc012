import CZeroMQ

/// The readiness a `ZMQPoller` waits for and reports.
public struct ZMQPollEvents: OptionSet, Sendable, Hashable {
    /// The libzmq bits (`ZMQ_POLLIN`, …).
    public let rawValue: Int16

    /// Creates events from libzmq bits.
    public init(rawValue: Int16) { self.rawValue = rawValue }

    /// A message can be received without blocking (`ZMQ_POLLIN`).
    public static let readable = ZMQPollEvents(rawValue: Int16(ZMQ_POLLIN))
    /// A message can be sent without blocking (`ZMQ_POLLOUT`).
    public static let writable = ZMQPollEvents(rawValue: Int16(ZMQ_POLLOUT))
    /// An error condition on a file descriptor (`ZMQ_POLLERR`; never reported for ZeroMQ sockets).
    public static let error = ZMQPollEvents(rawValue: Int16(ZMQ_POLLERR))
}

/// Waits on several sockets (and optionally plain file descriptors) at once with `zmq_poll`.
///
/// Register each socket once; `poll(timeout:)` then reports, per registration in order, which of the
/// requested events are ready. A poll loop in one thread typically polls its sockets, then drains each
/// readable one with `tryReceiveMultipart()`.
///
/// The poller keeps its sockets alive. Like the sockets, it belongs to one thread at a time. If a registered
/// socket is closed, `poll` throws a `ZMQError` whose `isClosedSocket` is true.
public struct ZMQPoller {
    private enum Target {
        case socket(ZMQSocket)
        case fileDescriptor(Int32)
    }

    private var targets: [(target: Target, events: ZMQPollEvents)] = []

    /// Creates an empty poller.
    public init() {}

    /// How many sockets and file descriptors are registered.
    public var count: Int { targets.count }

    /// Registers `socket` for `events`.
    ///
    /// - Returns: the registration's index in the results of `poll(timeout:)` and `readable(timeout:)`.
    @discardableResult
    public mutating func register(_ socket: ZMQSocket, for events: ZMQPollEvents = .readable) -> Int {
        targets.append((.socket(socket), events))
        return targets.count - 1
    }

    /// Registers a plain file descriptor (a pipe or eventfd used to wake the poll loop, say) for `events`.
    ///
    /// - Returns: the registration's index in the results of `poll(timeout:)` and `readable(timeout:)`.
    @discardableResult
    public mutating func register(fileDescriptor: Int32, for events: ZMQPollEvents = .readable) -> Int {
        targets.append((.fileDescriptor(fileDescriptor), events))
        return targets.count - 1
    }

    /// Waits until at least one registration is ready or `timeout` passes (`nil`: wait indefinitely,
    /// `.zero`: just look).
    ///
    /// - Returns: the ready events of each registration, in registration order; all empty after a timeout.
    /// - Throws: `ZMQError` from `zmq_poll` (`isTerminated` after the context was shut down, `isClosedSocket`
    ///   if a registered socket was closed).
    public func poll(timeout: Duration?) throws(ZMQError) -> [ZMQPollEvents] {
        var items: [zmq_pollitem_t] = []
        items.reserveCapacity(targets.count)
        for (target, events) in targets {
            switch target {
            case .socket(let socket):
                let handle = try socket.requireOpen("zmq_poll")
                items.append(zmq_pollitem_t(socket: handle, fd: 0, events: events.rawValue, revents: 0))
            case .fileDescriptor(let descriptor):
                items.append(zmq_pollitem_t(socket: nil, fd: descriptor, events: events.rawValue, revents: 0))
            }
        }
        let clock = ContinuousClock()
        let deadline = timeout.map { clock.now.advanced(by: $0) }
        let count = Int32(items.count)
        _ = try zmqCall("zmq_poll") {
            let wait = deadline.map { ZMQPoller.milliseconds(until: $0, clock: clock) } ?? -1
            return items.withUnsafeMutableBufferPointer { zmq_poll($0.baseAddress, count, wait) }
        }
        return items.map { ZMQPollEvents(rawValue: $0.revents) }
    }

    /// Waits like `poll(timeout:)` and returns the indices of the registrations that are readable
    /// (empty after a timeout).
    ///
    /// - Throws: `ZMQError` from `zmq_poll`, as `poll(timeout:)`.
    public func readable(timeout: Duration?) throws(ZMQError) -> [Int] {
        let results = try poll(timeout: timeout)
        return results.indices.filter { results[$0].contains(.readable) }
    }

    // MARK: Time conversions

    /// `duration` in whole milliseconds, rounded up so a wait is never shorter than asked; negative
    /// durations give 0.
    static func milliseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        if seconds < 0 || (seconds == 0 && attoseconds <= 0) { return 0 }
        let attosecondsPerMillisecond: Int64 = 1_000_000_000_000_000
        let (whole, overflow) = seconds.multipliedReportingOverflow(by: 1000)
        if overflow { return Int64.max }
        let fraction = (attoseconds + attosecondsPerMillisecond - 1) / attosecondsPerMillisecond
        return whole.addingReportingOverflow(fraction).overflow ? Int64.max : whole + fraction
    }

    /// The `zmq_poll` timeout (milliseconds, at least 0) left until `deadline`.
    static func milliseconds(until deadline: ContinuousClock.Instant, clock: ContinuousClock) -> Int {
        Int(clamping: milliseconds(clock.now.duration(to: deadline)))
    }
}
