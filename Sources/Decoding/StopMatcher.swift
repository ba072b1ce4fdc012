/// Finds stop strings in streamed text, holding back text that could still become one.
///
/// Text arrives piece by piece (one piece per token). `push` returns the text that is safe to show: text that
/// cannot be part of a stop string whatever comes next. When a stop string appears, the text before it is
/// released, the stop string and anything after it are dropped, and `stopped` becomes true. Text held back
/// is released by `finish()` when the generation ends for another reason.
///
/// Matching is on UTF-8 bytes. Because a valid UTF-8 stop string can only match at character-encoding
/// boundaries, the released pieces are always valid text. Empty stop strings are ignored.
public struct StopMatcher: Sendable, Equatable {
    private let stops: [[UInt8]]
    private var pending: [UInt8] = []
    /// True once a stop string was found; later pushes return nothing.
    public private(set) var stopped = false
    /// The stop string that ended the text, once `stopped`.
    public private(set) var matchedStop: String?

    /// Creates a matcher for some stop strings.
    public init(stops: [String]) {
        self.stops = stops.filter { !$0.isEmpty }.map { Array($0.utf8) }
    }

    /// The bytes currently held back.
    public var heldBack: String { String(decoding: pending, as: UTF8.self) }

    /// Adds a piece of text; returns the text now safe to release (possibly empty).
    public mutating func push(_ text: String) -> String {
        guard !stopped else { return "" }
        pending.append(contentsOf: text.utf8)
        // The earliest full match ends the text.
        var earliest: (start: Int, stop: Int)?
        for (s, stop) in stops.enumerated() {
            if let start = firstIndex(of: stop, in: pending), start < (earliest?.start ?? Int.max) {
                earliest = (start, s)
            }
        }
        if let earliest {
            stopped = true
            matchedStop = String(decoding: stops[earliest.stop], as: UTF8.self)
            let released = String(decoding: pending[..<earliest.start], as: UTF8.self)
            pending.removeAll()
            return released
        }
        // Hold back the longest suffix that is a proper prefix of some stop string.
        var hold = 0
        for stop in stops {
            var length = min(stop.count - 1, pending.count)
            while length > hold {
                if pending[(pending.count - length)...].elementsEqual(stop[..<length]) {
                    hold = length
                    break
                }
                length -= 1
            }
        }
        let cut = pending.count - hold
        let released = String(decoding: pending[..<cut], as: UTF8.self)
        pending.removeFirst(cut)
        return released
    }

    /// Releases the held-back text (the generation ended without a stop string).
    public mutating func finish() -> String {
        let released = String(decoding: pending, as: UTF8.self)
        pending.removeAll()
        return released
    }

    private func firstIndex(of needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard needle.count <= haystack.count else { return nil }
        for start in 0...(haystack.count - needle.count)
        where haystack[start] == needle[0] && haystack[start..<(start + needle.count)].elementsEqual(needle) {
            return start
        }
        return nil
    }
}

/// Turns tokens into text, one token at a time, for stop strings and streaming.
///
/// The shell supplies the tokenizer's streaming decoder; tests supply a table. `decode` returns the text the
/// token completes (empty while a multi-byte character is incomplete).
public protocol TokenTextDecoder: Sendable {
    /// The text completed by appending `token` to the text so far.
    mutating func decode(_ token: UInt32) -> String
}
