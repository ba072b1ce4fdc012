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
/// The merger keeps its scratch buffers between calls and uses no dictionaries: the union is found with a flat
/// open-addressing table sized for the entries of the step, and the result is ordered by sorting packed
/// (probability, id) keys (k ≤ 64 and ≤ 6 experts are typical).
public struct Merger: Sendable {
    /// The vocabulary size V shared by every expert.
    public let vocabSize: Int
    /// The floor of every log-probability in logit mode.
    public static let logFloor: Float = -69.07755  // log(1e-30)

    private var alpha: [Float] = []
    private var table: [UInt32] = []
    private var candidateIDs: [UInt32] = []
    private var candidateValues: [Float] = []
    private var lastExpert: [UInt8] = []
    private var keys: [UInt64] = []
    private var sortScratch: [UInt64] = []

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

    /// The most experts one merge takes.
    public static let maxExperts = 255

    /// Merges one step. `experts[i]` is expert i's candidates (nil when lost) and `weights[i]` its weight.
    /// At most `maxExperts` experts are read; the rest are ignored.
    public mutating func merge(_ experts: [TopKCandidates?], weights: [Float], mode: MergeMode)
        -> MergedDistribution
    {
        let n = min(experts.count, Self.maxExperts)
        // Weights renormalised over the experts present.
        alpha.removeAll(keepingCapacity: true)
        var total: Float = 0
        var present = 0
        for i in 0..<n {
            let w = i < weights.count ? weights[i] : 0
            let isPresent = experts[i] != nil
            let a: Float = isPresent && w.isFinite && w > 0 ? w : 0
            if isPresent { present += 1 }
            alpha.append(a)
            total += a
        }
        let ignored = [Float](repeating: 0, count: experts.count - n)
        guard present > 0 else { return MergedDistribution(ids: [], probs: [], weights: alpha + ignored) }
        if total > 0 {
            for i in 0..<n { alpha[i] /= total }
        } else {
            for i in 0..<n where experts[i] != nil { alpha[i] = 1 / Float(present) }
        }

        // The union: a flat open-addressing table (id → candidate), sized for every listed entry, maps each
        // listed id to its candidate, whose value starts at the base (the weighted missing-token estimates) and
        // gains α_i (π_i(y) − π̂_i) from each expert i that lists it.
        var base: Float = 0
        var entries = 0
        for i in 0..<n where alpha[i] > 0 {
            if let expert = experts[i] { entries += min(expert.ids.count, expert.logProbs.count) }
        }
        var bits = 6
        while 1 << bits < 2 * entries { bits += 1 }
        let mask = (1 << bits) - 1
        table.removeAll(keepingCapacity: true)
        table.append(contentsOf: repeatElement(0, count: 1 << bits))
        candidateIDs.removeAll(keepingCapacity: true)
        candidateIDs.append(contentsOf: repeatElement(0, count: entries))
        candidateValues.removeAll(keepingCapacity: true)
        candidateValues.append(contentsOf: repeatElement(0, count: entries))
        lastExpert.removeAll(keepingCapacity: true)
        lastExpert.append(contentsOf: repeatElement(0, count: entries))
        let vocabLimit = UInt32(clamping: vocabSize)
        let probabilityMode = mode == .probability
        var written = 0
        table.withUnsafeMutableBufferPointer { table in
            candidateIDs.withUnsafeMutableBufferPointer { candidateIDs in
                candidateValues.withUnsafeMutableBufferPointer { candidateValues in
                    lastExpert.withUnsafeMutableBufferPointer { lastExpert in
                        for i in 0..<n {
                            let a = alpha[i]
                            guard a > 0, let expert = experts[i] else { continue }
                            let est = Self.missingTokenEstimate(expert, vocabSize: vocabSize)
                            let estimate = probabilityMode ? est : max(log(est), Self.logFloor)
                            base += a * estimate
                            let count = min(expert.ids.count, expert.logProbs.count)
                            let expertTag = UInt8(truncatingIfNeeded: i)
                            for j in 0..<count {
                                let lp = expert.logProbs[j]
                                let id = expert.ids[j]
                                guard !lp.isNaN, id < vocabLimit else { continue }
                                let clamped = min(lp, 0)
                                let listed = probabilityMode ? exp(clamped) : max(clamped, Self.logFloor)
                                let contribution = a * (listed - estimate)
                                var slot = Int(truncatingIfNeeded: (id &* 0x9E37_79B1) >> 8) & mask
                                while true {
                                    let occupant = Int(table[slot])
                                    if occupant == 0 {
                                        candidateIDs[written] = id
                                        candidateValues[written] = contribution
                                        lastExpert[written] = expertTag
                                        written += 1
                                        table[slot] = UInt32(written)
                                        break
                                    }
                                    if candidateIDs[occupant - 1] == id {
                                        // An id listed twice by one expert counts once.
                                        if lastExpert[occupant - 1] != expertTag {
                                            candidateValues[occupant - 1] += contribution
                                            lastExpert[occupant - 1] = expertTag
                                        }
                                        break
                                    }
                                    slot = (slot + 1) & mask
                                }
                            }
                        }
                    }
                }
            }
        }
        var maxValue = -Float.infinity
        for c in 0..<written {
            candidateValues[c] += base
            maxValue = max(maxValue, candidateValues[c])
        }

        // To probabilities, renormalised over the union, sorted by probability (descending) then id.
        var sum: Float = 0
        for c in 0..<written {
            let value = candidateValues[c]
            let p = probabilityMode ? (value > 0 ? value : 0) : exp(value - maxValue)
            candidateValues[c] = p
            sum += p
        }
        let uniform = !(sum > 0) || !sum.isFinite
        if uniform {
            // Every candidate has probability 0 (all listed log-probabilities were −∞): share equally.
            for c in 0..<written { candidateValues[c] = 1 }
            sum = Float(written)
        }
        // Non-negative floats order like their bit patterns: complementing gives descending probability.
        keys.removeAll(keepingCapacity: true)
        for c in 0..<written {
            keys.append(UInt64(~candidateValues[c].bitPattern) << 32 | UInt64(candidateIDs[c]))
        }
        radixSort(&keys, scratch: &sortScratch)
        var ids = [UInt32]()
        var probs = [Float]()
        ids.reserveCapacity(written)
        probs.reserveCapacity(written)
        let inverse = 1 / sum
        for key in keys {
            ids.append(UInt32(truncatingIfNeeded: key))
            probs.append(Float(bitPattern: ~UInt32(truncatingIfNeeded: key >> 32)) * inverse)
        }
        return MergedDistribution(ids: ids, probs: probs, weights: alpha + ignored)
    }

    private static func sanitisedTail(_ tail: Float) -> Float {
        tail.isFinite ? min(max(tail, 0), 1) : 0
    }
}

/// Sorts unique keys ascending: least-significant-digit radix sort, 8 bits a pass, skipping the passes whose
/// digit is the same in every key (e.g. the high bytes of small token ids).
func radixSort(_ keys: inout [UInt64], scratch: inout [UInt64]) {
    let count = keys.count
    guard count > 1 else { return }
    var orAll: UInt64 = 0
    var andAll: UInt64 = .max
    for key in keys {
        orAll |= key
        andAll &= key
    }
    let varying = orAll ^ andAll
    scratch.removeAll(keepingCapacity: true)
    scratch.append(contentsOf: repeatElement(0, count: count))
    var counts = [Int](repeating: 0, count: 256)
    for pass in 0..<8 {
        let shift = UInt64(pass * 8)
        guard (varying >> shift) & 0xFF != 0 else { continue }
        keys.withUnsafeMutableBufferPointer { source in
            scratch.withUnsafeMutableBufferPointer { target in
                counts.withUnsafeMutableBufferPointer { counts in
                    for d in 0..<256 { counts[d] = 0 }
                    for key in source { counts[Int((key >> shift) & 0xFF)] += 1 }
                    var offset = 0
                    for d in 0..<256 {
                        let c = counts[d]
                        counts[d] = offset
                        offset += c
                    }
                    for key in source {
                        let d = Int((key >> shift) & 0xFF)
                        target[counts[d]] = key
                        counts[d] += 1
                    }
                }
            }
        }
        swap(&keys, &scratch)
    }
}
