import TestKit
import Testing
@testable import Inference

/// Inputs the GGUF fuzzer (Scripts/fuzz-gguf.sh) found, each reduced to what made it fail and now refused with a
/// typed error.
@Suite struct GGUFFuzzRegressionTests {
    /// The tiny model's vocabulary with one token's type changed.
    static func tinyVocabulary(retyping id: Int, to type: Int32) throws -> TokenizerVocabulary {
        var vocabulary = try TokenizerVocabulary(gguf: GGUFFile(path: Fixtures.path("tiny-q4_0.gguf")))
        vocabulary.tokenTypes[id] = type
        return vocabulary
    }

    @Test("a byte token typed as a control token is refused: plain text would encode to a control token")
    func byteTokenTypedControl() throws {
        // Found as tiny-q4_0.gguf with token 102 ("¦", the byte 0xA6) retyped to 3: text holding that byte
        // encoded to a control token.
        let vocabulary = try Self.tinyVocabulary(retyping: 102, to: 3)
        #expect(throws: TokenizerError.textEncodesToControlToken(id: 102, text: "¦")) {
            _ = try makeTokenizer(vocabulary)
        }
    }

    @Test("a merge whose result is a control token is refused")
    func mergeResultTypedControl() throws {
        var vocabulary = byteLevelVocabulary(extra: ["ab"], merges: ["a b"])
        let id = vocabulary.tokens.count - 1
        vocabulary.tokenTypes[id] = 3
        #expect(throws: TokenizerError.textEncodesToControlToken(id: Int32(id), text: "ab")) {
            _ = try makeTokenizer(vocabulary)
        }
    }

    @Test("a Llama 3 piece spelling a control token's text is not taken whole as that token")
    func llama3WholePieceIsNotControl() throws {
        var vocabulary = byteLevelVocabulary(extra: ["hello"], pre: "llama3")
        let id = Int32(vocabulary.tokens.count - 1)
        vocabulary.tokenTypes[Int(id)] = 3
        let tokenizer = try makeTokenizer(vocabulary)
        #expect(!tokenizer.encode("hello", parseSpecial: false).contains(id))
        #expect(tokenizer.encode("hello", parseSpecial: true) == [id])
    }

    @Test("a SentencePiece vocabulary whose unknown token is a control token is refused")
    func sentencePieceUnknownControl() throws {
        let vocabulary = TokenizerVocabulary(model: "llama", tokens: ["<s>", "a"], tokenTypes: [3, 1],
                                             scores: [0, 0], unknownTokenID: 0)
        #expect(throws: TokenizerError.textEncodesToControlToken(id: 0, text: "<s>")) {
            _ = try makeTokenizer(vocabulary)
        }
    }
}
