import Foundation
import Testing

@testable import Inference

@Suite struct TopKTests {
    static func logits(_ n: Int, seed: UInt64) -> [Float] {
        var state = seed
        return (0..<n).map { _ in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            // Coarse values so ties occur.
            return Float(Int(state >> 54)) / 64 - 4
        }
    }

    /// log-softmax computed in Double, sorted descending with ties by lower id.
    static func expected(_ logits: [Float], k: Int) -> [(Int32, Double)] {
        let m = Double(logits.max()!)
        let z = m + Foundation.log(logits.reduce(0.0) { $0 + Foundation.exp(Double($1) - m) })
        let order = logits.indices.sorted { logits[$0] != logits[$1] ? logits[$0] > logits[$1] : $0 < $1 }
        return order.prefix(k).map { (Int32($0), Double(logits[$0]) - z) }
    }

    @Test("the k best ids come out in descending order with their log-softmax values and the tail mass",
          arguments: [1, 5, 40, 1000, 4096])
    func matchesFullSort(k: Int) {
        let logits = Self.logits(50_000, seed: UInt64(k))
        let top = TopK(logits: logits, k: k)
        let want = Self.expected(logits, k: k)
        #expect(top.ids == want.map(\.0))
        #expect(zip(top.logProbs, want).allSatisfy { abs(Double($0) - $1.1) < 1e-4 })
        let mass = want.reduce(0.0) { $0 + Foundation.exp($1.1) }
        #expect(abs(Double(top.tailMass) - max(0, 1 - mass)) < 1e-4)
    }

    @Test("k larger than the vocabulary gives every token and no tail; k = 0 gives none and the whole mass")
    func edges() {
        let all = TopK(logits: [0, 1, 2], k: 10)
        #expect(all.ids == [2, 1, 0])
        #expect(all.tailMass < 1e-6)
        let none = TopK(logits: [0, 1, 2], k: 0)
        #expect(none.ids.isEmpty && none.tailMass == 1)
        #expect(TopK(logits: [], k: 3).ids.isEmpty)
    }

    @Test("huge and infinite logits do not overflow: probabilities stay finite and sum to at most 1")
    func stability() {
        let top = TopK(logits: [1000, 999, -Float.infinity, 998, -1e30], k: 2)
        #expect(top.ids == [0, 1])
        #expect(top.logProbs.allSatisfy { $0.isFinite })
        #expect(abs(top.logProbs[0] - top.logProbs[1] - 1) < 1e-4)
        let p = top.logProbs.map { Foundation.exp($0) }
        #expect(abs(p[0] + p[1] + top.tailMass - 1) < 1e-5)
        #expect(top.tailMass > 0.08 && top.tailMass < 0.1)

        var long = [Float](repeating: -.infinity, count: 1000)
        long[500] = 1000
        long[700] = 999
        long[999] = -1e30
        let sparse = TopK(logits: long, k: 3)
        #expect(Array(sparse.ids.prefix(2)) == [500, 700])
        #expect(abs(sparse.logProbs[0] + Float(Foundation.log(1 + Foundation.exp(-1.0)))) < 2e-4)
        #expect(sparse.tailMass < 1e-5)
    }
}
