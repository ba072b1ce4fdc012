import ClusterCore
import Decoding
import Inference
import Wire

/// The coordinator's copy of the cluster's tokenizer: for `token.text`, stop strings and the controller's
/// prompt tokens.
///
/// It is read from the GGUF metadata of the config's `tokenizer` file (`mope tokenizer-file`, a few megabytes
/// with no weights), else of the **first expert's model file** (only the tokenizer metadata is read; no weights
/// are loaded). Every worker's `hello` carries the hash of its vocabulary, and a
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
    func makeDecoder() -> StreamingDecoder {
        StreamingDecoder(tokenizer: tokenizer, skipControlTokens: true)
    }

    /// The user prompt's ids, for the preference controller (no special tokens parsed: it is user text).
    func promptTokens(_ text: String) -> [UInt32] {
        tokenizer.encode(text, parseSpecial: false).map { UInt32(bitPattern: $0) }
    }

    /// The input's length in tokens: every turn's content (or the raw text), without template or system prompts.
    func inputTokenCount(_ input: Request) -> UInt32 {
        switch input {
        case let .raw(text):
            return UInt32(clamping: tokenizer.encode(text, parseSpecial: true).count)
        case let .chat(turns):
            return UInt32(clamping: turns.reduce(0) { $0 + tokenizer.encode($1.content, parseSpecial: false).count })
        }
    }
}
