import Foundation
import Wire

// MARK: - Random numbers

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny generator, used to seed `Xoshiro256StarStar`.
public struct SplitMix64: RandomNumberGenerator, Sendable, Equatable {
    private var state: UInt64

    /// Creates a generator from a seed; the same seed gives the same sequence.
    public init(seed: UInt64) { state = seed }

    /// The next 64 random bits.
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// xoshiro256** (Blackman, Vigna 2018): the sampler's generator, seeded through SplitMix64.
public struct Xoshiro256StarStar: RandomNumberGenerator, Sendable, Equatable {
    private var s0, s1, s2, s3: UInt64

    /// Creates a generator from a seed; the same seed gives the same sequence.
    public init(seed: UInt64) {
        var mix = SplitMix64(seed: seed)
        s0 = mix.next()
        s1 = mix.next()
        s2 = mix.next()
        s3 = mix.next()
    }

    /// The next 64 random bits.
    public mutating func next() -> UInt64 {
        let result = rotl(s1 &* 5, 7) &* 9
        let t = s1 << 17
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = rotl(s3, 45)
        return result
    }

    /// A uniform double in [0, 1) (53 random bits).
    public mutating func nextUnit() -> Double {
        Double(next() >> 11) * 0x1p-53
    }

    @inline(__always) private func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }
}

// MARK: - Sampler

/// Chooses a token from a merged distribution: greedy, or a seeded random draw after top-k, top-p and
/// temperature.
///
/// - **Greedy** (temperature 0, or any temperature that is not a positive finite number): the most likely
///   candidate; ties go to the **lowest token id** (the merged distribution is already in that order).
/// - Otherwise, in this order: keep the `topK` most likely candidates (0 keeps all); then keep the shortest
///   prefix whose probability reaches `topP` of what is left (at least one candidate); then raise each kept
///   probability to 1/temperature; then draw one with the generator.
///
/// The generator is xoshiro256** seeded with `SamplingParameters.seed`: the same seed and the same
/// distributions give the same tokens. A greedy sampler draws no random number; any other draws exactly one per
/// choice (even when top-k or top-p leave one candidate), so that the generator's position after n tokens is
/// known without the distributions and a resumed generation (`skip()`) goes on exactly where it was.
public struct TokenSampler: Sendable {
    /// The sampling parameters.
    public let parameters: SamplingParameters
    private var generator: Xoshiro256StarStar
    private var weights: [Double] = []

    /// Creates a sampler; its generator starts from `parameters.seed`.
    public init(parameters: SamplingParameters) {
        self.parameters = parameters
        generator = Xoshiro256StarStar(seed: parameters.seed)
    }

    /// True when this sampler always takes the most likely candidate.
    public var isGreedy: Bool { !(parameters.temperature.isFinite && parameters.temperature > 0) }

    /// How many of the (sorted) candidates survive top-k and top-p.
    public func keptCount(_ distribution: MergedDistribution) -> Int {
        var kept = distribution.ids.count
        if parameters.topK > 0 { kept = min(kept, Int(parameters.topK)) }
        guard kept > 0 else { return 0 }
        let topP = parameters.topP
        if topP.isFinite, topP > 0, topP < 1 {
            var total: Double = 0
            for j in 0..<kept { total += Double(distribution.probs[j]) }
            // A relative tolerance so that a prefix summing to p exactly (up to float rounding) is enough.
            let target = Double(topP) * total * (1 - 1e-6)
            var cumulative: Double = 0
            for j in 0..<kept {
                cumulative += Double(distribution.probs[j])
                if cumulative >= target {
                    kept = j + 1
                    break
                }
            }
        }
        return kept
    }

    /// Moves the generator past one choice, as `sample` of a non-empty distribution would (nothing when greedy).
    public mutating func skip() {
        if !isGreedy { _ = generator.nextUnit() }
    }

    /// The chosen token, or nil when the distribution is empty.
    public mutating func sample(_ distribution: MergedDistribution) -> UInt32? {
        guard !distribution.ids.isEmpty else { return nil }
        if isGreedy { return distribution.ids[0] }
        let unit = generator.nextUnit()
        let kept = keptCount(distribution)
        if kept == 1 { return distribution.ids[0] }
        let inverseTemperature = 1 / parameters.temperature
        let top = distribution.probs[0]
        weights.removeAll(keepingCapacity: true)
        var total: Double = 0
        for j in 0..<kept {
            let p = distribution.probs[j]
            // (p / top)^(1/T): relative to the top candidate so that a small T stays finite.
            let w: Float
            if inverseTemperature == 1 {
                w = p
            } else {
                w = p > 0 && top > 0 ? exp(log(p / top) * inverseTemperature) : 0
            }
            weights.append(Double(w))
            total += Double(w)
        }
        guard total > 0, total.isFinite else { return distribution.ids[0] }
        let u = unit * total
        var cumulative: Double = 0
        for j in 0..<kept {
            cumulative += weights[j]
            if u < cumulative { return distribution.ids[j] }
        }
        return distribution.ids[kept - 1]
    }
}
