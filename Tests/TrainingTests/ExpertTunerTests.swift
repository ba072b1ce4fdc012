import Foundation
import Inference
import Preference
import Testing
import Training
import Wire

/// A reward a logit bias can raise whatever the context: the share of the response's tokens whose id is a
/// multiple of 3.
struct TokenShareReward: TrainingReward {
    mutating func prepare(promptIndices: [Int], prompts: PromptSet, experts: InProcessExperts,
                          maxTokens: Int) throws(TrainingError) {}

    func score(_ response: ScoredResponse) -> Double {
        let tokens = response.result.tokens
        guard !tokens.isEmpty else { return 0 }
        return Double(tokens.filter { $0 % 3 == 0 }.count) / Double(tokens.count)
    }
}

@Suite struct ExpertTunerTests {
    static func options(steps: Int) -> TuningOptions {
        var o = TuningOptions(steps: steps, batch: 2, maxTokens: 4, seed: 5)
        o.responses = 3
        o.learningRate = 0.1
        o.temperature = 1
        o.checkpointEvery = 2
        return o
    }

    @Test("a logit bias steers an expert, and a tempered draw records the biased log-probability")
    func biasSteers() throws {
        let experts = try TrainingTests.experts()
        let vocab = experts.model.vocabularySize
        let system = Optional("Be concise.")
        let plain = DecodeRequest(user: "a story", sessions: [(slot: 2, system: system)],
                                  policy: .fixed([1, 1, 1, 1, 1, 1]), sampling: SamplingParameters(temperature: 0))
        let unbiased = try experts.decode([plain], maxTokens: 4)[0].tokens
        // A token that is neither a stop token nor the plain answer's first one, pushed far up.
        let target = try #require((0..<Int32(vocab)).first { !experts.isStop($0) && $0 != unbiased.first })
        var bias = [Float](repeating: 0, count: vocab)
        bias[Int(target)] = 100
        var steered = plain
        steered.biases = [bias]
        let results = try experts.decode([steered, plain], maxTokens: 4)
        #expect(results[0].tokens == [target, target, target, target])
        #expect(results[1].tokens == unbiased, "the bias of one request leaves another in the batch alone")

        // Tempered, with the candidates recorded: the steps' log-probabilities under the bias add up to the
        // response's, and without the bias they differ.
        var small = [Float](repeating: 0, count: vocab)
        for i in stride(from: 0, to: vocab, by: 3) { small[i] = 0.5 }
        var tempered = plain
        tempered.sampling = SamplingParameters(temperature: 0.8, seed: 9)
        tempered.biases = [small]
        tempered.recordBias = true
        let drawn = try experts.decode([tempered], maxTokens: 4)[0]
        try #require(!drawn.biasSteps.isEmpty)
        #expect(drawn.biasSteps.count >= drawn.tokens.count)
        for step in drawn.biasSteps { #expect(abs(step.inverseTemperature - 1 / 0.8) < 1e-6) }
        let sum = drawn.biasSteps.reduce(0.0) { $0 + $1.logProb(bias: small) }
        #expect(abs(drawn.biasLogProb - sum) < 1e-6 * max(1, abs(sum)))
        let zero = [Float](repeating: 0, count: vocab)
        #expect(abs(drawn.biasSteps.reduce(0.0) { $0 + $1.logProb(bias: zero) } - sum) > 1e-4)
        // A bias of the wrong length is refused, not applied.
        var wrong = plain
        wrong.biases = [[1, 2, 3]]
        #expect(throws: TrainingError.self) { try experts.decode([wrong], maxTokens: 2) }
    }

    @Test("a short tuning run raises every expert's reward on its own training prompts")
    func tuningRaisesReward() throws {
        let experts = try TrainingTests.experts()
        let tuner = ExpertTuner(experts: experts, prompts: TrainingTests.prompts, reward: TokenShareReward(),
                                options: Self.options(steps: 12), outputDirectory: nil)
        try tuner.run()
        let first = tuner.history.prefix(3).map(\.meanReward).reduce(0, +) / 3
        let last = tuner.history.suffix(3).map(\.meanReward).reduce(0, +) / 3
        #expect(last > first + 0.1, "first steps \(first), last steps \(last)")
        // On fresh draws (other seeds), the tuned experts' answers score higher than the untuned ones'.
        func share(_ offsets: [[Float]]) throws -> Double {
            var requests: [DecodeRequest] = []
            for (d, dimension) in PreferenceDimension.allCases.enumerated() {
                let bias = try tuner.bias(of: offsets[d])
                for seed in 0..<8 {
                    requests.append(DecodeRequest(
                        user: TrainingTests.prompts.prompts[seed % 4],
                        sessions: [(slot: dimension.ordinal, system: experts.prompts[dimension])],
                        policy: .fixed([1, 1, 1, 1, 1, 1]),
                        sampling: SamplingParameters(temperature: 1, seed: 1000 + UInt64(seed)), biases: [bias]))
                }
            }
            let results = try experts.decode(requests, maxTokens: 4)
            let shares = results.map { r in
                Double(r.tokens.filter { $0 % 3 == 0 }.count) / Double(max(r.tokens.count, 1))
            }
            return shares.reduce(0, +) / Double(shares.count)
        }
        let untuned = try share(tuner.offsets.map { $0.map { _ in 0 } })
        let tuned = try share(tuner.offsets)
        #expect(tuned > untuned + 0.05, "untuned \(untuned), tuned \(tuned)")
    }

    @Test("the KL penalty holds the tuned experts near the untuned ones (means over four seeds)")
    func klPenaltyHolds() throws {
        let experts = try TrainingTests.experts()
        func run(_ beta: Double, seed: UInt64) throws -> (offset: Double, kl: Double) {
            var options = Self.options(steps: 8)
            options.seed = seed
            options.klPenalty = beta
            let tuner = ExpertTuner(experts: experts, prompts: TrainingTests.prompts, reward: TokenShareReward(),
                                    options: options, outputDirectory: nil)
            try tuner.run()
            let norm = tuner.offsets.map { $0.reduce(0.0) { $0 + Double($1 * $1) } }.reduce(0, +).squareRoot()
            return (norm, tuner.history.suffix(3).map(\.kl).reduce(0, +) / 3)
        }
        // One seed's eight small steps are noisy enough for the penalty's effect to hide in them (a change in
        // the kernels' float rounding turned one seed's comparison around); the mean over seeds is not.
        func mean(_ beta: Double) throws -> (offset: Double, kl: Double) {
            let runs = try (5...8).map { try run(beta, seed: UInt64($0)) }
            return (runs.map(\.offset).reduce(0, +) / 4, runs.map(\.kl).reduce(0, +) / 4)
        }
        let free = try mean(0)
        // Measured: β = 0.2 cuts the mean KL by 30–45 % and the offsets' norm by 10–20 % (β = 0.5 overshoots).
        let held = try mean(0.2)
        #expect(held.offset < 0.95 * free.offset, "offset norm \(held.offset) with the penalty, \(free.offset) without")
        #expect(held.kl < 0.8 * free.kl, "KL \(held.kl) with the penalty, \(free.kl) without")
        #expect(free.kl > 0)
    }

    @Test("a resumed tuning run ends with the same offsets, and its experts file loads them")
    func resumeIsExact() throws {
        let experts = try TrainingTests.experts()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tune-resume-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let whole = ExpertTuner(experts: experts, prompts: TrainingTests.prompts, reward: TokenShareReward(),
                                options: Self.options(steps: 4), outputDirectory: nil)
        try whole.run()
        // Each expert is tuned alone on its own prompt, so experts that see the preference in mixtures tune the
        // same; their experts file keeps the context.
        let aware = try InProcessExperts(model: experts.model, prompts: experts.prompts, context: .preference,
                                         topK: experts.topK)
        let half = ExpertTuner(experts: aware, prompts: TrainingTests.prompts, reward: TokenShareReward(),
                               options: Self.options(steps: 2), outputDirectory: dir)
        try half.run()
        let resumed = ExpertTuner(experts: aware, prompts: TrainingTests.prompts, reward: TokenShareReward(),
                                  options: Self.options(steps: 4), outputDirectory: dir)
        try resumed.resume()
        #expect(resumed.completedSteps == 2)
        try resumed.run()
        #expect(resumed.offsets == whole.offsets)
        #expect(resumed.history.count == 4)
        let csv = try String(contentsOfFile: dir + "/tuning.csv", encoding: .utf8)
        #expect(csv.split(separator: "\n").count == 5)

        // DIR/experts.json names each expert's bias file beside it; loaded, they hold the tuned offsets.
        let path = dir + "/experts.json"
        let file = try PreferenceDimensionsFile.load(contentsOf: URL(fileURLWithPath: path))
        let paths = file.biasPaths(relativeTo: path)
        #expect(paths.count == 6)
        #expect(try file.expertContext() == .preference)
        for (d, dimension) in PreferenceDimension.allCases.enumerated() {
            let loaded = try LogitBias.load(path: try #require(paths[dimension]),
                                            vocabularySize: experts.model.vocabularySize)
            #expect(loaded.hidden == resumed.offsets[d])
            #expect(try loaded.logits(model: experts.model) == resumed.bias(of: resumed.offsets[d]))
        }
        let tuned = try InProcessExperts(model: experts.model, prompts: try file.prompts(path: path),
                                         biases: try paths.mapValues { p throws(LogitBiasError) in
                                             try LogitBias.load(path: p)
                                         })
        #expect(tuned.biases(for: [.concise]).first??.count == experts.model.vocabularySize)
        // A bias for another vocabulary is refused when the experts are built.
        let foreign = try LogitBias(vocabularySize: 3, entries: [(1, 1)])
        #expect(throws: TrainingError.self) {
            try InProcessExperts(model: experts.model, biases: [.concise: foreign])
        }
    }

    @Test("with tuned experts the evaluation adds the soup: prompting's prompt with the mean of the experts' biases")
    func evaluationWithSoup() throws {
        let plain = try TrainingTests.experts()
        let model = plain.model
        var biases: [PreferenceDimension: LogitBias] = [:]
        for (d, dimension) in PreferenceDimension.allCases.enumerated() {
            biases[dimension] = try LogitBias(vocabularySize: model.vocabularySize, entries: [],
                                              hidden: (0..<model.hiddenWidth).map { 0.2 * sin(Float($0 * (d + 1))) })
        }
        let tuned = try InProcessExperts(model: model, prompts: plain.prompts, biases: biases, topK: 16)
        let prompts = PromptSet(["hi", "sky"])
        let pcm = PCMNetwork(configuration: PCMConfiguration(hidden: 4, projection: 0, projectionSeed: 1,
                                                             embeddingWidth: 0, horizon: 4), seed: 1)
        for (experts, soup) in [(tuned, true), (plain, false)] {
            var reward = ReferenceNormalisedReward(model: RewardModel(sentiment: SentimentAnalyzer(lexicon: [:])),
                                                   prompts: prompts, cachePath: nil)
            let evaluator = try Evaluator(experts: experts, prompts: prompts, maxTokens: 3, temperature: 1, seed: 1)
            let scores = try evaluator.run(pcm: pcm, reward: &reward)
            #expect(scores.scores.count == 8)
            for table in scores.scores.values {
                #expect(table[.pcm]?.count == 2 && table[.prompting]?.count == 2 && table[.uniform]?.count == 2)
                #expect((table[.soup]?.count ?? 0) == (soup ? 2 : 0))
            }
            let report = Evaluator.report(scores, header: "# t").markdown
            #expect(report.contains("| soup |") == soup)
            #expect(report.contains("- vs soup:") == soup)
        }
        // The soup's bias is the mean of the experts' biases, and only when all three have one.
        let a: [Float] = [1, 2, 3], b: [Float] = [3, 0, 0], c: [Float] = [2, 1, 0]
        #expect(Evaluator.soup([a, b, c]) == [2, 1, 1])
        #expect(Evaluator.soup([a, nil, c]) == nil)
    }
}
