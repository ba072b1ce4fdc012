/// How `LanguageModel.generate` picks tokens and when it stops.
public struct GenerationOptions: Sendable, Equatable {
    /// Most new tokens to produce.
    public var maxTokens: Int
    /// Softmax temperature; 0 picks the most likely token (greedy).
    public var temperature: Float
    /// With a temperature, sample among this many most likely tokens.
    public var topK: Int
    /// Seed of the sampler's random numbers (the same seed gives the same text).
    public var seed: UInt64
    /// Tokens that end generation (not included in the output), besides the model's
    /// `endOfGenerationTokens`, which always do.
    public var stopTokens: Set<Int32>

    /// Creates options; the defaults are greedy decoding of up to 128 tokens.
    public init(maxTokens: Int = 128, temperature: Float = 0, topK: Int = 40, seed: UInt64 = 0,
                stopTokens: Set<Int32> = []) {
        self.maxTokens = maxTokens
        self.temperature = temperature
        self.topK = topK
        self.seed = seed
        self.stopTokens = stopTokens
    }
}

/// What `LanguageModel.generate` produced, with timings.
public struct GenerationResult: Sendable, Equatable {
    /// The new tokens (without the stop token).
    public var tokens: [Int32]
    /// Tokens of the prompt.
    public var promptTokens: Int
    /// Whether a stop token ended generation (otherwise `maxTokens`, the context or the callback did).
    public var stopped: Bool
    /// Seconds spent on the prompt's forward pass.
    public var prefillSeconds: Double
    /// Seconds spent on the forward passes after the prompt (one per new token after the first).
    public var decodeSeconds: Double
    /// Forward passes after the prompt.
    public var decodeSteps: Int

    /// Prompt tokens per second.
    public var prefillTokensPerSecond: Double { prefillSeconds > 0 ? Double(promptTokens) / prefillSeconds : 0 }
    /// Decode steps per second.
    public var decodeTokensPerSecond: Double { decodeSeconds > 0 ? Double(decodeSteps) / decodeSeconds : 0 }
}

extension LanguageModel {
    /// Generates a continuation of `prompt` (token ids; a tokenizer's `encode` gives them, its `decode`
    /// turns `onToken`'s ids into text).
    /// - Parameters:
    ///   - cache: the session's cache (its existing positions come before the prompt); a new one if nil.
    ///   - onToken: called with each new token; return false to stop.
    /// - Throws: `InferenceError` (e.g. `.contextFull` when the prompt does not fit; running out of context
    ///   later just ends generation).
    public func generate(
        prompt: [Int32], options: GenerationOptions = GenerationOptions(), cache given: KVCache? = nil,
        onToken: (Int32) -> Bool = { _ in true }
    ) throws(InferenceError) -> GenerationResult {
        let cache: KVCache
        if let given { cache = given } else { cache = try makeCache() }
        let stops = options.stopTokens.union(endOfGenerationTokens)
        var sampler = TokenSampler(temperature: options.temperature, topK: options.topK, seed: options.seed)
        var result = GenerationResult(tokens: [], promptTokens: prompt.count, stopped: false, prefillSeconds: 0,
                                      decodeSeconds: 0, decodeSteps: 0)
        guard options.maxTokens > 0 else { return result }
        let clock = ContinuousClock()
        var logits: [Float] = []
        let prefillStart = clock.now
        try forward([(cache: cache, tokens: prompt)], into: &logits)
        result.prefillSeconds = Self.seconds(clock.now - prefillStart)
        var next = sampler.pick(logits)
        while true {
            if stops.contains(next) {
                result.stopped = true
                break
            }
            result.tokens.append(next)
            guard onToken(next), result.tokens.count < options.maxTokens, cache.remaining > 0 else { break }
            let start = clock.now
            try forward([(cache: cache, tokens: [next])], into: &logits)
            result.decodeSeconds += Self.seconds(clock.now - start)
            result.decodeSteps += 1
            next = sampler.pick(logits)
        }
        return result
    }

    private static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
    }
}

/// Picks a token from a logits row: the most likely one at temperature 0, otherwise a draw among the
/// `topK` most likely after dividing logits by the temperature.
public struct TokenSampler: Sendable {
    /// The softmax temperature (0 = greedy).
    public var temperature: Float
    /// Candidates considered when sampling.
    public var topK: Int
    private var state: UInt64

    /// Creates a sampler; `seed` fixes its random numbers.
    public init(temperature: Float, topK: Int, seed: UInt64) {
        self.temperature = temperature
        self.topK = max(1, topK)
        self.state = seed
    }

    /// The chosen token of `logits`.
    public mutating func pick(_ logits: [Float]) -> Int32 {
        if temperature <= 0 {
            return TopK(logits: logits, k: 1).ids.first ?? 0
        }
        let top = TopK(logits: logits, k: topK)
        guard let best = top.logProbs.first else { return 0 }
        let weights = top.logProbs.map { Float.exp(($0 - best) / temperature) }
        let total = weights.reduce(0, +)
        var u = Float(nextRandom() >> 40) / Float(1 << 24) * total
        for (i, w) in weights.enumerated() {
            u -= w
            if u < 0 { return top.ids[i] }
        }
        return top.ids[top.ids.count - 1]
    }

    /// SplitMix64.
    private mutating func nextRandom() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
