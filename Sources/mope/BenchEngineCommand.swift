import CLI
import Foundation
import Inference

/// `mope bench engine`: the engine's three throughput figures on one model, comparable with llama.cpp's.
///
/// - prefill: one forward pass over `promptTokens` tokens from an empty cache (llama-bench `pp512`);
/// - decode: `decodeTokens` forward passes of one token each after a one-token prompt (llama-bench `tg64`);
/// - aggregate decode: `sessions` caches, each prefilled with `sessionPromptTokens` tokens (not timed), then
///   `decodeTokens` batched passes of one token per session; the figure is `sessions × decodeTokens` over the
///   time of those passes (llama-batched-bench `S_TG`).
///
/// Tokens are pseudo-random ids, as llama-bench uses; nothing is sampled, so the figures are those of the
/// forward pass (logits of the last token included). Each figure is measured `repeat` times after a warm-up
/// and the median is reported.
enum BenchEngine: ParsableCommand {
    static let configuration = CommandConfiguration(
        name: "engine",
        abstract: "Measure prefill, decode and batched decode throughput of the inference engine.",
        discussion: """
            Prints a table and one JSON line (starting with '{') with the median of each figure.
            The figures follow llama.cpp's tools so both can be compared in one run (Scripts/bench-engine.sh):
            prefill = llama-bench pp<prompt-tokens>, decode = llama-bench tg<decode-tokens>,
            aggregate = llama-batched-bench S_TG with -npp <session-prompt-tokens> -ntg <decode-tokens>
            -npl <sessions>.
            """,
        options: [
            .value("model", short: "m", "file", help: "GGUF model file."),
            .value("threads", short: "t", "n", default: "2", help: "Compute threads."),
            .value("prompt-tokens", "n", default: "512", help: "Prompt length of the prefill figure."),
            .value("decode-tokens", "n", default: "64", help: "Tokens generated per stream in the decode figures."),
            .value("sessions", "n", default: "16", help: "Concurrent sessions of the aggregate decode figure."),
            .value(
                "session-prompt-tokens", "n", default: "32",
                help: "Prompt length of each session before the aggregate decode (not timed)."),
            .value("repeat", short: "r", "n", default: "3", help: "Measurements per figure; the median is reported."),
            .value("kv", "f32|f16", default: "f32", help: "KV cache precision."),
        ]
    )

    static func run(_ arguments: ParsedArguments) async throws -> Int32 {
        let path = try arguments.require("model")
        let settings = EngineBenchmark.Settings(
            threads: try positive(arguments, "threads"),
            promptTokens: try positive(arguments, "prompt-tokens"),
            decodeTokens: try positive(arguments, "decode-tokens"),
            sessions: try positive(arguments, "sessions"),
            sessionPromptTokens: try positive(arguments, "session-prompt-tokens"),
            repeats: try positive(arguments, "repeat"),
            precision: try precision(arguments)
        )
        guard FileManager.default.fileExists(atPath: path) else { throw BenchEngineError.modelNotFound(path) }
        let model = try LanguageModel(path: path, threads: settings.threads)
        var benchmark = EngineBenchmark(model: model, settings: settings)
        let result = try benchmark.run { line in
            CLI.writeErr(line + "\n")
        }
        CLI.writeOut(result.table(modelPath: path))
        CLI.writeOut(result.jsonLine(modelPath: path) + "\n")
        return CLI.success
    }

    private static func positive(_ arguments: ParsedArguments, _ name: String) throws(UsageError) -> Int {
        let v = try arguments.require(name, as: Int.self)
        guard v >= 1 else { throw .invalidValue(option: name, value: String(v), expected: "a positive integer") }
        return v
    }

    private static func precision(_ arguments: ParsedArguments) throws(UsageError) -> KVCache.Precision {
        switch arguments.value("kv") ?? "f32" {
        case "f32": return .f32
        case "f16": return .f16
        case let other: throw .invalidValue(option: "kv", value: other, expected: "f32 or f16")
        }
    }
}

/// Why `mope bench engine` could not measure.
enum BenchEngineError: Error, CustomStringConvertible {
    /// The model file does not exist.
    case modelNotFound(String)
    /// The requested lengths do not fit the model's context.
    case tooLong(needed: Int, contextLength: Int)

    var description: String {
        switch self {
        case .modelNotFound(let path):
            "model file not found: \(path) (pass --model with a GGUF file)"
        case .tooLong(let needed, let context):
            "the benchmark needs \(needed) positions in one cache but the model's context holds \(context): "
                + "lower --prompt-tokens, --decode-tokens or --session-prompt-tokens"
        }
    }
}

/// The measurements behind `mope bench engine`, separate from the command line so they can run on any model.
struct EngineBenchmark {
    /// What to measure.
    struct Settings: Equatable {
        var threads: Int
        var promptTokens: Int
        var decodeTokens: Int
        var sessions: Int
        var sessionPromptTokens: Int
        var repeats: Int
        var precision: KVCache.Precision = .f32
    }

    /// Every measurement, in tokens per second, and their medians.
    struct Result: Equatable {
        var settings: Settings
        /// Prefill tokens per second, one value per repeat.
        var prefill: [Double]
        /// Single-stream decode tokens per second, one value per repeat.
        var decode: [Double]
        /// Aggregate decode tokens per second over all sessions, one value per repeat.
        var aggregate: [Double]
        /// The 1-minute load average when the run ended (nil where unavailable).
        var load: Double?

        var prefillMedian: Double { EngineBenchmark.median(prefill) }
        var decodeMedian: Double { EngineBenchmark.median(decode) }
        var aggregateMedian: Double { EngineBenchmark.median(aggregate) }

        /// A human-readable table of the medians.
        func table(modelPath: String) -> String {
            let s = settings
            func row(_ name: String, _ values: [Double]) -> String {
                let label = name.padding(toLength: 40, withPad: " ", startingAt: 0)
                let spread = values.count > 1
                    ? String(format: "  (%.1f–%.1f)", values.min() ?? 0, values.max() ?? 0) : ""
                return label + String(format: "%10.1f", EngineBenchmark.median(values)) + spread + "\n"
            }
            var out = "model \((modelPath as NSString).lastPathComponent), \(s.threads) thread(s), "
            out += "median of \(s.repeats)\n"
            out += "figure".padding(toLength: 40, withPad: " ", startingAt: 0) + "     tok/s\n"
            out += row("prefill pp\(s.promptTokens)", prefill)
            out += row("decode tg\(s.decodeTokens), 1 stream", decode)
            out += row("decode, \(s.sessions) sessions aggregate", aggregate)
            return out
        }

        /// One JSON object on one line, for scripts.
        func jsonLine(modelPath: String) -> String {
            let s = settings
            func list(_ values: [Double]) -> String {
                "[" + values.map { String(format: "%.2f", $0) }.joined(separator: ",") + "]"
            }
            var fields: [String] = []
            fields.append("\"model\":\(EngineBenchmark.jsonString((modelPath as NSString).lastPathComponent))")
            fields.append("\"threads\":\(s.threads)")
            fields.append("\"prompt_tokens\":\(s.promptTokens)")
            fields.append("\"decode_tokens\":\(s.decodeTokens)")
            fields.append("\"sessions\":\(s.sessions)")
            fields.append("\"session_prompt_tokens\":\(s.sessionPromptTokens)")
            fields.append("\"repeat\":\(s.repeats)")
            fields.append("\"kv\":\"\(s.precision == .f32 ? "f32" : "f16")\"")
            fields.append("\"prefill_tok_s\":" + String(format: "%.2f", prefillMedian))
            fields.append("\"decode_tok_s\":" + String(format: "%.2f", decodeMedian))
            fields.append("\"aggregate_decode_tok_s\":" + String(format: "%.2f", aggregateMedian))
            fields.append("\"prefill_runs\":" + list(prefill))
            fields.append("\"decode_runs\":" + list(decode))
            fields.append("\"aggregate_decode_runs\":" + list(aggregate))
            fields.append("\"load\":" + (load.map { String(format: "%.2f", $0) } ?? "null"))
            return "{" + fields.joined(separator: ",") + "}"
        }
    }

    let model: LanguageModel
    let settings: Settings
    private var random: UInt64 = 0x9E37_79B9_7F4A_7C15

    init(model: LanguageModel, settings: Settings) {
        self.model = model
        self.settings = settings
    }

    /// Warms up, then measures every figure `repeats` times; `progress` receives one line per measurement.
    /// - Throws: `BenchEngineError.tooLong` when a cache would exceed the context; `InferenceError` from the
    ///   forward pass.
    mutating func run(progress: (String) -> Void = { _ in }) throws -> Result {
        let s = settings
        let context = model.configuration.contextLength
        let longest = max(s.promptTokens, 1 + s.decodeTokens, s.sessionPromptTokens + s.decodeTokens)
        guard longest <= context else { throw BenchEngineError.tooLong(needed: longest, contextLength: context) }

        let prefillCache = try model.makeCache(capacity: s.promptTokens, precision: s.precision)
        let decodeCache = try model.makeCache(capacity: 1 + s.decodeTokens, precision: s.precision)
        var sessionCaches: [KVCache] = []
        for _ in 0..<s.sessions {
            sessionCaches.append(try model.makeCache(capacity: s.sessionPromptTokens + s.decodeTokens,
                                                     precision: s.precision))
        }
        var logits: [Float] = []

        // Warm-up: every code path once (caches grow to their full size, the pool's threads start, pages of
        // the weights are read in), so the timed runs see the steady state.
        _ = try prefill(prefillCache, &logits)
        _ = try decode(decodeCache, &logits)
        _ = try aggregate(sessionCaches, &logits)
        progress("warm-up done")

        var result = Result(settings: s, prefill: [], decode: [], aggregate: [], load: nil)
        for r in 1...s.repeats {
            result.prefill.append(try prefill(prefillCache, &logits))
            result.decode.append(try decode(decodeCache, &logits))
            result.aggregate.append(try aggregate(sessionCaches, &logits))
            progress(String(format: "run %d/%d: prefill %.1f, decode %.1f, aggregate %.1f tok/s", r, s.repeats,
                            result.prefill.last!, result.decode.last!, result.aggregate.last!))
        }
        result.load = loadAverage()
        return result
    }

    /// Prefill tokens per second: the whole prompt in one call from an empty cache.
    private mutating func prefill(_ cache: KVCache, _ logits: inout [Float]) throws -> Double {
        cache.reset()
        let tokens = randomTokens(settings.promptTokens)
        let start = ContinuousClock.now
        try model.forward([(cache: cache, tokens: tokens)], into: &logits)
        return Double(tokens.count) / seconds(since: start)
    }

    /// Single-stream decode tokens per second: one token per call after a one-token prompt.
    private mutating func decode(_ cache: KVCache, _ logits: inout [Float]) throws -> Double {
        cache.reset()
        try model.forward([(cache: cache, tokens: randomTokens(1))], into: &logits)
        let tokens = randomTokens(settings.decodeTokens)
        let start = ContinuousClock.now
        for token in tokens {
            try model.forward([(cache: cache, tokens: [token])], into: &logits)
        }
        return Double(tokens.count) / seconds(since: start)
    }

    /// Aggregate decode tokens per second: every session one token per call, all in one batch.
    private mutating func aggregate(_ caches: [KVCache], _ logits: inout [Float]) throws -> Double {
        var batch: [(cache: KVCache, tokens: [Int32])] = []
        for cache in caches {
            cache.reset()
            batch.append((cache: cache, tokens: randomTokens(settings.sessionPromptTokens)))
        }
        try model.forward(batch, into: &logits)
        let steps = (0..<settings.decodeTokens).map { _ in randomTokens(caches.count) }
        let start = ContinuousClock.now
        for step in steps {
            for i in batch.indices { batch[i].tokens = [step[i]] }
            try model.forward(batch, into: &logits)
        }
        return Double(caches.count * settings.decodeTokens) / seconds(since: start)
    }

    /// `count` pseudo-random token ids (a fixed sequence, the same every run).
    private mutating func randomTokens(_ count: Int) -> [Int32] {
        let vocabulary = UInt64(model.vocabularySize)
        return (0..<count).map { _ in
            random ^= random << 13
            random ^= random >> 7
            random ^= random << 17
            return Int32(truncatingIfNeeded: random % vocabulary)
        }
    }

    private func seconds(since start: ContinuousClock.Instant) -> Double {
        let d = ContinuousClock.now - start
        return Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
    }

    private func loadAverage() -> Double? {
        guard let text = try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8) else { return nil }
        return text.split(separator: " ").first.flatMap { Double($0) }
    }
}

extension EngineBenchmark {
    /// The median of `values` (0 for none).
    static func median(_ values: [Double]) -> Double {
        guard !values.isEmpty else { return 0 }
        let sorted = values.sorted()
        let mid = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
    }

    /// `text` as a JSON string literal.
    static func jsonString(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case let c where c.value < 0x20: out += String(format: "\\u%04x", c.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
