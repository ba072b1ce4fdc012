/// A point in time, in nanoseconds of a monotonic clock that the shell reads; pure code never reads a clock.
import Decoding
public struct Deadline: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// Nanoseconds since an arbitrary origin (the shell's monotonic clock).
    public var nanoseconds: UInt64

    /// Creates a deadline at `nanoseconds`.
    public init(nanoseconds: UInt64) { self.nanoseconds = nanoseconds }

    /// The instant `milliseconds` after `now` (saturating).
    public static func after(milliseconds: UInt32, from now: UInt64) -> Deadline {
        let (sum, overflow) = now.addingReportingOverflow(UInt64(milliseconds) &* 1_000_000)
        return Deadline(nanoseconds: overflow ? .max : sum)
    }

    /// True when `now` is at or past the deadline.
    public func hasPassed(now: UInt64) -> Bool { now >= nanoseconds }

    /// Earlier first.
    public static func < (lhs: Deadline, rhs: Deadline) -> Bool { lhs.nanoseconds < rhs.nanoseconds }

    /// The instant in nanoseconds.
    public var description: String { "\(nanoseconds)ns" }
}
