import Decoding
import Foundation
import Preference
import Wire

/// The settings of a training run.
public struct TrainingOptions: Sendable, Codable, Equatable {
    /// REBEL iterations.
    public var steps: Int
    /// (prompt, combination) items per iteration; `responses` responses each.
    public var batch: Int
    /// Response length limit.
    public var maxTokens: Int
    /// The run's seed: the same seed, data and model give the same run.
    public var seed: UInt64
    /// Sampling temperature of the merged policy.
    public var temperature: Float = 1
    /// REBEL's η: the scale the log-ratio differences regress onto.
    public var eta: Double = 4
    /// Adam's step size.
    public var learningRate: Float = 0.01
    /// Optimiser updates per batch.
    public var innerEpochs: Int = 4
    /// A checkpoint every this many steps.
    public var checkpointEvery: Int = 5
    /// L2 penalty on the parameters.
    public var l2: Double = 1e-4
    /// Hidden units of the PCM.
    public var hidden: Int = 32
    /// Dimensions of each projected embedding feature (0: the PCM sees no embedding of the prompt or response).
    public var projection: Int = 16
    /// Responses sampled per item; every pair of them enters the REBEL loss.
    public var responses: Int = 2
    /// Exploration ε: responses are drawn with the weights (1 − ε)·α + ε·uniform over the combination's
    /// experts, while the loss keeps the PCM's own α (`DecodeRequest.explore`). It keeps every expert in the data
    /// after the PCM has leaned towards one. 0: on-policy.
    public var explore: Float = 0

    /// Creates options.
    public init(steps: Int, batch: Int, maxTokens: Int, seed: UInt64) {
        self.steps = steps
        self.batch = batch
        self.maxTokens = maxTokens
        self.seed = seed
    }
}

extension TrainingOptions {
    /// Decodes options; `explore`, added later, defaults to 0 so that earlier checkpoints still load.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(steps: try c.decode(Int.self, forKey: .steps), batch: try c.decode(Int.self, forKey: .batch),
                  maxTokens: try c.decode(Int.self, forKey: .maxTokens),
                  seed: try c.decode(UInt64.self, forKey: .seed))
        temperature = try c.decode(Float.self, forKey: .temperature)
        eta = try c.decode(Double.self, forKey: .eta)
        learningRate = try c.decode(Float.self, forKey: .learningRate)
        innerEpochs = try c.decode(Int.self, forKey: .innerEpochs)
        checkpointEvery = try c.decode(Int.self, forKey: .checkpointEvery)
        l2 = try c.decode(Double.self, forKey: .l2)
        hidden = try c.decode(Int.self, forKey: .hidden)
        projection = try c.decode(Int.self, forKey: .projection)
        responses = try c.decode(Int.self, forKey: .responses)
        explore = try c.decodeIfPresent(Float.self, forKey: .explore) ?? 0
    }
}

/// One training step's figures.
public struct StepLog: Sendable, Equatable {
    /// The step (1-based).
    public var step: Int
    /// The mean reward of the step's responses.
    public var meanReward: Double
    /// The REBEL loss before the step's updates.
    public var loss: Double
    /// Generated tokens per second of wall time in this step (all sequences).
    public var tokensPerSecond: Double
    /// Wall time of the step.
    public var seconds: Double
    /// The mean weight of each slot over the step's responses (the experts' share).
    public var meanWeights: [Float]

    /// The CSV row.
    var csv: String {
        String(format: "%d,%.5f,%.5f,%.1f,%.2f,", step, meanReward, loss, tokensPerSecond, seconds)
            + meanWeights.map { String(format: "%.4f", $0) }.joined(separator: ",")
    }

    static let csvHeader = "step,mean_reward,loss,tokens_per_second,seconds,"
        + PreferenceDimension.allCases.map { "alpha_\($0.rawValue)" }.joined(separator: ",")
}

/// Online REBEL training of the PCM over the 8 combinations together (see `Rebel`).
///
/// Each step draws `batch` items (a random training prompt and the next combination in turn), samples two
/// responses per item from the current merged policy, scores them, and takes `innerEpochs` Adam steps on the
/// REBEL loss of the pairs. Everything random derives from (seed, step), so a resumed run continues exactly as
/// an uninterrupted one would.
public final class Trainer<Reward: TrainingReward> {
    /// The experts.
    public let experts: InProcessExperts
    /// The training prompts.
    public let prompts: PromptSet
    /// The reward.
    public private(set) var reward: Reward
    /// The settings.
    public let options: TrainingOptions
    /// Where checkpoints, the CSV and the final PCM go (nil: nowhere).
    public let outputDirectory: String?
    /// The current network.
    public private(set) var network: PCMNetwork
    /// Steps done.
    public private(set) var completedSteps = 0
    /// Every step's figures so far.
    public private(set) var history: [StepLog] = []
    private var optimizer: AdamOptimizer

    /// Creates a trainer with a fresh PCM (uniform at the start: its output layer is zero).
    public init(experts: InProcessExperts, prompts: PromptSet, reward: Reward, options: TrainingOptions,
                outputDirectory: String?)
    {
        self.experts = experts
        self.prompts = prompts
        self.reward = reward
        self.options = options
        self.outputDirectory = outputDirectory
        let configuration = PCMConfiguration(hidden: options.hidden, projection: options.projection,
                                             projectionSeed: options.seed &+ 7,
                                             embeddingWidth: experts.embeddings?.width ?? 0,
                                             horizon: options.maxTokens)
        network = PCMNetwork(configuration: configuration, seed: options.seed)
        optimizer = AdamOptimizer(count: configuration.parameterCount, learningRate: options.learningRate)
    }

    // MARK: Checkpoints

    private struct Checkpoint: Codable {
        var options: TrainingOptions
        var step: Int
        var configuration: PCMConfiguration
        var parameters: [Float]
        var optimizer: AdamOptimizer
    }

    private var files: RunFiles { RunFiles(directory: outputDirectory) }

    /// Loads DIR/checkpoint.json and the CSV rows up to its step.
    public func resume() throws(TrainingError) {
        guard let file = files.path("checkpoint.json") else { return }
        guard FileManager.default.fileExists(atPath: file) else { return }
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
        guard checkpoint.configuration == network.configuration,
            checkpoint.parameters.count == network.parameters.count
        else { throw .badCheckpoint(path: file, reason: "its PCM has another shape") }
        network = PCMNetwork(configuration: checkpoint.configuration, parameters: checkpoint.parameters)
        optimizer = checkpoint.optimizer
        completedSteps = checkpoint.step
        if let csv = files.path("rewards.csv"), let text = try? String(contentsOfFile: csv, encoding: .utf8) {
            for line in text.split(separator: "\n").dropFirst() {
                let f = line.split(separator: ",").map(String.init)
                guard f.count >= 5, let step = Int(f[0]), step <= completedSteps else { continue }
                history.append(StepLog(step: step, meanReward: Double(f[1]) ?? 0, loss: Double(f[2]) ?? 0,
                                       tokensPerSecond: Double(f[3]) ?? 0, seconds: Double(f[4]) ?? 0,
                                       meanWeights: f.dropFirst(5).map { Float($0) ?? 0 }))
            }
        }
    }

    /// Writes DIR/checkpoint.json, DIR/pcm.json and DIR/rewards.csv.
    public func checkpoint() throws(TrainingError) {
        guard outputDirectory != nil else { return }
        let c = Checkpoint(options: options, step: completedSteps, configuration: network.configuration,
                           parameters: network.parameters, optimizer: optimizer)
        do {
            try files.write("checkpoint.json", try JSONEncoder().encode(c))
            try files.write("pcm.json", try PCMFile.encode(network))
        } catch let error as TrainingError {
            throw error
        } catch {
            throw .io(path: files.path("checkpoint.json") ?? "", reason: "\(error)")
        }
        let csv = ([StepLog.csvHeader] + history.map(\.csv)).joined(separator: "\n") + "\n"
        try files.write("rewards.csv", Data(csv.utf8))
    }

    // MARK: Training

    /// The items of one step: (prompt index, combination index).
    public func items(step: Int) -> [(prompt: Int, combination: Int)] {
        var rng = Xoshiro256StarStar(seed: options.seed &* 0x9E37_79B9 &+ UInt64(step))
        return (0..<options.batch).map { b in
            (Int(rng.next() % UInt64(prompts.prompts.count)), (step * options.batch + b) % Combinations.all.count)
        }
    }

    /// Runs the remaining steps, calling `progress` after each.
    @discardableResult
    public func run(progress: (StepLog) -> Void = { _ in }) throws(TrainingError) -> PCMNetwork {
        while completedSteps < options.steps {
            let log = try trainStep(completedSteps + 1)
            completedSteps += 1
            history.append(log)
            progress(log)
            if completedSteps % options.checkpointEvery == 0 || completedSteps == options.steps {
                try checkpoint()
            }
        }
        return network
    }

    /// Samples `options.responses` responses per item from the merged policy of the current PCM.
    public func sample(step: Int, items: [(prompt: Int, combination: Int)]) throws(TrainingError)
        -> [ScoredResponse]
    {
        var requests: [DecodeRequest] = []
        for (b, item) in items.enumerated() {
            let preference = Combinations.all[item.combination]
            for k in 0..<options.responses {
                let seed = options.seed &* 1_000_003 &+ UInt64(step) &* 7919 &+ UInt64(b * options.responses + k)
                requests.append(DecodeRequest(
                    user: prompts.prompts[item.prompt],
                    sessions: experts.sessions(for: preference),
                    policy: .pcm(network, preference),
                    sampling: SamplingParameters(temperature: options.temperature, seed: seed), record: true,
                    biases: experts.biases(for: preference.dimensions), explore: options.explore,
                    adapters: experts.adapters(for: preference.dimensions)))
            }
        }
        let results = try experts.decode(requests, maxTokens: options.maxTokens)
        return results.enumerated().map { i, result in
            let item = items[i / options.responses]
            return ScoredResponse(promptIndex: item.prompt, preference: Combinations.all[item.combination],
                                  result: result)
        }
    }

    private func trainStep(_ step: Int) throws(TrainingError) -> StepLog {
        let clock = ContinuousClock()
        let start = clock.now
        let items = items(step: step)
        try reward.prepare(promptIndices: items.map(\.prompt), prompts: prompts, experts: experts,
                           maxTokens: options.maxTokens)
        let sampleStart = clock.now
        let responses = try sample(step: step, items: items)
        let sampleTime = seconds(clock.now - sampleStart)
        try reward.prepareResponses(responses.map { (user: prompts.prompts[$0.promptIndex], text: $0.result.text) })
        let rewards = responses.map { reward.score($0) }
        var pairs: [RebelPair] = []
        let k = options.responses
        for b in 0..<items.count {
            let group = (0..<k).map { j in
                RebelTrajectory(steps: responses[k * b + j].result.steps,
                                oldLogProb: responses[k * b + j].result.logProb, reward: rewards[k * b + j])
            }
            for i in 0..<k { for j in (i + 1)..<k { pairs.append(RebelPair(group[i], group[j])) } }
        }
        var firstLoss = 0.0
        for epoch in 0..<options.innerEpochs {
            let (loss, gradient) = Rebel.lossAndGradient(network, pairs: pairs, eta: options.eta, l2: options.l2)
            if epoch == 0 { firstLoss = loss }
            optimizer.update(&network.parameters, gradient: gradient)
        }
        let tokens = responses.reduce(0) { $0 + $1.result.tokens.count }
        var weights = [Float](repeating: 0, count: 6)
        for r in responses { for i in 0..<6 { weights[i] += r.result.meanWeights[i] / Float(responses.count) } }
        return StepLog(step: step, meanReward: rewards.reduce(0, +) / Double(max(rewards.count, 1)),
                       loss: firstLoss, tokensPerSecond: Double(tokens) / max(sampleTime, 1e-9),
                       seconds: seconds(clock.now - start), meanWeights: weights)
    }
}

func seconds(_ d: Duration) -> Double {
    Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
}
