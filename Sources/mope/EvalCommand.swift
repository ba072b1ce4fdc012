import CLI
import Foundation
import Inference
import Preference
import Training

/// `mope eval`: the learned PCM against preference prompting, the uniform mixture and each single expert.
enum EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        name: "eval",
        abstract: "Compare the PCM with its baselines on every combination and write a table and a plot.",
        discussion: """
            For each prompt (the first --limit) and each of the 8 combinations: the PCM mixing the
            combination's three experts, preference prompting (one model, the three prompts as its system
            prompt), the uniform mixture, and each of the three experts alone; every method samples with the
            same seed per prompt. Scores are the combined normalised rewards. Writes DIR/results.md,
            DIR/results.csv, DIR/items.csv (every item's score, for pairing runs) and DIR/results.png.
            The experts file's "context" decides what each expert is
            told of the preference: "own" (its own prompt, the default), "own+preference" (its own prompt,
            then the combination's prompts joined) or "preference" (the joined prompts alone); with the
            latter two, each expert alone is run per combination.
            """,
        options: [
            .value("model", "FILE", help: "The GGUF model the experts share."),
            .value("prompts", "FILE", help: "Evaluation prompts: a JSON array of {\"prompt\": …}."),
            .value("pcm", "FILE", help: "The trained PCM file."),
            .value("out", "DIR", help: "Output directory."),
            .value("limit", "N", default: "12", help: "Use the first N prompts."),
            .value("max-tokens", "T", default: "48", help: "Response length limit."),
            .value("temperature", "X", default: "1", help: "Sampling temperature of every method."),
            .value("seed", "S", default: "1", help: "Sampling seed."),
            .value("lexicon", "FILE", help: "VADER's vader_lexicon.txt (default: found through python3)."),
            .value("threads", "N", default: "2", help: "Threads of the forward pass."),
            .fluency,
            .value("plot-script", "FILE", default: "Scripts/plot.py", help: "The plotting script."),
            .value("experts", "FILE", help: "A dimensions file whose prompts the experts use as system prompts "
                   + "(its \"context\": own, own+preference or preference, says whether they also see the "
                   + "combination's prompts; its \"bias\" files, made by mope tune, are added to their logits)."),
            .flag("diagnose", help: "Instead of evaluating a PCM, measure each expert, mixture and tilt: "
                  + "DIR/diagnosis.jsonl and DIR/diagnosis.md."),
            .flag("experts-only", help: "--diagnose only the base model and each expert alone."),
            .value("samples", "N", default: "2", help: "Samples per prompt of --diagnose."),
            .value("tilt", "X", default: "0.6", help: "The tilted expert's weight in --diagnose (0: no tilts)."),
            .value("opener", "N", default: "0", help: "--diagnose also lets each expert of a combination answer "
                   + "the first N tokens alone before the other two take over (0: off)."),
            .value("guidance", "G", default: "0", help: "--diagnose with prompt guidance G: each session's logits "
                   + "become (1+G)·own − G·default-prompt (prompting is also run without it)."),
        ]
    )

    static func run(_ arguments: ParsedArguments) async throws -> Int32 {
        let out = try arguments.require("out")
        let limit = try arguments.count("limit")
        let maxTokens = try arguments.count("max-tokens")
        let temperature = try arguments.nonNegative("temperature", as: Float.self)
        let samples = arguments.flag("diagnose") ? try arguments.count("samples") : 0
        let fluency = try arguments.fluencyWeight()
        let experts = try TrainCommand.loadExperts(
            model: try LanguageModel(path: try arguments.require("model"), threads: try arguments.threads() ?? 2),
            path: arguments.value("experts"))
        let promptsPath = try arguments.require("prompts")
        var prompts = try PromptSet.load(promptsPath)
        prompts.prompts = Array(prompts.prompts.prefix(limit))
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        var reward = ReferenceNormalisedReward(
            model: RewardModel(sentiment: try TrainCommand.loadSentiment(arguments.value("lexicon"))),
            prompts: prompts, cachePath: out + "/references.json")
        reward.gate(weight: fluency)
        let evaluator = try Evaluator(experts: experts, prompts: prompts, maxTokens: maxTokens,
                                  temperature: temperature,
                                  seed: try arguments.require("seed", as: UInt64.self))
        if arguments.flag("diagnose") {
            let start = Date()
            let tilt = try arguments.require("tilt", as: Float.self)
            guard tilt.isFinite, (0...1).contains(tilt) else {
                throw UsageError.invalidValue(option: "tilt", value: "\(tilt)", expected: "a number in 0…1")
            }
            let opener = try arguments.require("opener", as: Int.self)
            guard opener >= 0 else {
                throw UsageError.invalidValue(option: "opener", value: "\(opener)", expected: "a number ≥ 0")
            }
            let guidance = try arguments.require("guidance", as: Float.self)
            guard guidance.isFinite, guidance >= 0 else {
                throw UsageError.invalidValue(option: "guidance", value: "\(guidance)", expected: "a number ≥ 0")
            }
            let records = try evaluator.diagnose(reward: &reward, samples: samples, tilt: tilt,
                                                 expertsOnly: arguments.flag("experts-only"),
                                                 guidance: guidance,
                                                 opener: opener) { done, total in
                let elapsed = Date().timeIntervalSince(start)
                CLI.writeErr(String(format: "\rsample %d/%d  %.0fs elapsed, %.0fs left   ", done, total, elapsed,
                                    elapsed / Double(done) * Double(total - done)))
            }
            CLI.writeErr(String(format: "\n%.0f s\n", Date().timeIntervalSince(start)))
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            var lines = ""
            for record in records { lines += String(decoding: try encoder.encode(record), as: UTF8.self) + "\n" }
            try Data(lines.utf8).write(to: URL(fileURLWithPath: out + "/diagnosis.jsonl"))
            TrainCommand.plot(script: arguments.value("plot-script") ?? "Scripts/plot.py",
                              arguments: ["diagnose", out + "/diagnosis.jsonl", out + "/diagnosis.md"])
            return CLI.success
        }
        let network = try PCMFile.load(try arguments.require("pcm"))
        let start = Date()
        let scores = try evaluator.run(pcm: network, reward: &reward) { done, total in
            let elapsed = Date().timeIntervalSince(start)
            CLI.writeErr(String(format: "\rprompt %d/%d  %.0fs elapsed, %.0fs left   ", done, total, elapsed,
                                elapsed / Double(done) * Double(total - done)))
        }
        CLI.writeErr("\n")
        let seconds = Date().timeIntervalSince(start)
        let promptsFile = URL(fileURLWithPath: promptsPath).lastPathComponent
        let header = String(format: "# PCM evaluation\n\n%d prompts of %@ × 8 combinations, %d tokens, "
                            + "temperature %@, %.0f s", prompts.prompts.count, promptsFile, maxTokens,
                            arguments.value("temperature") ?? "1", seconds)
        let (markdown, csv) = Evaluator.report(scores, header: header)
        var examples = "\n## Responses to the first prompt\n\n> " + (prompts.prompts.first ?? "") + "\n\n"
        for (label, method, text) in scores.examples {
            let oneLine = text.replacingOccurrences(of: "\n", with: " ")
            examples += "- \(label), \(method): \(oneLine)\n"
        }
        try Data((markdown + examples).utf8).write(to: URL(fileURLWithPath: out + "/results.md"))
        try Data(csv.utf8).write(to: URL(fileURLWithPath: out + "/results.csv"))
        try Data(Evaluator.itemsCSV(scores).utf8).write(to: URL(fileURLWithPath: out + "/items.csv"))
        TrainCommand.plot(script: arguments.value("plot-script") ?? "Scripts/plot.py",
                          arguments: ["eval", out + "/results.csv", out + "/results.png"])
        CLI.writeOut(markdown)
        return CLI.success
    }
}
