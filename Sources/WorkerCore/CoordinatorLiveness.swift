import Wire

/// What the worker's liveness tracker asks its shell to do.
public enum LivenessDirective: Sendable, Equatable {
    /// Nothing was sent to the coordinator for one interval: send a heartbeat.
    case sendHeartbeat
    /// The coordinator was silent for 3 intervals: wait `afterMs`, reconnect the socket and send `hello` again.
    case reconnect(afterMs: UInt32)
}

/// The worker's side of the Paranoid Pirate pattern, pure: time is passed in (nanoseconds).
///
/// Any message from the coordinator is a sign of life. After 3 silent heartbeat intervals the coordinator is
/// taken for dead: the worker reconnects after a back-off that starts at one interval and doubles on every
/// consecutive failure, up to `maxReconnectMs`; a message from the coordinator resets the back-off.
public struct CoordinatorLiveness: Sendable, Equatable {
    /// The heartbeat interval (nanoseconds); `welcome` may change it.
    public private(set) var intervalNanos: UInt64
    /// The longest back-off before a reconnection.
    public let maxReconnectMs: UInt32
    private var lastHeard: UInt64
    private var lastSent: UInt64
    private var backoffMs: UInt32

    /// Starts tracking at `now` (the moment `hello` is sent).
    public init(heartbeatIntervalMs: UInt32, now: UInt64, maxReconnectMs: UInt32 = 32_000) {
        let interval = max(heartbeatIntervalMs, 1)
        intervalNanos = UInt64(interval) * 1_000_000
        self.maxReconnectMs = max(maxReconnectMs, interval)
        lastHeard = now
        lastSent = now
        backoffMs = interval
    }

    /// The coordinator welcomed the worker with its heartbeat interval.
    public mutating func onWelcome(_ welcome: Welcome, now: UInt64) {
        let interval = max(welcome.heartbeatIntervalMs, 1)
        intervalNanos = UInt64(interval) * 1_000_000
        backoffMs = interval
        onReceived(now: now)
    }

    /// Any message arrived from the coordinator.
    public mutating func onReceived(now: UInt64) {
        lastHeard = max(lastHeard, now)
        backoffMs = UInt32(intervalNanos / 1_000_000)
    }

    /// The worker sent the coordinator something.
    public mutating func onSent(now: UInt64) {
        lastSent = max(lastSent, now)
    }

    /// Time passes.
    public mutating func onTick(now: UInt64) -> [LivenessDirective] {
        if now >= lastHeard, now - lastHeard >= 3 * intervalNanos {
            let delay = backoffMs
            backoffMs = UInt32(min(UInt64(backoffMs) * 2, UInt64(maxReconnectMs)))
            // The reconnection and its `hello` count as a fresh start.
            let restart = now + UInt64(delay) * 1_000_000
            lastHeard = restart
            lastSent = restart
            return [.reconnect(afterMs: delay)]
        }
        if now >= lastSent, now - lastSent >= intervalNanos {
            lastSent = now
            return [.sendHeartbeat]
        }
        return []
    }

    /// The next instant `onTick` has something to do.
    public var nextTick: UInt64 { min(lastHeard + 3 * intervalNanos, lastSent + intervalNanos) }
}
