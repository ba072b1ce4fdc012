import Testing
@testable import Inference

/// Byte-level BPE on small hand-made vocabularies.
@Suite struct TokenizerBytePairTests {
    /// Bytes plus "he", "ll", "hell", "hello", "Ġw", "Ġwo" with merges in that priority.
    static func helloVocabulary(controls: [String] = ["<|endoftext|>", "<|im_end|>"]) -> TokenizerVocabulary {
        byteLevelVocabulary(
            extra: ["he", "ll", "hell", "hello", "Ġw", "Ġwo"],
            merges: ["h e", "l l", "he ll", "hell o", "Ġ w", "Ġw o"],
            controls: controls)
    }

    func id(_ vocabulary: TokenizerVocabulary, _ text: String) throws -> Int32 {
        Int32(try #require(vocabulary.tokens.firstIndex(of: text)))
    }

    @Test("merges apply in rank order within each piece")
    func mergesByRank() throws {
        let vocabulary = Self.helloVocabulary()
        let tokenizer = try makeTokenizer(vocabulary)
        let ids = tokenizer.encode("hello world", parseSpecial: false)
        let expected = try ["hello", "Ġwo", "r", "l", "d"].map { try id(vocabulary, $0) }
        #expect(ids == expected)
        #expect(tokenizer.decode(ids) == "hello world")
    }

    @Test("the lower-ranked of two overlapping merges wins, whatever its position")
    func overlappingMerges() throws {
        // "b c" outranks "a b": "abc" must become a + bc, not ab + c.
        let vocabulary = byteLevelVocabulary(extra: ["bc", "ab"], merges: ["b c", "a b"])
        let tokenizer = try makeTokenizer(vocabulary)
        #expect(tokenizer.encode("abc", parseSpecial: false) == [try id(vocabulary, "a"), try id(vocabulary, "bc")])
        #expect(tokenizer.encode("aab", parseSpecial: false) == [try id(vocabulary, "a"), try id(vocabulary, "ab")])
    }

    @Test("control tokens are matched only when special tokens are parsed")
    func controlTokens() throws {
        let vocabulary = Self.helloVocabulary()
        let tokenizer = try makeTokenizer(vocabulary)
        #expect(tokenizer.encode("hello<|im_end|>", parseSpecial: true) == [try id(vocabulary, "hello"), 1])
        let plain = tokenizer.encode("hello<|im_end|>", parseSpecial: false)
        #expect(!plain.contains(1))
        #expect(tokenizer.decode(plain) == "hello<|im_end|>")
    }

    @Test("user-defined tokens are matched even when special tokens are not parsed")
    func userDefinedTokens() throws {
        var vocabulary = Self.helloVocabulary()
        vocabulary.tokens.append("<tool>")
        vocabulary.tokenTypes.append(4)
        let tokenizer = try makeTokenizer(vocabulary)
        let toolID = Int32(vocabulary.tokens.count - 1)
        #expect(tokenizer.encode("<tool>hello", parseSpecial: false) == [toolID, try id(vocabulary, "hello")])
        #expect(tokenizer.decode([toolID]) == "<tool>")
    }

    @Test("BOS is put first only when the vocabulary asks for it")
    func bos() throws {
        var vocabulary = Self.helloVocabulary()
        vocabulary.bosTokenID = 0
        #expect(try makeTokenizer(vocabulary).encode("he", parseSpecial: false).first != 0)
        vocabulary.addBOS = true
        let tokenizer = try makeTokenizer(vocabulary)
        #expect(tokenizer.addsBOS)
        #expect(tokenizer.encode("he", parseSpecial: false) == [0, try id(vocabulary, "he")])
    }

    @Test("end of generation is the EOS id plus the end-of-turn control tokens")
    func endOfGeneration() throws {
        var vocabulary = Self.helloVocabulary(controls: ["<s>", "</s>", "<|im_end|>", "<|eot_id|>"])
        vocabulary.eosTokenID = 1
        let tokenizer = try makeTokenizer(vocabulary)
        #expect(tokenizer.eosTokenIDs == [1, 2, 3])
        #expect(!tokenizer.isEndOfGeneration(0))
    }

    @Test("an empty string encodes to no ids and no ids decode to an empty string")
    func empty() throws {
        let tokenizer = try makeTokenizer(Self.helloVocabulary())
        #expect(tokenizer.encode("", parseSpecial: true).isEmpty)
        #expect(tokenizer.decode([]) == "")
    }

    @Test("long runs are tokenized without trouble and decode back")
    func longInput() throws {
        let tokenizer = try makeTokenizer(Self.helloVocabulary())
        let text = String(repeating: " ", count: 20_000) + String(repeating: "hello", count: 4_000)
        #expect(tokenizer.decode(tokenizer.encode(text, parseSpecial: false)) == text)
    }

    @Test("the byte mapping is a bijection onto 256 printable scalars, space written as Ġ")
    func byteMapping() {
        #expect(Set(ByteLevel.scalarOfByte).count == 256)
        #expect(ByteLevel.scalarOfByte[0x20] == "Ġ")
        #expect(ByteLevel.scalarOfByte[0x0A] == "Ċ")
        for byte in 0 ..< 256 {
            #expect(ByteLevel.byte(of: ByteLevel.scalarOfByte[byte]) == UInt8(byte))
        }
        #expect(ByteLevel.byte(of: " ") == nil)
    }
}

/// What a vocabulary that cannot be used is told.
@Suite struct TokenizerErrorTests {
    @Test("an unknown tokenizer model is refused by name")
    func unsupportedModel() {
        let vocabulary = TokenizerVocabulary(model: "wordpiece", tokens: ["a"])
        #expect(throws: TokenizerError.unsupportedModel("wordpiece")) { try makeTokenizer(vocabulary) }
    }

    @Test("an unknown pre-tokenizer is refused by name")
    func unsupportedPre() {
        let vocabulary = byteLevelVocabulary(pre: "mystery")
        #expect(throws: TokenizerError.unsupportedPreTokenizer("mystery")) { try makeTokenizer(vocabulary) }
    }

    @Test("token types must be one per token")
    func typeCount() {
        var vocabulary = byteLevelVocabulary()
        vocabulary.tokenTypes.removeLast()
        #expect(throws: TokenizerError.tokenTypeCountMismatch(tokens: 256, types: 255)) {
            try makeTokenizer(vocabulary)
        }
    }

    @Test("a merge line without a separating space is refused with its index")
    func badMerge() {
        let vocabulary = byteLevelVocabulary(extra: ["ab"], merges: ["a b", "ab"])
        #expect(throws: TokenizerError.badMerge(index: 1, line: "ab")) { try makeTokenizer(vocabulary) }
    }

    @Test("a merge whose result is not a token is refused")
    func mergeTokenMissing() {
        let vocabulary = byteLevelVocabulary(merges: ["a b"])
        #expect(throws: TokenizerError.mergeTokenMissing(index: 0, token: "ab")) { try makeTokenizer(vocabulary) }
    }

    @Test("bytes the vocabulary has no token for are dropped, as the reference tokenizers do")
    func missingByte() throws {
        let tokenizer = try makeTokenizer(TokenizerVocabulary(model: "gpt2", tokens: ["a", "b"], unknownTokenID: 0))
        #expect(tokenizer.encode("a\u{1D}b!", parseSpecial: false) == [0, 1])
    }

    @Test("special token ids outside the vocabulary are refused")
    func specialOutOfRange() {
        var vocabulary = byteLevelVocabulary()
        vocabulary.eosTokenID = 300
        #expect(throws: TokenizerError.specialTokenOutOfRange(name: "eos", id: 300, vocabularySize: 256)) {
            try makeTokenizer(vocabulary)
        }
    }

    @Test("an empty vocabulary is refused")
    func empty() {
        let vocabulary = TokenizerVocabulary(model: "gpt2", tokens: [])
        #expect(throws: TokenizerError.emptyVocabulary) { try makeTokenizer(vocabulary) }
    }

    @Test("every error explains itself in words")
    func descriptions() {
        #expect(TokenizerError.unsupportedModel("x").description.contains("\"x\""))
        #expect(TokenizerError.missingChatTemplate.description.contains("chat template"))
    }
}
