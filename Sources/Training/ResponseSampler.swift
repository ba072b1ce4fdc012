import Foundation
import Preference
import Wire

/// One training prompt's sampled answers from one dimension's expert, each scored by that dimension's reward:
/// the data of best-of-n fine-tuning and of preference pairs (DPO) for an expert trained on its own dimension.
public struct SampledPrompt: Codable, Sendable, Equatable {
    /// One answer.
    public struct Response: Codable, Sendable, Equatable {
        /// Its text.
        public var text: String
        /// Its token count.
        public var tokens: Int
        /// The dimension's normalised reward R_j in [0, 1].
        public var reward: Double
    }

    /// The dimension whose expert answered and whose reward scored.
    public var dimension: String
    /// The user's message.
    public var prompt: String
    /// The expert's system prompt (its own dimension's prompt only).
    public var system: String?
    /// The answers, in the order drawn.
    public var responses: [Response]
}

/// Draws `count` answers per prompt from one dimension's expert (its own system prompt, no other dimension's; its
/// LoRA adapter when the experts have one) and scores each by that dimension's normalised reward alone.
public struct ResponseSampler<Reward: TrainingReward> {
    /// The experts (their system prompts; their logit biases are not used).
    public let experts: InProcessExperts
    /// The training prompts.
    public let prompts: PromptSet
    /// The reward.
    public private(set) var reward: Reward

    public init(experts: InProcessExperts, prompts: PromptSet, reward: Reward) {
        self.experts = experts
        self.prompts = prompts
        self.reward = reward
    }

    /// The answers of `dimension`'s expert to the prompts at `indices`, `count` each, in chunks of `chunk`
    /// prompts decoded together (one batched forward pass per token).
    /// - Parameter progress: called after each chunk with the prompts done so far.
    public mutating func sample(
        dimension: PreferenceDimension, indices: [Int], count: Int, maxTokens: Int, temperature: Float, seed: UInt64,
        chunk: Int = 4, progress: (Int) -> Void = { _ in }
    ) throws(TrainingError) -> [SampledPrompt] {
        guard let preference = try? PreferenceSpec(dimension) else { return [] }
        try reward.prepare(promptIndices: indices, prompts: prompts, experts: experts, maxTokens: maxTokens)
        var out: [SampledPrompt] = []
        var start = 0
        while start < indices.count {
            let part = Array(indices[start..<min(start + max(1, chunk), indices.count)])
            var requests: [DecodeRequest] = []
            for item in part {
                for j in 0..<count {
                    var weights = [Float](repeating: 0, count: PreferenceDimension.allCases.count)
                    weights[dimension.ordinal] = 1
                    let draw = seed &* 1_000_003 &+ UInt64(item) &* 7919 &+ UInt64(j) &+ UInt64(dimension.ordinal) << 32
                    requests.append(DecodeRequest(
                        user: prompts.prompts[item],
                        sessions: [(slot: dimension.ordinal, system: experts.prompts[dimension])],
                        policy: .fixed(weights), sampling: SamplingParameters(temperature: temperature, seed: draw),
                        adapters: experts.adapters(for: [dimension])))
                }
            }
            let results = try experts.decode(requests, maxTokens: maxTokens)
            try reward.prepareResponses(zip(requests, results).map { (user: $0.user, text: $1.text) })
            for (i, item) in part.enumerated() {
                let answers = results[(i * count)..<((i + 1) * count)].map { result in
                    SampledPrompt.Response(
                        text: result.text, tokens: result.tokens.count,
                        reward: reward.score(ScoredResponse(promptIndex: item, preference: preference, result: result)))
                }
                out.append(SampledPrompt(dimension: dimension.rawValue, prompt: prompts.prompts[item],
                                         system: experts.prompts[dimension], responses: answers))
            }
            start += part.count
            progress(start)
        }
        return out
    }
}
