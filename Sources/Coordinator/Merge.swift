import Foundation
import Preference
import Wire

// MARK: - Merged distribution

/// The merged next-token distribution of one step: candidate ids with probabilities summing to 1,
/// most likely first (ties: the lower token id first).
public struct MergedDistribution: Sendable, Equatable {
    /// Candidate token ids, most likely first.
    public var ids: [UInt32]
    /// Their probabilities (sum 1 unless empty).
    public var probs: [Float]
    /// The weight α actually applied to each expert (aligned with the merge's input): the requested
    /// weights renormalised over the experts present; 0 for a lost expert.
    public var weights: [Float]

    /// Creates a merged distribution.
    public init(ids: [UInt32], probs: [Float], weights: [Float] = []) {
        self.ids = ids
        self.probs = probs
        self.weights = weights
    }

    /// True when no expert contributed any candidate.
    public var isEmpty: Bool { ids.isEmpty }
}

// MARK: - Merger

/// Merges the experts' top-k candidates with weights α (MoPE, Zhou et al., arXiv 2407.04181).
///
/// - `.probability` (the paper's method): π(y) = Σ_i α_i π_i(y).
/// - `.logit` (a product of experts): log π(y) ∝ Σ_i α_i log π_i(y).
///
/// Either way the result covers the union of the candidates of the experts with α_i > 0 and is renormalised
/// over that union (an expert with α_i = 0 adds no candidates, so a one-hot α gives exactly that expert's
/// top-k distribution, renormalised over its list).
///
/// **A token missing from expert i's list** gets the estimate
///
///     π̂_i = min(tailMass_i / max(V − k_i, 1), min listed π_i)
///
/// — the tail mass spread uniformly over the V − k_i tokens the expert did not list, but never more than the
/// smallest probability it did list (the list is the top-k, so an unlisted token cannot beat it). In logit mode
/// every log-probability (listed or estimated) is floored at `Merger.logFloor` (≈ log 1e-30) so that an expert
/// with no tail mass vetoes a token strongly but finitely.
///
/// **Weights**: negative or non-finite weights count as 0; the weights are renormalised over the experts
/// present (a `nil` entry is a lost expert). If every present expert has weight 0, they share equally.
///
/// **Untrusted input**: entries with a NaN log-probability or an id ≥ V are skipped, log-probabilities above 0
/// count as 0, a tail mass outside [0, 1] is clamped, and an id listed twice by one expert counts once.
///
/// The merger keeps its scratch buffers between calls, so a step allocates only its result; it uses no
/// dictionaries (the union is found by sorting packed keys: k ≤ 64 and ≤ 6 experts are typical).
public struct Merger: Sendable {
    /// The vocabulary size V shared by every expert.
    public let vocabSize: Int
    /// The floor of every log-probability in logit mode.
    public static let logFloor: Float = -69.07755  // log(1e-30)

    private var keys: [UInt64] = []
    private var alpha: [Float] = []
    private var estimate: [Float] = []
    private var candidates: [(prob: Float, id: UInt32)] = []

    /// Creates a merger for a vocabulary of `vocabSize` tokens.
    public init(vocabSize: Int) {
        self.vocabSize = max(vocabSize, 1)
    }

    /// The probability given to a token missing from an expert's list (see the type's documentation).
    public static func missingTokenEstimate(_ expert: TopKCandidates, vocabSize: Int) -> Float {
        let tail = sanitisedTail(expert.tailMass)
        let count = min(expert.ids.count, expert.logProbs.count)
        var smallest = Float.infinity
        var listed = 0
        for j in 0..<count {
            let lp = expert.logProbs[j]
            guard !lp.isNaN, expert.ids[j] < UInt32(clamping: vocabSize) else { continue }
            smallest = min(smallest, min(lp, 0))
            listed += 1
        }
        let spread = tail / Float(max(vocabSize - listed, 1))
        return listed == 0 ? spread : min(spread, exp(smallest))
    }

    /// Merges one step. `experts[i]` is expert i's candidates (nil when lost) and `weights[i]` its weight.
    public mutating func merge(_ experts: [TopKCandidates?], weights: [Float], mode: MergeMode)
        -> MergedDistribution
    {
        let n = experts.count
        precondition(n < 1 << 16, "at most 65535 experts")
        // Weights renormalised over the experts present.
        alpha.removeAll(keepingCapacity: true)
        var total: Float = 0
        var present = 0
        for i in 0..<n {
            let w = i < weights.count ? weights[i] : 0
            let a: Float = experts[i] == nil ? 0 : (w.isFinite && w > 0 ? w : 0)
            if experts[i] != nil { present += 1 }
            alpha.append(a)
            total += a
        }
        guard present > 0 else { return MergedDistribution(ids: [], probs: [], weights: alpha) }
        if total > 0 {
            for i in 0..<n { alpha[i] /= total }
        } else {
            for i in 0..<n where experts[i] != nil { alpha[i] = 1 / Float(present) }
        }

        // Estimates for missing tokens and the base value every union token starts from.
        estimate.removeAll(keepingCapacity: true)
        var base: Float = 0
        keys.removeAll(keepingCapacity: true)
        let vocabLimit = UInt32(clamping: vocabSize)
        for i in 0..<n {
            guard let expert = experts[i], alpha[i] > 0 else {
                estimate.append(0)
                continue
            }
            let est = Self.missingTokenEstimate(expert, vocabSize: vocabSize)
            let value = mode == .probability ? est : max(log(est), Self.logFloor)
            estimate.append(value)
            base += alpha[i] * value
            let count = min(min(expert.ids.count, expert.logProbs.count), 1 << 16)
            for j in 0..<count where !expert.logProbs[j].isNaN && expert.ids[j] < vocabLimit {
                keys.append(UInt64(expert.ids[j]) << 32 | UInt64(i) << 16 | UInt64(j))
            }
        }
        keys.sort()

        // Walk the union: each group of equal ids is one candidate.
        candidates.removeAll(keepingCapacity: true)
        var index = 0
        var maxValue = -Float.infinity
        while index < keys.count {
            let id = UInt32(truncatingIfNeeded: keys[index] >> 32)
            var value = base
            var lastExpert = -1
            while index < keys.count, UInt32(truncatingIfNeeded: keys[index] >> 32) == id {
                let i = Int((keys[index] >> 16) & 0xFFFF)
                let j = Int(keys[index] & 0xFFFF)
                index += 1
                if i == lastExpert { continue }  // an id listed twice by one expert counts once
                lastExpert = i
                let lp = min(experts[i]!.logProbs[j], 0)
                let listed = mode == .probability ? exp(lp) : max(lp, Self.logFloor)
                value += alpha[i] * (listed - estimate[i])
            }
            candidates.append((value, id))
            maxValue = max(maxValue, value)
        }

        // To probabilities, renormalised over the union.
        var sum: Float = 0
        for c in candidates.indices {
            let p = mode == .probability ? max(candidates[c].prob, 0) : exp(candidates[c].prob - maxValue)
            candidates[c].prob = p
            sum += p
        }
        if !(sum > 0) || !sum.isFinite {
            // Every candidate has probability 0 (all listed log-probabilities were −∞): share equally.
            for c in candidates.indices { candidates[c].prob = 1 }
            sum = Float(candidates.count)
        }
        candidates.sort { $0.prob != $1.prob ? $0.prob > $1.prob : $0.id < $1.id }
        var ids = [UInt32]()
        var probs = [Float]()
        ids.reserveCapacity(candidates.count)
        probs.reserveCapacity(candidates.count)
        for c in candidates {
            ids.append(c.id)
            probs.append(c.prob / sum)
        }
        return MergedDistribution(ids: ids, probs: probs, weights: alpha)
    }

    private static func sanitisedTail(_ tail: Float) -> Float {
        tail.isFinite ? min(max(tail, 0), 1) : 0
    }
}
