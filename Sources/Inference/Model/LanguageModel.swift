import CPUKernels
import Foundation

/// A loaded model: its weights, configuration, vocabulary and identity, and the forward pass.
///
/// Typical use: `makeCache()` for each session, then `forward` with the batch of sessions that have new
/// tokens; each entry gets the logits of its last new token. `forward` calls are serialised internally, so
/// the model may be shared across threads; a `KVCache` belongs to one session and is used by one thread at
/// a time.
public final class LanguageModel: @unchecked Sendable {
    // Safe to share: all stored properties are immutable except the forward scratch inside `model`, which is
    // only touched while holding `lock`.

    /// The model's hyperparameters.
    public let configuration: LlamaConfiguration
    /// The tokenizer data the model ships.
    public let vocabulary: TokenizerVocabulary
    /// A hash of the file's header and size: equal for the same model file (see `GGUFFile.fingerprint`).
    public let fingerprint: String
    /// A hash of the token texts (see `TokenizerVocabulary.vocabularyHash`).
    public let vocabularyHash: String
    /// The underlying file (metadata and tensor table).
    public let file: GGUFFile
    /// The threads the kernels and attention use.
    public let pool: ThreadPool
    /// Most new tokens one pass over the weights takes; longer batches (long prompts, replays) run in several
    /// passes, which bounds the activation memory at about `maxTokensPerPass × (4·dim + 2·ffn) × 4` bytes.
    public let maxTokensPerPass: Int

    private let model: LlamaModel
    private let lock = NSLock()
    private var passLogits: [Float] = []

    /// Loads the GGUF model at `path`, computing with `threads` threads.
    /// - Throws: `GGUFError` for an unreadable or malformed file (or missing tensors/metadata),
    ///   `InferenceError` for an unsupported architecture or inconsistent hyperparameters.
    public convenience init(path: String, threads: Int = 1, maxTokensPerPass: Int = 512) throws {
        try self.init(file: try GGUFFile(path: path), threads: threads, maxTokensPerPass: maxTokensPerPass)
    }

    /// Builds the model from an opened GGUF file.
    /// - Throws: as `init(path:threads:)`.
    public init(file: GGUFFile, threads: Int = 1, maxTokensPerPass: Int = 512) throws {
        self.file = file
        self.maxTokensPerPass = max(1, maxTokensPerPass)
        configuration = try LlamaConfiguration(gguf: file)
        vocabulary = try TokenizerVocabulary(gguf: file)
        fingerprint = file.fingerprint
        vocabularyHash = vocabulary.vocabularyHash
        pool = ThreadPool(threads: threads)
        model = try LlamaModel(gguf: file, config: configuration, pool: pool)
    }

    /// Tokens that end a reply: the vocabulary's EOS plus the control tokens that chat models use to end a
    /// turn or a text (`<|im_end|>`, `<|endoftext|>`, `<|eot_id|>`, `<|end|>`, `</s>`), when present.
    public var endOfGenerationTokens: Set<Int32> {
        var ids = Set<Int32>()
        if let eos = vocabulary.eosTokenID { ids.insert(eos) }
        let names: Set<String> = ["<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end|>", "</s>"]
        for (i, text) in vocabulary.tokens.enumerated() where names.contains(text) {
            let isControl = i < vocabulary.tokenTypes.count ? vocabulary.tokenTypes[i] == 3 : true
            if isControl { ids.insert(Int32(i)) }
        }
        return ids
    }

    /// The vocabulary size: the length of every logits row.
    public var vocabularySize: Int { configuration.vocabularySize }

    /// A new, empty KV cache for one session.
    /// - Parameters:
    ///   - capacity: the most positions it may hold; nil for the model's context length.
    ///   - precision: storage of keys and values.
    /// - Throws: `InferenceError.badCapacity` unless `1 <= capacity <= contextLength`.
    public func makeCache(capacity: Int? = nil, precision: KVCache.Precision = .f32) throws(InferenceError) -> KVCache {
        let capacity = capacity ?? configuration.contextLength
        guard capacity >= 1, capacity <= configuration.contextLength else {
            throw .badCapacity(requested: capacity, contextLength: configuration.contextLength)
        }
        return model.makeCache(capacity: capacity, precision: precision)
    }

    /// Appends each entry's tokens to its cache (sessions may be at different positions, each appending one
    /// token or a whole prompt) in one pass over the weights, and writes the logits of each entry's last new
    /// token into `logits`: row `s` (`vocabularySize` floats) belongs to entry `s`. `logits` is resized to
    /// `batch.count × vocabularySize` (reusing its storage).
    /// - Throws: `InferenceError` (empty entry, repeated or foreign cache, token out of range, context full);
    ///   no cache is changed when it throws.
    public func forward(
        _ batch: [(cache: KVCache, tokens: [Int32])], into logits: inout [Float]
    ) throws(InferenceError) {
        let needed = batch.count * vocabularySize
        if logits.count != needed {
            if logits.count > needed {
                logits.removeLast(logits.count - needed)
            } else {
                logits.append(contentsOf: repeatElement(0, count: needed - logits.count))
            }
        }
        lock.lock()
        defer { lock.unlock() }
        let (total, _) = try model.validate(batch)
        if total <= maxTokensPerPass {
            try logits.withUnsafeMutableBufferPointer { (buffer) throws(InferenceError) in
                try model.forward(batch, logits: buffer.baseAddress!)
            }
            return
        }
        try forwardInPasses(batch, into: &logits)
    }

    /// Runs a validated batch of more than `maxTokensPerPass` new tokens as several passes, each taking the
    /// next tokens of every unfinished entry up to the limit; an entry's logits are kept from the pass that
    /// holds its last token.
    private func forwardInPasses(
        _ batch: [(cache: KVCache, tokens: [Int32])], into logits: inout [Float]
    ) throws(InferenceError) {
        let v = vocabularySize
        var done = [Int](repeating: 0, count: batch.count)
        var pending = Array(batch.indices)
        while !pending.isEmpty {
            var pass: [(cache: KVCache, tokens: [Int32])] = []
            var members: [Int] = []
            var budget = maxTokensPerPass
            for i in pending where budget > 0 {
                let n = min(batch[i].tokens.count - done[i], budget)
                pass.append((cache: batch[i].cache, tokens: Array(batch[i].tokens[done[i]..<done[i] + n])))
                members.append(i)
                budget -= n
            }
            if passLogits.count < pass.count * v {
                passLogits.append(contentsOf: repeatElement(0, count: pass.count * v - passLogits.count))
            }
            try passLogits.withUnsafeMutableBufferPointer { (buffer) throws(InferenceError) in
                try model.forward(pass, logits: buffer.baseAddress!)
            }
            for (j, i) in members.enumerated() {
                done[i] += pass[j].tokens.count
                if done[i] == batch[i].tokens.count {
                    logits.replaceSubrange(i * v..<(i + 1) * v, with: passLogits[j * v..<(j + 1) * v])
                }
            }
            pending.removeAll { done[$0] == batch[$0].tokens.count }
        }
    }

    /// Runs `forward(_:into:)` and returns each entry's `k` most likely next tokens. `logits` is the caller's
    /// reusable buffer (resized as in `forward(_:into:)`; afterwards it holds the logits rows).
    public func topK(
        _ batch: [(cache: KVCache, tokens: [Int32])], k: Int, logits: inout [Float]
    ) throws(InferenceError) -> [TopK] {
        try forward(batch, into: &logits)
        let v = vocabularySize
        return logits.withUnsafeBufferPointer { all in
            (0..<batch.count).map { TopK(logits: UnsafeBufferPointer(rebasing: all[$0 * v..<($0 + 1) * v]), k: k) }
        }
    }

    /// As `forward(_:into:)`, returning one logits row per entry.
    public func forward(_ batch: [(cache: KVCache, tokens: [Int32])]) throws(InferenceError) -> [[Float]] {
        var flat: [Float] = []
        try forward(batch, into: &flat)
        let v = vocabularySize
        return (0..<batch.count).map { Array(flat[$0 * v..<($0 + 1) * v]) }
    }

    /// Appends `tokens` to one session's cache and returns the logits of the last one.
    public func forward(cache: KVCache, tokens: [Int32]) throws(InferenceError) -> [Float] {
        var logits: [Float] = []
        try forward([(cache: cache, tokens: tokens)], into: &logits)
        return logits
    }
}

// MARK: - The output layer

extension LanguageModel {
    /// The width of the final hidden state (the output layer's input).
    public var hiddenWidth: Int { configuration.embeddingLength }

    /// The output layer applied to `hidden`, a vector of `hiddenWidth` values: W_out · hidden, one value per
    /// token, computed by the same kernel as the forward pass's logits. Adding it to a row of logits is adding
    /// `hidden` to the final hidden state after the final norm (up to the kernel's rounding of its input).
    /// Returns nil when `hidden` has another width.
    public func outputProjection(_ hidden: [Float]) -> [Float]? {
        guard hidden.count == hiddenWidth else { return nil }
        var out = [Float](repeating: 0, count: vocabularySize)
        lock.lock()
        defer { lock.unlock() }
        hidden.withUnsafeBufferPointer { x in
            out.withUnsafeMutableBufferPointer { o in
                Kernels.matmul(model.output, x: x.baseAddress!, batch: 1, out: o.baseAddress!, pool: pool)
            }
        }
        return out
    }

    /// Row `id` of the output layer, dequantised (`hiddenWidth` values); nil for an id outside the vocabulary.
    public func outputRow(_ id: Int) -> [Float]? {
        guard id >= 0, id < vocabularySize else { return nil }
        var row = [Float](repeating: 0, count: hiddenWidth)
        row.withUnsafeMutableBufferPointer { Kernels.dequantizeRow(model.output, row: id, into: $0.baseAddress!) }
        return row
    }
}
