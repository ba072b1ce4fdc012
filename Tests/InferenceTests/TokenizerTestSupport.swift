import Foundation
@testable import Inference

/// Where the tokenizer tests find their fixtures and the real model.
enum TokenizerFixtures {
    static let packageRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func url(_ name: String) -> URL {
        packageRoot.appendingPathComponent("Tests/Fixtures/\(name)")
    }

    /// The SmolLM2 model file: `$MOPE_MODEL`, else `models/SmolLM2-135M-Instruct.Q4_1.gguf`; nil when absent.
    static let modelPath: String? = {
        let candidates: [String?] = [
            ProcessInfo.processInfo.environment["MOPE_MODEL"],
            packageRoot.appendingPathComponent("models/SmolLM2-135M-Instruct.Q4_1.gguf").path,
        ]
        return candidates.compactMap { $0 }.first { FileManager.default.fileExists(atPath: $0) }
    }()

    static func decode<T: Decodable>(_ type: T.Type, _ name: String) throws -> T {
        try JSONDecoder().decode(type, from: Data(contentsOf: url(name)))
    }

    /// The real model's vocabulary, read once.
    static let smolVocabulary: Result<TokenizerVocabulary, any Error>? = modelPath.map { path in
        Result { try TestGGUFMetadata.vocabulary(path: path) }
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

// MARK: - Model metadata

/// Reads the `tokenizer.*` metadata of a GGUF file: a stand-in used only until the project's GGUF reader
/// provides `TokenizerVocabulary` from a model file.
enum TestGGUFMetadata {
    struct Malformed: Error {}

    private struct Reader {
        let data: Data
        var offset: Int

        mutating func bytes(_ count: Int) throws -> Data {
            guard count >= 0, offset + count <= data.count else { throw Malformed() }
            defer { offset += count }
            return data[data.startIndex + offset ..< data.startIndex + offset + count]
        }

        mutating func integer<T: FixedWidthInteger>(_: T.Type) throws -> T {
            let raw = try bytes(MemoryLayout<T>.size)
            return raw.reversed().reduce(T.zero) { $0 << 8 | T(truncatingIfNeeded: $1) }
        }

        mutating func string() throws -> String {
            let length = try integer(UInt64.self)
            guard length < UInt64(data.count) else { throw Malformed() }
            return String(decoding: try bytes(Int(length)), as: UTF8.self)
        }

        /// A value of GGUF type `type`: scalars as Int64/Double/Bool/String, arrays as [Any].
        mutating func value(_ type: UInt32) throws -> Any {
            switch type {
            case 0: return Int64(try integer(UInt8.self))
            case 1: return Int64(try integer(Int8.self))
            case 2: return Int64(try integer(UInt16.self))
            case 3: return Int64(try integer(Int16.self))
            case 4: return Int64(try integer(UInt32.self))
            case 5: return Int64(try integer(Int32.self))
            case 6: return Double(Float(bitPattern: try integer(UInt32.self)))
            case 7: return try integer(UInt8.self) != 0
            case 8: return try string()
            case 9:
                let itemType = try integer(UInt32.self)
                let count = try integer(UInt64.self)
                guard count < UInt64(data.count) else { throw Malformed() }
                var items: [Any] = []
                items.reserveCapacity(Int(count))
                for _ in 0 ..< count { items.append(try value(itemType)) }
                return items
            case 10: return Int64(bitPattern: try integer(UInt64.self))
            case 11: return try integer(Int64.self)
            case 12: return Double(bitPattern: try integer(UInt64.self))
            default: throw Malformed()
            }
        }
    }

    static func vocabulary(path: String) throws -> TokenizerVocabulary {
        let data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped)
        var reader = Reader(data: data, offset: 0)
        guard try reader.bytes(4) == Data("GGUF".utf8) else { throw Malformed() }
        _ = try reader.integer(UInt32.self)
        _ = try reader.integer(UInt64.self)
        let count = try reader.integer(UInt64.self)
        var meta: [String: Any] = [:]
        for _ in 0 ..< count {
            let key = try reader.string()
            let type = try reader.integer(UInt32.self)
            meta[key] = try reader.value(type)
        }
        func id(_ key: String) -> Int32? { (meta[key] as? Int64).map { Int32($0) } }
        return TokenizerVocabulary(
            model: meta["tokenizer.ggml.model"] as? String ?? "",
            pre: meta["tokenizer.ggml.pre"] as? String,
            tokens: (meta["tokenizer.ggml.tokens"] as? [Any] ?? []).compactMap { $0 as? String },
            tokenTypes: (meta["tokenizer.ggml.token_type"] as? [Any] ?? [])
                .compactMap { ($0 as? Int64).map(Int32.init) },
            scores: (meta["tokenizer.ggml.scores"] as? [Any] ?? []).compactMap { ($0 as? Double).map(Float.init) },
            merges: (meta["tokenizer.ggml.merges"] as? [Any] ?? []).compactMap { $0 as? String },
            bosTokenID: id("tokenizer.ggml.bos_token_id"),
            eosTokenID: id("tokenizer.ggml.eos_token_id"),
            unknownTokenID: id("tokenizer.ggml.unknown_token_id"),
            paddingTokenID: id("tokenizer.ggml.padding_token_id"),
            addBOS: meta["tokenizer.ggml.add_bos_token"] as? Bool ?? false,
            addSpacePrefix: meta["tokenizer.ggml.add_space_prefix"] as? Bool ?? false,
            chatTemplate: meta["tokenizer.chat_template"] as? String
        )
    }
}
