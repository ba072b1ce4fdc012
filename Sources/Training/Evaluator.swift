import Decoding
import Inference
import Foundation
import Preference
import Wire

/// The methods the evaluation compares, per combination.
public enum EvalMethod: Hashable, Sendable, CustomStringConvertible {
    /// The learned PCM mixing the combination's three experts.
    case pcm
    /// One model whose system prompt holds the combination's three preference prompts.
    case prompting
    /// The combination's three experts, equal weights.
    case uniform
    /// One expert alone.
    case single(PreferenceDimension)
    /// Personalized Soups' parameter merging, for tuned or trained experts: one model with preference prompting's
    /// system prompt and the mean of the three experts' trained parameters (their hidden offsets, hence their
    /// logit biases, averaged; their LoRA adapters' weight updates averaged). Only when every expert of the
    /// combination has a bias or an adapter.
    case soup

    /// A short name.
    public var description: String {
        switch self {
        case .pcm: "PCM"
        case .prompting: "prompting"
        case .uniform: "uniform"
        case let .single(d): "only \(d.rawValue)"
        case .soup: "soup"
        }
    }
}

/// A mean with a bootstrap 95% interval.
public struct Interval: Sendable, Equatable {
    /// The mean.
    public var mean: Double
    /// The 2.5th percentile of the bootstrap means.
    public var low: Double
    /// The 97.5th percentile.
    public var high: Double

    /// The interval's width.
    public var width: Double { high - low }

    /// The percentile bootstrap of the mean of `values` (`resamples` resamples, seeded).
    public static func bootstrap(_ values: [Double], resamples: Int = 2000, seed: UInt64 = 1) -> Interval {
        guard !values.isEmpty else { return Interval(mean: 0, low: 0, high: 0) }
        let mean = values.reduce(0, +) / Double(values.count)
        var rng = Xoshiro256StarStar(seed: seed)
        var means: [Double] = []
        means.reserveCapacity(resamples)
        for _ in 0..<resamples {
            var s = 0.0
            for _ in values.indices { s += values[Int(rng.next() % UInt64(values.count))] }
            means.append(s / Double(values.count))
        }
        means.sort()
        return Interval(mean: mean, low: means[Int(0.025 * Double(resamples))],
                        high: means[min(Int(0.975 * Double(resamples)), resamples - 1)])
    }
}

/// The evaluation's raw scores: for each combination and method, one combined reward per prompt.
public struct EvalScores: Sendable {
    /// scores[combination label][method] = reward per prompt (prompt order).
    public var scores: [String: [EvalMethod: [Double]]] = [:]
    /// The mean weights the PCM gave each slot, per combination.
    public var pcmWeights: [String: [Float]] = [:]
    /// Example responses: (combination, method, prompt, text) of the first prompt.
    public var examples: [(String, EvalMethod, String)] = []
}

/// Runs the evaluation of the PCM against its baselines.
public struct Evaluator {
    /// The experts.
    public let experts: InProcessExperts
    /// The evaluation prompts.
    public let prompts: PromptSet
    /// Response length limit.
    public let maxTokens: Int
    /// Sampling temperature (every method samples with the same seed per prompt).
    public let temperature: Float
    /// The seed.
    public let seed: UInt64
    /// Personalized Soups' merged adapter of each combination whose three experts all have LoRA adapters (their
    /// updates averaged, `LoRAAdapter.average`), by combination label.
    public let soups: [String: LoRAAdapter]

    /// Creates an evaluator.
    /// - Throws: `TrainingError.unusableModel` when the experts' adapters cannot be merged.
    public init(experts: InProcessExperts, prompts: PromptSet, maxTokens: Int, temperature: Float, seed: UInt64)
        throws(TrainingError)
    {
        self.experts = experts
        self.prompts = prompts
        self.maxTokens = maxTokens
        self.temperature = temperature
        self.seed = seed
        var soups: [String: LoRAAdapter] = [:]
        for combo in Combinations.all {
            let adapters = experts.adapters(for: combo.dimensions).compactMap { $0 }
            guard adapters.count == combo.dimensions.count else { continue }
            do {
                soups[Combinations.label(combo)] = try LoRAAdapter.average(adapters, model: experts.model)
            } catch {
                throw .unusableModel("cannot merge the adapters of \(Combinations.label(combo)): \(error)")
            }
        }
        self.soups = soups
    }

    /// Generates and scores every method on every prompt; `progress(done, total)` after each prompt.
    public func run(pcm: PCMNetwork, reward: inout ReferenceNormalisedReward,
                    progress: (Int, Int) -> Void = { _, _ in }) throws(TrainingError) -> EvalScores
    {
        var out = EvalScores()
        let combos = Combinations.all
        for p in prompts.prompts.indices {
            try reward.prepare(promptIndices: [p], prompts: prompts, experts: experts, maxTokens: maxTokens)
            let user = prompts.prompts[p]
            let sampling = SamplingParameters(temperature: temperature, seed: seed &+ UInt64(p) &* 7919)
            var requests: [DecodeRequest] = []
            var tags: [(Int?, EvalMethod)] = []
            for (c, combo) in combos.enumerated() {
                let sessions = experts.sessions(for: combo)
                let biases = experts.biases(for: combo.dimensions)
                let adapters = experts.adapters(for: combo.dimensions)
                requests.append(DecodeRequest(user: user, sessions: sessions, policy: .pcm(pcm, combo),
                                              sampling: sampling, biases: biases, adapters: adapters))
                tags.append((c, .pcm))
                requests.append(DecodeRequest(user: user, sessions: sessions,
                                              policy: .fixed([Float](repeating: 1, count: 6)), sampling: sampling,
                                              biases: biases, adapters: adapters))
                tags.append((c, .uniform))
                let joined = experts.prompts.joined(combo)
                requests.append(DecodeRequest(user: user, sessions: [(slot: 0, system: joined)],
                                              policy: .fixed([1, 0, 0, 0, 0, 0]), sampling: sampling))
                tags.append((c, .prompting))
                let soupBias = Self.soup(biases)
                let soupAdapter = soups[Combinations.label(combo)]
                if soupBias != nil || soupAdapter != nil {
                    requests.append(DecodeRequest(user: user, sessions: [(slot: 0, system: joined)],
                                                  policy: .fixed([1, 0, 0, 0, 0, 0]), sampling: sampling,
                                                  biases: [soupBias], adapters: [soupAdapter]))
                    tags.append((c, .soup))
                }
            }
            // With experts that see the preference, an expert alone differs per combination.
            let singles: [(Int?, PreferenceSpec?)] = experts.context == .own
                ? [(nil, nil)] : combos.indices.map { ($0, combos[$0]) }
            for (c, combo) in singles {
                for d in combo?.dimensions ?? PreferenceDimension.allCases {
                    let system = combo.map { experts.system(for: d, in: $0) } ?? experts.prompts[d]
                    requests.append(DecodeRequest(user: user, sessions: [(slot: d.ordinal, system: system)],
                                                  policy: .fixed([1, 1, 1, 1, 1, 1]), sampling: sampling,
                                                  biases: experts.biases(for: [d]), adapters: experts.adapters(for: [d])))
                    tags.append((c, .single(d)))
                }
            }
            let results = try experts.decode(requests, maxTokens: maxTokens)
            try reward.prepareResponses(results.map { (user: user, text: $0.text) })
            for (tag, result) in zip(tags, results) {
                let norm = reward.normalised(result.text, prompt: user)
                let targets = tag.0.map { [$0] } ?? Array(combos.indices)
                for c in targets {
                    let combo = combos[c]
                    if case let .single(d) = tag.1, !combo.dimensions.contains(d) { continue }
                    let label = Combinations.label(combo)
                    out.scores[label, default: [:]][tag.1, default: []].append(
                        RewardModel.combine(norm, preference: combo))
                    if tag.1 == .pcm {
                        var w = out.pcmWeights[label] ?? [Float](repeating: 0, count: 6)
                        for i in 0..<6 { w[i] += result.meanWeights[i] / Float(prompts.prompts.count) }
                        out.pcmWeights[label] = w
                    }
                    if p == 0, tag.0 != nil { out.examples.append((label, tag.1, result.text)) }
                }
            }
            progress(p + 1, prompts.prompts.count)
        }
        return out
    }

    /// The soup's bias: the mean of the experts' biases (nil unless every one has a bias). A bias is linear in
    /// the tuned hidden offset, so this is the bias of the mean offset.
    public static func soup(_ biases: [[Float]?]) -> [Float]? {
        let all = biases.compactMap { $0 }
        guard !all.isEmpty, all.count == biases.count, let n = all.first?.count,
              all.allSatisfy({ $0.count == n })
        else { return nil }
        var mean = [Float](repeating: 0, count: n)
        for bias in all { for i in 0..<n { mean[i] += bias[i] / Float(all.count) } }
        return mean
    }

    /// Every item's score, one line per (combination, method, prompt): `combination,method,prompt,reward`, the
    /// prompt as its index in the evaluation's prompts. Runs on the same prompts and seed can be paired with it.
    public static func itemsCSV(_ scores: EvalScores) -> String {
        var csv = "combination,method,prompt,reward\n"
        for combo in Combinations.all {
            let label = Combinations.label(combo)
            guard let table = scores.scores[label] else { continue }
            for (method, values) in table.sorted(by: { $0.key.description < $1.key.description }) {
                for (p, value) in values.enumerated() { csv += "\(label),\(method),\(p),\(value)\n" }
            }
        }
        return csv
    }

    /// The Markdown report: per combination and overall, each method's mean with its interval, and the PCM's
    /// win rate against each baseline (a tie counts half).
    public static func report(_ scores: EvalScores, header: String) -> (markdown: String, csv: String) {
        var md = header + "\n\n"
        var csv = "combination,method,mean,low,high,win_rate_of_pcm\n"
        let hasSoup = scores.scores.values.contains { $0[.soup] != nil }
        let baselineOrder: [String] = ["prompting"] + (hasSoup ? ["soup"] : [])
            + ["uniform", "only expertise pole", "only informativeness pole", "only style pole"]
        md += "| combination | PCM | " + baselineOrder.joined(separator: " | ") + " |\n"
        md += "|---|---|" + baselineOrder.map { _ in "---" }.joined(separator: "|") + "|\n"
        var overall: [String: [Double]] = [:]
        var wins: [String: (Double, Int)] = [:]
        func cell(_ i: Interval) -> String { String(format: "%.3f [%.3f, %.3f]", i.mean, i.low, i.high) }
        for combo in Combinations.all {
            let label = Combinations.label(combo)
            guard let table = scores.scores[label], let pcm = table[.pcm] else { continue }
            var methods: [(String, [Double])] = [("PCM", pcm)]
            methods.append(("prompting", table[.prompting] ?? []))
            if hasSoup { methods.append(("soup", table[.soup] ?? [])) }
            methods.append(("uniform", table[.uniform] ?? []))
            for (axisName, d) in zip(["only expertise pole", "only informativeness pole", "only style pole"],
                                     combo.dimensions)
            {
                methods.append((axisName, table[.single(d)] ?? []))
            }
            var row = "| \(label) |"
            for (name, values) in methods {
                let i = Interval.bootstrap(values)
                overall[name, default: []].append(contentsOf: values)
                var winText = ""
                if name != "PCM" {
                    var w = 0.0
                    for (a, b) in zip(pcm, values) { w += a > b ? 1 : (a == b ? 0.5 : 0) }
                    let rate = values.isEmpty ? 0 : w / Double(values.count)
                    wins[name, default: (0, 0)].0 += w
                    wins[name, default: (0, 0)].1 += values.count
                    winText = String(format: " (win %.0f%%)", 100 * rate)
                    csv += "\(label),\(name),\(i.mean),\(i.low),\(i.high),\(rate)\n"
                } else {
                    csv += "\(label),\(name),\(i.mean),\(i.low),\(i.high),\n"
                }
                row += " " + cell(i) + winText + " |"
            }
            md += row + "\n"
        }
        var row = "| **all 8** |"
        for name in ["PCM"] + baselineOrder {
            let i = Interval.bootstrap(overall[name] ?? [])
            var winText = ""
            if let w = wins[name], w.1 > 0 {
                winText = String(format: " (win %.0f%%)", 100 * w.0 / Double(w.1))
                csv += "all,\(name),\(i.mean),\(i.low),\(i.high),\(w.0 / Double(w.1))\n"
            } else {
                csv += "all,\(name),\(i.mean),\(i.low),\(i.high),\n"
            }
            row += " " + cell(i) + winText + " |"
        }
        md += row + "\n\n"
        md += "Cells: mean combined normalised reward [bootstrap 95% interval over prompts]; (win x%): how often the "
            + "PCM's response to the same prompt scored higher (ties count half).\n\n"
        md += "Paired differences PCM − baseline over all (prompt, combination) items, bootstrap 95% interval:\n\n"
        let pcmAll = overall["PCM"] ?? []
        for name in baselineOrder {
            let diffs = zip(pcmAll, overall[name] ?? []).map { $0 - $1 }
            let i = Interval.bootstrap(diffs)
            md += String(format: "- vs %@: %+.3f [%+.3f, %+.3f]\n", name, i.mean, i.low, i.high)
        }
        md += "\nMean PCM weights α per combination (slots in dimension order, only the combination's experts "
            + "are non-zero):\n\n"
        for combo in Combinations.all {
            let label = Combinations.label(combo)
            if let w = scores.pcmWeights[label] {
                let parts = combo.dimensions.map { String(format: "%@ %.2f", $0.rawValue, w[$0.ordinal]) }
                md += "- \(label): " + parts.joined(separator: ", ") + "\n"
            }
        }
        return (md, csv)
    }
}
