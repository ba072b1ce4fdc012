import Foundation

/// One generated token as the REBEL objective needs it: the PCM's features at that step, which slots were
/// active, each active expert's probability π_i(y_t) of the token that was drawn and, for a tempered draw, every
/// active expert's probability of every candidate the draw chose among.
public struct RebelStep: Sendable, Codable, Equatable {
    /// The PCM's input at this step.
    public var features: [Float]
    /// The active slots (the experts of the preference).
    public var mask: [Bool]
    /// π_i(y_t) for each slot (its listed probability, or the merge's missing-token estimate); 0 when inactive.
    public var expertProbs: [Float]
    /// Per slot, π_i(u) of every candidate u of the draw (the union of the active experts' lists, listed or
    /// estimated); empty for an inactive slot. Nil when the step was not drawn at a temperature.
    public var candidateProbs: [[Float]]?
    /// The drawn token's index among the candidates.
    public var chosen: Int
    /// 1/T of the draw. With candidates, the token's log-probability is the tempered one the sampler drew from,
    /// β log m(y_t) − log Σ_u m(u)^β with m(u) = Σ_i α_i π_i(u); without, the plain mixture's log m(y_t).
    public var inverseTemperature: Float

    /// Creates a step.
    public init(features: [Float], mask: [Bool], expertProbs: [Float], candidateProbs: [[Float]]? = nil,
                chosen: Int = 0, inverseTemperature: Float = 1)
    {
        self.features = features
        self.mask = mask
        self.expertProbs = expertProbs
        self.candidateProbs = candidateProbs
        self.chosen = chosen
        self.inverseTemperature = inverseTemperature
    }

    enum CodingKeys: String, CodingKey {
        case features, mask, expertProbs, candidateProbs, chosen, inverseTemperature
    }

    /// Decodes a step; the candidate fields are optional (steps recorded without them use the plain mixture).
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        features = try c.decode([Float].self, forKey: .features)
        mask = try c.decode([Bool].self, forKey: .mask)
        expertProbs = try c.decode([Float].self, forKey: .expertProbs)
        candidateProbs = try c.decodeIfPresent([[Float]].self, forKey: .candidateProbs)
        chosen = try c.decodeIfPresent(Int.self, forKey: .chosen) ?? 0
        inverseTemperature = try c.decodeIfPresent(Float.self, forKey: .inverseTemperature) ?? 1
    }

    /// Whether the exact tempered log-probability applies (candidates recorded, the chosen index among them).
    var isTempered: Bool {
        guard let candidateProbs, inverseTemperature > 0 else { return false }
        return mask.indices.contains { i in
            mask[i] && i < candidateProbs.count && candidateProbs[i].indices.contains(chosen)
        }
    }

    /// log q(y_t) under weights α and, with `gradient`, ∂ log q / ∂α_j for every slot (0 where inactive).
    public func logProb(alpha: [Float], gradient: UnsafeMutableBufferPointer<Double>? = nil) -> Double {
        let s = mask.count
        guard isTempered, let candidates = candidateProbs else {
            // The plain mixture: log Σ α_i p_i, ∂/∂α_j = p_j / π.
            var pi = 0.0
            for i in 0..<s where mask[i] { pi += Double(alpha[i]) * Double(expertProbs[i]) }
            pi = max(pi, 1e-30)
            if let gradient {
                for j in 0..<s { gradient[j] = mask[j] ? Double(expertProbs[j]) / pi : 0 }
            }
            return log(pi)
        }
        let beta = Double(inverseTemperature)
        let count = candidates.indices.filter { mask[$0] }.map { candidates[$0].count }.min() ?? 0
        var m = [Double](repeating: 0, count: count)
        for i in 0..<s where mask[i] && i < candidates.count {
            let a = Double(alpha[i])
            for u in 0..<count { m[u] += a * Double(candidates[i][u]) }
        }
        for u in 0..<count { m[u] = max(m[u], 1e-30) }
        // log Σ_u m(u)^β, stably.
        var top = -Double.infinity
        for u in 0..<count { top = max(top, beta * log(m[u])) }
        var sum = 0.0
        for u in 0..<count { sum += exp(beta * log(m[u]) - top) }
        let logZ = top + log(sum)
        let result = beta * log(m[chosen]) - logZ
        if let gradient {
            // ∂/∂α_j = β π_j(y)/m(y) − β Σ_u q(u) π_j(u)/m(u), with q(u) = m(u)^β / Z.
            var qOverM = [Double](repeating: 0, count: count)
            for u in 0..<count { qOverM[u] = exp(beta * log(m[u]) - logZ) / m[u] }
            for j in 0..<s {
                guard mask[j], j < candidates.count else {
                    gradient[j] = 0
                    continue
                }
                var expected = 0.0
                for u in 0..<count { expected += qOverM[u] * Double(candidates[j][u]) }
                gradient[j] = beta * (Double(candidates[j][chosen]) / m[chosen] - expected)
            }
        }
        return result
    }
}

/// One sampled response: its steps, its log-probability under the policy that drew it, and its reward.
public struct RebelTrajectory: Sendable, Codable, Equatable {
    /// The steps, in order.
    public var steps: [RebelStep]
    /// log π_θt(y) under the PCM that drew it.
    public var oldLogProb: Double
    /// The normalised reward R(x, y).
    public var reward: Double

    /// Creates a trajectory.
    public init(steps: [RebelStep], oldLogProb: Double, reward: Double) {
        self.steps = steps
        self.oldLogProb = oldLogProb
        self.reward = reward
    }
}

/// Two responses to the same prompt and preference.
public struct RebelPair: Sendable, Codable, Equatable {
    /// The first response.
    public var first: RebelTrajectory
    /// The second response.
    public var second: RebelTrajectory

    /// Creates a pair.
    public init(_ first: RebelTrajectory, _ second: RebelTrajectory) {
        self.first = first
        self.second = second
    }
}

/// REBEL (Gao et al. 2024, "REBEL: Reinforcement Learning via Regressing Relative Rewards") for the PCM.
///
/// For pairs (y, y′) drawn from the merged policy of PCM θ_t, the loss is the mean over pairs of
///
///     ((log π_θ(y) − log π_θt(y)) − (log π_θ(y′) − log π_θt(y′)) − η (R(y) − R(y′)))²
///
/// with log π_θ(y) = Σ_t log q_θ(y_t), plus `l2` · |θ|², where q_θ is the distribution the token was drawn
/// from: the mixture m_θ(u) = Σ_i α_i(θ; x_t) π_i(u) tempered and renormalised over the step's candidates,
/// q_θ(u) = m_θ(u)^β / Σ_v m_θ(v)^β (β = 1/T), or log m_θ(y_t) itself for a step recorded without candidates
/// (`RebelStep.logProb`). Experts are frozen, so the π_i are recorded once at generation; the loss and its
/// gradient (written out below: through the mixture, the masked softmax, the output layer, tanh and the first
/// layer) cost a few MLP passes per recorded token.
public enum Rebel {
    /// log π_θ(y) of one trajectory.
    public static func logProb(_ network: PCMNetwork, _ trajectory: RebelTrajectory) -> Double {
        var total = 0.0
        for step in trajectory.steps {
            total += step.logProb(alpha: network.weights(step.features, mask: step.mask))
        }
        return total
    }

    /// The loss (without gradient).
    public static func loss(_ network: PCMNetwork, pairs: [RebelPair], eta: Double, l2: Double = 0) -> Double {
        guard !pairs.isEmpty else { return 0 }
        var total = 0.0
        for pair in pairs {
            let r = residual(logProb(network, pair.first), logProb(network, pair.second), pair: pair, eta: eta)
            total += r * r
        }
        return total / Double(pairs.count) + l2 * network.parameters.reduce(0.0) { $0 + Double($1 * $1) }
    }

    static func residual(_ a: Double, _ b: Double, pair: RebelPair, eta: Double) -> Double {
        residual(new: (a, b), old: (pair.first.oldLogProb, pair.second.oldLogProb),
                 rewards: (pair.first.reward, pair.second.reward), eta: eta)
    }

    /// REBEL's regression residual for one pair (y, y′), whatever the policy's parameters:
    /// (log π(y) − log π_t(y)) − (log π(y′) − log π_t(y′)) − η (R(y) − R(y′)).
    static func residual(new: (Double, Double), old: (Double, Double), rewards: (Double, Double), eta: Double)
        -> Double
    {
        (new.0 - old.0) - (new.1 - old.1) - eta * (rewards.0 - rewards.1)
    }

    /// The loss and its gradient with respect to every parameter.
    public static func lossAndGradient(_ network: PCMNetwork, pairs: [RebelPair], eta: Double, l2: Double = 0)
        -> (loss: Double, gradient: [Float])
    {
        var gradient = [Double](repeating: 0, count: network.parameters.count)
        guard !pairs.isEmpty else { return (0, network.parameters.map { _ in 0 }) }
        var loss = 0.0
        var scratchA = [Double](repeating: 0, count: gradient.count)
        var scratchB = [Double](repeating: 0, count: gradient.count)
        for pair in pairs {
            for i in scratchA.indices { scratchA[i] = 0; scratchB[i] = 0 }
            let a = accumulateLogProbGradient(network, pair.first, into: &scratchA)
            let b = accumulateLogProbGradient(network, pair.second, into: &scratchB)
            let r = residual(a, b, pair: pair, eta: eta)
            loss += r * r
            let scale = 2 * r / Double(pairs.count)
            for i in gradient.indices { gradient[i] += scale * (scratchA[i] - scratchB[i]) }
        }
        loss /= Double(pairs.count)
        if l2 > 0 {
            for i in gradient.indices {
                let p = Double(network.parameters[i])
                gradient[i] += 2 * l2 * p
                loss += l2 * p * p
            }
        }
        return (loss, gradient.map { Float($0) })
    }

    /// Adds ∂ log π_θ(y) / ∂θ into `gradient` and returns log π_θ(y).
    static func accumulateLogProbGradient(_ network: PCMNetwork, _ trajectory: RebelTrajectory,
                                          into gradient: inout [Double]) -> Double
    {
        let c = network.configuration
        let f = c.featureCount, hn = c.hidden, s = c.slots
        let p = network.parameters
        var total = 0.0
        var gz = [Double](repeating: 0, count: s)
        var galpha = [Double](repeating: 0, count: s)
        var ga = [Double](repeating: 0, count: hn)
        for step in trajectory.steps {
            let (h, z) = network.activations(step.features)
            let alpha = PCMNetwork.maskedSoftmax(z, mask: step.mask)
            total += galpha.withUnsafeMutableBufferPointer { step.logProb(alpha: alpha, gradient: $0) }
            // Through the masked softmax: ∂/∂z_j = α_j (g_j − Σ_i α_i g_i) over the active slots, with
            // g = ∂ log q/∂α (for the plain mixture, α_j (p_j − π) / π).
            var mean = 0.0
            for i in 0..<s where step.mask[i] { mean += Double(alpha[i]) * galpha[i] }
            for j in 0..<s {
                gz[j] = step.mask[j] ? Double(alpha[j]) * (galpha[j] - mean) : 0
            }
            for j in 0..<s where gz[j] != 0 {
                gradient[network.b2Offset + j] += gz[j]
                for k in 0..<hn { gradient[network.w2Offset + j * hn + k] += gz[j] * Double(h[k]) }
            }
            for k in 0..<hn {
                var g = 0.0
                for j in 0..<s where gz[j] != 0 { g += gz[j] * Double(p[network.w2Offset + j * hn + k]) }
                ga[k] = g * (1 - Double(h[k]) * Double(h[k]))
            }
            for k in 0..<hn where ga[k] != 0 {
                gradient[network.b1Offset + k] += ga[k]
                let row = network.w1Offset + k * f
                for m in 0..<f { gradient[row + m] += ga[k] * Double(step.features[m]) }
            }
        }
        return total
    }
}

/// Adam (Kingma and Ba 2015) over a flat parameter vector; its state is saved with training checkpoints.
public struct AdamOptimizer: Sendable, Codable, Equatable {
    /// Step size.
    public var learningRate: Float
    /// First-moment decay.
    public var beta1: Float = 0.9
    /// Second-moment decay.
    public var beta2: Float = 0.999
    /// Added to the denominator.
    public var epsilon: Float = 1e-8
    /// Updates applied so far.
    public private(set) var t: Int = 0
    private var m: [Float]
    private var v: [Float]

    /// Creates an optimiser for `count` parameters.
    public init(count: Int, learningRate: Float) {
        self.learningRate = learningRate
        m = [Float](repeating: 0, count: count)
        v = [Float](repeating: 0, count: count)
    }

    /// Applies one update to `parameters` with `gradient`.
    public mutating func update(_ parameters: inout [Float], gradient: [Float]) {
        t += 1
        let c1 = 1 - pow(beta1, Float(t)), c2 = 1 - pow(beta2, Float(t))
        for i in parameters.indices where i < m.count && i < gradient.count {
            let g = gradient[i].isFinite ? gradient[i] : 0
            m[i] = beta1 * m[i] + (1 - beta1) * g
            v[i] = beta2 * v[i] + (1 - beta2) * g * g
            parameters[i] -= learningRate * (m[i] / c1) / ((v[i] / c2).squareRoot() + epsilon)
        }
    }
}
