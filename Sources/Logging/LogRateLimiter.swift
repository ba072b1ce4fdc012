import Dispatch

/// Bounds the log lines one peer can cause: of the events about a peer (a malformed frame, an unexpected message,
/// a refused handshake), the first `linesPerInterval` of each interval are logged, the rest only counted, and once
/// the interval is over one summary line tells how many were left out:
/// `peer \x00k\x8bEg: 523 more malformed frames suppressed in the last 10 s`.
///
/// A pure value: the caller passes the time (monotonic nanoseconds) or gives a clock at creation, and writes the
/// lines itself. Each peer's interval starts at its first event. Peers are told apart by their identity bytes; at
/// most `maxPeers` are tracked at once (a flood from many identities shares one budget, "other peers"), and a
/// peer's entry is dropped once its interval is over, so memory stays bounded whatever peers send.
public struct LogRateLimiter: Sendable {
    /// What is counted, plural, for the summary line ("malformed frames").
    public let what: String
    /// Lines let through per peer and interval.
    public let linesPerInterval: Int
    /// The interval's length in nanoseconds.
    public let intervalNanos: UInt64
    /// Peers tracked at once; events of further peers share the budget of `otherPeers`.
    public let maxPeers: Int
    /// Identity bytes printed of a peer; a longer identity is cut and its length told.
    public static let identityLimit = 48
    /// The name of the shared budget of peers beyond `maxPeers`.
    public static let otherPeers = "other peers"

    private let clock: @Sendable () -> UInt64
    private struct Window: Sendable {
        var start: UInt64
        var logged: Int
        var suppressed: Int
    }
    private var windows: [[UInt8]: Window] = [:]
    /// The window of the peers beyond `maxPeers`.
    private var overflow: Window?

    /// What to do with one event.
    public struct Admission: Sendable, Equatable {
        /// Whether the event's own line is written.
        public var log: Bool
        /// Summaries of intervals that ended with suppressed events (this peer's previous one, or those of
        /// peers forgotten to make room), to write before the event's line.
        public var summaries: [String]
    }

    /// A limiter of `linesPerInterval` lines per peer and `interval`, counting `what`; `clock` gives monotonic
    /// nanoseconds for the calls without an explicit `now`.
    public init(
        what: String, linesPerInterval: Int = 10, interval: Duration = .seconds(10), maxPeers: Int = 1024,
        clock: @escaping @Sendable () -> UInt64 = { DispatchTime.now().uptimeNanoseconds }
    ) {
        self.what = what
        self.linesPerInterval = max(0, linesPerInterval)
        let (seconds, attoseconds) = interval.components
        intervalNanos = max(1, UInt64(max(0, seconds)) * 1_000_000_000 + UInt64(max(0, attoseconds)) / 1_000_000_000)
        self.maxPeers = max(1, maxPeers)
        self.clock = clock
    }

    /// Peers with a window open (at most `maxPeers`).
    public var trackedPeers: Int { windows.count }

    /// Counts one event about `peer` at `now`: whether to log its line, and a summary of the peer's interval that
    /// just ended with suppressed events.
    public mutating func admit(peer: [UInt8], now: UInt64) -> Admission {
        var summaries: [String] = []
        if windows[peer] == nil, windows.count >= maxPeers {
            // Windows that are over make room.
            summaries = expire(now: now)
        }
        if windows[peer] == nil, windows.count >= maxPeers {
            var window = overflow ?? Window(start: now, logged: 0, suppressed: 0)
            let log = count(&window, now: now, name: Self.otherPeers, summaries: &summaries)
            overflow = window
            return Admission(log: log, summaries: summaries)
        }
        var window = windows[peer] ?? Window(start: now, logged: 0, suppressed: 0)
        let log = count(&window, now: now, name: Self.name(of: peer), summaries: &summaries)
        windows[peer] = window
        return Admission(log: log, summaries: summaries)
    }

    /// `admit(peer:now:)` at the limiter's clock.
    public mutating func admit(peer: [UInt8]) -> Admission { admit(peer: peer, now: clock()) }

    /// The summaries of every interval that is over at `now` and suppressed events; forgets the peers whose
    /// interval is over. Call it now and then (each loop turn), so that a flood that stopped still gets its line.
    public mutating func flush(now: UInt64) -> [String] { expire(now: now) }

    /// `flush(now:)` at the limiter's clock.
    public mutating func flush() -> [String] { flush(now: clock()) }

    /// A peer's identity as logged: escaped (`LogText.escaped`), at most `identityLimit` bytes of it.
    public static func name(of peer: some Collection<UInt8>) -> String {
        guard peer.count > identityLimit else { return LogText.escaped(peer) }
        return LogText.escaped(peer.prefix(identityLimit)) + "...(\(peer.count) bytes)"
    }

    // MARK: Internals

    private func summary(_ name: String, _ window: Window) -> String {
        "peer \(name): \(window.suppressed) more \(what) suppressed in the last \(Self.seconds(intervalNanos))"
    }

    /// "10 s", "1.5 s", "250 ms".
    static func seconds(_ nanos: UInt64) -> String {
        if nanos % 1_000_000_000 == 0 { return "\(nanos / 1_000_000_000) s" }
        if nanos < 1_000_000_000 { return "\(nanos / 1_000_000) ms" }
        return "\(Double(nanos / 1_000_000) / 1000) s"
    }

    /// Counts an event in `window`, starting a new interval when the old one is over (its summary, if any, goes
    /// to `summaries`); whether the event's line is written.
    private func count(_ window: inout Window, now: UInt64, name: String, summaries: inout [String]) -> Bool {
        if now >= window.start, now - window.start >= intervalNanos {
            if window.suppressed > 0 { summaries.append(summary(name, window)) }
            window = Window(start: now, logged: 0, suppressed: 0)
        }
        if window.logged < linesPerInterval {
            window.logged += 1
            return true
        }
        window.suppressed += 1
        return false
    }

    /// Forgets the windows that are over at `now`; the summaries of those that suppressed events, sorted.
    private mutating func expire(now: UInt64) -> [String] {
        var lines: [String] = []
        for (peer, window) in windows where now >= window.start && now - window.start >= intervalNanos {
            if window.suppressed > 0 { lines.append(summary(Self.name(of: peer), window)) }
            windows[peer] = nil
        }
        if let window = overflow, now >= window.start, now - window.start >= intervalNanos {
            if window.suppressed > 0 { lines.append(summary(Self.otherPeers, window)) }
            overflow = nil
        }
        return lines.sorted()
    }
}
