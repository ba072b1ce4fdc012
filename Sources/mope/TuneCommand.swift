import CLI
import Foundation
import Inference
import Preference
import Training

/// `mope tune`: tune each expert's logit bias by REBEL on its own dimension's reward.
enum TuneCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        name: "tune",
        abstract: "Tune one logit bias per expert by online REBEL on the expert's own dimension.",
        discussion: """
            The paper's experts are each trained on one preference's reward. Here every expert keeps its system
            prompt (from --experts) and learns a bias added to its logits: the smallest fine-tuning of the
            output layer. The experts run in this process, all sessions advanced by one batched forward pass
            per token. Each step every expert answers --batch training prompts --responses times; each answer is
            scored by the expert's own dimension's normalised reward, and each bias regresses its log-ratio
            differences onto the reward differences. Writes DIR/<pole>.bias.json for the six experts,
            DIR/experts.json (their prompts with their biases: pass it as --experts to mope train and mope eval),
            DIR/checkpoint.json (--resume continues from it), DIR/tuning.csv and DIR/tuning.png.
            """,
        options: [
            .value("model", "FILE", help: "The GGUF model the experts share."),
            .value("prompts", "FILE", help: "Training prompts: a JSON array of {\"prompt\": …}."),
            .value("experts", "FILE", help: "A dimensions file whose prompts the experts use as system prompts "
                   + "(default: the built-in preference prompts); its biases, if any, are not used."),
            .value("steps", "N", default: "30", help: "REBEL iterations."),
            .value("batch", "B", default: "2", help: "Training prompts per iteration."),
            .value("responses", "K", default: "4", help: "Responses per expert and prompt; every pair enters the loss."),
            .value("max-tokens", "T", default: "48", help: "Response length limit."),
            .value("temperature", "X", default: "0.7", help: "Sampling temperature of the experts."),
            .value("learning-rate", "X", default: "0.02", help: "Adam's step size, in logits."),
            .value("eta", "X", default: "4", help: "REBEL's reward scale η."),
            .value("inner-epochs", "N", default: "4", help: "Optimiser updates per batch."),
            .value("weight-decay", "X", default: "0.002", help: "Fraction the offset shrinks by after each update."),
            .value("kl-penalty", "X", default: "0.01", help: "β: each answer's reward is R − β · log(q_tuned(y) / "
                   + "q_untuned(y)), which keeps the experts from drifting into answers that game the rewards."),
            .value("seed", "S", default: "1", help: "Seed of everything random in the run."),
            .value("out", "DIR", help: "Output directory."),
            .value("lexicon", "FILE", help: "VADER's vader_lexicon.txt (default: found through python3)."),
            .fluency,
            .value("threads", "N", default: "2", help: "Threads of the forward pass."),
            .value("checkpoint-every", "K", default: "5", help: "Steps between checkpoints."),
            .value("plot-script", "FILE", default: "Scripts/plot.py", help: "The plotting script."),
            .flag("resume", help: "Continue from DIR/checkpoint.json."),
        ]
    )

    static func run(_ arguments: ParsedArguments) async throws -> Int32 {
        let modelPath = try arguments.require("model")
        let promptsPath = try arguments.require("prompts")
        let out = try arguments.require("out")
        var options = TuningOptions(
            steps: try arguments.count("steps"), batch: try arguments.count("batch"),
            maxTokens: try arguments.count("max-tokens"),
            seed: try arguments.require("seed", as: UInt64.self))
        options.responses = try arguments.count("responses", atLeast: 2)
        options.temperature = try arguments.positive("temperature", as: Float.self)
        options.learningRate = try arguments.nonNegative("learning-rate", as: Float.self)
        options.eta = try arguments.positive("eta", as: Double.self)
        options.innerEpochs = try arguments.count("inner-epochs")
        options.weightDecay = try arguments.require("weight-decay", as: Float.self, in: 0...Float(1).nextDown,
                                                    expected: "a number in [0, 1)")
        options.checkpointEvery = try arguments.count("checkpoint-every")
        options.klPenalty = try arguments.nonNegative("kl-penalty", as: Double.self)
        guard options.eta * options.klPenalty < 1 else {
            throw UsageError.invalidValue(option: "kl-penalty", value: arguments.value("kl-penalty") ?? "",
                                          expected: "a number with --eta × --kl-penalty below 1")
        }
        let threads = try arguments.threads() ?? 2
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let model = try LanguageModel(path: modelPath, threads: threads)
        let prompts = try PromptSet.load(promptsPath)
        // Tuning starts every offset at zero: a file's biases are not loaded.
        let experts = try TrainCommand.loadExperts(model: model, path: arguments.value("experts"), biases: false)
        var reward = ReferenceNormalisedReward(model: RewardModel(sentiment: try TrainCommand.loadSentiment(
            arguments.value("lexicon"))), prompts: prompts, cachePath: out + "/references.json")
        reward.gate(weight: try arguments.fluencyWeight())
        let tuner = ExpertTuner(experts: experts, prompts: prompts, reward: reward, options: options,
                                outputDirectory: out)
        if arguments.flag("resume") { try tuner.resume() }
        let start = Date()
        let first = tuner.completedSteps
        try tuner.run { log in
            let recent = tuner.history.suffix(10)
            let mean = recent.map(\.meanReward).reduce(0, +) / Double(max(recent.count, 1))
            let elapsed = Date().timeIntervalSince(start)
            let left = elapsed / Double(log.step - first) * Double(options.steps - log.step)
            CLI.writeErr(String(format: "\rstep %d/%d  own-dimension reward %.3f (last 10: %.3f)  KL %.1f  "
                                + "loss %.3f  %.0f tok/s  %.0fs left   ", log.step, options.steps, log.meanReward,
                                mean, log.kl, log.loss, log.tokensPerSecond, left))
        }
        CLI.writeErr("\n")
        TrainCommand.plot(script: arguments.value("plot-script") ?? "Scripts/plot.py",
                          arguments: ["tune", out + "/tuning.csv", out + "/tuning.png"])
        CLI.writeOut("wrote \(out)/experts.json, the six \(out)/<pole>.bias.json, \(out)/tuning.csv\n")
        return CLI.success
    }
}
