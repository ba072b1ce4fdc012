import Testing
@testable import Inference

/// The byte-level BPE tokenizer against the reference ids of the `tokenizers` package, on the real SmolLM2 vocabulary.
@Suite(.enabled(if: TokenizerFixtures.modelPath != nil, "needs the SmolLM2 model file (models/ or MOPE_MODEL)"))
struct TokenizerSmolLM2Tests {
    static func tokenizer() throws -> any Tokenizer {
        let vocabulary = try #require(TokenizerFixtures.smolVocabulary).get()
        return try makeTokenizer(vocabulary)
    }

    @Test("every reference string encodes to exactly the reference ids, with and without special tokens")
    func matchesReference() throws {
        let tokenizer = try Self.tokenizer()
        let fixture = try TokenizerFixtures.decode(EncodeFixture.self, "tokenizer-smollm2.json")
        #expect(fixture.cases.count > 200)
        var mismatches = 0
        for item in fixture.cases {
            let ids = tokenizer.encode(item.text, parseSpecial: true)
            let plain = tokenizer.encode(item.text, parseSpecial: false)
            #expect(ids == item.ids, "parseSpecial: true, text: \(item.text.debugDescription)")
            #expect(plain == item.idsNoSpecial, "parseSpecial: false, text: \(item.text.debugDescription)")
            if ids != item.ids || plain != item.idsNoSpecial { mismatches += 1 }
        }
        #expect(mismatches == 0)
    }

    /// The reference strings whose every byte has a token (SmolLM2 lacks a few control bytes, such as 0x1D,
    /// and drops them, as the reference does, so those cannot come back).
    static func representableCases() throws -> [EncodeFixture.Case] {
        let vocabulary = try #require(TokenizerFixtures.smolVocabulary).get()
        let known = Set(vocabulary.tokens)
        let missing = Set((0 ..< 256).filter { !known.contains(String(ByteLevel.scalarOfByte[$0])) }.map(UInt8.init))
        #expect(missing.contains(0x1D))
        return try TokenizerFixtures.decode(EncodeFixture.self, "tokenizer-smollm2.json").cases
            .filter { !$0.text.utf8.contains(where: missing.contains) }
    }

    @Test("decoding the ids of any reference string gives the string back")
    func roundTrips() throws {
        let tokenizer = try Self.tokenizer()
        for item in try Self.representableCases() {
            // Compared as bytes: String equality would accept a canonically equivalent (renormalised) text.
            let text = Array(item.text.utf8)
            #expect(Array(tokenizer.decode(tokenizer.encode(item.text, parseSpecial: true)).utf8) == text)
            #expect(Array(tokenizer.decode(tokenizer.encode(item.text, parseSpecial: false)).utf8) == text)
        }
    }

    @Test("streaming the reference strings token by token gives the same text and never a broken character")
    func streamsWholeCharacters() throws {
        let tokenizer = try Self.tokenizer()
        for item in try Self.representableCases() {
            var decoder = StreamingDecoder(tokenizer: tokenizer)
            var text = ""
            for id in tokenizer.encode(item.text, parseSpecial: true) {
                let piece = decoder.push(id)
                #expect(!piece.unicodeScalars.contains("\u{FFFD}"), "text: \(item.text.debugDescription)")
                text += piece
            }
            text += decoder.finish()
            #expect(Array(text.utf8) == Array(item.text.utf8))
        }
    }

    @Test("the SmolLM2 metadata gives its special ids: BOS 1, end of generation at <|endoftext|> and <|im_end|>")
    func specialIDs() throws {
        let tokenizer = try Self.tokenizer()
        #expect(tokenizer.vocabSize == 49152)
        #expect(tokenizer.bosTokenID == 1)
        #expect(!tokenizer.addsBOS)
        #expect(tokenizer.eosTokenIDs == [0, 2])
        #expect(tokenizer.isEndOfGeneration(2))
        #expect(tokenizer.tokenKind(1) == .control)
        #expect(tokenizer.decode([1, 2], skipControlTokens: true) == "")
        #expect(tokenizer.decode([1, 2]) == "<|im_start|><|im_end|>")
    }

    @Test("the rendered SmolLM2 chat prompt tokenizes with its markers as single control tokens")
    func chatPromptTokens() throws {
        let vocabulary = try #require(TokenizerFixtures.smolVocabulary).get()
        let tokenizer = try makeTokenizer(vocabulary)
        let template = try ChatTemplate(vocabulary: vocabulary)
        let prompt = try template.render([ChatMessage(role: "user", content: "Hi")], addGenerationPrompt: true)
        let ids = tokenizer.encode(prompt, parseSpecial: true)
        #expect(ids.first == 1)
        #expect(ids.filter { $0 == 1 }.count == 3)
        #expect(ids.filter { $0 == 2 }.count == 2)
        #expect(tokenizer.decode(ids) == prompt)
    }

    @Test("ids outside the vocabulary decode to U+FFFD instead of trapping")
    func outOfRangeIDs() throws {
        let tokenizer = try Self.tokenizer()
        #expect(tokenizer.decode([-1, 49152, Int32.max]) == "\u{FFFD}\u{FFFD}\u{FFFD}")
        #expect(tokenizer.tokenKind(-5) == .unknown)
    }
}
