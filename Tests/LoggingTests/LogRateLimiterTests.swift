import Synchronization
import Testing

@testable import Logging

/// A clock the test moves by hand.
final class ManualClock: Sendable {
    private let nanos = Mutex<UInt64>(1_000)

    func advance(seconds: Double) { nanos.withLock { $0 += UInt64(seconds * 1_000_000_000) } }

    var now: UInt64 { nanos.withLock { $0 } }
}

@Suite struct LogRateLimiterTests {
    static let second: UInt64 = 1_000_000_000
    let a: [UInt8] = Array("worker-a".utf8)
    let b: [UInt8] = Array("worker-b".utf8)

    @Test("a peer's first N events per interval are logged, the rest counted into one summary at the interval's end")
    func firstLinesThenSummary() {
        let clock = ManualClock()
        var limiter = LogRateLimiter(what: "malformed frames", linesPerInterval: 3, interval: .seconds(10)) { clock.now }
        var logged = 0
        for _ in 0..<526 {
            let admission = limiter.admit(peer: a)
            #expect(admission.summaries.isEmpty)
            if admission.log { logged += 1 }
        }
        #expect(logged == 3)
        clock.advance(seconds: 9.9)
        #expect(limiter.flush().isEmpty, "the interval is not over")
        clock.advance(seconds: 0.1)
        #expect(limiter.flush() == ["peer worker-a: 523 more malformed frames suppressed in the last 10 s"])
        #expect(limiter.trackedPeers == 0, "a peer whose interval is over is forgotten")
        #expect(limiter.flush().isEmpty, "each interval is summarized once")
    }

    @Test("under a steady flood each interval logs N lines and one summary of the interval before")
    func steadyFlood() {
        var limiter = LogRateLimiter(what: "malformed frames", linesPerInterval: 2, interval: .seconds(1))
        var lines: [String] = []
        // 100 events a second for 5 seconds, at times 0, 10 ms, 20 ms, …
        for i in 0..<500 {
            let now = UInt64(i) * Self.second / 100
            let admission = limiter.admit(peer: a, now: now)
            lines += admission.summaries
            if admission.log { lines.append("event \(i)") }
        }
        lines += limiter.flush(now: 6 * Self.second)
        let summaries = lines.filter { $0.hasPrefix("peer ") }
        #expect(lines.count - summaries.count == 10, "2 events in each of 5 intervals")
        #expect(summaries == Array(repeating: "peer worker-a: 98 more malformed frames suppressed in the last 1 s", count: 5))
        #expect(Array(lines.prefix(3)) == ["event 0", "event 1", "peer worker-a: 98 more malformed frames suppressed in the last 1 s"])
    }

    @Test("peers have separate budgets: one peer's flood does not silence another")
    func perPeer() {
        var limiter = LogRateLimiter(what: "malformed frames", linesPerInterval: 1, interval: .seconds(10))
        #expect(limiter.admit(peer: a, now: 0).log)
        #expect(!limiter.admit(peer: a, now: 1).log)
        #expect(!limiter.admit(peer: a, now: 2).log)
        #expect(limiter.admit(peer: b, now: 3).log)
        #expect(limiter.flush(now: 10 * Self.second + 2) == [
            "peer worker-a: 2 more malformed frames suppressed in the last 10 s"
        ])
        // b's interval started later and is not over yet; it suppressed nothing, so it ends silently.
        #expect(limiter.trackedPeers == 1)
        #expect(limiter.flush(now: 10 * Self.second + 3).isEmpty)
        #expect(limiter.trackedPeers == 0)
    }

    @Test("a peer that keeps quiet through an interval starts afresh with its full budget and no summary")
    func quietPeerStartsAfresh() {
        var limiter = LogRateLimiter(what: "x", linesPerInterval: 2, interval: .seconds(1))
        #expect(limiter.admit(peer: a, now: 0).log)
        #expect(limiter.admit(peer: a, now: 1).log)
        let later = limiter.admit(peer: a, now: 3 * Self.second)
        #expect(later == LogRateLimiter.Admission(log: true, summaries: []))
    }

    @Test("identities are printed escaped and capped: no line breaks, control bytes or megabyte names in the log")
    func hostileIdentities() {
        var limiter = LogRateLimiter(what: "malformed frames", linesPerInterval: 0, interval: .seconds(1))
        let nasty: [UInt8] = [0x00, 0x6B, 0x0A, 0x1B] + Array("[31mINFO [coordinator] fake\\".utf8)
        _ = limiter.admit(peer: nasty, now: 0)
        let line = limiter.flush(now: Self.second).first ?? ""
        #expect(line == #"peer \x00k\x0a\x1b[31mINFO [coordinator] fake\x5c: 1 more malformed frames suppressed in the last 1 s"#)
        #expect(line.unicodeScalars.allSatisfy { $0.value >= 0x20 && $0.value < 0x7F })

        let long = [UInt8](repeating: 0xFF, count: 255)
        let name = LogRateLimiter.name(of: long)
        #expect(name == String(repeating: #"\xff"#, count: LogRateLimiter.identityLimit) + "...(255 bytes)")
        #expect(LogRateLimiter.name(of: Array("concise-1".utf8)) == "concise-1")
    }

    @Test("past maxPeers, new peers share one budget, so a flood from many identities stays bounded in lines and memory")
    func manyPeers() {
        var limiter = LogRateLimiter(what: "malformed frames", linesPerInterval: 1, interval: .seconds(10), maxPeers: 4)
        var logged = 0
        for i in 0..<10_000 {
            let peer = withUnsafeBytes(of: UInt32(i).bigEndian) { Array($0) }
            if limiter.admit(peer: peer, now: UInt64(i)).log { logged += 1 }
        }
        #expect(limiter.trackedPeers == 4)
        #expect(logged == 5, "one line each for the 4 tracked peers and one for all the others")
        let summaries = limiter.flush(now: 20 * Self.second)
        #expect(summaries == ["peer other peers: 9995 more malformed frames suppressed in the last 10 s"])
        #expect(limiter.trackedPeers == 0)
    }

    @Test("a full table makes room from intervals that are over, and their summaries come with the admission")
    func roomFromExpiredWindows() {
        var limiter = LogRateLimiter(what: "f", linesPerInterval: 0, interval: .seconds(1), maxPeers: 1)
        #expect(!limiter.admit(peer: a, now: 0).log)
        let admission = limiter.admit(peer: b, now: 2 * Self.second)
        #expect(admission.summaries == ["peer worker-a: 1 more f suppressed in the last 1 s"])
        #expect(limiter.trackedPeers == 1)
    }

    @Test("interval lengths read naturally in the summary", arguments: [
        (UInt64(10_000_000_000), "10 s"), (1_500_000_000, "1.5 s"), (250_000_000, "250 ms"),
    ])
    func intervalText(nanos: UInt64, text: String) {
        #expect(LogRateLimiter.seconds(nanos) == text)
    }
}
