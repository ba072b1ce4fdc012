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
    /// Scores in one batch whatever `score` needs of these answers beyond their text (the fluency gate's f);
    /// optional, for speed: `score` works without it.
    func prepareResponses(_ answers: [(user: String, text: String)]) throws(TrainingError)
    /// The reward of one response.
    func score(_ response: ScoredResponse) -> Double
}

extension TrainingReward {
    /// Nothing to prepare.
    public func prepareResponses(_ answers: [(user: String, text: String)]) throws(TrainingError) {}
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
    /// The fluency gate's weight w in [0, 1] (`FluencyGate`; 0: off, every reward as without the gate).
    public private(set) var fluencyWeight: Double = 0
    /// The scorer of the gate's f (nil while the gate is off; set by `prepare` when the weight is above 0).
    public private(set) var fluency: FluencyScorer?

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

    /// Turns the fluency gate on with weight `weight` (clamped to [0, 1]; 0 turns it off). Every dimension's
    /// normalised reward is then multiplied by the gate G of the answer against the prompt's reference answer.
    public mutating func gate(weight: Double) {
        fluencyWeight = min(max(weight.isNaN ? 0 : weight, 0), 1)
        if fluencyWeight == 0 { fluency = nil }
    }

    /// Generates the missing references (8 at a time); with the fluency gate on, scores their f (cached).
    public mutating func prepare(promptIndices: [Int], prompts: PromptSet, experts: InProcessExperts,
                                 maxTokens: Int) throws(TrainingError)
    {
        try prepareReferences(promptIndices: promptIndices, prompts: prompts, experts: experts, maxTokens: maxTokens)
        guard fluencyWeight > 0 else { return }
        if fluency == nil || fluency?.experts !== experts { fluency = FluencyScorer(experts: experts) }
        let users = Array(Set(promptIndices.map { prompts.prompts[$0] })).sorted()
        _ = try fluency?.score(users.compactMap { user in references[user].map { (user: user, text: $0.text) } },
                               guarded: false)
    }

    /// Scores the fluency f of answers in one batch ahead of `score`/`normalised` (which would otherwise score
    /// each one alone); nothing while the gate is off.
    public func prepareResponses(_ answers: [(user: String, text: String)]) throws(TrainingError) {
        guard fluencyWeight > 0, let fluency else { return }
        _ = try fluency.score(answers)
    }

    /// The fluency gate G of `text` as an answer to `prompt` (1 while the gate is off).
    public func fluencyGate(_ text: String, prompt: String) -> Double {
        guard fluencyWeight > 0, let fluency else { return 1 }
        // A forward pass that fails (it does not on a model that generated the answer) scores as degenerate.
        let f = (try? fluency.score([(user: prompt, text: text)]).first) ?? FluencyGate.guardedLogProb
        let reference = references[prompt].flatMap {
            try? fluency.score([(user: prompt, text: $0.text)], guarded: false).first
        } ?? FluencyGate.guardedLogProb
        return FluencyGate.gate(f: f, reference: reference, weight: fluencyWeight)
    }

    private mutating func prepareReferences(promptIndices: [Int], prompts: PromptSet, experts: InProcessExperts,
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

    /// The normalised rewards of each dimension for a text and prompt, each multiplied by the fluency gate when
    /// it is on.
    public func normalised(_ text: String, prompt: String) -> [Double] {
        let reference = references[prompt]?.raw ?? model.raw("")
        let norm = model.normalised(text, reference: reference)
        guard fluencyWeight > 0 else { return norm }
        let g = fluencyGate(text, prompt: prompt)
        return norm.map { $0 * g }
    }

    /// The preference's combined normalised reward.
    public func score(_ response: ScoredResponse) -> Double {
        let norm = normalised(response.result.text, prompt: prompts.prompts[response.promptIndex])
        return RewardModel.combine(norm, preference: response.preference)
    }
}
