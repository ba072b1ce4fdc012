import CLI
import Foundation
import ProcessSupport
import Inference
import Preference
import Training

/// `mope train`: online REBEL training of the Preference Control Model with in-process experts.
enum TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        name: "train",
        abstract: "Train the Preference Control Model by online REBEL on rule-based rewards.",
        discussion: """
            The experts run in this process: one model, one expert per dimension (its preference prompt as
            the system prompt), all sessions advanced by one batched forward pass per token. Each step samples
            --responses responses for each of --batch (prompt, combination) items from the merged policy (with
            --explore, from a blend of it and the uniform mixture) and regresses the PCM's log-ratio differences
            onto the reward differences. Writes DIR/pcm.json, DIR/checkpoint.json (every --checkpoint-every
            steps; --resume continues from it), DIR/rewards.csv, DIR/references.json (the base model's answers)
            and DIR/rewards.png.
            """,
        options: [
            .value("model", "FILE", help: "The GGUF model the experts share."),
            .value("prompts", "FILE", help: "Training prompts: a JSON array of {\"prompt\": …}."),
            .value("steps", "N", default: "60", help: "REBEL iterations."),
            .value("batch", "B", default: "4", help: "(prompt, combination) items per iteration."),
            .value("max-tokens", "T", default: "48", help: "Response length limit."),
            .value("seed", "S", default: "1", help: "Seed of everything random in the run."),
            .value("out", "DIR", help: "Output directory."),
            .value("lexicon", "FILE", help: "VADER's vader_lexicon.txt (default: found through python3)."),
            .fluency,
            .value("threads", "N", default: "2", help: "Threads of the forward pass."),
            .value("checkpoint-every", "K", default: "5", help: "Steps between checkpoints."),
            .value("learning-rate", "X", default: "0.01", help: "Adam's step size."),
            .value("eta", "X", default: "4", help: "REBEL's reward scale η."),
            .value("responses", "K", default: "2", help: "Responses per item; every pair enters the loss."),
            .value("inner-epochs", "N", default: "4", help: "Optimiser updates per batch."),
            .value("explore", "E", default: "0",
                   help: "Draw responses with (1 − E)·α + E·uniform over the combination's experts; the loss "
                   + "keeps the PCM's α (0: on-policy; 0 ≤ E < 1)."),
            .value("temperature", "X", default: "1", help: "Sampling temperature of the merged policy."),
            .value("hidden", "N", default: "32", help: "Hidden units of the PCM."),
            .value("projection", "N", default: "16",
                   help: "Dimensions of each projected embedding feature (0: no prompt or response embedding)."),
            .value("plot-script", "FILE", default: "Scripts/plot.py", help: "The plotting script."),
            .value("experts", "FILE", help: "A dimensions file whose prompts the experts use as system prompts "
                   + "(its \"context\": own, own+preference or preference, says whether they also see the "
                   + "combination's prompts; its \"bias\" files, made by mope tune, are added to their logits)."),
            .flag("resume", help: "Continue from DIR/checkpoint.json."),
        ]
    )

    static func run(_ arguments: ParsedArguments) async throws -> Int32 {
        let modelPath = try arguments.require("model")
        let promptsPath = try arguments.require("prompts")
        let out = try arguments.require("out")
        var options = TrainingOptions(
            steps: try arguments.count("steps"), batch: try arguments.count("batch"),
            maxTokens: try arguments.count("max-tokens"),
            seed: try arguments.require("seed", as: UInt64.self))
        options.checkpointEvery = try arguments.count("checkpoint-every")
        options.learningRate = try arguments.nonNegative("learning-rate", as: Float.self)
        options.eta = try arguments.positive("eta", as: Double.self)
        options.responses = try arguments.count("responses", atLeast: 2)
        options.innerEpochs = try arguments.count("inner-epochs")
        options.temperature = try arguments.positive("temperature", as: Float.self)
        options.hidden = try arguments.count("hidden")
        options.projection = try arguments.count("projection", atLeast: 0)
        options.explore = try arguments.require("explore", as: Float.self, in: 0...Float(1).nextDown,
                                                expected: "a number in [0, 1)")
        let threads = try arguments.threads() ?? 2
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let experts = try loadExperts(model: try LanguageModel(path: modelPath, threads: threads),
                                      path: arguments.value("experts"))
        let prompts = try PromptSet.load(promptsPath)
        let rewardModel = RewardModel(sentiment: try loadSentiment(arguments.value("lexicon")))
        var reward = ReferenceNormalisedReward(model: rewardModel, prompts: prompts,
                                               cachePath: out + "/references.json")
        reward.gate(weight: try arguments.fluencyWeight())
        let trainer = Trainer(experts: experts, prompts: prompts, reward: reward, options: options,
                              outputDirectory: out)
        if arguments.flag("resume") { try trainer.resume() }
        let start = Date()
        let first = trainer.completedSteps
        try trainer.run { log in
            let recent = trainer.history.suffix(10)
            let mean = recent.map(\.meanReward).reduce(0, +) / Double(max(recent.count, 1))
            let elapsed = Date().timeIntervalSince(start)
            let eta = elapsed / Double(log.step - first) * Double(options.steps - log.step)
            CLI.writeErr(String(format: "\rstep %d/%d  reward %.3f (last 10: %.3f)  loss %.3f  %.0f tok/s  "
                                + "%.0fs left   ", log.step, options.steps, log.meanReward, mean, log.loss,
                                log.tokensPerSecond, eta))
        }
        CLI.writeErr("\n")
        plot(script: arguments.value("plot-script") ?? "Scripts/plot.py",
             arguments: ["train", out + "/rewards.csv", out + "/rewards.png"])
        CLI.writeOut("wrote \(out)/pcm.json, \(out)/rewards.csv, \(out)/rewards.png\n")
        return CLI.success
    }

    /// The sentiment analyzer from `path`, or from the installed vaderSentiment package.
    static func loadSentiment(_ path: String?) throws -> SentimentAnalyzer {
        guard let path = path ?? SentimentAnalyzer.locateLexicon() else { throw RewardError.lexiconNotFound }
        return try SentimentAnalyzer(lexiconPath: path)
    }

    /// The in-process experts of a dimensions file (its prompts as system prompts and, with `biases`, its tuned
    /// experts' logit biases), or of the built-in preference prompts.
    static func loadExperts(model: LanguageModel, path: String?, biases withBiases: Bool = true) throws
        -> InProcessExperts
    {
        guard let path else { return try InProcessExperts(model: model) }
        let file = try PreferenceDimensionsFile.load(contentsOf: URL(fileURLWithPath: path))
        var biases: [PreferenceDimension: LogitBias] = [:]
        for (dimension, biasPath) in file.biasPaths(relativeTo: path) where withBiases {
            biases[dimension] = try LogitBias.load(path: biasPath, vocabularySize: model.vocabularySize)
        }
        var adapters: [PreferenceDimension: LoRAAdapter] = [:]
        for (dimension, loraPath) in file.loraPaths(relativeTo: path) {
            do {
                adapters[dimension] = try LoRAAdapter(path: loraPath, model: model)
            } catch {
                throw TrainingError.unusableModel("the \(dimension.rawValue) expert's LoRA adapter \(loraPath): \(error)")
            }
        }
        return try InProcessExperts(model: model, prompts: try file.prompts(path: path),
                                    context: try file.expertContext(path: path), biases: biases, adapters: adapters)
    }

    /// Runs the plotting script with python3; a failure is reported, not fatal.
    static func plot(script: String, arguments: [String]) {
        let children = ProcessGroup()
        do throws(SpawnError) {
            let pid = try children.spawn("/usr/bin/env", ["python3", script] + arguments, name: script)
            let status = children.wait(pid, timeout: .seconds(600))
            if status != .exited(0) { CLI.writeErr("note: \(script) failed; no plot written\n") }
        } catch {
            CLI.writeErr("note: cannot run python3 \(script): \(error); no plot written\n")
        }
    }
}
