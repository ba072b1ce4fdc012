import Inference
import Preference
import Wire

/// What `LanguageModel.decode` produced, with timings.
public struct SingleModelGeneration: Sendable, Equatable {
    /// The new tokens (without an end-of-sequence id).
    public var tokens: [UInt32] = []
    /// Why the generation ended: `.endOfSequence`, `.stopString`, `.maxTokens`, `.contextFull`; nil when the
    /// callback stopped it or nothing could be chosen.
    public var finish: FinishReason?
    /// Seconds spent on the prompt's forward pass.
    public var prefillSeconds = 0.0
    /// Seconds spent on the forward passes after the prompt (one per new token after the first).
    public var decodeSeconds = 0.0
    /// Forward passes after the prompt.
    public var decodeSteps = 0
}

extension LanguageModel {
    /// Generates a continuation of `prompt` with this model alone, through the decode step the cluster uses: each
    /// forward pass's top-k list is one expert's candidates with weight 1 (`TokenDecoder`), so the same sampling
    /// parameters pick the same tokens as a one-expert cluster.
    /// - Parameters:
    ///   - endOfSequence: ids that end the generation (nil: the model's `endOfGenerationTokens`).
    ///   - text: turns tokens into text for `onText` and `stops` (nil: no text, stop strings ignored).
    ///   - onText: called with the text released (stop strings held back until they cannot match).
    ///   - onToken: called with each new token; return false to stop.
    /// - Throws: `InferenceError` (e.g. `.contextFull` when the prompt does not fit; running out of context later
    ///   ends the generation with `.contextFull`).
    public func decode(
        prompt: [Int32], sampling: SamplingParameters = SamplingParameters(temperature: 0), maxTokens: Int,
        endOfSequence: Set<UInt32>? = nil, stops: [String] = [], text: (any TokenTextDecoder)? = nil,
        onText: (String) -> Void = { _ in }, onToken: (UInt32) -> Bool = { _ in true }, adapter: LoRAAdapter? = nil
    ) throws(InferenceError) -> SingleModelGeneration {
        var result = SingleModelGeneration()
        guard maxTokens > 0 else { return result }
        let cache = try makeCache(capacity: min(configuration.contextLength, prompt.count + maxTokens))
        cache.adapter = adapter
        var decoder = TokenDecoder(
            vocabSize: vocabularySize, sampling: sampling, maxTokens: maxTokens,
            endOfSequence: endOfSequence ?? Set(endOfGenerationTokens.map { UInt32(bitPattern: $0) }),
            stops: stops, text: text
        )
        let greedy = !(sampling.temperature.isFinite && sampling.temperature > 0)
        let k = greedy ? 1 : Int(sampling.topK == 0 ? 256 : sampling.topK)
        var list = [TopKCandidates?](repeating: nil, count: 1)
        let weights: [Float] = [1]
        var logits: [Float] = []
        let clock = ContinuousClock()
        let prefillStart = clock.now
        try forward([(cache: cache, tokens: prompt)], into: &logits)
        result.prefillSeconds = Self.seconds(prefillStart.duration(to: clock.now))
        while true {
            let top = TopK(logits: logits, k: k)
            list[0] = TopKCandidates(ids: top.ids.map { UInt32(bitPattern: $0) }, logProbs: top.logProbs,
                                     tailMass: top.tailMass)
            switch decoder.next(candidates: list, weights: weights) {
            case .empty:
                return result
            case .endOfSequence:
                result.finish = .endOfSequence
                onText(decoder.finishText())
                return result
            case let .token(token, released, finish):
                result.tokens.append(token)
                result.finish = finish
                onText(released)
                guard onToken(token), finish == nil else { return result }
                guard cache.remaining > 0 else {
                    result.finish = .contextFull
                    onText(decoder.finishText())
                    return result
                }
                let start = clock.now
                try forward([(cache: cache, tokens: [Int32(bitPattern: token)])], into: &logits)
                result.decodeSeconds += Self.seconds(start.duration(to: clock.now))
                result.decodeSteps += 1
            }
        }
    }

    private static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
    }
}
