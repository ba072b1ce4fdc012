import Foundation
import Preference
import Testing

@Suite struct RebelTests {
    static let configuration = PCMConfiguration(hidden: 4, projection: 2, projectionSeed: 3, embeddingWidth: 4,
                                                recentTokens: 2, horizon: 8)

    /// Deterministic pseudo-random pairs over the 8 slot masks of three active experts.
    static func pairs(count: Int) -> [RebelPair] {
        var state: UInt64 = 12345
        func next() -> Float {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(state >> 40) / Float(1 << 24)
        }
        let f = configuration.featureCount
        func trajectory(_ mask: [Bool], length: Int) -> RebelTrajectory {
            let steps = (0..<length).map { _ in
                RebelStep(features: (0..<f).map { _ in next() * 2 - 1 }, mask: mask,
                          expertProbs: mask.map { $0 ? 0.01 + next() * 0.9 : 0 })
            }
            return RebelTrajectory(steps: steps, oldLogProb: Double(-next() * 5), reward: Double(next()))
        }
        return (0..<count).map { i in
            let mask = [i % 2 == 0, i % 2 == 1, true, false, i % 3 == 0, i % 3 != 0]
            return RebelPair(trajectory(mask, length: 3 + i % 3), trajectory(mask, length: 2 + i % 4))
        }
    }

    @Test("the REBEL gradient matches finite differences of the loss")
    func gradientMatchesFiniteDifferences() {
        var network = PCMNetwork(configuration: Self.configuration, seed: 4)
        // A non-zero output layer so every path of the gradient is exercised.
        for i in network.parameters.indices { network.parameters[i] += 0.2 * sin(Float(i)) }
        let pairs = Self.pairs(count: 5)
        let (loss, gradient) = Rebel.lossAndGradient(network, pairs: pairs, eta: 2, l2: 0.01)
        #expect(abs(loss - Rebel.loss(network, pairs: pairs, eta: 2, l2: 0.01)) < 1e-6 * max(1, loss))
        let h: Float = 1e-2
        var checked = 0
        for i in stride(from: 0, to: network.parameters.count, by: 3) {
            var plus = network, minus = network
            plus.parameters[i] += h
            minus.parameters[i] -= h
            let numeric = (Rebel.loss(plus, pairs: pairs, eta: 2, l2: 0.01)
                - Rebel.loss(minus, pairs: pairs, eta: 2, l2: 0.01)) / Double(2 * h)
            let analytic = Double(gradient[i])
            #expect(abs(numeric - analytic) <= 2e-3 + 2e-2 * abs(numeric), "parameter \(i)")
            checked += 1
        }
        #expect(checked > 30)
    }

    @Test("Adam on the REBEL loss lowers it")
    func optimisationLowersLoss() {
        var network = PCMNetwork(configuration: Self.configuration, seed: 4)
        let pairs = Self.pairs(count: 6)
        var adam = AdamOptimizer(count: network.parameters.count, learningRate: 0.05)
        let before = Rebel.loss(network, pairs: pairs, eta: 2)
        for _ in 0..<60 {
            let (_, g) = Rebel.lossAndGradient(network, pairs: pairs, eta: 2)
            adam.update(&network.parameters, gradient: g)
        }
        #expect(Rebel.loss(network, pairs: pairs, eta: 2) < 0.5 * before)
    }

    @Test("a trajectory's log-probability is the sum of the log mixture probabilities")
    func logProbability() {
        let network = PCMNetwork(configuration: Self.configuration, seed: 4)  // uniform over the active slots
        let f = Self.configuration.featureCount
        let step = RebelStep(features: [Float](repeating: 0.1, count: f),
                             mask: [true, false, true, false, true, false], expertProbs: [0.3, 0, 0.6, 0, 0.9, 0])
        let t = RebelTrajectory(steps: [step, step], oldLogProb: 0, reward: 0)
        #expect(abs(Rebel.logProb(network, t) - 2 * log(0.6)) < 1e-5)
    }
}
