/// Why a forward pass or a model load could not proceed (file format problems are `GGUFError`s).
public enum InferenceError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The KV cache holds `count` positions of at most `capacity`; appending `adding` more would overflow it.
    /// Start a new session, or truncate the cache, to go on.
    case contextFull(capacity: Int, count: Int, adding: Int)
    /// A token id is not in the vocabulary `0..<vocabularySize`.
    case tokenOutOfRange(token: Int32, vocabularySize: Int)
    /// The file's `general.architecture` is not one the engine runs (llama and qwen2 are).
    case unsupportedArchitecture(String)
    /// The model's hyperparameters are inconsistent (`reason` says how).
    case badConfiguration(String)
    /// A batch entry has no tokens to append.
    case emptyInput
    /// The same KV cache appears twice in one batch.
    case duplicateCache
    /// A KV cache was made for a model of another shape (layers or key/value width differ).
    case cacheMismatch
    /// A truncation asked for a length outside `0...count`.
    case badTruncation(requested: Int, count: Int)
    /// A cache capacity outside `1...contextLength` was requested.
    case badCapacity(requested: Int, contextLength: Int)

    /// The error in words, for logs and users.
    public var description: String {
        switch self {
        case .contextFull(let capacity, let count, let adding):
            "context full: the KV cache holds \(count) of \(capacity) positions and cannot take \(adding) more"
        case .tokenOutOfRange(let token, let size):
            "token id \(token) is outside the vocabulary (0..<\(size))"
        case .unsupportedArchitecture(let arch):
            "model architecture \"\(arch)\" is not supported (supported: llama, qwen2)"
        case .badConfiguration(let reason):
            "inconsistent model hyperparameters: \(reason)"
        case .emptyInput:
            "a session in the batch has no tokens to process"
        case .duplicateCache:
            "one KV cache appears twice in a batch"
        case .cacheMismatch:
            "the KV cache was made for a model of another shape"
        case .badTruncation(let requested, let count):
            "cannot truncate a KV cache of \(count) positions to \(requested)"
        case .badCapacity(let requested, let context):
            "a KV cache capacity of \(requested) is outside 1...\(context) (the model's context length)"
        }
    }
}
