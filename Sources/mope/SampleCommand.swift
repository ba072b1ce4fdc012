import CLI
import Foundation
import Inference
import Preference
import Training

/// `mope sample`: answers of one dimension's expert to the training prompts, scored by that dimension's reward,
/// as JSON lines: the data best-of-n fine-tuning and DPO train an expert's LoRA adapter on
/// (`Scripts/train-lora.py`).
enum SampleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        name: "sample",
        abstract: "Sample scored answers of one dimension's expert, for training its LoRA adapter.",
        discussion: """
            For each training prompt, the expert of --dimension (its own system prompt from --experts or the
            built-in preference prompts, nothing of any other dimension; with the LoRA adapter the --experts file
            names for it, if any, so a trained expert can be measured or sampled again) answers --count times at
            --temperature; each answer is scored by that dimension's normalised reward alone (its raw reward
            against the base model's greedy answer, as mope tune and mope train score). Writes one JSON object
            per prompt to --out: {"dimension", "prompt", "system", "responses": [{"text", "tokens", "reward"}]}.
            The base model's reference answers are cached in --out's folder (references.json).
            """,
        options: [
            .value("model", "FILE", help: "The GGUF model the experts share."),
            .value("prompts", "FILE", help: "Training prompts: a JSON array of {\"prompt\": …}."),
            .value("dimension", "POLE", help: "The expert's dimension (elementary, knowledgeable, concise, "
                   + "informative, friendly, unfriendly)."),
            .value("experts", "FILE", help: "A dimensions file whose prompts the experts use as system prompts "
                   + "(default: the built-in preference prompts)."),
            .value("count", "N", default: "6", help: "Answers per prompt."),
            .value("limit", "N", help: "Use only the first N prompts (default: all)."),
            .value("max-tokens", "T", default: "48", help: "Answer length limit."),
            .value("temperature", "X", default: "0.7", help: "Sampling temperature."),
            .value("seed", "S", default: "1", help: "Seed of the draws."),
            .value("out", "FILE", help: "The JSON-lines file to write."),
            .value("lexicon", "FILE", help: "VADER's vader_lexicon.txt (default: found through python3)."),
            .value("threads", "N", default: "2", help: "Threads of the forward pass."),
            .fluency,
        ]
    )

    static func run(_ arguments: ParsedArguments) async throws -> Int32 {
        let modelPath = try arguments.require("model")
        let promptsPath = try arguments.require("prompts")
        let out = try arguments.require("out")
        let name = try arguments.require("dimension")
        guard let dimension = PreferenceDimension(rawValue: name.lowercased()) else {
            throw UsageError.invalidValue(option: "dimension", value: name, expected: PreferenceDimension.allCases
                .map(\.rawValue).joined(separator: ", "))
        }
        let count = try arguments.count("count", atLeast: 2)
        let maxTokens = try arguments.count("max-tokens")
        let temperature = try arguments.positive("temperature", as: Float.self)
        let seed = try arguments.require("seed", as: UInt64.self)
        let limit = try arguments.value("limit").map { _ in try arguments.count("limit") }
        let threads = try arguments.threads() ?? 2
        let fluency = try arguments.fluencyWeight()
        let model = try LanguageModel(path: modelPath, threads: threads)
        let prompts = try PromptSet.load(promptsPath)
        let experts = try TrainCommand.loadExperts(model: model, path: arguments.value("experts"), biases: false)
        let folder = URL(fileURLWithPath: out).deletingLastPathComponent().path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        var reward = ReferenceNormalisedReward(model: RewardModel(sentiment: try TrainCommand.loadSentiment(
            arguments.value("lexicon"))), prompts: prompts, cachePath: folder + "/references.json")
        reward.gate(weight: fluency)
        var sampler = ResponseSampler(experts: experts, prompts: prompts, reward: reward)
        let indices = Array(0..<min(limit ?? prompts.prompts.count, prompts.prompts.count))
        let start = Date()
        let records = try sampler.sample(
            dimension: dimension, indices: indices, count: count, maxTokens: maxTokens, temperature: temperature,
            seed: seed
        ) { done in
            let elapsed = Date().timeIntervalSince(start)
            CLI.writeErr(String(format: "\r%@: %d/%d prompts, %.0fs, %.0fs left   ", dimension.rawValue, done,
                                indices.count, elapsed, elapsed / Double(done) * Double(indices.count - done)))
        }
        CLI.writeErr("\n")
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var text = ""
        for record in records { text += String(decoding: try encoder.encode(record), as: UTF8.self) + "\n" }
        do {
            try text.write(toFile: out, atomically: true, encoding: .utf8)
        } catch {
            CLI.writeErr("error: cannot write \(out): \(error.localizedDescription)\n")
            return CLI.failure
        }
        let rewards = records.flatMap { $0.responses.map(\.reward) }
        let best = records.map { $0.responses.map(\.reward).max() ?? 0 }
        CLI.writeOut(String(format: "wrote %@: %d prompts × %d answers; mean reward %.3f, mean best-of-%d %.3f\n",
                            out, records.count, count, rewards.reduce(0, +) / Double(max(rewards.count, 1)), count,
                            best.reduce(0, +) / Double(max(best.count, 1))))
        return CLI.success
    }
}
