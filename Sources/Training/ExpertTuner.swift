import Decoding
import Foundation
import Inference
import Preference
import Wire

/// The settings of an expert-tuning run (`mope tune`).
public struct TuningOptions: Sendable, Codable, Equatable {
    /// REBEL iterations.
    public var steps: Int
    /// Training prompts per iteration; every expert answers each `responses` times.
    public var batch: Int
    /// Responses per (expert, prompt); every pair enters the loss.
    public var responses: Int = 4
    /// Response length limit.
    public var maxTokens: Int
    /// The run's seed.
    public var seed: UInt64
    /// Sampling temperature of the experts.
    public var temperature: Float = 0.7
    /// REBEL's η.
    public var eta: Double = 4
    /// Adam's step size (per coordinate of the hidden offset).
    public var learningRate: Float = 0.02
    /// Optimiser updates per batch.
    public var innerEpochs: Int = 4
    /// Decoupled weight decay (as in AdamW): after each update the hidden offset shrinks by this fraction.
    public var weightDecay: Float = 0.002
    /// A checkpoint every this many steps.
    public var checkpointEvery: Int = 5
    /// β of the KL penalty: each answer's reward is R − β · Σ_t log(q_h(y_t) / q_0(y_t)), the log-ratio of the
    /// tuned expert's draw to the untuned one's (a one-sample estimate of their KL divergence), as in RLHF.
    /// Without it the offsets drift towards answers that game the rule-based rewards (a string of "1." has
    /// a readability grade far below any sentence). In REBEL's regression each step moves the policy η·β of the
    /// way back towards the untuned one, so η·β must stay below 1 (above, the steps overshoot and diverge).
    public var klPenalty: Double = 0.01

    /// Creates options.
    public init(steps: Int, batch: Int, maxTokens: Int, seed: UInt64) {
        self.steps = steps
        self.batch = batch
        self.maxTokens = maxTokens
        self.seed = seed
    }
}

/// One tuning step's figures.
public struct TuningLog: Sendable, Equatable {
    /// The step (1-based).
    public var step: Int
    /// Each dimension's mean reward of its expert's responses this step (the expert's own dimension), in
    /// `PreferenceDimension.allCases` order.
    public var rewards: [Double]
    /// The mean REBEL loss over the experts before the step's updates.
    public var loss: Double
    /// The mean over the answers of Σ_t log(q_h(y_t) / q_0(y_t)): how far the tuned experts have moved.
    public var kl: Double
    /// Generated tokens per second of wall time.
    public var tokensPerSecond: Double
    /// Wall time of the step.
    public var seconds: Double

    /// The mean over the experts.
    public var meanReward: Double { rewards.reduce(0, +) / Double(max(rewards.count, 1)) }

    var csv: String {
        String(format: "%d,%.5f,%.5f,%.1f,%.2f,%.4f,", step, meanReward, loss, tokensPerSecond, seconds, kl)
            + rewards.map { String(format: "%.5f", $0) }.joined(separator: ",")
    }

    static let csvHeader = "step,mean_reward,loss,tokens_per_second,seconds,kl,"
        + PreferenceDimension.allCases.map { "reward_\($0.rawValue)" }.joined(separator: ",")
}

/// Tunes each expert's hidden offset h (`LogitBias.hidden`: its logits become ℓ + W_out · h) by online REBEL on
/// the expert's own dimension, the way the paper's experts are each trained on one preference's reward (there by
/// full fine-tuning). Every expert keeps its system prompt; the offset is what training adds: `hiddenWidth`
/// parameters per expert (576 for SmolLM2-135M), which generalise across tokens through the output layer, where
/// a free bias per token (49,152 of them) only learns about the few tokens each sample happens to draw.
///
/// Each step draws `batch` training prompts; each of the six experts answers each prompt `responses` times (all
/// sessions of all experts in one batched forward pass per token); each answer is scored by the expert's own
/// dimension's normalised reward; and each expert's offset takes `innerEpochs` Adam steps on the REBEL loss of
/// its pairs (`BiasRebel`, with ∂/∂h = W_outᵀ ∂/∂b). Everything random derives from (seed, step), so a resumed
/// run ends exactly as an uninterrupted one.
public final class ExpertTuner<Reward: TrainingReward> {
    /// The experts (their prompts; their biases are ignored: tuning starts from zero).
    public let experts: InProcessExperts
    /// The training prompts.
    public let prompts: PromptSet
    /// The reward.
    public private(set) var reward: Reward
    /// The settings.
    public let options: TuningOptions
    /// Where checkpoints, biases and the CSV go (nil: nowhere).
    public let outputDirectory: String?
    /// Each dimension's current hidden offset, in `PreferenceDimension.allCases` order.
    public private(set) var offsets: [[Float]]
    /// Steps done.
    public private(set) var completedSteps = 0
    /// Every step's figures so far.
    public private(set) var history: [TuningLog] = []
    private var optimizers: [AdamOptimizer]
    /// Rows of the output layer, dequantised once each.
    private var rows: [Int32: [Float]] = [:]

    /// Creates a tuner; every offset starts at zero.
    public init(experts: InProcessExperts, prompts: PromptSet, reward: Reward, options: TuningOptions,
                outputDirectory: String?)
    {
        self.experts = experts
        self.prompts = prompts
        self.reward = reward
        self.options = options
        self.outputDirectory = outputDirectory
        let width = experts.model.hiddenWidth
        offsets = PreferenceDimension.allCases.map { _ in [Float](repeating: 0, count: width) }
        optimizers = PreferenceDimension.allCases.map { _ in
            AdamOptimizer(count: width, learningRate: options.learningRate)
        }
    }

    // MARK: Files

    private struct Checkpoint: Codable {
        var options: TuningOptions
        var step: Int
        var offsets: [[Float]]
        var optimizers: [AdamOptimizer]
    }

    private var files: RunFiles { RunFiles(directory: outputDirectory) }

    /// The bias file of a dimension's expert: DIR/<pole>.bias.json.
    public static func biasFileName(_ dimension: PreferenceDimension) -> String { "\(dimension.rawValue).bias.json" }

    /// Writes DIR/checkpoint.json, one DIR/<pole>.bias.json per expert, DIR/experts.json (the experts' prompts
    /// with their biases) and DIR/tuning.csv.
    public func checkpoint() throws(TrainingError) {
        guard outputDirectory != nil else { return }
        do {
            try files.write("checkpoint.json", try JSONEncoder().encode(
                Checkpoint(options: options, step: completedSteps, offsets: offsets, optimizers: optimizers)))
        } catch let error as TrainingError {
            throw error
        } catch {
            throw .io(path: files.path("checkpoint.json") ?? "", reason: "\(error)")
        }
        var entries: [PreferenceDimensionsFile.Entry] = []
        for (d, dimension) in PreferenceDimension.allCases.enumerated() {
            let bias: LogitBias
            do {
                bias = try LogitBias(vocabularySize: experts.model.vocabularySize, entries: [], hidden: offsets[d])
            } catch {
                throw .io(path: files.path(Self.biasFileName(dimension)) ?? "", reason: "\(error)")
            }
            try files.write(Self.biasFileName(dimension), bias.encoded(
                note: "mope tune: the \(dimension.rawValue) expert's logit bias after \(completedSteps) steps"))
            entries.append(PreferenceDimensionsFile.Entry(
                id: dimension.id, axis: dimension.axis.rawValue, pole: dimension.rawValue,
                prompt: experts.prompts[dimension], bias: Self.biasFileName(dimension)))
        }
        let file = PreferenceDimensionsFile(
            source: "mope tune: the experts' system prompts, each with a logit bias tuned by REBEL on its dimension",
            dimensions: entries, context: experts.context == .own ? nil : experts.context.rawValue)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        do {
            try files.write("experts.json", try encoder.encode(file))
        } catch let error as TrainingError {
            throw error
        } catch {
            throw .io(path: files.path("experts.json") ?? "", reason: "\(error)")
        }
        let csv = ([TuningLog.csvHeader] + history.map(\.csv)).joined(separator: "\n") + "\n"
        try files.write("tuning.csv", Data(csv.utf8))
    }

    /// Loads DIR/checkpoint.json and the CSV rows up to its step (nothing when there is no checkpoint).
    public func resume() throws(TrainingError) {
        guard let file = files.path("checkpoint.json"), FileManager.default.fileExists(atPath: file) else { return }
        let checkpoint: Checkpoint
        do {
            checkpoint = try JSONDecoder().decode(Checkpoint.self, from: Data(contentsOf: URL(fileURLWithPath: file)))
        } catch {
            throw .badCheckpoint(path: file, reason: "\(error)")
        }
        var expected = checkpoint.options
        expected.steps = options.steps
        guard expected == options else {
            throw .badCheckpoint(path: file, reason: "it was made with other settings (\(checkpoint.options))")
        }
        guard checkpoint.offsets.count == offsets.count, checkpoint.optimizers.count == optimizers.count,
              checkpoint.offsets.allSatisfy({ $0.count == experts.model.hiddenWidth })
        else { throw .badCheckpoint(path: file, reason: "it was made for another model or set of experts") }
        offsets = checkpoint.offsets
        optimizers = checkpoint.optimizers
        completedSteps = checkpoint.step
        if let csv = files.path("tuning.csv"), let text = try? String(contentsOfFile: csv, encoding: .utf8) {
            for line in text.split(separator: "\n").dropFirst() {
                let f = line.split(separator: ",").map(String.init)
                guard f.count >= 6 + offsets.count, let step = Int(f[0]), step <= completedSteps else { continue }
                history.append(TuningLog(step: step, rewards: f.dropFirst(6).map { Double($0) ?? 0 },
                                         loss: Double(f[2]) ?? 0, kl: Double(f[5]) ?? 0,
                                         tokensPerSecond: Double(f[3]) ?? 0, seconds: Double(f[4]) ?? 0))
            }
        }
    }

    // MARK: Tuning

    /// The training prompts of one step.
    public func items(step: Int) -> [Int] {
        var rng = Xoshiro256StarStar(seed: options.seed &* 0x9E37_79B9 &+ UInt64(step) &+ 0x7475_6E65)
        return (0..<options.batch).map { _ in Int(rng.next() % UInt64(prompts.prompts.count)) }
    }

    /// Runs the remaining steps, calling `progress` after each.
    public func run(progress: (TuningLog) -> Void = { _ in }) throws(TrainingError) {
        while completedSteps < options.steps {
            let log = try tuneStep(completedSteps + 1)
            completedSteps += 1
            history.append(log)
            progress(log)
            if completedSteps % options.checkpointEvery == 0 || completedSteps == options.steps {
                try checkpoint()
            }
        }
    }

    /// The logits of a hidden offset: W_out · h.
    public func bias(of offset: [Float]) throws(TrainingError) -> [Float] {
        guard let projected = experts.model.outputProjection(offset) else {
            throw .inference("a hidden offset of \(offset.count) values, the model's hidden state has "
                             + "\(experts.model.hiddenWidth)")
        }
        return projected
    }

    /// ∂/∂h = W_outᵀ ∂/∂b: the gradient of a bias (non-zero on the candidates only) carried to the offset.
    private func offsetGradient(_ gradient: [Float]) -> [Float] {
        var out = [Float](repeating: 0, count: experts.model.hiddenWidth)
        for (id, g) in gradient.enumerated() where g != 0 {
            let key = Int32(id)
            if rows[key] == nil { rows[key] = experts.model.outputRow(id) }
            guard let row = rows[key] else { continue }
            for c in out.indices { out[c] += g * row[c] }
        }
        return out
    }

    private func tuneStep(_ step: Int) throws(TrainingError) -> TuningLog {
        let clock = ContinuousClock()
        let start = clock.now
        let items = items(step: step)
        try reward.prepare(promptIndices: items, prompts: prompts, experts: experts, maxTokens: options.maxTokens)
        let dimensions = PreferenceDimension.allCases
        let k = options.responses
        var biases: [[Float]] = []
        for offset in offsets { biases.append(try bias(of: offset)) }
        var requests: [DecodeRequest] = []
        var keys: [(dimension: Int, item: Int)] = []
        for (d, dimension) in dimensions.enumerated() {
            for (b, prompt) in items.enumerated() {
                for j in 0..<k {
                    let seed = options.seed &* 1_000_003 &+ UInt64(step) &* 7919 &+ UInt64((d * items.count + b) * k + j)
                    var weights = [Float](repeating: 0, count: 6)
                    weights[dimension.ordinal] = 1
                    requests.append(DecodeRequest(
                        user: prompts.prompts[prompt],
                        sessions: [(slot: dimension.ordinal, system: experts.prompts[dimension])],
                        policy: .fixed(weights),
                        sampling: SamplingParameters(temperature: options.temperature, seed: seed),
                        biases: [biases[d]], recordBias: true))
                    keys.append((d, b))
                }
            }
        }
        let sampleStart = clock.now
        let results = try experts.decode(requests, maxTokens: options.maxTokens)
        let sampleTime = seconds(clock.now - sampleStart)
        try reward.prepareResponses(results.indices.map {
            (user: prompts.prompts[items[keys[$0].1]], text: results[$0].text)
        })
        var rewards = [Double](repeating: 0, count: dimensions.count)
        var meanKL = 0.0
        var groups = [[[BiasTrajectory]]](repeating: [[BiasTrajectory]](repeating: [], count: items.count),
                                          count: dimensions.count)
        for (i, result) in results.enumerated() {
            let (d, b) = keys[i]
            guard let preference = try? PreferenceSpec(dimensions[d]) else { continue }
            let score = reward.score(ScoredResponse(promptIndex: items[b], preference: preference, result: result))
            rewards[d] += score / Double(items.count * k)
            let kl = result.biasLogProb - result.biasSteps.reduce(0.0) { $0 + $1.logProb(bias: []) }
            meanKL += kl / Double(results.count)
            groups[d][b].append(BiasTrajectory(steps: result.biasSteps, oldLogProb: result.biasLogProb,
                                               reward: score - options.klPenalty * kl))
        }
        var loss = 0.0
        for d in dimensions.indices {
            var pairs: [(BiasTrajectory, BiasTrajectory)] = []
            for group in groups[d] {
                for i in group.indices { for j in (i + 1)..<group.count { pairs.append((group[i], group[j])) } }
            }
            for epoch in 0..<options.innerEpochs {
                let bias = epoch == 0 ? biases[d] : try self.bias(of: offsets[d])
                let (l, gradient) = BiasRebel.lossAndGradient(bias: bias, pairs: pairs, eta: options.eta)
                if epoch == 0 { loss += l / Double(dimensions.count) }
                optimizers[d].update(&offsets[d], gradient: offsetGradient(gradient))
                let keep = 1 - options.weightDecay
                for i in offsets[d].indices { offsets[d][i] *= keep }
            }
        }
        let tokens = results.reduce(0) { $0 + $1.tokens.count }
        // The candidates' rows are kept for the next steps only while they stay few.
        if rows.count > 20_000 { rows.removeAll() }
        return TuningLog(step: step, rewards: rewards, loss: loss, kl: meanKL,
                         tokensPerSecond: Double(tokens) / max(sampleTime, 1e-9),
                         seconds: seconds(clock.now - start))
    }
}
