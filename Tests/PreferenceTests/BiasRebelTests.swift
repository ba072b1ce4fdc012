import Foundation
import Preference
import Testing

@Suite struct BiasRebelTests {
    static let vocabulary = 12

    /// Deterministic pseudo-random pairs: each step has 4 candidates among the 12 tokens, drawn at T = 0.7.
    static func pairs(count: Int) -> [(BiasTrajectory, BiasTrajectory)] {
        var state: UInt64 = 987
        func next() -> Float {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(state >> 40) / Float(1 << 24)
        }
        func trajectory(length: Int) -> BiasTrajectory {
            let steps = (0..<length).map { t in
                let first = Int(next() * Float(vocabulary - 4))
                return BiasStep(ids: (0..<4).map { Int32(first + $0) }, baseLogProbs: (0..<4).map { _ in -4 * next() },
                                chosen: t % 4, inverseTemperature: 1 / 0.7)
            }
            return BiasTrajectory(steps: steps, oldLogProb: Double(-3 * next()), reward: Double(next()))
        }
        return (0..<count).map { i in (trajectory(length: 2 + i % 3), trajectory(length: 3 + i % 2)) }
    }

    @Test("a step's log-probability is the tempered softmax over its candidates, with the bias added")
    func stepLogProb() {
        let step = BiasStep(ids: [2, 5, 7], baseLogProbs: [-1, -2, -0.5], chosen: 1, inverseTemperature: 2)
        var bias = [Float](repeating: 0, count: Self.vocabulary)
        bias[5] = 0.75
        bias[9] = 10  // not a candidate: no effect
        let x = [2 * -1.0, 2 * (-2.0 + 0.75), 2 * -0.5]
        let expected = x[1] - log(x.map { exp($0) }.reduce(0, +))
        #expect(abs(step.logProb(bias: bias) - expected) < 1e-9)
        // The gradient is β(1[u = y] − q(u)) on the candidates and 0 elsewhere; it sums to 0.
        var gradient = [Double](repeating: 0, count: Self.vocabulary)
        _ = gradient.withUnsafeMutableBufferPointer { step.logProb(bias: bias, gradient: $0) }
        #expect(gradient[9] == 0 && gradient[0] == 0)
        #expect(gradient[5] > 0 && gradient[2] < 0 && gradient[7] < 0)
        #expect(abs(gradient.reduce(0, +)) < 1e-9)
    }

    @Test("the bias's REBEL gradient matches finite differences of the loss")
    func gradientMatchesFiniteDifferences() {
        let pairs = Self.pairs(count: 6)
        let bias = (0..<Self.vocabulary).map { 0.3 * sin(Float($0)) }
        let (loss, gradient) = BiasRebel.lossAndGradient(bias: bias, pairs: pairs, eta: 3)
        #expect(abs(loss - BiasRebel.loss(bias: bias, pairs: pairs, eta: 3)) < 1e-6 * max(1, loss))
        let h: Float = 1e-2
        for i in bias.indices {
            var plus = bias, minus = bias
            plus[i] += h
            minus[i] -= h
            let numeric = (BiasRebel.loss(bias: plus, pairs: pairs, eta: 3)
                - BiasRebel.loss(bias: minus, pairs: pairs, eta: 3)) / Double(2 * h)
            #expect(abs(numeric - Double(gradient[i])) <= 2e-3 + 2e-2 * abs(numeric), "token \(i)")
        }
        #expect(gradient.contains { abs($0) > 1e-3 })
    }

    @Test("gradient steps on the loss fit the pairs' reward differences")
    func descentReducesLoss() {
        let pairs = Self.pairs(count: 8)
        var bias = [Float](repeating: 0, count: Self.vocabulary)
        var optimizer = AdamOptimizer(count: bias.count, learningRate: 0.05)
        let before = BiasRebel.loss(bias: bias, pairs: pairs, eta: 2)
        for _ in 0..<100 {
            optimizer.update(&bias, gradient: BiasRebel.lossAndGradient(bias: bias, pairs: pairs, eta: 2).gradient)
        }
        let after = BiasRebel.loss(bias: bias, pairs: pairs, eta: 2)
        #expect(after < 0.5 * before, "loss \(before) → \(after)")
    }
}
