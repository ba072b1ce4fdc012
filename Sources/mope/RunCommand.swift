import CLI
import Decoding
import Expert
import Foundation
import Inference
import Wire
import WorkerCore

/// `mope run`: local generation with one model, no cluster.
enum RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        name: "run",
        abstract: "Generate text locally with one model (no cluster).",
        discussion: """
            Renders the prompt through the model's chat template (with --system-prompt replacing the
            template's default), prefills it in one forward pass, then decodes one token per pass until an
            end-of-turn token or --max-tokens, streaming the text to standard output. The prompt's text is
            always tokenized as text: only the template's own markup becomes control tokens (with --raw the
            prompt is the model's input exactly, control tokens included). Greedy by default;
            a positive --temperature samples among the --top-k most likely tokens (then --top-p), seeded by
            --seed: the model's top-k list goes through the cluster's decode step as one expert with weight 1,
            so the same parameters pick the same tokens as a one-expert cluster. At the end, standard error
            shows the prompt's token count and the prefill and decode speeds in tokens per second.
            """,
        options: [
            .value("model", "file", help: "The GGUF model file."),
            .value("prompt", "text", help: "The user's message (with --raw: the model's input as is)."),
            .value("system-prompt", "text", help: "The system prompt (replaces the template's default)."),
            .value("lora", "file", help: "A LoRA adapter (GGUF, general.type = adapter) applied unmerged."),
            .value("lora-scale", "number", default: "1", help: "The adapter's strength."),
            .value("max-tokens", "n", default: "256", help: "The most new tokens."),
            .value("temperature", "t", default: "0", help: "Sampling temperature; 0 is greedy."),
            .value("top-k", "n", default: "40", help: "With a temperature: sample among this many tokens."),
            .value("top-p", "p", default: "1", help: "With a temperature: nucleus threshold in (0, 1]."),
            .value("seed", "n", default: "0", help: "Seed of the sampler (the same seed gives the same text)."),
            .value("threads", "n", help: "Threads for the forward pass (default: every core)."),
            .flag("raw", help: "Tokenize the prompt as is, without the chat template."),
            .flag("print-prompt-tokens", help: "Print the prompt's token ids on one line and exit (no generation)."),
        ]
    )

    static func run(_ arguments: ParsedArguments) async throws -> Int32 {
        let path = try arguments.require("model")
        let text = try arguments.require("prompt")
        let maxTokens = try arguments.require("max-tokens", as: Int.self)
        let temperature = try arguments.require("temperature", as: Float.self)
        let topK = try arguments.require("top-k", as: UInt32.self)
        let topP = try arguments.require("top-p", as: Float.self)
        let seed = try arguments.require("seed", as: UInt64.self)
        let threads = try arguments.value("threads", as: Int.self) ?? ProcessInfo.processInfo.activeProcessorCount
        guard maxTokens >= 0 else {
            throw UsageError.invalidValue(option: "max-tokens", value: "\(maxTokens)", expected: "a count ≥ 0")
        }
        guard threads >= 1 else {
            throw UsageError.invalidValue(option: "threads", value: "\(threads)", expected: "at least 1")
        }
        guard temperature.isFinite, temperature >= 0 else {
            throw UsageError.invalidValue(option: "temperature", value: "\(temperature)", expected: "a number ≥ 0")
        }
        guard topP > 0, topP <= 1 else {
            throw UsageError.invalidValue(option: "top-p", value: "\(topP)", expected: "a number in (0, 1]")
        }
        let model: LanguageModel
        do {
            model = try LanguageModel(path: path, threads: threads)
        } catch {
            CLI.writeErr("error: cannot load the model \(path): \(error)\n")
            return CLI.failure
        }
        var adapter: LoRAAdapter?
        if let lora = arguments.value("lora") {
            let scale = try arguments.require("lora-scale", as: Float.self)
            guard scale.isFinite else {
                throw UsageError.invalidValue(option: "lora-scale", value: "\(scale)", expected: "a finite number")
            }
            do {
                adapter = try LoRAAdapter(path: lora, model: model, scale: scale)
            } catch {
                CLI.writeErr("error: cannot use the LoRA adapter \(lora): \(error)\n")
                return CLI.failure
            }
        }
        let prompt: WorkerPrompt
        let tokens: [Int32]
        do {
            prompt = try WorkerPrompt(model: model, systemPrompt: arguments.value("system-prompt"))
            let request: Request = arguments.flag("raw")
                ? .raw(text) : .chat([ChatTurn(role: "user", content: text)])
            tokens = try prompt.tokens(for: request).map { Int32(bitPattern: $0) }
        } catch {
            CLI.writeErr("error: \(error)\n")
            return CLI.failure
        }
        guard !tokens.isEmpty else {
            CLI.writeErr("error: the prompt is empty\n")
            return CLI.failure
        }
        if arguments.flag("print-prompt-tokens") {
            CLI.writeOut(tokens.map(String.init).joined(separator: " ") + "\n")
            return CLI.success
        }
        let parameters = SamplingParameters(temperature: temperature, topP: topP, topK: topK, seed: seed)
        let stats = try generate(
            model: model, tokenizer: prompt.tokenizer, prompt: tokens, maxTokens: maxTokens, parameters: parameters,
            adapter: adapter
        )
        CLI.writeErr(stats.summary(threads: threads) + "\n")
        return CLI.success
    }

    /// What a run measured.
    struct Stats {
        var promptTokens = 0
        var newTokens = 0
        var prefillSeconds = 0.0
        var decodeSteps = 0
        var decodeSeconds = 0.0
        var stoppedAtEnd = false

        func summary(threads: Int) -> String {
            let prefill = prefillSeconds > 0 ? Double(promptTokens) / prefillSeconds : 0
            let decode = decodeSeconds > 0 ? Double(decodeSteps) / decodeSeconds : 0
            return "\n" + [
                "prompt tokens: \(promptTokens)",
                "new tokens: \(newTokens)\(stoppedAtEnd ? " (end of turn)" : "")",
                "prefill: " + String(format: "%.1f tok/s (%.3f s)", prefill, prefillSeconds),
                "decode: " + String(format: "%.1f tok/s (%d steps, %.3f s)", decode, decodeSteps, decodeSeconds),
                "threads: \(threads)",
            ].joined(separator: "\n")
        }
    }

    /// Prefills `prompt`, then decodes until an end-of-generation token or `maxTokens`, streaming the text.
    static func generate(
        model: LanguageModel, tokenizer: any Tokenizer, prompt: [Int32], maxTokens: Int, parameters: SamplingParameters,
        adapter: LoRAAdapter? = nil
    ) throws -> Stats {
        var stats = Stats(promptTokens: prompt.count)
        guard maxTokens > 0 else { return stats }
        // One expert with weight 1: the model's top-k list goes through the cluster's decode step.
        let generation = try model.decode(
            prompt: prompt, sampling: parameters, maxTokens: maxTokens,
            endOfSequence: Set(tokenizer.eosTokenIDs.map { UInt32(bitPattern: $0) }),
            text: StreamingDecoder(tokenizer: tokenizer, skipControlTokens: true), onText: { CLI.writeOut($0) },
            adapter: adapter
        )
        CLI.writeOut("\n")
        stats.newTokens = generation.tokens.count
        stats.stoppedAtEnd = generation.finish == .endOfSequence
        stats.prefillSeconds = generation.prefillSeconds
        stats.decodeSeconds = generation.decodeSeconds
        stats.decodeSteps = generation.decodeSteps
        return stats
    }
}
