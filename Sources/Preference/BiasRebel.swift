import Foundation

/// One token drawn from a single expert at a temperature, as tuning the expert's logit bias needs it: the
/// candidates the sampler chose among, their log-probabilities WITHOUT the bias, and the chosen one.
///
/// With bias b the draw's probability is q_b(y) = exp(β(ℓ_y + b_y)) / Σ_{u ∈ U} exp(β(ℓ_u + b_u)), β = 1/T,
/// over the candidate set U (the expert's top-k list): the log-probability is exact for any b that keeps U.
public struct BiasStep: Sendable, Equatable {
    /// The candidates' token ids.
    public var ids: [Int32]
    /// Their log-probabilities under the model without bias (any shift common to all is irrelevant).
    public var baseLogProbs: [Float]
    /// The drawn candidate's index.
    public var chosen: Int
    /// 1/T of the draw.
    public var inverseTemperature: Float

    /// Creates a step.
    public init(ids: [Int32], baseLogProbs: [Float], chosen: Int, inverseTemperature: Float) {
        self.ids = ids
        self.baseLogProbs = baseLogProbs
        self.chosen = chosen
        self.inverseTemperature = inverseTemperature
    }

    /// log q_b(y) and, with `gradient`, adds `scale` · ∂ log q_b(y) / ∂b into it: β(1[u = y] − q_b(u)) for
    /// every candidate u, 0 for every other token.
    public func logProb(bias: [Float], gradient: UnsafeMutableBufferPointer<Double>? = nil, scale: Double = 1)
        -> Double
    {
        guard ids.indices.contains(chosen), ids.count == baseLogProbs.count else { return 0 }
        let beta = Double(inverseTemperature)
        var x = [Double](repeating: 0, count: ids.count)
        var top = -Double.infinity
        for u in ids.indices {
            let id = Int(ids[u])
            let b = id < bias.count ? Double(bias[id]) : 0
            x[u] = beta * (Double(baseLogProbs[u]) + b)
            top = max(top, x[u])
        }
        var sum = 0.0
        for u in ids.indices { sum += exp(x[u] - top) }
        let logZ = top + log(sum)
        if let gradient {
            for u in ids.indices {
                let id = Int(ids[u])
                guard id < gradient.count else { continue }
                let q = exp(x[u] - logZ)
                gradient[id] += scale * beta * ((u == chosen ? 1 : 0) - q)
            }
        }
        return x[chosen] - logZ
    }
}

/// One response of a tuned expert: its steps, log π_bt(y) under the bias that drew it, and its reward.
public struct BiasTrajectory: Sendable, Equatable {
    /// The steps, in order.
    public var steps: [BiasStep]
    /// log π_bt(y) under the bias that drew it.
    public var oldLogProb: Double
    /// The normalised reward R(x, y).
    public var reward: Double

    /// Creates a trajectory.
    public init(steps: [BiasStep], oldLogProb: Double, reward: Double) {
        self.steps = steps
        self.oldLogProb = oldLogProb
        self.reward = reward
    }

    /// log π_b(y) = Σ_t log q_b(y_t).
    public func logProb(bias: [Float]) -> Double {
        steps.reduce(0) { $0 + $1.logProb(bias: bias) }
    }
}

/// REBEL for an expert's logit bias: the same regression as the PCM's (`Rebel`), over pairs of one prompt's
/// responses drawn from the expert,
///
///     ((log π_b(y) − log π_bt(y)) − (log π_b(y′) − log π_bt(y′)) − η (R(y) − R(y′)))²
///
/// averaged over pairs. The gradient is sparse: only the tokens that were candidates move. (`mope tune` keeps
/// the bias small by decaying the hidden offset it comes from, so the loss has no penalty term of its own.)
public enum BiasRebel {
    /// The loss (without gradient).
    public static func loss(bias: [Float], pairs: [(BiasTrajectory, BiasTrajectory)], eta: Double) -> Double {
        guard !pairs.isEmpty else { return 0 }
        var total = 0.0
        for (a, b) in pairs {
            let r = Rebel.residual(new: (a.logProb(bias: bias), b.logProb(bias: bias)),
                                   old: (a.oldLogProb, b.oldLogProb), rewards: (a.reward, b.reward), eta: eta)
            total += r * r
        }
        return total / Double(pairs.count)
    }

    /// The loss and its gradient with respect to every token's bias.
    public static func lossAndGradient(bias: [Float], pairs: [(BiasTrajectory, BiasTrajectory)], eta: Double)
        -> (loss: Double, gradient: [Float])
    {
        var gradient = [Double](repeating: 0, count: bias.count)
        var loss = 0.0
        if !pairs.isEmpty {
            gradient.withUnsafeMutableBufferPointer { g in
                for (a, b) in pairs {
                    let r = Rebel.residual(new: (a.logProb(bias: bias), b.logProb(bias: bias)),
                                           old: (a.oldLogProb, b.oldLogProb), rewards: (a.reward, b.reward),
                                           eta: eta)
                    loss += r * r
                    let scale = 2 * r / Double(pairs.count)
                    for step in a.steps { _ = step.logProb(bias: bias, gradient: g, scale: scale) }
                    for step in b.steps { _ = step.logProb(bias: bias, gradient: g, scale: -scale) }
                }
            }
            loss /= Double(pairs.count)
        }
        return (loss, gradient.map { Float($0) })
    }
}
