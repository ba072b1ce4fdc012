// Compares the engine's last-position logits with reference top-20 fixtures; see Scripts/llamacpp-logits.sh.
//
//     compare-logits [--lora ADAPTER.gguf] MODEL.gguf FIXTURE.json [FIXTURE.json ...]
//
// With --lora, every prompt runs with the adapter (unmerged, as mope worker --lora runs it).
// For each fixture and prompt: max |Δlogit| over the fixture's top 20 (raw, and after removing each side's mean
// over those 20, since a common offset does not change probabilities), whether the top 1 agrees, and how many
// of the fixture's top 5 are in the engine's top 5.
import Foundation

struct Case: Decodable {
    var prompt: String
    var tokens: [Int32]
    var top_ids: [Int32]
    var top_logits: [Float]
}

@main
struct CompareLogits {
    static func main() throws {
        var arguments = CommandLine.arguments
        var adapterPath: String?
        if arguments.count >= 3, arguments[1] == "--lora" {
            adapterPath = arguments[2]
            arguments.removeSubrange(1...2)
        }
        guard arguments.count >= 3 else {
            print("usage: compare-logits [--lora ADAPTER.gguf] MODEL.gguf FIXTURE.json [FIXTURE.json ...]")
            exit(2)
        }
        let model = try LanguageModel(path: arguments[1], threads: 1)
        let adapter = try adapterPath.map { try LoRAAdapter(path: $0, model: model) }
        for path in arguments[2...] {
            let cases = try JSONDecoder().decode([Case].self, from: Data(contentsOf: URL(fileURLWithPath: path)))
            print("\(URL(fileURLWithPath: path).lastPathComponent):")
            var worstRaw: Float = 0
            var worstCentered: Float = 0
            for c in cases {
                let cache = try model.makeCache(capacity: c.tokens.count)
                cache.adapter = adapter
                let logits = try model.forward(cache: cache, tokens: c.tokens)
                let mine = c.top_ids.map { logits[Int($0)] }
                let raw = zip(mine, c.top_logits).map { abs($0 - $1) }.max() ?? 0
                let meanMine = mine.reduce(0, +) / Float(mine.count)
                let meanTheirs = c.top_logits.reduce(0, +) / Float(c.top_logits.count)
                let centered = zip(mine, c.top_logits).map { abs(($0 - meanMine) - ($1 - meanTheirs)) }.max() ?? 0
                let order = logits.indices.sorted { logits[$0] > logits[$1] }.prefix(5).map { Int32($0) }
                let top5 = Set(order).intersection(c.top_ids.prefix(5)).count
                let margin = c.top_logits[0] - c.top_logits[1]
                worstRaw = max(worstRaw, raw)
                worstCentered = max(worstCentered, centered)
                let label = "\"\(c.prompt)\"".padding(toLength: 48, withPad: " ", startingAt: 0)
                print("  " + label + String(format: "max|Δ| %.3f  centred %.3f  top1 %@ (margin %.2f)  top5 %d/5",
                                            raw, centered,
                                            order[0] == c.top_ids[0] ? "same" : "differs", margin, top5))
            }
            print(String(format: "  worst: max|Δ| %.3f, centred %.3f", worstRaw, worstCentered))
        }
    }
}
