import Foundation
import Preference
import Testing

@Suite struct RebelTests {
    static let configuration = PCMConfiguration(hidden: 4, projection: 2, projectionSeed: 3, embeddingWidth: 4,
                                                recentTokens: 2, horizon: 8)

    /// Deterministic pseudo-random pairs over the 8 slot masks of three active experts; `tempered` steps carry
    /// 5 candidates drawn at temperature 0.7.
    static func pairs(count: Int, tempered: Bool = false) -> [RebelPair] {
        var state: UInt64 = 12345
        func next() -> Float {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(state >> 40) / Float(1 << 24)
        }
        let f = configuration.featureCount
        func trajectory(_ mask: [Bool], length: Int) -> RebelTrajectory {
            let steps = (0..<length).map { t in
                var step = RebelStep(features: (0..<f).map { _ in next() * 2 - 1 }, mask: mask,
                                     expertProbs: mask.map { $0 ? 0.01 + next() * 0.9 : 0 })
                if tempered {
                    let candidates = mask.map { active in active ? (0..<5).map { _ in 0.01 + next() * 0.3 } : [] }
                    step.candidateProbs = candidates
                    step.chosen = t % 5
                    step.inverseTemperature = 1 / 0.7
                }
                return step
            }
            return RebelTrajectory(steps: steps, oldLogProb: Double(-next() * 5), reward: Double(next()))
        }
        return (0..<count).map { i in
            let mask = [i % 2 == 0, i % 2 == 1, true, false, i % 3 == 0, i % 3 != 0]
            return RebelPair(trajectory(mask, length: 3 + i % 3), trajectory(mask, length: 2 + i % 4))
        }
    }

    @Test("the REBEL gradient matches finite differences of the loss, for plain and tempered steps",
          arguments: [false, true])
    func gradientMatchesFiniteDifferences(tempered: Bool) {
        var network = PCMNetwork(configuration: Self.configuration, seed: 4)
        // A non-zero output layer so every path of the gradient is exercised.
        for i in network.parameters.indices { network.parameters[i] += 0.2 * sin(Float(i)) }
        let pairs = Self.pairs(count: 5, tempered: tempered)
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

    @Test("a tempered step's log-probability is that of the mixture tempered and renormalised over its candidates")
    func temperedLogProbability() {
        let mask = [true, false, true, false, true, false]
        let candidates: [[Float]] = [[0.5, 0.2, 0.1], [], [0.1, 0.6, 0.2], [], [0.3, 0.3, 0.05], []]
        let alpha: [Float] = [0.5, 0, 0.3, 0, 0.2, 0]
        let beta: Float = 1 / 0.7
        var total = 0.0
        for chosen in 0..<3 {
            let step = RebelStep(features: [], mask: mask, expertProbs: mask.map { $0 ? 0.5 : 0 },
                                 candidateProbs: candidates, chosen: chosen, inverseTemperature: beta)
            let m = (0..<3).map { u in
                (0..<6).reduce(0.0) { $0 + Double(alpha[$1]) * Double(candidates[$1].isEmpty ? 0 : candidates[$1][u]) }
            }
            let z = m.reduce(0.0) { $0 + pow($1, Double(beta)) }
            let expected = Double(beta) * log(m[chosen]) - log(z)
            #expect(abs(step.logProb(alpha: alpha) - expected) < 1e-9)
            total += exp(step.logProb(alpha: alpha))
        }
        // A distribution over the candidates.
        #expect(abs(total - 1) < 1e-9)
        // Without candidates (a greedy or truncated draw), the plain mixture's log Σ α_i p_i.
        let plain = RebelStep(features: [], mask: mask, expertProbs: [0.3, 0, 0.6, 0, 0.9, 0])
        #expect(abs(plain.logProb(alpha: alpha) - log(0.5 * 0.3 + 0.3 * 0.6 + 0.2 * 0.9)) < 1e-6)
    }

    @Test("steps recorded before candidates existed still decode, as plain-mixture steps")
    func decodesOldSteps() throws {
        let json = Data(#"{"features": [0.5], "mask": [true, false], "expertProbs": [0.25, 0]}"#.utf8)
        let step = try JSONDecoder().decode(RebelStep.self, from: json)
        #expect(step.candidateProbs == nil)
        #expect(abs(step.logProb(alpha: [1, 0]) - log(0.25)) < 1e-6)
    }
}
