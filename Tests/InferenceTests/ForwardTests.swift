import Foundation
import TestKit
import Testing

import Decoding
@testable import Inference
import Wire

/// Expected logits from Scripts/reference-forward.py (numpy, f32 activations, gguf's dequantisation).
struct ReferenceCase: Decodable {
    var tokens: [Int32]
    var logits: [Float]
}

@Suite struct ForwardTests {
    static let reference: [String: [ReferenceCase]] = {
        guard let data = try? Data(contentsOf: Fixtures.url("reference-tiny.json")),
              let cases = try? JSONDecoder().decode([String: [ReferenceCase]].self, from: data)
        else { return [:] }
        return cases
    }()

    static func load(_ name: String) throws -> LanguageModel {
        try LanguageModel(path: Fixtures.path(name), threads: 2)
    }

    // Tolerances, on logits with each row's mean subtracted (a common offset does not change probabilities):
    // the all-F32 model at 2e-3 (f32 rounding over two layers, logits of size ~5); quantised models at 0.6,
    // which leaves room for kernels that round activations to 8 bits as llama.cpp does (measured up to ~0.45
    // on these models), yet catches real errors in the forward pass, which move logits by whole units.
    static func tolerance(_ name: String) -> Float { name == "tiny-f32.gguf" ? 2e-3 : 0.6 }

    @Test("the last position's logits match the independent numpy forward pass", arguments: Fixtures.tinyModels)
    func matchesReference(model name: String) throws {
        let model = try Self.load(name)
        let cases = try #require(Self.reference[name])
        #expect(cases.count >= 2)
        for c in cases {
            let cache = try model.makeCache()
            let logits = try model.forward(cache: cache, tokens: c.tokens)
            #expect(logits.count == c.logits.count)
            let diff = maxCenteredDifference(logits, c.logits)
            #expect(diff < Self.tolerance(name), "\(name) \(c.tokens): max |Δlogit| \(diff)")
            if name != "tiny-f32.gguf" {
                // Where the reference's best token leads by a clear margin, the engine picks it too.
                let sorted = c.logits.sorted(by: >)
                if sorted[0] - sorted[1] > 1 { #expect(argmax(logits) == argmax(c.logits), "\(name) \(c.tokens)") }
            }
            #expect(cache.count == c.tokens.count)
        }
    }

    @Test("a f16 KV cache gives nearly the logits of a f32 cache")
    func halfPrecisionCache() throws {
        let model = try Self.load("tiny-f32.gguf")
        let c = try #require(Self.reference["tiny-f32.gguf"]?.last)
        let logits = try model.forward(cache: try model.makeCache(precision: .f16), tokens: c.tokens)
        #expect(maxCenteredDifference(logits, c.logits) < 0.05)
    }

    @Test("prefilling n tokens gives the same cache and logits as n single steps",
          arguments: ["tiny-f32.gguf", "tiny-a.gguf", "tiny-qwen2.gguf"])
    func prefillEqualsSteps(model name: String) throws {
        let model = try Self.load(name)
        let tokens: [Int32] = [1, 40, 41, 42, 300, 7, 2, 1, 99]
        let prefilled = try model.makeCache()
        let all = try model.forward(cache: prefilled, tokens: tokens)
        let stepped = try model.makeCache()
        var last: [Float] = []
        for t in tokens { last = try model.forward(cache: stepped, tokens: [t]) }
        #expect(maxAbsDifference(all, last) < 1e-3)
        // Both caches continue identically.
        let a = try model.forward(cache: prefilled, tokens: [5])
        let b = try model.forward(cache: stepped, tokens: [5])
        #expect(maxAbsDifference(a, b) < 1e-3)
    }

    @Test("a batch of sessions at different positions gives each session the logits it gets alone",
          arguments: ["tiny-f32.gguf", "tiny-b.gguf", "tiny-qwen2.gguf"])
    func batchEqualsSingle(model name: String) throws {
        let model = try Self.load(name)
        let prefixes: [[Int32]] = [[1, 10, 11], [1], [1, 20, 21, 22, 23, 24, 25], []]
        let news: [[Int32]] = [[12], [30, 31, 32, 33], [26], [1, 50, 51]]
        var alone: [[Float]] = []
        for (prefix, new) in zip(prefixes, news) {
            let cache = try model.makeCache(capacity: 64)
            if !prefix.isEmpty { _ = try model.forward(cache: cache, tokens: prefix) }
            alone.append(try model.forward(cache: cache, tokens: new))
        }
        let caches = try prefixes.map { prefix in
            let cache = try model.makeCache(capacity: 64)
            if !prefix.isEmpty { _ = try model.forward(cache: cache, tokens: prefix) }
            return cache
        }
        let together = try model.forward(Array(zip(caches, news)).map { (cache: $0.0, tokens: $0.1) })
        #expect(together.count == 4)
        for i in 0..<4 {
            #expect(maxAbsDifference(together[i], alone[i]) < 1e-3, "session \(i)")
            #expect(caches[i].count == prefixes[i].count + news[i].count)
        }
        // The batch keeps going: one more step each, batched and with a larger then smaller batch.
        let step = try model.forward(caches.map { (cache: $0, tokens: [Int32(3)]) })
        let single = try model.forward(caches.prefix(2).map { (cache: $0, tokens: [Int32(4)]) })
        #expect(step.count == 4 && single.count == 2)
    }

    @Test("a batch longer than one pass runs in several passes with the same results")
    func severalPasses() throws {
        let file = try GGUFFile(path: Fixtures.path("tiny-f32.gguf"))
        let whole = try LanguageModel(file: file)
        let chunked = try LanguageModel(file: file, maxTokensPerPass: 5)
        let entries: [[Int32]] = [Array(1...12), [7, 8, 9], [40], Array(100...106)]
        func run(_ model: LanguageModel) throws -> ([[Float]], [KVCache]) {
            let caches = try entries.map { _ in try model.makeCache() }
            _ = try model.forward(cache: caches[2], tokens: [1, 2])
            let rows = try model.forward(zip(caches, entries).map { (cache: $0.0, tokens: $0.1) })
            return (rows, caches)
        }
        let (expected, _) = try run(whole)
        let (rows, caches) = try run(chunked)
        for i in entries.indices {
            #expect(maxAbsDifference(rows[i], expected[i]) < 1e-3, "entry \(i)")
        }
        #expect(caches.map(\.count) == [12, 3, 3, 7])
    }

    @Test("topK over a batch equals TopK of each session's logits row")
    func batchTopK() throws {
        let model = try Self.load("tiny-c.gguf")
        let caches = try (0..<2).map { _ in try model.makeCache(capacity: 32) }
        var buffer: [Float] = []
        let tops = try model.topK([(cache: caches[0], tokens: [1, 2, 3]), (cache: caches[1], tokens: [9])], k: 8,
                                  logits: &buffer)
        let rows = [try model.forward(cache: try model.makeCache(), tokens: [1, 2, 3]),
                    try model.forward(cache: try model.makeCache(), tokens: [9])]
        #expect(tops.count == 2)
        for (top, row) in zip(tops, rows) {
            let want = TopK(logits: row, k: 8)
            #expect(top.ids == want.ids)
            #expect(zip(top.logProbs, want.logProbs).allSatisfy { abs($0 - $1) < 1e-4 })
        }
        #expect(caches[0].allocatedBytes > 0 && caches[0].allocatedBytes <= caches[0].maxBytes)
        #expect(caches[0].maxBytes == 2 * 2 * 32 * 32 * 4)
    }

    @Test("appending past the cache's capacity is contextFull and leaves the cache as it was")
    func contextFull() throws {
        let model = try Self.load("tiny-a.gguf")
        let cache = try model.makeCache(capacity: 4)
        _ = try model.forward(cache: cache, tokens: [1, 2, 3])
        #expect(throws: InferenceError.contextFull(capacity: 4, count: 3, adding: 2)) {
            try model.forward(cache: cache, tokens: [4, 5])
        }
        #expect(cache.count == 3)
        _ = try model.forward(cache: cache, tokens: [4])
        #expect(cache.remaining == 0)
        #expect(throws: InferenceError.contextFull(capacity: 4, count: 4, adding: 1)) {
            try model.forward(cache: cache, tokens: [5])
        }
        #expect(throws: InferenceError.badCapacity(requested: 257, contextLength: 256)) {
            try model.makeCache(capacity: 257)
        }
        #expect(throws: InferenceError.badCapacity(requested: 0, contextLength: 256)) {
            try model.makeCache(capacity: 0)
        }
    }

    @Test("bad batches are typed errors and change no cache")
    func badBatches() throws {
        let model = try Self.load("tiny-a.gguf")
        let good = try model.makeCache()
        let other = try model.makeCache()
        let vocab = model.vocabularySize
        #expect(throws: InferenceError.tokenOutOfRange(token: Int32(vocab), vocabularySize: vocab)) {
            try model.forward([(cache: good, tokens: [1]), (cache: other, tokens: [2, Int32(vocab)])])
        }
        #expect(throws: InferenceError.tokenOutOfRange(token: -1, vocabularySize: vocab)) {
            try model.forward(cache: good, tokens: [-1])
        }
        #expect(throws: InferenceError.emptyInput) { try model.forward(cache: good, tokens: []) }
        #expect(throws: InferenceError.duplicateCache) {
            try model.forward([(cache: good, tokens: [1]), (cache: good, tokens: [2])])
        }
        #expect(good.count == 0 && other.count == 0)
        #expect(try model.forward([]).isEmpty)
    }

    @Test("truncating a cache rolls back tokens: continuing equals a fresh prefill of the kept prefix")
    func truncateAndReset() throws {
        let model = try Self.load("tiny-f32.gguf")
        let cache = try model.makeCache()
        _ = try model.forward(cache: cache, tokens: [1, 50, 60, 70, 80])
        try cache.truncate(to: 2)
        let rolled = try model.forward(cache: cache, tokens: [90, 91])
        let fresh = try model.forward(cache: try model.makeCache(), tokens: [1, 50, 90, 91])
        #expect(maxAbsDifference(rolled, fresh) < 1e-4)
        #expect(throws: InferenceError.badTruncation(requested: 5, count: 4)) { try cache.truncate(to: 5) }
        cache.reset()
        #expect(cache.count == 0)
        let again = try model.forward(cache: cache, tokens: [1, 50, 90, 91])
        #expect(maxAbsDifference(again, fresh) < 1e-4)
    }

    @Test("a cache grown over many steps matches a single prefill")
    func longSequence() throws {
        let model = try Self.load("tiny-q4_0.gguf")
        let tokens: [Int32] = (0..<150).map { Int32(($0 * 37 + 11) % 440) }
        let stepped = try model.makeCache()
        var last: [Float] = []
        for t in tokens { last = try model.forward(cache: stepped, tokens: [t]) }
        let prefill = try model.forward(cache: try model.makeCache(), tokens: tokens)
        #expect(maxAbsDifference(last, prefill) < 1e-3)
    }

    @Test("the three tiny experts are different models with one vocabulary: greedy continuations differ")
    func expertsDiffer() throws {
        let models = try ["tiny-a.gguf", "tiny-b.gguf", "tiny-c.gguf"].map(Self.load)
        let prompt: [Int32] = [1, 57, 300, 12]
        var continuations: [[Int32]] = []
        for m in models {
            let result = try m.decode(prompt: prompt, maxTokens: 8, endOfSequence: [])
            continuations.append(result.tokens.map { Int32(bitPattern: $0) })
        }
        #expect(Set(continuations.map { $0.map(String.init).joined(separator: ",") }).count == 3)
        #expect(Set(models.map(\.vocabularyHash)).count == 1)
        #expect(Set(models.map(\.fingerprint)).count == 3)
        // Not degenerate: no expert repeats one token forever, and together they use many distinct tokens.
        #expect(continuations.allSatisfy { Set($0).count >= 2 }, "\(continuations)")
        #expect(Set(continuations.joined()).count >= 10, "\(continuations)")
    }

    @Test("one model through the shared decode step: greedy picks the argmax, maxTokens and the callback hold")
    func greedyGeneration() throws {
        let model = try Self.load("tiny-b.gguf")
        let prompt: [Int32] = [1, 100, 101]
        var streamed: [UInt32] = []
        let result = try model.decode(prompt: prompt, maxTokens: 6, onToken: {
            streamed.append($0)
            return true
        })
        // The same by hand.
        let cache = try model.makeCache()
        var logits = try model.forward(cache: cache, tokens: prompt)
        var expected: [UInt32] = []
        while expected.count < result.tokens.count {
            let next = Int32(argmax(logits))
            expected.append(UInt32(next))
            logits = try model.forward(cache: cache, tokens: [next])
        }
        #expect(result.tokens == expected)
        #expect(streamed == result.tokens)
        #expect(result.tokens.count == 6 || result.finish == .endOfSequence)

        let stopped = try model.decode(prompt: prompt, maxTokens: 6, onToken: { _ in false })
        #expect(stopped.tokens.count == 1)
        let sampling = SamplingParameters(temperature: 1, seed: 7)
        let sampled1 = try model.decode(prompt: prompt, sampling: sampling, maxTokens: 6)
        let sampled2 = try model.decode(prompt: prompt, sampling: sampling, maxTokens: 6)
        #expect(sampled1.tokens == sampled2.tokens)
    }

    @Test("the configuration is read from the tiny models' metadata")
    func configuration() throws {
        let llama = try Self.load("tiny-a.gguf").configuration
        #expect(llama.architecture == "llama" && llama.ropeStyle == .adjacentPairs && !llama.attentionBias)
        #expect(llama.blockCount == 2 && llama.embeddingLength == 64 && llama.feedForwardLength == 128)
        #expect(llama.headCount == 4 && llama.keyValueHeadCount == 2 && llama.headDimension == 16)
        #expect(llama.contextLength == 256 && llama.ropeFrequencyBase == 10000)
        #expect(try Self.load("tiny-a.gguf").endOfGenerationTokens == [0, 2])
        let qwen = try Self.load("tiny-qwen2.gguf").configuration
        #expect(qwen.architecture == "qwen2" && qwen.ropeStyle == .splitHalf && qwen.attentionBias)
    }
}
