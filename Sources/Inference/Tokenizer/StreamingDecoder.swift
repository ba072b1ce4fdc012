/// Turns generated token ids into text one token at a time, never splitting a UTF-8 character.
///
/// A character may span several byte-level tokens (an emoji is often two or three); the bytes of an unfinished
/// character are held back until the token that completes it arrives. Concatenating every ``push(_:)`` result
/// and ``finish()`` gives the same text as decoding all ids at once.
public struct StreamingDecoder: Sendable {
    private let tokenizer: any Tokenizer
    private let skipControlTokens: Bool
    private var pending: [UInt8] = []
    /// SentencePiece drops the space it put before the text, once, at the first content token.
    private var dropLeadingSpace: Bool

    /// A decoder for `tokenizer`'s ids; control tokens (such as `<|im_end|>`) are rendered as their text unless
    /// `skipControlTokens`.
    public init(tokenizer: any Tokenizer, skipControlTokens: Bool = false) {
        self.tokenizer = tokenizer
        self.skipControlTokens = skipControlTokens
        dropLeadingSpace = (tokenizer as? SentencePieceTokenizer)?.addSpacePrefix ?? false
    }

    /// Takes one token and returns the text completed by it (possibly empty).
    public mutating func push(_ id: Int32) -> String {
        let kind = tokenizer.tokenKind(id)
        if kind == .control && skipControlTokens { return "" }
        var bytes = tokenizer.tokenBytes(id)
        if kind != .control && dropLeadingSpace {
            if bytes.first == 0x20 { bytes.removeFirst() }
            dropLeadingSpace = false
        }
        pending.append(contentsOf: bytes)
        let complete = Self.completePrefixLength(pending)
        guard complete > 0 else { return "" }
        let text = String(decoding: pending[..<complete], as: UTF8.self)
        pending.removeFirst(complete)
        return text
    }

    /// Returns whatever is still held back (an unfinished character becomes U+FFFD) and empties the decoder.
    public mutating func finish() -> String {
        defer { pending.removeAll() }
        return pending.isEmpty ? "" : String(decoding: pending, as: UTF8.self)
    }

    /// The length of `bytes` without a trailing UTF-8 sequence that is started but not yet complete.
    /// Malformed bytes count as complete: they will never become valid, so they are emitted (as U+FFFD).
    static func completePrefixLength(_ bytes: [UInt8]) -> Int {
        let count = bytes.count
        // A character is at most 4 bytes: look back at most 3 bytes for the lead byte of the last one.
        var back = 1
        while back <= min(3, count) {
            let byte = bytes[count - back]
            if byte & 0xC0 != 0x80 {
                let needed: Int
                switch byte {
                case 0xC2 ... 0xDF: needed = 2
                case 0xE0 ... 0xEF: needed = 3
                case 0xF0 ... 0xF4: needed = 4
                default: needed = 1  // ASCII or a byte that never starts a valid sequence
                }
                return needed > back ? count - back : count
            }
            back += 1
        }
        return count
    }
}
