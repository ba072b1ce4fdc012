import Testing
@testable import Inference

/// Byte-level BPE on the tiny test model's 448-token vocabulary against the `tokenizers` package; needs no model file.
@Suite struct TokenizerTinyVocabularyTests {
    static let fixture: TinyVocabularyFixture? = try? TokenizerFixtures.decode(
        TinyVocabularyFixture.self, "tokenizer-tiny.json")

    @Test("every reference string encodes to exactly the reference ids and decodes back byte for byte")
    func matchesReference() throws {
        let fixture = try #require(Self.fixture)
        let tokenizer = try makeTokenizer(fixture.vocabulary)
        #expect(fixture.cases.count > 200)
        for item in fixture.cases {
            let ids = tokenizer.encode(item.text, parseSpecial: true)
            #expect(ids == item.ids, "parseSpecial: true, text: \(item.text.debugDescription)")
            #expect(tokenizer.encode(item.text, parseSpecial: false) == item.idsNoSpecial,
                    "parseSpecial: false, text: \(item.text.debugDescription)")
            #expect(Array(tokenizer.decode(ids).utf8) == Array(item.text.utf8))
        }
    }

    @Test("streaming every reference string gives the text back without a broken character")
    func streams() throws {
        let fixture = try #require(Self.fixture)
        let tokenizer = try makeTokenizer(fixture.vocabulary)
        for item in fixture.cases {
            var decoder = StreamingDecoder(tokenizer: tokenizer)
            var text = ""
            for id in tokenizer.encode(item.text, parseSpecial: true) {
                let piece = decoder.push(id)
                #expect(!piece.unicodeScalars.contains("\u{FFFD}") || item.text.unicodeScalars.contains("\u{FFFD}"))
                text += piece
            }
            text += decoder.finish()
            #expect(Array(text.utf8) == Array(item.text.utf8))
        }
    }
}
