import Foundation
import Preference
import Testing
import Wire

@testable import Decoding

/// Candidates from probabilities (the wire carries natural-log probabilities).
func candidates(_ pairs: [(UInt32, Double)], tail: Float) -> TopKCandidates {
    TopKCandidates(ids: pairs.map(\.0), logProbs: pairs.map { Float(log($0.1)) }, tailMass: tail)
}

/// The merged probability of a token (0 when absent).
func probability(_ merged: MergedDistribution, _ id: UInt32) -> Double {
    merged.ids.firstIndex(of: id).map { Double(merged.probs[$0]) } ?? 0
}

@Suite struct MergeTests {
    // Expert A lists {1: 0.5, 2: 0.3}, B lists {2: 0.6, 3: 0.2}; both have tail 0.2 over V = 10, so a missing
    // token gets min(0.2 / 8, smallest listed) = 0.025 from either.
    static let a = candidates([(1, 0.5), (2, 0.3)], tail: 0.2)
    static let b = candidates([(2, 0.6), (3, 0.2)], tail: 0.2)

    @Test("probability mode mixes probabilities over the union, estimating missing tokens from the tail")
    func probabilityMode() {
        var merger = Merger(vocabSize: 10)
        let merged = merger.merge([Self.a, Self.b], weights: [0.5, 0.5], mode: .probability)
        let raw: [UInt32: Double] = [1: 0.5 * 0.5 + 0.5 * 0.025, 2: 0.5 * 0.3 + 0.5 * 0.6, 3: 0.5 * 0.025 + 0.5 * 0.2]
        let total = raw.values.reduce(0, +)
        #expect(merged.ids == [2, 1, 3])
        for (id, p) in raw {
            #expect(abs(probability(merged, id) - p / total) < 1e-6)
        }
        #expect(abs(merged.probs.reduce(0, +) - 1) < 1e-6)
    }

    @Test("logit mode multiplies the experts' probabilities raised to their weights, renormalised")
    func logitMode() {
        var merger = Merger(vocabSize: 10)
        let merged = merger.merge([Self.a, Self.b], weights: [0.5, 0.5], mode: .logit)
        let raw: [UInt32: Double] = [1: (0.5 * 0.025).squareRoot(), 2: (0.3 * 0.6).squareRoot(),
                                     3: (0.025 * 0.2).squareRoot()]
        let total = raw.values.reduce(0, +)
        #expect(merged.ids == [2, 1, 3])
        for (id, p) in raw {
            #expect(abs(probability(merged, id) - p / total) < 1e-6)
        }
    }

    @Test("the missing-token estimate is the tail spread over the unlisted vocabulary, capped by the smallest listed")
    func missingTokenEstimate() {
        #expect(abs(Merger.missingTokenEstimate(Self.a, vocabSize: 10) - 0.025) < 1e-7)
        let thin = candidates([(1, 0.05)], tail: 0.95)
        #expect(abs(Merger.missingTokenEstimate(thin, vocabSize: 10) - 0.05) < 1e-7)
        let noTail = candidates([(1, 1.0)], tail: 0)
        #expect(Merger.missingTokenEstimate(noTail, vocabSize: 10) == 0)
    }

    @Test("a lost expert's weight is dropped and the others renormalised", arguments: [MergeMode.probability, .logit])
    func lostExpertRenormalised(mode: MergeMode) {
        var merger = Merger(vocabSize: 10)
        let reference = merger.merge([Self.a, Self.b], weights: [0.5, 0.5], mode: mode)
        let withLost = merger.merge([Self.a, nil, Self.b], weights: [0.25, 0.5, 0.25], mode: mode)
        #expect(withLost.ids == reference.ids)
        for (x, y) in zip(withLost.probs, reference.probs) { #expect(abs(x - y) < 1e-6) }
        #expect(withLost.weights == [0.5, 0, 0.5])
    }

    @Test("a one-hot weight gives exactly that expert's distribution", arguments: [MergeMode.probability, .logit])
    func oneHot(mode: MergeMode) {
        var merger = Merger(vocabSize: 10)
        let merged = merger.merge([Self.a, Self.b], weights: [0, 1], mode: mode)
        #expect(merged.ids == [2, 3])
        #expect(abs(probability(merged, 2) - 0.6 / 0.8) < 1e-6)
        #expect(abs(probability(merged, 3) - 0.2 / 0.8) < 1e-6)
    }

    @Test("when every present expert has weight 0 they share equally")
    func zeroWeightsShare() {
        var merger = Merger(vocabSize: 10)
        let zero = merger.merge([Self.a, Self.b], weights: [0, 0], mode: .probability)
        let equal = merger.merge([Self.a, Self.b], weights: [1, 1], mode: .probability)
        #expect(zero == equal)
    }

    @Test("ties in probability are ordered by the lower token id")
    func tieOrder() {
        var merger = Merger(vocabSize: 100)
        let merged = merger.merge([candidates([(9, 0.4), (4, 0.4)], tail: 0.2)], weights: [1], mode: .probability)
        #expect(merged.ids == [4, 9])
    }

    @Test("no expert present gives an empty distribution")
    func nothingPresent() {
        var merger = Merger(vocabSize: 10)
        #expect(merger.merge([nil, nil], weights: [0.5, 0.5], mode: .probability).isEmpty)
    }

    @Test("malformed entries are skipped: NaN, ids outside the vocabulary, an id listed twice")
    func malformedEntries() {
        var merger = Merger(vocabSize: 10)
        let bad = TopKCandidates(
            ids: [1, 50, 2, 1], logProbs: [Float(log(0.5)), Float(log(0.3)), .nan, Float(log(0.1))], tailMass: .nan
        )
        let merged = merger.merge([bad], weights: [1], mode: .probability)
        #expect(merged.ids == [1])
        #expect(merged.probs == [1])
    }
}

@Suite struct SamplerTests {
    static let spread = MergedDistribution(ids: [10, 11, 12, 13, 14], probs: [0.3, 0.25, 0.2, 0.15, 0.1])

    func draws(_ parameters: SamplingParameters, _ distribution: MergedDistribution = spread, count: Int = 200)
        -> [UInt32]
    {
        var sampler = TokenSampler(parameters: parameters)
        return (0..<count).map { _ in sampler.sample(distribution)! }
    }

    @Test("SplitMix64 gives the reference sequence for seed 0")
    func splitMixReference() {
        var generator = SplitMix64(seed: 0)
        #expect(generator.next() == 0xE220_A839_7B1D_CDAF)
        #expect(generator.next() == 0x6E78_9E6A_A1B9_65F4)
        #expect(generator.next() == 0x06C4_5D18_8009_454F)
    }

    @Test("the same seed gives the same choices; another seed other choices", arguments: [UInt64(0), 1, 42])
    func determinism(seed: UInt64) {
        let parameters = SamplingParameters(temperature: 1, seed: seed)
        #expect(draws(parameters) == draws(parameters))
        #expect(draws(parameters) != draws(SamplingParameters(temperature: 1, seed: seed + 1000)))
        #expect(Set(draws(parameters)).count > 1)
    }

    @Test("greedy takes the most likely token, the lowest id among equals, whatever the seed",
          arguments: [UInt64(0), 7])
    func greedy(seed: UInt64) {
        let tied = MergedDistribution(ids: [4, 9, 1], probs: [0.4, 0.4, 0.2])
        #expect(Set(draws(SamplingParameters(temperature: 0, seed: seed), tied, count: 20)) == [4])
    }

    @Test("top-k keeps only the k most likely tokens", arguments: [1, 2, 3])
    func topK(k: Int) {
        let chosen = Set(draws(SamplingParameters(temperature: 1, topK: UInt32(k), seed: 3)))
        #expect(chosen.isSubset(of: Set(Self.spread.ids.prefix(k))))
        let sampler = TokenSampler(parameters: SamplingParameters(temperature: 1, topK: UInt32(k)))
        #expect(sampler.keptCount(Self.spread) == k)
    }

    @Test("top-p keeps the shortest prefix reaching p", arguments: [(Float(0.3), 1), (0.5, 2), (0.56, 3), (1, 5)])
    func topP(p: Float, kept: Int) {
        let sampler = TokenSampler(parameters: SamplingParameters(temperature: 1, topP: p))
        #expect(sampler.keptCount(Self.spread) == kept)
        let chosen = Set(draws(SamplingParameters(temperature: 1, topP: p, seed: 5)))
        #expect(chosen.isSubset(of: Set(Self.spread.ids.prefix(kept))))
    }

    @Test("a very low temperature behaves like greedy")
    func lowTemperature() {
        #expect(Set(draws(SamplingParameters(temperature: 0.01, seed: 9))) == [10])
    }

    @Test("an empty distribution gives no token")
    func empty() {
        var sampler = TokenSampler(parameters: SamplingParameters(temperature: 1))
        #expect(sampler.sample(MergedDistribution(ids: [], probs: [])) == nil)
    }
}

@Suite struct StopMatcherTests {
    func run(_ stops: [String], _ pieces: [String]) -> (released: [String], stopped: Bool, rest: String) {
        var matcher = StopMatcher(stops: stops)
        var released: [String] = []
        for piece in pieces where !matcher.stopped { released.append(matcher.push(piece)) }
        return (released, matcher.stopped, matcher.stopped ? "" : matcher.finish())
    }

    @Test("a stop string split across tokens ends the text before it")
    func acrossTokens() {
        let result = run(["</s>"], ["Hello", " wor", "ld</", "s>", "more"])
        #expect(result.released == ["Hello", " wor", "ld", ""])
        #expect(result.stopped)
    }

    @Test("text that could start a stop string is held back until it cannot")
    func holdBack() {
        var matcher = StopMatcher(stops: ["</s>"])
        #expect(matcher.push("a<") == "a")
        #expect(matcher.heldBack == "<")
        #expect(matcher.push("/") == "")
        #expect(matcher.push("b") == "</b")
        #expect(!matcher.stopped)
    }

    @Test("held-back text is released when the generation ends otherwise")
    func finishReleases() {
        let result = run(["</s>"], ["x</"])
        #expect(result.released == ["x"])
        #expect(result.rest == "</")
    }

    @Test("the earliest of several stop strings wins, inside one piece too")
    func earliest() {
        var matcher = StopMatcher(stops: ["\n\nUser:", "END"])
        #expect(matcher.push("abcEND de\n\nUser:") == "abc")
        #expect(matcher.matchedStop == "END")
    }

    @Test("multi-byte characters are never cut")
    func multiByte() {
        let result = run(["é!"], ["caf", "é", "!"])
        #expect(result.released == ["caf", "", ""])
        #expect(result.stopped)
        let notStop = run(["é!"], ["café", "?"])
        #expect(notStop.released.joined() == "café?")
    }

    @Test("without stop strings everything is released at once, and empty stop strings are ignored")
    func noStops() {
        #expect(run([], ["a", "b"]).released == ["a", "b"])
        #expect(run([""], ["a", "b"]).released == ["a", "b"])
    }
}

@Suite struct MergeReferenceTests {
    /// A direct transcription of the documented rule, with dictionaries, for comparison.
    func reference(_ experts: [TopKCandidates?], weights: [Float], mode: MergeMode, vocabSize: Int)
        -> [(UInt32, Double)]
    {
        var alpha = zip(experts, weights).map { $0.0 == nil ? 0 : Double(max($0.1, 0)) }
        let total = alpha.reduce(0, +)
        alpha = alpha.map { $0 / total }
        var union = Set<UInt32>()
        var tables: [[UInt32: Double]] = []
        var estimates: [Double] = []
        for (i, expert) in experts.enumerated() {
            var table: [UInt32: Double] = [:]
            if let expert {
                for (id, lp) in zip(expert.ids, expert.logProbs) { table[id] = exp(Double(lp)) }
                if alpha[i] > 0 { union.formUnion(expert.ids) }
                let spread = Double(expert.tailMass) / Double(vocabSize - expert.ids.count)
                estimates.append(min(spread, table.values.min()!))
            } else {
                estimates.append(0)
            }
            tables.append(table)
        }
        var raw: [(UInt32, Double)] = union.map { id in
            var value = 0.0
            for i in experts.indices where alpha[i] > 0 {
                let p = tables[i][id] ?? estimates[i]
                value += mode == .probability ? alpha[i] * p : alpha[i] * log(p)
            }
            return (id, value)
        }
        if mode == .logit {
            let top = raw.map(\.1).max()!
            raw = raw.map { ($0.0, exp($0.1 - top)) }
        }
        let sum = raw.map(\.1).reduce(0, +)
        return raw.map { ($0.0, $0.1 / sum) }.sorted { $0.1 != $1.1 ? $0.1 > $1.1 : $0.0 < $1.0 }
    }

    @Test("on random inputs the merger agrees with a direct transcription of the rule",
          arguments: [MergeMode.probability, .logit])
    func agreesWithReference(mode: MergeMode) {
        var generator = Xoshiro256StarStar(seed: 2024)
        var merger = Merger(vocabSize: 5000)
        for _ in 0..<50 {
            var experts: [TopKCandidates?] = []
            var weights: [Float] = []
            for e in 0..<Int(generator.next() % 6 + 1) {
                let k = Int(generator.next() % 64 + 1)
                var ids = Set<UInt32>()
                while ids.count < k { ids.insert(UInt32(generator.next() % 300)) }
                var probs = ids.map { _ in Double(generator.nextUnit() + 0.01) }
                let tail = generator.nextUnit() * 0.5
                let scale = (1 - tail) / probs.reduce(0, +)
                probs = probs.map { $0 * scale }.sorted(by: >)
                let lost = e > 0 && generator.next() % 5 == 0
                experts.append(lost ? nil : TopKCandidates(
                    ids: Array(ids), logProbs: probs.map { Float(log($0)) }, tailMass: Float(tail)))
                weights.append(Float(generator.nextUnit()) + 0.01)
            }
            let merged = merger.merge(experts, weights: weights, mode: mode)
            let expected = reference(experts, weights: weights, mode: mode, vocabSize: 5000)
            #expect(merged.ids.count == expected.count)
            for (index, (id, p)) in expected.enumerated() where index < merged.ids.count {
                #expect(abs(Double(merged.probs[index]) - p) < 1e-4)
                if index + 1 < expected.count, abs(expected[index + 1].1 - p) > 1e-5 {
                    #expect(merged.ids[index] == id)
                }
            }
        }
    }
}
