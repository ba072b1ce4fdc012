import Testing
@testable import Inference

/// SentencePiece BPE on a hand-made vocabulary.
@Suite struct TokenizerSentencePieceTests {
    static let pieces: [(String, Float)] = [
        ("▁", -1), ("a", -2), ("b", -2), ("c", -2), ("h", -3), ("i", -3),
        ("ab", -3), ("bc", -1.5), ("aa", -1), ("▁a", -2.5), ("hi", -1), ("▁hi", -0.5), ("é", -2),
    ]

    /// `<unk>`, `<s>`, `</s>`, then (optionally) the 256 byte tokens, then `pieces`.
    static func vocabulary(byteFallback: Bool = true, addSpacePrefix: Bool = false) -> TokenizerVocabulary {
        var tokens = ["<unk>", "<s>", "</s>"]
        var types: [Int32] = [2, 3, 3]
        if byteFallback {
            for byte in 0 ..< 256 {
                tokens.append("<0x" + (byte < 16 ? "0" : "") + String(byte, radix: 16, uppercase: true) + ">")
                types.append(6)
            }
        }
        tokens += pieces.map(\.0)
        types += Array(repeating: 1, count: pieces.count)
        let scores = Array(repeating: Float(0), count: tokens.count - pieces.count) + pieces.map(\.1)
        return TokenizerVocabulary(model: "llama", tokens: tokens, tokenTypes: types, scores: scores,
                                   bosTokenID: 1, eosTokenID: 2, unknownTokenID: 0, addBOS: true,
                                   addSpacePrefix: addSpacePrefix)
    }

    static func ids(_ vocabulary: TokenizerVocabulary, _ texts: [String]) throws -> [Int32] {
        try texts.map { text in Int32(try #require(vocabulary.tokens.firstIndex(of: text))) }
    }

    @Test("the pair of highest score merges first")
    func highestScoreFirst() throws {
        let vocabulary = Self.vocabulary()
        let tokenizer = try makeTokenizer(vocabulary)
        #expect(tokenizer.encode("abc", parseSpecial: false) == [1] + (try Self.ids(vocabulary, ["a", "bc"])))
    }

    @Test("equal scores merge leftmost first")
    func leftmostOnTies() throws {
        let vocabulary = Self.vocabulary()
        let tokenizer = try makeTokenizer(vocabulary)
        #expect(tokenizer.encode("aaa", parseSpecial: false) == [1] + (try Self.ids(vocabulary, ["aa", "a"])))
    }

    @Test("spaces become ▁, a space prefix is added, and decoding removes it again")
    func spacePrefix() throws {
        let vocabulary = Self.vocabulary(addSpacePrefix: true)
        let tokenizer = try makeTokenizer(vocabulary)
        let ids = tokenizer.encode("hi hi", parseSpecial: false)
        #expect(ids == [1] + (try Self.ids(vocabulary, ["▁hi", "▁hi"])))
        #expect(tokenizer.decode(ids, skipControlTokens: true) == "hi hi")
    }

    @Test("characters outside the vocabulary fall back to their UTF-8 byte tokens and decode back")
    func byteFallback() throws {
        let vocabulary = Self.vocabulary()
        let tokenizer = try makeTokenizer(vocabulary)
        let ids = tokenizer.encode("aß😀", parseSpecial: false)
        let pieces = ["a", "<0xC3>", "<0x9F>", "<0xF0>", "<0x9F>", "<0x98>", "<0x80>"]
        #expect(ids == [1] + (try Self.ids(vocabulary, pieces)))
        #expect(tokenizer.decode(ids, skipControlTokens: true) == "aß😀")
        #expect(tokenizer.decode(ids) == "<s>aß😀")
    }

    @Test("text is matched by its exact scalars: a decomposed é is not the precomposed é token")
    func noCanonicalEquivalence() throws {
        let vocabulary = Self.vocabulary()
        let tokenizer = try makeTokenizer(vocabulary)
        #expect(tokenizer.encode("é", parseSpecial: false) == [1] + (try Self.ids(vocabulary, ["é"])))
        let decomposed = tokenizer.encode("e\u{301}", parseSpecial: false)
        let expected: [Int32] = [1, 3 + 0x65, 3 + 0xCC, 3 + 0x81]  // BOS, then byte tokens of e, U+0301
        #expect(decomposed == expected)
        #expect(Array(tokenizer.decode(decomposed, skipControlTokens: true).utf8) == Array("e\u{301}".utf8))
    }

    @Test("without byte tokens an unknown character becomes the unknown token")
    func unknownWithoutBytes() throws {
        let vocabulary = Self.vocabulary(byteFallback: false)
        let tokenizer = try makeTokenizer(vocabulary)
        #expect(tokenizer.encode("aß", parseSpecial: false) == [1] + (try Self.ids(vocabulary, ["a"])) + [0])
    }

    @Test("control tokens in the text are split out when parsed")
    func specialTokens() throws {
        let vocabulary = Self.vocabulary()
        let tokenizer = try makeTokenizer(vocabulary)
        #expect(tokenizer.encode("a</s>b", parseSpecial: true) == [1] + (try Self.ids(vocabulary, ["a", "</s>", "b"])))
        #expect(!tokenizer.encode("a</s>b", parseSpecial: false).contains(2))
    }

    @Test("scores must be one per token")
    func scoreCount() {
        var vocabulary = Self.vocabulary()
        vocabulary.scores.removeLast()
        #expect(throws: TokenizerError.scoreCountMismatch(tokens: vocabulary.tokens.count,
                                                           scores: vocabulary.tokens.count - 1)) {
            try makeTokenizer(vocabulary)
        }
    }
}
