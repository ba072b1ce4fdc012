import Foundation
import Inference
import Preference
import Wire

/// One response to score.
public struct ScoredResponse: Sendable {
    /// The prompt's index in the prompt set.
    public var promptIndex: Int
    /// The preference the response was generated for.
    public var preference: PreferenceSpec
    /// The generated response.
    public var result: DecodeResult
}

/// A reward the trainer maximises: a number in [0, 1] per response.
public protocol TrainingReward {
    /// Makes whatever the scores of these prompts need (e.g. reference answers).
    mutating func prepare(promptIndices: [Int], prompts: PromptSet, experts: InProcessExperts,
                          maxTokens: Int) throws(TrainingError)
    /// The reward of one response.
    func score(_ response: ScoredResponse) -> Double
}

/// The rule-based rewards of `RewardModel`, Bradley–Terry normalised against the base model's answer: the
/// template's default system prompt, greedy, the same token limit. References are generated on first use and
/// cached in a JSON file (prompt text → reference text and raw rewards).
public struct ReferenceNormalisedReward: TrainingReward {
    /// The rewards.
    public let model: RewardModel
    /// The prompts that `ScoredResponse.promptIndex` refers to.
    public let prompts: PromptSet
    /// The cache file, if any.
    public let cachePath: String?
    /// The raw rewards of each prompt's reference answer.
    public private(set) var references: [String: Reference] = [:]

    /// A cached reference answer.
    public struct Reference: Codable, Sendable {
        /// Its text.
        public var text: String
        /// Its raw rewards.
        public var raw: [Double]
    }

    /// Creates the reward; reads the cache when it exists.
    public init(model: RewardModel, prompts: PromptSet, cachePath: String?) {
        self.model = model
        self.prompts = prompts
        self.cachePath = cachePath
        if let cachePath, let data = try? Data(contentsOf: URL(fileURLWithPath: cachePath)),
            let table = try? JSONDecoder().decode([String: Reference].self, from: data)
        {
            // The raw rewards are recomputed from the text: a cache written under other reward scales stays valid.
            references = table.mapValues { Reference(text: $0.text, raw: model.raw($0.text)) }
        }
    }

    /// Generates the missing references (8 at a time).
    public mutating func prepare(promptIndices: [Int], prompts: PromptSet, experts: InProcessExperts,
                                 maxTokens: Int) throws(TrainingError)
    {
        let missing = Array(Set(promptIndices.map { prompts.prompts[$0] }).filter { references[$0] == nil }).sorted()
        guard !missing.isEmpty else { return }
        var start = 0
        while start < missing.count {
            let chunk = Array(missing[start..<min(start + 8, missing.count)])
            let requests = chunk.map {
                DecodeRequest(user: $0, sessions: [(slot: 0, system: nil)], policy: .fixed([1, 0, 0, 0, 0, 0]),
                              sampling: SamplingParameters(temperature: 0))
            }
            let results = try experts.decode(requests, maxTokens: maxTokens)
            for (prompt, result) in zip(chunk, results) {
                references[prompt] = Reference(text: result.text, raw: model.raw(result.text))
            }
            start += 8
        }
        if let cachePath {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
            do {
                try encoder.encode(references).write(to: URL(fileURLWithPath: cachePath), options: .atomic)
            } catch {
                throw .io(path: cachePath, reason: error.localizedDescription)
            }
        }
    }

    /// The normalised rewards of each dimension for a text and prompt.
    public func normalised(_ text: String, prompt: String) -> [Double] {
        let reference = references[prompt]?.raw ?? model.raw("")
        return model.normalised(text, reference: reference)
    }

    /// The preference's combined normalised reward.
    public func score(_ response: ScoredResponse) -> Double {
        let norm = normalised(response.result.text, prompt: prompts.prompts[response.promptIndex])
        return RewardModel.combine(norm, preference: response.preference)
    }
}
