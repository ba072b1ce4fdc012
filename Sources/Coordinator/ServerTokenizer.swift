import ClusterCore
import Decoding
import Inference

/// The coordinator's copy of the cluster's tokenizer: for `token.text`, stop strings and the controller's
/// prompt tokens.
///
/// It is read from the GGUF metadata of the **first expert's model file in the config** (only the tokenizer
/// metadata is read; no weights are loaded). Every worker's `hello` carries the hash of its vocabulary, and a
/// worker whose hash differs from this tokenizer's is rejected, so the text the coordinator decodes is the text
/// every expert means.
public struct ClusterTokenizer: Sendable {
    /// The tokenizer.
    public let tokenizer: any Tokenizer
    /// The vocabulary hash in the form workers announce it.
    public let vocabHash: UInt64
    /// The vocabulary size.
    public var vocabSize: Int { tokenizer.vocabSize }

    /// Loads the tokenizer of the GGUF file at `path`.
    public init(modelPath path: String) throws(CoordinatorError) {
        do {
            let file = try GGUFFile(path: path)
            let vocabulary = try TokenizerVocabulary(gguf: file)
            tokenizer = try makeTokenizer(vocabulary)
            vocabHash = UInt64(vocabulary.vocabularyHash, radix: 16) ?? 0
        } catch {
            throw .tokenizer(path: path, reason: String(describing: error))
        }
    }

    /// Wraps an already built tokenizer.
    public init(tokenizer: any Tokenizer, vocabHash: UInt64) {
        self.tokenizer = tokenizer
        self.vocabHash = vocabHash
    }

    /// A fresh streaming decoder for one session.
    func makeDecoder() -> StreamingTextDecoder {
        StreamingTextDecoder(decoder: StreamingDecoder(tokenizer: tokenizer, skipControlTokens: true))
    }

    /// The user prompt's ids, for the preference controller (no special tokens parsed: it is user text).
    func promptTokens(_ text: String) -> [UInt32] {
        tokenizer.encode(text, parseSpecial: false).map { UInt32(bitPattern: $0) }
    }
}

/// `TokenTextDecoder` over the tokenizer's streaming decoder (never splits a UTF-8 character; control tokens
/// decode to nothing).
struct StreamingTextDecoder: TokenTextDecoder {
    var decoder: StreamingDecoder

    mutating func decode(_ token: UInt32) -> String {
        decoder.push(Int32(bitPattern: token))
    }
}
