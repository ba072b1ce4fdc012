import CLI
import Foundation
import Inference
import Preference

/// `mope bench pcm`: the learned PCM's cost per token next to one expert's decode step, in the same run.
///
/// The PCM is asked for α exactly as the coordinator asks it at every token: the preference, the prompt's
/// tokens, the response so far (growing by one token per call) and three experts' top-64 lists taken from a real
/// forward pass of the model. The expert step is one decode forward pass of one session on the same model (what
/// each worker does per token). A tuned expert's extra work per token, adding its offset's logits to the row
/// before the top-k (`LogitBias.apply`), is timed on the same model's rows. All are timed over many calls after a
/// warm-up; medians are reported.
enum BenchPCM: ParsableCommand {
    static let configuration = CommandConfiguration(
        name: "pcm",
        abstract: "Measure the PCM's cost per token, and a tuned offset's per row, against one expert's decode step.",
        options: [
            .value("model", short: "m", "file", help: "GGUF model file (the experts' model)."),
            .value("pcm", "file", default: "Configs/pcm/pcm.json", help: "The PCM file."),
            .value("bias", "file", default: "Configs/pcm/elementary.bias.json",
                   help: "A tuned expert's offset file, whose per-row cost is measured."),
            .value("threads", short: "t", "n", default: "1", help: "Compute threads of the expert step."),
            .value("calls", "n", default: "2000", help: "PCM calls to time."),
            .value("steps", "n", default: "64", help: "Expert decode steps to time."),
        ]
    )

    static func run(_ arguments: ParsedArguments) async throws -> Int32 {
        let path = try arguments.require("model")
        let threads = try arguments.require("threads", as: Int.self)
        let calls = try arguments.require("calls", as: Int.self)
        let steps = try arguments.require("steps", as: Int.self)
        for (name, value) in [("threads", threads), ("calls", calls), ("steps", steps)] where value < 1 {
            throw UsageError.invalidValue(option: name, value: "\(value)", expected: "a positive integer")
        }
        guard FileManager.default.fileExists(atPath: path) else { throw BenchEngineError.modelNotFound(path) }
        let model = try LanguageModel(path: path, threads: threads)
        let network = try PCMFile.load(try arguments.require("pcm"))
        let biasPath = try arguments.require("bias")
        let bias = try LogitBias.load(path: biasPath, model: model)

        // Three experts' lists from a real forward pass.
        let prompt = try makeTokenizer(model.vocabulary).encode("Explain how a rainbow forms.", parseSpecial: false)
        let cache = try model.makeCache(capacity: prompt.count + steps + 8)
        let logits = try model.forward(cache: cache, tokens: prompt)
        let top = TopK(logits: logits, k: 64)
        let list = TopKCandidates(ids: top.ids.map { UInt32(bitPattern: $0) }, logProbs: top.logProbs,
                                  tailMass: top.tailMass)
        let preference = try PreferenceSpec.parse("concise, friendly, elementary")
        let experts = [PreferenceDimension.concise, .friendly, .elementary].map {
            ExpertDescriptor(name: $0.rawValue, dimension: $0)
        }
        var controller = PCMController(network: network, embeddings: try? TokenEmbeddings(model: model))
        let promptTokens = prompt.map { UInt32(bitPattern: $0) }
        var generated: [UInt32] = []
        var rng = SystemRandomNumberGenerator()
        var pcmTimes: [Double] = []
        pcmTimes.reserveCapacity(calls)
        var sink: Float = 0
        for call in 0..<(calls + 100) {
            if generated.count >= 256 { generated.removeAll(keepingCapacity: true) }
            generated.append(UInt32.random(in: 0..<UInt32(model.vocabularySize), using: &rng))
            let context = ControllerContext(promptTokens: promptTokens, generatedTokens: generated,
                                            step: generated.count, candidates: [list, list, list])
            let start = ContinuousClock.now
            let alpha = controller.weights(preference: preference, experts: experts, context: context)
            let elapsed = start.duration(to: .now)
            sink += alpha[0]
            if call >= 100 { pcmTimes.append(Self.micros(elapsed)) }
        }

        var stepTimes: [Double] = []
        var token = top.ids.first ?? 0
        for step in 0..<(steps + 4) {
            let start = ContinuousClock.now
            let row = try model.forward(cache: cache, tokens: [token])
            let elapsed = start.duration(to: .now)
            token = TopK(logits: row, k: 1).ids.first ?? 0
            if step >= 4 { stepTimes.append(Self.micros(elapsed)) }
        }

        // A tuned expert's offset, added to one row as the worker does before its top-k.
        var row = logits
        var biasTimes: [Double] = []
        biasTimes.reserveCapacity(calls)
        for call in 0..<(calls + 100) {
            let start = ContinuousClock.now
            row.withUnsafeMutableBufferPointer { LogitBias.apply(bias, to: $0) }
            let elapsed = start.duration(to: .now)
            if call >= 100 { biasTimes.append(Self.micros(elapsed)) }
        }

        let pcm = Self.median(pcmTimes), expert = Self.median(stepTimes), offset = Self.median(biasTimes)
        CLI.writeOut(String(
            format: "PCM (%d parameters%@): %.1f µs per token (median of %d)\n"
                + "expert decode step (%d thread%@): %.1f µs (median of %d)\n"
                + "PCM / expert step: %.2f%%\n"
                + "tuned offset added to a row of %d logits: %.1f µs (median of %d), %.2f%% of an expert step\n",
            network.configuration.parameterCount,
            network.configuration.projection > 0 ? ", embedding features" : "",
            pcm, calls, threads, threads == 1 ? "" : "s", expert, steps, pcm / expert * 100,
            bias.count, offset, calls, offset / expert * 100
        ))
        if !sink.isFinite { CLI.writeErr("warning: the PCM returned a non-finite weight\n") }
        if !row.allSatisfy(\.isFinite) { CLI.writeErr("warning: the offset made a logit that is not finite\n") }
        return CLI.success
    }

    private static func micros(_ d: Duration) -> Double {
        let (seconds, attoseconds) = d.components
        return Double(seconds) * 1e6 + Double(attoseconds) / 1e12
    }

    private static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        return sorted.isEmpty ? 0 : sorted[sorted.count / 2]
    }
}
