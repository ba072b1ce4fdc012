import Foundation
import Inference
import Preference
import TestKit
import Testing
import Training
import Wire

/// A reward the tiny random-weight experts differ on by construction: the share of each drawn token's
/// probability that the combination's expertise expert (elementary or knowledgeable) gave it, averaged over
/// the response. Putting more weight on that expert raises it.
struct ExpertiseShareReward: TrainingReward {
    mutating func prepare(promptIndices: [Int], prompts: PromptSet, experts: InProcessExperts,
                          maxTokens: Int) throws(TrainingError) {}

    func score(_ response: ScoredResponse) -> Double {
        let steps = response.result.steps
        guard !steps.isEmpty else { return 0 }
        var total = 0.0
        for step in steps {
            let sum = step.expertProbs.reduce(0, +)
            let slot = step.mask[0] ? 0 : 1
            total += sum > 0 ? Double(step.expertProbs[slot] / sum) : 0
        }
        return total / Double(steps.count)
    }
}

@Suite struct TrainingTests {
    static let tinyModel = Fixtures.tinyA
    static let prompts = PromptSet(["hi", "a story", "sky", "fruits"])

    /// Short system prompts keep the tiny model's prefill cheap in a debug build.
    static func experts() throws -> InProcessExperts {
        let file = PreferenceDimensionsFile(dimensions: PreferenceDimension.allCases.map {
            PreferenceDimensionsFile.Entry(id: $0.id, axis: $0.axis.rawValue, pole: $0.rawValue,
                                           prompt: "Be \($0.rawValue).")
        })
        return try InProcessExperts(model: try LanguageModel(path: tinyModel), prompts: try file.prompts(), topK: 16)
    }

    /// Two items of three responses each for the resume test: every pair of an item's responses enters the loss.
    static func groupOptions(steps: Int) -> TrainingOptions {
        var o = options(steps: steps)
        o.batch = 2
        o.responses = 3
        return o
    }

    static func options(steps: Int) -> TrainingOptions {
        var o = TrainingOptions(steps: steps, batch: 4, maxTokens: 4, seed: 3)
        o.learningRate = 0.05
        o.hidden = 8
        o.projection = 4
        o.checkpointEvery = 2
        return o
    }

    @Test("a short REBEL run raises the reward on its own training prompts")
    func trainingRaisesReward() throws {
        let experts = try Self.experts()
        let trainer = Trainer(experts: experts, prompts: Self.prompts, reward: ExpertiseShareReward(),
                              options: Self.options(steps: 16), outputDirectory: nil)
        try trainer.run()
        let first = trainer.history.prefix(4).map(\.meanReward).reduce(0, +) / 4
        let last = trainer.history.suffix(4).map(\.meanReward).reduce(0, +) / 4
        #expect(last > first + 0.05, "first steps \(first), last steps \(last)")
    }

    @Test("a resumed run ends with the same PCM as an uninterrupted one, with three responses per item")
    func resumeIsExact() throws {
        let experts = try Self.experts()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pcm-resume-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let whole = Trainer(experts: experts, prompts: Self.prompts, reward: ExpertiseShareReward(),
                            options: Self.groupOptions(steps: 4), outputDirectory: nil)
        try whole.run()
        let half = Trainer(experts: experts, prompts: Self.prompts, reward: ExpertiseShareReward(),
                           options: Self.groupOptions(steps: 2), outputDirectory: dir)
        try half.run()
        let resumed = Trainer(experts: experts, prompts: Self.prompts, reward: ExpertiseShareReward(),
                              options: Self.groupOptions(steps: 4), outputDirectory: dir)
        try resumed.resume()
        #expect(resumed.completedSteps == 2)
        try resumed.run()
        #expect(resumed.network == whole.network)
        // The first two steps come back from the CSV, which keeps 5 decimals.
        #expect(resumed.history.count == 4)
        for (a, b) in zip(resumed.history, whole.history) { #expect(abs(a.meanReward - b.meanReward) < 1e-4) }
        let loaded = try PCMFile.load(dir + "/pcm.json")
        #expect(loaded == resumed.network)
        let csv = try String(contentsOfFile: dir + "/rewards.csv", encoding: .utf8)
        #expect(csv.split(separator: "\n").count == 5)
    }

    @Test("a tempered draw records its candidates, and the response's log-probability is the tempered one")
    func temperedSteps() throws {
        let experts = try Self.experts()
        let sessions = [0, 2, 4].map { slot in
            (slot: slot, system: Optional("Be \(PreferenceDimension.allCases[slot].rawValue)."))
        }
        let alpha: [Float] = [1.0 / 3, 0, 1.0 / 3, 0, 1.0 / 3, 0]
        let tempered = DecodeRequest(user: "hi", sessions: sessions, policy: .fixed([1, 1, 1, 1, 1, 1]),
                                     sampling: SamplingParameters(temperature: 0.7, seed: 5), record: true)
        var greedy = tempered
        greedy.sampling = SamplingParameters(temperature: 0)
        let results = try experts.decode([tempered, greedy], maxTokens: 4)
        let steps = results[0].steps
        try #require(!steps.isEmpty)
        for step in steps {
            let candidates = try #require(step.candidateProbs)
            #expect(candidates.indices.allSatisfy { step.mask[$0] == !candidates[$0].isEmpty })
            #expect(candidates[0].indices.contains(step.chosen))
            #expect(abs(step.inverseTemperature - 1 / 0.7) < 1e-6)
            // The drawn token's listed probability is among the candidates'.
            #expect(abs(candidates[0][step.chosen] - step.expertProbs[0]) < 1e-6)
        }
        let sum = steps.reduce(0.0) { $0 + $1.logProb(alpha: alpha) }
        #expect(abs(results[0].logProb - sum) < 1e-4 * max(1, abs(sum)))
        #expect(results[1].steps.allSatisfy { $0.candidateProbs == nil })
    }

    @Test("with prompt guidance a greedy answer follows (1 + γ)·ℓ − γ·ℓ₀ token by token")
    func guidance() throws {
        let experts = try Self.experts()
        let gamma: Float = 1.5
        let system = "Be concise."
        let request = DecodeRequest(user: "a story", sessions: [(slot: 2, system: system)],
                                    policy: .fixed([1, 1, 1, 1, 1, 1]), sampling: SamplingParameters(temperature: 0),
                                    guidance: gamma)
        let guided = try experts.decode([request], maxTokens: 5)[0].tokens

        // The same by hand: the expert's conversation and the default-prompt one, side by side.
        let model = experts.model
        let own = try model.makeCache()
        let base = try model.makeCache()
        var ownLogits = try model.forward(cache: own, tokens: try experts.sessionPrompt(system: system, user: "a story"))
        var baseLogits = try model.forward(cache: base, tokens: try experts.sessionPrompt(system: nil, user: "a story"))
        var expected: [Int32] = []
        while expected.count < 5 {
            let mixed = zip(ownLogits, baseLogits).map { (1 + gamma) * $0 - gamma * $1 }
            let next = TopK(logits: mixed, k: 1).ids[0]
            if experts.isStop(next) { break }
            expected.append(next)
            ownLogits = try model.forward(cache: own, tokens: [next])
            baseLogits = try model.forward(cache: base, tokens: [next])
        }
        #expect(guided == expected)
        var plain = request
        plain.guidance = 0
        let unguided = try experts.decode([plain], maxTokens: 5)[0].tokens
        let together = try experts.decode([plain, request], maxTokens: 5)
        #expect(together[0].tokens == unguided, "guidance of one request leaves another in the batch alone")
        #expect(together[1].tokens == guided)
        // Guidance must matter here, or the comparison above could not tell it from no guidance.
        #expect(guided != unguided)
    }

    @Test("the diagnosis scores the base model, every expert, and each combination's mixtures and prompting")
    func diagnosis() throws {
        let experts = try Self.experts()
        let prompts = PromptSet(["hi"])
        var reward = ReferenceNormalisedReward(model: RewardModel(sentiment: SentimentAnalyzer(lexicon: [:])),
                                               prompts: prompts, cachePath: nil)
        let evaluator = try Evaluator(experts: experts, prompts: prompts, maxTokens: 3, temperature: 1, seed: 1)
        let records = try evaluator.diagnose(reward: &reward, samples: 1, tilt: 0.6)
        // base + 6 experts, then per combination: uniform (probability and logit merge), 3 tilts, prompting.
        #expect(records.count == 7 + 8 * 6)
        #expect(Set(records.filter { $0.combination == nil }.map(\.method))
                == Set(["base"] + PreferenceDimension.allCases.map { "only \($0.rawValue)" }))
        #expect(records.filter { $0.method == "uniform" }.count == 8)
        #expect(records.filter { $0.method == "uniform logit" }.count == 8)
        for r in records { #expect(r.normalised.allSatisfy { (0...1).contains($0) }) }
        let alone = try evaluator.diagnose(reward: &reward, samples: 1, tilt: 0.6, expertsOnly: true)
        #expect(alone.count == 7)
        // With guidance, prompting also runs without it.
        let guided = try evaluator.diagnose(reward: &reward, samples: 1, tilt: 0.6, guidance: 1)
        #expect(guided.count == 7 + 8 * 7)
        #expect(guided.filter { $0.method == "prompting unguided" }.count == 8)
        // With an opener, each of a combination's experts also starts the answer alone.
        let opened = try evaluator.diagnose(reward: &reward, samples: 1, tilt: 0.6, opener: 2)
        #expect(opened.count == 7 + 8 * 9)
        for d in PreferenceDimension.allCases {
            #expect(opened.filter { $0.method == "opener \(d.rawValue)" }.count == 4)
        }
    }

    @Test("a schedule's first weights hold for its first steps, then the second weights")
    func schedule() throws {
        let experts = try Self.experts()
        let sampling = SamplingParameters(temperature: 0, seed: 1)
        let sessions = experts.sessions(for: Combinations.all[0])
        func run(_ policy: WeightPolicy) throws -> [Int32] {
            try experts.decode([DecodeRequest(user: "hi", sessions: sessions, policy: policy, sampling: sampling)],
                               maxTokens: 6)[0].tokens
        }
        var a = [Float](repeating: 0, count: 6), b = a
        a[PreferenceDimension.elementary.ordinal] = 1
        b[PreferenceDimension.concise.ordinal] = 1
        let onlyA = try run(.fixed(a)), onlyB = try run(.fixed(b))
        // The two experts must answer differently, or the schedule's two halves could not be told apart.
        #expect(onlyA != onlyB)
        #expect(try run(.schedule(first: a, steps: 100, then: b)) == onlyA)
        #expect(try run(.schedule(first: a, steps: 0, then: b)) == onlyB)
        let switched = try run(.schedule(first: a, steps: 2, then: b))
        #expect(Array(switched.prefix(2)) == Array(onlyA.prefix(2)))
    }

    @Test("exploration draws from the blend of the PCM's weights and the uniform mixture, and records the PCM's own")
    func exploration() throws {
        let experts = try Self.experts()
        let combo = Combinations.all[0]
        let sessions = experts.sessions(for: combo)
        let elementary = PreferenceDimension.elementary.ordinal
        // A PCM that puts nearly all weight on the elementary expert: a large output bias on its slot.
        var pcm = PCMNetwork(configuration: PCMConfiguration(hidden: 4, projection: 0, projectionSeed: 1,
                                                             embeddingWidth: 0, horizon: 4), seed: 1)
        pcm.parameters[pcm.parameters.count - 6 + elementary] = 30
        let greedy = SamplingParameters(temperature: 0, seed: 1)
        func run(_ policy: WeightPolicy, explore: Float = 0) throws -> DecodeResult {
            try experts.decode([DecodeRequest(user: "hi", sessions: sessions, policy: policy, sampling: greedy,
                                              record: true, explore: explore)], maxTokens: 6)[0]
        }
        var onlyElementary = [Float](repeating: 0, count: 6)
        onlyElementary[elementary] = 1
        let uniform = try run(.fixed([Float](repeating: 1, count: 6)))
        let leaning = try run(.fixed(onlyElementary))
        // The two policies must answer differently, or the draws below could not tell them apart.
        #expect(uniform.tokens != leaning.tokens)
        let onPolicy = try run(.pcm(pcm, combo))
        let explored = try run(.pcm(pcm, combo), explore: 1)
        #expect(onPolicy.tokens == leaning.tokens)
        #expect(explored.tokens == uniform.tokens)
        // The recorded log-probability and weights are the PCM's, not those of the blend the tokens came from.
        try #require(!explored.steps.isEmpty)
        let own = explored.steps.reduce(0.0) { sum, step in
            sum + step.logProb(alpha: pcm.weights(step.features, mask: step.mask))
        }
        #expect(abs(explored.logProb - own) < 1e-4 * max(1, abs(own)))
        #expect(abs(explored.logProb - uniform.logProb) > 0.1)
        #expect(explored.meanWeights[elementary] > 0.99)
    }

    @Test("training options round-trip, and options saved before exploration existed load as on-policy")
    func optionsWithoutExploration() throws {
        var options = Self.options(steps: 3)
        options.explore = 0.25
        let data = try JSONEncoder().encode(options)
        #expect(try JSONDecoder().decode(TrainingOptions.self, from: data) == options)
        var object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(object.removeValue(forKey: "explore") != nil)
        let saved = try JSONSerialization.data(withJSONObject: object)
        let old = try JSONDecoder().decode(TrainingOptions.self, from: saved)
        var expected = options
        expected.explore = 0
        #expect(old == expected)
    }

    @Test("experts that see the preference: their sessions carry it, and each expert alone runs per combination")
    func expertsSeeingThePreference() throws {
        let plain = try Self.experts()
        let aware = try InProcessExperts(model: plain.model, prompts: plain.prompts, context: .ownAndPreference,
                                         topK: 16)
        let combo = Combinations.all[5]
        #expect(plain.sessions(for: combo).map(\.system) == combo.dimensions.map { plain.prompts[$0] })
        #expect(aware.sessions(for: combo).map(\.system)
                == combo.dimensions.map { plain.prompts[$0] + "\n\n" + plain.prompts.joined(combo) })
        #expect(aware.sessions(for: combo).map(\.slot) == combo.dimensions.map(\.ordinal))
        let prompts = PromptSet(["hi", "sky"])
        let pcm = PCMNetwork(configuration: PCMConfiguration(hidden: 4, projection: 0, projectionSeed: 1,
                                                             embeddingWidth: 0, horizon: 4), seed: 1)
        var reward = ReferenceNormalisedReward(model: RewardModel(sentiment: SentimentAnalyzer(lexicon: [:])),
                                               prompts: prompts, cachePath: nil)
        let scores = try Evaluator(experts: aware, prompts: prompts, maxTokens: 3, temperature: 1, seed: 1)
            .run(pcm: pcm, reward: &reward)
        for combo in Combinations.all {
            let table = try #require(scores.scores[Combinations.label(combo)])
            #expect(table[.pcm]?.count == 2 && table[.uniform]?.count == 2 && table[.prompting]?.count == 2)
            for d in PreferenceDimension.allCases {
                #expect((table[.single(d)]?.count ?? 0) == (combo.dimensions.contains(d) ? 2 : 0))
            }
        }
        // Every score is one line of the items file, numbered by prompt.
        let lines = Evaluator.itemsCSV(scores).split(separator: "\n")
        #expect(lines.first == "combination,method,prompt,reward")
        #expect(lines.count == 1 + 8 * 6 * 2)
        #expect(lines.contains { $0.hasPrefix("P1A+P2A+P3A,PCM,1,") })
    }

    @Test("the bootstrap interval contains the mean and narrows with more data")
    func bootstrap() {
        let small = Interval.bootstrap([0.2, 0.4, 0.6, 0.8])
        let large = Interval.bootstrap((0..<400).map { [0.2, 0.4, 0.6, 0.8][$0 % 4] })
        #expect(small.low <= small.mean && small.mean <= small.high)
        #expect(abs(large.mean - 0.5) < 1e-12)
        #expect(large.width < small.width)
    }

    @Test("the 8 combinations take one pole of each axis")
    func combinations() {
        #expect(Combinations.all.count == 8)
        #expect(Set(Combinations.all.map(Combinations.label)).count == 8)
        #expect(Combinations.label(Combinations.all[0]) == "P1A+P2A+P3A")
    }
}
