import Foundation
import TestKit
@testable import Inference

/// Where the tokenizer tests find their fixtures and the real model.
enum TokenizerFixtures {
    /// The SmolLM2 model file: `$MOPE_MODEL`, else `models/SmolLM2-135M-Instruct.Q4_1.gguf`; nil when absent.
    static let modelPath: String? = Fixtures.realModelPresent ? Fixtures.realModel : nil

    static func decode<T: Decodable>(_ type: T.Type, _ name: String) throws -> T {
        try JSONDecoder().decode(type, from: Data(contentsOf: Fixtures.url(name)))
    }

    /// The real model's vocabulary, read once.
    static let smolVocabulary: Result<TokenizerVocabulary, any Error>? = modelPath.map { path in
        Result { try TokenizerVocabulary(gguf: GGUFFile(path: path)) }
    }
}

/// A tokenizer vocabulary from byte-level tokens for every byte plus `extra` tokens, for tests without a model.
func byteLevelVocabulary(
    extra: [String] = [], merges: [String] = [], controls: [String] = [], pre: String? = "gpt2"
) -> TokenizerVocabulary {
    var tokens = controls
    var types = [Int32](repeating: 3, count: controls.count)
    for byte in 0 ..< 256 {
        tokens.append(String(ByteLevel.scalarOfByte[byte]))
        types.append(1)
    }
    tokens += extra
    types += [Int32](repeating: 1, count: extra.count)
    return TokenizerVocabulary(model: "gpt2", pre: pre, tokens: tokens, tokenTypes: types, merges: merges,
                               eosTokenID: controls.isEmpty ? nil : 0)
}

// MARK: - Fixture shapes

struct EncodeFixture: Decodable {
    struct Case: Decodable {
        let text: String
        let ids: [Int32]
        let idsNoSpecial: [Int32]
    }
    let cases: [Case]
}

/// A small byte-level vocabulary (the tiny test model's) with the reference ids of the same strings.
struct TinyVocabularyFixture: Decodable {
    let pre: String
    let tokens: [String]
    let tokenTypes: [Int32]
    let merges: [String]
    let bosTokenID: Int32
    let eosTokenID: Int32
    let cases: [EncodeFixture.Case]

    var vocabulary: TokenizerVocabulary {
        TokenizerVocabulary(model: "gpt2", pre: pre, tokens: tokens, tokenTypes: tokenTypes, merges: merges,
                            bosTokenID: bosTokenID, eosTokenID: eosTokenID)
    }
}

struct PreTokenizeFixture: Decodable {
    struct Case: Decodable {
        let text: String
        let pieces: [String: [String]]
    }
    let cases: [Case]
}

struct ChatFixture: Decodable {
    struct Message: Decodable {
        let role: String
        let content: String
    }
    struct Case: Decodable {
        let messages: [Message]
        let addGenerationPrompt: Bool
        let rendered: String
    }
    struct Template: Decodable {
        let name: String
        let source: String
        let bosText: String
        let cases: [Case]
    }
    let templates: [Template]
}
