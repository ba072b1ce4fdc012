import Preference
import Wire

/// The per-token decision of every decode loop — `mope run`, training and evaluation, and the coordinator — as
/// one pure value: the step's candidate lists and weights → merge (`Merger`) → sample (`TokenSampler`) → the end
/// conditions (an end-of-sequence id, a stop string, `maxTokens`) → the token the next step is fed.
///
/// The callers own everything around it: the forward passes or the network that produce the candidate lists, the
/// controller or policy that produces the weights, the context length, and what they record. A single model is
/// one expert with weight 1, so `mope run` samples exactly as the cluster does.
///
/// Text: with a `TokenTextDecoder`, every generated token's text goes through a `StopMatcher` and `Decision`
/// carries the text now safe to show; without one, no text is decoded (stop strings need text, so they are then
/// ignored) and the per-token path only merges and samples.
public struct TokenDecoder: Sendable {
    /// What one step decided.
    public enum Decision: Sendable, Equatable {
        /// The merged distribution was empty (no expert contributed a candidate): nothing was chosen.
        case empty
        /// `token` is an end-of-sequence id: the generation ends without it (it is neither counted nor shown).
        case endOfSequence(token: UInt32)
        /// `token` was generated and `text` is the text now released. With `finish` nil the next step is fed
        /// `token`; otherwise the generation ends with `token` (`.stopString`: the stop string and what follows
        /// are dropped; `.maxTokens`: the held-back text is released with it).
        case token(UInt32, text: String, finish: FinishReason?)

        /// The chosen token, whether or not it ends the generation (nil when nothing was chosen).
        public var chosen: UInt32? {
            switch self {
            case .empty: nil
            case let .endOfSequence(token): token
            case let .token(token, _, _): token
            }
        }
    }

    /// The most tokens generated.
    public let maxTokens: Int
    /// How the experts' distributions are combined.
    public let mode: MergeMode
    /// Token ids that end the generation.
    public let endOfSequence: Set<UInt32>
    /// The tokens generated so far (without an ending end-of-sequence id).
    public private(set) var generated = 0
    /// The last step's merged distribution (its `weights` are the ones applied).
    public private(set) var merged = MergedDistribution(ids: [], probs: [])

    private var merger: Merger
    private var sampler: TokenSampler
    private var text: (any TokenTextDecoder)?
    private var matcher: StopMatcher

    /// Creates a decoder.
    /// - Parameters:
    ///   - vocabSize: the vocabulary size shared by the experts.
    ///   - sampling: the sampling parameters (the generator starts from their seed).
    ///   - mode: how the experts are combined.
    ///   - maxTokens: the most tokens to generate (at least one step is always decided).
    ///   - endOfSequence: token ids that end the generation.
    ///   - stops: stop strings (need `text`).
    ///   - text: turns tokens into text; nil decodes no text.
    public init(vocabSize: Int, sampling: SamplingParameters, mode: MergeMode = .probability, maxTokens: Int,
                endOfSequence: Set<UInt32>, stops: [String] = [], text: (any TokenTextDecoder)? = nil)
    {
        self.maxTokens = maxTokens
        self.mode = mode
        self.endOfSequence = endOfSequence
        merger = Merger(vocabSize: vocabSize)
        sampler = TokenSampler(parameters: sampling)
        self.text = text
        matcher = StopMatcher(stops: text == nil ? [] : stops)
    }

    /// The sampling parameters.
    public var sampling: SamplingParameters { sampler.parameters }

    /// Decides one step: merges `candidates` (expert i's list, nil when lost) with `weights`, samples, and checks
    /// the end conditions.
    public mutating func next(candidates: [TopKCandidates?], weights: [Float]) -> Decision {
        merged = merger.merge(candidates, weights: weights, mode: mode)
        guard let token = sampler.sample(merged) else { return .empty }
        if endOfSequence.contains(token) { return .endOfSequence(token: token) }
        generated += 1
        var released = ""
        if text != nil {
            released = matcher.push(text!.decode(token))
            if matcher.stopped { return .token(token, text: released, finish: .stopString) }
        }
        if generated >= maxTokens {
            released += matcher.finish()
            return .token(token, text: released, finish: .maxTokens)
        }
        return .token(token, text: released, finish: nil)
    }

    /// Takes `tokens` as already decided (a generation resumed after its first part was produced elsewhere): the
    /// sampler moves past one choice per token and the text goes through the stop matcher as it did. Returns the
    /// text that was released meanwhile. No end condition is checked: the tokens were sent to the user already.
    public mutating func resume(_ tokens: [UInt32]) -> String {
        var released = ""
        for token in tokens {
            sampler.skip()
            generated += 1
            if text != nil { released += matcher.push(text!.decode(token)) }
        }
        return released
    }

    /// Releases the text held back as a possible stop string (the generation ended for another reason).
    public mutating func finishText() -> String { matcher.finish() }
}
