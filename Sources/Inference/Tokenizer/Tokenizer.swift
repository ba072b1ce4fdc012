/// What a token is, from `tokenizer.ggml.token_type`.
public enum TokenKind: Int32, Sendable, Equatable {
    /// Ordinary text.
    case normal = 1
    /// The unknown-token stand-in.
    case unknown = 2
    /// A control token (`<|im_start|>`, BOS, EOS …): matched in text only when special tokens are parsed.
    case control = 3
    /// A user-defined token: always matched in text, decoded as its literal text.
    case userDefined = 4
    /// A reserved token the model never uses.
    case unused = 5
    /// A SentencePiece byte-fallback token `<0xNN>`.
    case byte = 6
}

/// Turns text into token ids and back, as a model's vocabulary defines it.
///
/// Build one with ``makeTokenizer(_:)``. Every method accepts any id: ids outside the vocabulary decode to
/// U+FFFD and never trap, since ids may arrive from other processes.
public protocol Tokenizer: Sendable {
    /// The number of tokens in the vocabulary; valid ids are `0 ..< vocabSize`.
    var vocabSize: Int { get }
    /// The beginning-of-sequence token, if the vocabulary has one.
    var bosTokenID: Int32? { get }
    /// Whether ``encode(_:)`` puts ``bosTokenID`` first (`tokenizer.ggml.add_bos_token`).
    var addsBOS: Bool { get }
    /// Ids that end a generation, ascending: the vocabulary's EOS id plus every control token whose text is
    /// `<|im_end|>`, `<|endoftext|>` or `<|eot_id|>` (ChatML models end a turn with `<|im_end|>` although their
    /// EOS id may be another token).
    var eosTokenIDs: [Int32] { get }

    /// The ids of `prompt`, with BOS first when ``addsBOS``.
    ///
    /// Control tokens such as `<|im_start|>` are matched only inside ``PromptSegment/markup(_:)`` segments;
    /// in ``PromptSegment/text(_:)`` segments (message content, anything a user wrote) their spelling is
    /// tokenized as ordinary characters. User-defined tokens are matched everywhere.
    func encode(_ prompt: [PromptSegment]) -> [Int32]
    /// The text of `ids`; control tokens are rendered as their text unless `skipControlTokens`.
    /// Invalid UTF-8 (a multi-byte character cut off) becomes U+FFFD.
    func decode(_ ids: [Int32], skipControlTokens: Bool) -> String
    /// The raw bytes token `id` stands for (control tokens: their text; out of range: U+FFFD).
    func tokenBytes(_ id: Int32) -> [UInt8]
    /// The kind of token `id` (`.unknown` for ids outside the vocabulary).
    func tokenKind(_ id: Int32) -> TokenKind
}

extension Tokenizer {
    /// The ids of `text` as one segment: markup (control tokens recognised) when `parseSpecial`, else plain text.
    /// Only for text that is wholly one or the other; a prompt built from a template goes through
    /// ``encode(_:)`` with the template's segments.
    public func encode(_ text: String, parseSpecial: Bool) -> [Int32] {
        encode([parseSpecial ? .markup(text) : .text(text)])
    }

    /// The text of `ids` with control tokens rendered as their text.
    public func decode(_ ids: [Int32]) -> String {
        decode(ids, skipControlTokens: false)
    }

    /// Whether generating `id` ends the answer.
    public func isEndOfGeneration(_ id: Int32) -> Bool {
        eosTokenIDs.contains(id)
    }

    /// Concatenates the bytes of every token, then decodes them as UTF-8 once.
    func decodeBytes(_ ids: [Int32], skipControlTokens: Bool) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(ids.count * 4)
        for id in ids {
            if skipControlTokens && tokenKind(id) == .control { continue }
            bytes.append(contentsOf: tokenBytes(id))
        }
        return bytes
    }
}

/// Builds the tokenizer a vocabulary describes: byte-level BPE for `model == "gpt2"`, SentencePiece for
/// `model == "llama"`.
///
/// - Throws: ``TokenizerError`` when the model or pre-tokenizer is unsupported or the vocabulary is inconsistent
///   (type or score counts, merges naming missing tokens, special ids out of range).
public func makeTokenizer(_ vocabulary: TokenizerVocabulary) throws(TokenizerError) -> any Tokenizer {
    switch vocabulary.model {
    case "gpt2":
        return try BytePairTokenizer(vocabulary)
    case "llama":
        return try SentencePieceTokenizer(vocabulary)
    default:
        throw .unsupportedModel(vocabulary.model)
    }
}

// MARK: - Shared vocabulary checks

/// The parts both tokenizer families derive from a vocabulary in the same way.
struct VocabularyTables: Sendable {
    let tokens: [String]
    let kinds: [TokenKind]
    /// UTF-8 of a token's text → id; the first id wins when two tokens share a text. Keyed by bytes because
    /// `String` equality is canonical equivalence, which would confuse "é" with "e\u{301}".
    let idOfBytes: [[UInt8]: Int32]
    let bosTokenID: Int32?
    let unknownTokenID: Int32?
    let eosTokenIDs: [Int32]
    let specials: SpecialTokenMatcher

    /// The token texts that end a turn in the chat formats mope knows, besides the EOS id.
    static let endOfTurnTexts: Set<String> = ["<|im_end|>", "<|endoftext|>", "<|eot_id|>"]

    init(_ vocabulary: TokenizerVocabulary) throws(TokenizerError) {
        let count = vocabulary.tokens.count
        guard count > 0 else { throw .emptyVocabulary }
        guard vocabulary.tokenTypes.isEmpty || vocabulary.tokenTypes.count == count else {
            throw .tokenTypeCountMismatch(tokens: count, types: vocabulary.tokenTypes.count)
        }
        func checked(_ id: Int32?, _ name: String) throws(TokenizerError) -> Int32? {
            guard let id else { return nil }
            guard id >= 0 && Int(id) < count else {
                throw .specialTokenOutOfRange(name: name, id: id, vocabularySize: count)
            }
            return id
        }
        bosTokenID = try checked(vocabulary.bosTokenID, "bos")
        unknownTokenID = try checked(vocabulary.unknownTokenID, "unknown")
        let eos = try checked(vocabulary.eosTokenID, "eos")

        tokens = vocabulary.tokens
        kinds = vocabulary.tokenTypes.isEmpty
            ? Array(repeating: .normal, count: count)
            : vocabulary.tokenTypes.map { TokenKind(rawValue: $0) ?? .normal }
        var idOfBytes: [[UInt8]: Int32] = [:]
        idOfBytes.reserveCapacity(count)
        for (id, text) in vocabulary.tokens.enumerated() {
            let key = Array(text.utf8)
            if idOfBytes[key] == nil { idOfBytes[key] = Int32(id) }
        }
        self.idOfBytes = idOfBytes

        var ends: Set<Int32> = []
        if let eos { ends.insert(eos) }
        for text in Self.endOfTurnTexts {
            if let id = idOfBytes[Array(text.utf8)], kinds[Int(id)] == .control { ends.insert(id) }
        }
        eosTokenIDs = ends.sorted()

        var special: [(text: String, id: Int32, always: Bool)] = []
        for (id, kind) in kinds.enumerated() where kind == .control || kind == .userDefined {
            let text = vocabulary.tokens[id]
            if text.isEmpty { continue }
            special.append((text, Int32(id), kind == .userDefined))
        }
        specials = SpecialTokenMatcher(special)
    }

    /// The id of the token whose text is exactly `text` (byte for byte).
    func id(of text: String) -> Int32? {
        idOfBytes[Array(text.utf8)]
    }

    func kind(_ id: Int32) -> TokenKind {
        id >= 0 && Int(id) < kinds.count ? kinds[Int(id)] : .unknown
    }

    func isValid(_ id: Int32) -> Bool {
        id >= 0 && Int(id) < tokens.count
    }

    /// The UTF-8 of U+FFFD, what an id outside the vocabulary decodes to.
    static let replacementBytes: [UInt8] = [0xEF, 0xBF, 0xBD]
}
