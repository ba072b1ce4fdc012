import Testing
@testable import Inference

/// Streaming decoding never emits half a character.
@Suite struct TokenizerStreamingTests {
    /// `<|im_end|>` is id 0; byte b is id b + 1.
    static let tokenizer: (any Tokenizer)? = try? makeTokenizer(byteLevelVocabulary(controls: ["<|im_end|>"]))

    static func byteIDs(_ text: String) -> [Int32] { text.utf8.map { Int32($0) + 1 } }

    @Test("an emoji split over four tokens comes out whole with the fourth")
    func emojiAcrossTokens() throws {
        let tokenizer = try #require(Self.tokenizer)
        var decoder = StreamingDecoder(tokenizer: tokenizer)
        let outputs = Self.byteIDs("a😀b").map { decoder.push($0) }
        #expect(outputs == ["a", "", "", "", "😀", "b"])
        #expect(decoder.finish() == "")
    }

    @Test("control tokens are rendered as their text, or skipped when asked")
    func controlTokens() throws {
        let tokenizer = try #require(Self.tokenizer)
        var shown = StreamingDecoder(tokenizer: tokenizer)
        var hidden = StreamingDecoder(tokenizer: tokenizer, skipControlTokens: true)
        #expect(shown.push(0) == "<|im_end|>")
        #expect(hidden.push(0) == "")
    }

    @Test("an unfinished character at the end is flushed as U+FFFD")
    func flushIncomplete() throws {
        let tokenizer = try #require(Self.tokenizer)
        var decoder = StreamingDecoder(tokenizer: tokenizer)
        let euro = Self.byteIDs("€")
        #expect(decoder.push(euro[0]) == "")
        #expect(decoder.push(euro[1]) == "")
        #expect(decoder.finish() == "\u{FFFD}")
        #expect(decoder.finish() == "")
    }

    @Test("a byte that can never start a character is emitted at once as U+FFFD")
    func malformedByte() throws {
        let tokenizer = try #require(Self.tokenizer)
        var decoder = StreamingDecoder(tokenizer: tokenizer)
        #expect(decoder.push(0xFF + 1) == "\u{FFFD}")
    }

    @Test("for any token sequence, streamed text equals decoding all ids at once")
    func matchesWholeDecode() throws {
        let tokenizer = try #require(Self.tokenizer)
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        for _ in 0 ..< 200 {
            var ids: [Int32] = []
            for _ in 0 ..< 24 {
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                // Favour the bytes of multi-byte characters so that partial sequences are common.
                let pick = Int(state >> 33) % 10
                let byte = pick < 3 ? Int(state >> 40) % 128 : 0x80 + Int(state >> 40) % 0x78
                ids.append(pick == 9 ? 0 : Int32(byte + 1))
            }
            var decoder = StreamingDecoder(tokenizer: tokenizer)
            let streamed = ids.map { decoder.push($0) }.joined() + decoder.finish()
            #expect(streamed == tokenizer.decode(ids))
        }
    }

    @Test("SentencePiece streaming drops the prefix space once, as whole decoding does")
    func sentencePieceLeadingSpace() throws {
        let vocabulary = TokenizerSentencePieceTests.vocabulary(addSpacePrefix: true)
        let tokenizer = try makeTokenizer(vocabulary)
        var decoder = StreamingDecoder(tokenizer: tokenizer, skipControlTokens: true)
        let ids = tokenizer.encode("hi hi", parseSpecial: false)
        #expect(ids.map { decoder.push($0) } == ["", "hi", " hi"])
    }
}
