import CPUKernels
import Foundation
@testable import Inference
import TestKit
import Testing

/// LoRA adapters applied unmerged, checked against the same adapter merged into the weights (`W + s·B·A`) and
/// run as a plain model.
@Suite struct LoRATests {
    static let rank = 4
    static let alpha: Float = 8
    /// The weights the test adapter changes (every block), and the output layer.
    static let targets = ["attn_q.weight", "attn_v.weight", "attn_output.weight", "ffn_gate.weight", "ffn_down.weight"]

    /// The tiny F32 model, an adapter for it, and the model with the adapter merged in.
    static func fixtures(userScale: Float = 1) throws -> (base: GGUFFile, adapter: [UInt8], merged: [UInt8]) {
        let base = try GGUFFile(path: Fixtures.path("tiny-f32.gguf"))
        let adapterBytes = try TestAdapters.bytes(for: base, targets: targets, rank: rank, alpha: alpha, output: true,
                                                  seed: 7)
        let adapter = try GGUFFile(bytes: adapterBytes)
        func floats(_ file: GGUFFile, _ name: String) throws -> [Float] {
            let info = try #require(file.tensorInfo(name))
            return file.tensorBytes(info).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        }
        var merged = GGUFWriter()
        for key in base.metadataKeys { merged.set(key, base.metadata[key]!) }
        let scale = alpha / Float(rank) * userScale
        var changed: [String: [Float]] = [:]
        for info in adapter.tensors where info.name.hasSuffix(".lora_a") {
            let name = String(info.name.dropLast(7))
            // The tiny model ties its output to the embedding: the merged file gets an output.weight of its own.
            let weight = name == "output.weight" ? "token_embd.weight" : name
            let shape = try #require(base.tensorInfo(weight)).shape
            let columns = shape[0], rows = shape[1]
            let a = try floats(adapter, name + ".lora_a"), b = try floats(adapter, name + ".lora_b")
            var w = try floats(base, weight)
            for r in 0..<rows {
                for c in 0..<columns {
                    var sum: Float = 0
                    for k in 0..<rank { sum += b[r * rank + k] * a[k * columns + c] }
                    w[r * columns + c] += scale * sum
                }
            }
            changed[name] = w
        }
        for info in base.tensors {
            let data = changed[info.name].map(bytes) ?? base.tensorBytes(info)
            try merged.add(.init(name: info.name, shape: info.shape, type: info.type, data: data))
        }
        let embedding = try #require(base.tensorInfo("token_embd.weight"))
        try merged.add(.init(name: "output.weight", shape: embedding.shape, type: .f32,
                             data: bytes(try #require(changed["output.weight"]))))
        return (base, adapterBytes, merged.bytes())
    }

    static func bytes(_ values: [Float]) -> [UInt8] { values.withUnsafeBytes { [UInt8]($0) } }

    static func maxDifference(_ x: [Float], _ y: [Float]) -> Float {
        zip(x, y).reduce(0) { max($0, abs($1.0 - $1.1)) }
    }

    @Test("an unmerged adapter gives the logits of the adapter merged into the weights, prefill and decode")
    func unmergedEqualsMerged() throws {
        let (base, adapterBytes, mergedBytes) = try Self.fixtures()
        let model = try LanguageModel(file: base)
        let mergedModel = try LanguageModel(file: GGUFFile(bytes: mergedBytes))
        let adapter = try LoRAAdapter(file: GGUFFile(bytes: adapterBytes), model: model)
        #expect(adapter.adaptedCount == 2 * Self.targets.count + 1)
        #expect(adapter.maxRank == Self.rank)

        let prompt: [Int32] = [1, 17, 42, 99, 3, 250]
        let adapted = try model.makeCache()
        adapted.adapter = adapter
        let reference = try mergedModel.makeCache()
        let plain = try model.makeCache()
        var a = try model.forward(cache: adapted, tokens: prompt)
        var m = try mergedModel.forward(cache: reference, tokens: prompt)
        let p = try model.forward(cache: plain, tokens: prompt)
        let spread = m.map(abs).max() ?? 1
        #expect(Self.maxDifference(a, m) <= 1e-4 * max(1, spread), "prefill")
        // The adapter changes the answer: its effect is far above the tolerance.
        #expect(Self.maxDifference(p, m) > 1e-2 * max(1, spread))
        for token: Int32 in [5, 6, 7] {
            a = try model.forward(cache: adapted, tokens: [token])
            m = try mergedModel.forward(cache: reference, tokens: [token])
            #expect(Self.maxDifference(a, m) <= 1e-4 * max(1, m.map(abs).max() ?? 1), "decode \(token)")
        }
    }

    @Test("in one batch, adapted and plain sessions each get their own weights")
    func mixedBatch() throws {
        let (base, adapterBytes, _) = try Self.fixtures()
        let model = try LanguageModel(file: base)
        let adapter = try LoRAAdapter(file: GGUFFile(bytes: adapterBytes), model: model)
        let half = try LoRAAdapter(file: GGUFFile(bytes: adapterBytes), model: model, scale: 0.5)
        let prompts: [[Int32]] = [[1, 2, 3], [4, 5], [6, 7, 8, 9]]
        let adapters: [LoRAAdapter?] = [adapter, nil, half]
        // Alone, one session at a time.
        var alone: [[Float]] = []
        for (prompt, adapter) in zip(prompts, adapters) {
            let cache = try model.makeCache()
            cache.adapter = adapter
            alone.append(try model.forward(cache: cache, tokens: prompt))
        }
        // Together, in one pass.
        let caches = try adapters.map { adapter -> KVCache in
            let cache = try model.makeCache()
            cache.adapter = adapter
            return cache
        }
        let together = try model.forward(Array(zip(caches, prompts)).map { (cache: $0.0, tokens: $0.1) })
        for i in 0..<3 {
            #expect(Self.maxDifference(together[i], alone[i]) <= 1e-5, "session \(i)")
        }
        #expect(Self.maxDifference(alone[0], alone[2]) > 1e-3, "scale 0.5 differs from scale 1")
    }

    @Test("the soup of two adapters runs the mean of their updates (here scales 1 and 0.5: the adapter at 0.75)")
    func soupIsTheMeanUpdate() throws {
        let (base, adapterBytes, _) = try Self.fixtures()
        let model = try LanguageModel(file: base)
        let full = try LoRAAdapter(file: GGUFFile(bytes: adapterBytes), model: model)
        let half = try LoRAAdapter(file: GGUFFile(bytes: adapterBytes), model: model, scale: 0.5)
        let expected = try LoRAAdapter(file: GGUFFile(bytes: adapterBytes), model: model, scale: 0.75)
        let soup = try LoRAAdapter.average([full, half], model: model)
        #expect(soup.adaptedCount == full.adaptedCount)
        #expect(soup.maxRank == 2 * Self.rank)
        let prompt: [Int32] = [3, 1, 4, 1, 5, 9, 2, 6]
        func logits(_ adapter: LoRAAdapter) throws -> [Float] {
            let cache = try model.makeCache()
            cache.adapter = adapter
            return try model.forward(cache: cache, tokens: prompt)
        }
        let m = try logits(expected)
        #expect(Self.maxDifference(try logits(soup), m) <= 1e-4 * max(1, m.map(abs).max() ?? 1))
        #expect(Self.maxDifference(try logits(full), m) > 1e-3)
    }

    @Test("a model file, an adapter for another shape, and half pairs are refused with the reason")
    func refusals() throws {
        let (base, _, _) = try Self.fixtures()
        let model = try LanguageModel(file: base)
        #expect(throws: LoRAError.notAnAdapter(path: "(memory)", generalType: nil)) {
            try LoRAAdapter(file: base, model: model)
        }
        func adapter(_ build: (inout GGUFWriter) throws -> Void) throws -> GGUFFile {
            var w = GGUFWriter()
            w.set("general.architecture", .string("llama"))
            w.set("general.type", .string("adapter"))
            w.set("adapter.type", .string("lora"))
            try build(&w)
            return try GGUFFile(bytes: w.bytes())
        }
        let zeros = { (n: Int) in [UInt8](repeating: 0, count: n * 4) }
        let wrongShape = try adapter { w in
            try w.add(.init(name: "blk.0.attn_q.weight.lora_a", shape: [32, 4], type: .f32, data: zeros(128)))
            try w.add(.init(name: "blk.0.attn_q.weight.lora_b", shape: [4, 64], type: .f32, data: zeros(256)))
        }
        #expect {
            try LoRAAdapter(file: wrongShape, model: model)
        } throws: { error in
            if case LoRAError.shapeMismatch(let tensor, _, _, _) = error { return tensor == "blk.0.attn_q.weight" }
            return false
        }
        let unpaired = try adapter { w in
            try w.add(.init(name: "blk.0.attn_q.weight.lora_a", shape: [64, 4], type: .f32, data: zeros(256)))
        }
        #expect(throws: LoRAError.unpaired("blk.0.attn_q.weight")) { try LoRAAdapter(file: unpaired, model: model) }
        let unknown = try adapter { w in
            try w.add(.init(name: "blk.9.attn_q.weight.lora_a", shape: [64, 4], type: .f32, data: zeros(256)))
            try w.add(.init(name: "blk.9.attn_q.weight.lora_b", shape: [4, 64], type: .f32, data: zeros(256)))
        }
        #expect(throws: LoRAError.unsupportedTarget("blk.9.attn_q.weight")) {
            try LoRAAdapter(file: unknown, model: model)
        }
        let empty = try adapter { _ in }
        #expect(throws: LoRAError.empty(path: "(memory)")) { try LoRAAdapter(file: empty, model: model) }
        let other = try adapter { w in w.set("general.architecture", .string("qwen2")) }
        #expect(throws: LoRAError.architectureMismatch(adapter: "qwen2", model: "llama")) {
            try LoRAAdapter(file: other, model: model)
        }
    }
}
