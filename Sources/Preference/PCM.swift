import CPUKernels
import Foundation
import Inference

// MARK: - Errors

/// Why a PCM file could not be read or written.
public enum PCMError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The file could not be read or written.
    case unreadable(path: String, reason: String)
    /// The file is not a PCM file (not JSON, or a field missing or of the wrong type).
    case malformed(path: String, reason: String)
    /// The file is of a format version this build does not read.
    case unsupportedVersion(path: String, version: Int)
    /// The configuration is inconsistent (e.g. a size out of range, or a parameter count that does not match).
    case badShape(path: String, reason: String)
    /// A parameter is NaN or infinite.
    case nonFiniteParameter(path: String, index: Int)

    /// A message a user can act on.
    public var description: String {
        switch self {
        case let .unreadable(path, reason): "cannot read or write the PCM file \(path): \(reason)"
        case let .malformed(path, reason): "\(path) is not a PCM file: \(reason)"
        case let .unsupportedVersion(path, version):
            "\(path) is a PCM file of version \(version); this mope reads version \(PCMFile.version): retrain or "
                + "use a matching mope"
        case let .badShape(path, reason): "the PCM file \(path) is inconsistent: \(reason)"
        case let .nonFiniteParameter(path, index):
            "the PCM file \(path) has a NaN or infinite parameter (index \(index)); retrain it"
        }
    }
}

// MARK: - Configuration

/// The sizes of a Preference Control Model.
///
/// Features (in this order, `featureCount` in all):
/// 1. the preference: the weight of each of the 6 dimensions (normalised to sum 1);
/// 2. the prompt: the mean of the model's token embeddings over the prompt, scaled to unit length and
///    projected to `projection` dimensions by a fixed random Gaussian matrix drawn from `projectionSeed`;
/// 3. the recent response: the same over the last `recentTokens` generated tokens (zeros at step 0);
/// 4. the step fraction: step / `horizon`, capped at 2;
/// 5. per expert slot (one per dimension): the entropy of its top-k list (the tail as one bucket) divided by
///    ln(k + 1), and its top-1 probability; zeros for a slot without an expert.
///
/// Network: h = tanh(W1 x + b1) (`hidden` units), z = W2 h + b2 (6 logits), α = softmax over the slots whose
/// expert is active for the preference (the others get 0).
public struct PCMConfiguration: Sendable, Codable, Equatable {
    /// Expert slots: one per preference dimension, by `PreferenceDimension.ordinal`.
    public var slots: Int = 6
    /// Hidden units of the MLP.
    public var hidden: Int
    /// Dimensions of each projected embedding feature.
    public var projection: Int
    /// Seed of the fixed projection matrix.
    public var projectionSeed: UInt64
    /// Width of the model's token embeddings (0 when the embedding features are unused).
    public var embeddingWidth: Int
    /// How many of the latest response tokens the recent-response feature averages.
    public var recentTokens: Int
    /// The response length the step fraction is relative to.
    public var horizon: Int

    /// Creates a configuration.
    public init(hidden: Int = 32, projection: Int = 16, projectionSeed: UInt64 = 1, embeddingWidth: Int,
                recentTokens: Int = 8, horizon: Int = 48)
    {
        self.hidden = hidden
        self.projection = projection
        self.projectionSeed = projectionSeed
        self.embeddingWidth = embeddingWidth
        self.recentTokens = recentTokens
        self.horizon = horizon
    }

    /// The length of the feature vector.
    public var featureCount: Int { slots + 2 * projection + 1 + 2 * slots }

    /// The number of parameters: W1, b1, W2, b2.
    public var parameterCount: Int { hidden * featureCount + hidden + slots * hidden + slots }

    func check(path: String) throws(PCMError) {
        guard slots == 6 else { throw .badShape(path: path, reason: "slots must be 6, found \(slots)") }
        guard (1...1024).contains(hidden) else {
            throw .badShape(path: path, reason: "hidden \(hidden) not in 1…1024")
        }
        guard (0...256).contains(projection) else {
            throw .badShape(path: path, reason: "projection \(projection) not in 0…256")
        }
        guard (0...65536).contains(embeddingWidth) else {
            throw .badShape(path: path, reason: "embeddingWidth \(embeddingWidth) not in 0…65536")
        }
        guard (1...4096).contains(recentTokens), (1...1_000_000).contains(horizon) else {
            throw .badShape(path: path, reason: "recentTokens and horizon must be positive")
        }
    }
}

// MARK: - The network

/// The Preference Control Model: a small MLP from features to a softmax over the expert slots.
///
/// Parameters live in one flat array (W1 row-major `hidden × featureCount`, b1, W2 row-major `6 × hidden`, b2)
/// so that the trainer's optimiser treats them as one vector.
public struct PCMNetwork: Sendable, Equatable {
    /// The sizes.
    public let configuration: PCMConfiguration
    /// All parameters.
    public var parameters: [Float]

    /// A network whose output layer is zero, so that it starts as the uniform mixture of the active experts;
    /// the first layer is drawn from a seeded Gaussian of standard deviation 1/√featureCount.
    public init(configuration: PCMConfiguration, seed: UInt64) {
        self.configuration = configuration
        var rng = PCMRandom(seed: seed)
        let f = configuration.featureCount, h = configuration.hidden
        var p = [Float](repeating: 0, count: configuration.parameterCount)
        let scale = 1 / Float(f).squareRoot()
        for i in 0..<(h * f) { p[i] = Float(rng.gaussian()) * scale }
        parameters = p
    }

    /// A network with the given parameters.
    public init(configuration: PCMConfiguration, parameters: [Float]) {
        self.configuration = configuration
        self.parameters = parameters
    }

    var w1Offset: Int { 0 }
    var b1Offset: Int { configuration.hidden * configuration.featureCount }
    var w2Offset: Int { b1Offset + configuration.hidden }
    var b2Offset: Int { w2Offset + configuration.slots * configuration.hidden }

    /// The hidden activations and the slot logits of one feature vector.
    public func activations(_ x: [Float]) -> (hidden: [Float], logits: [Float]) {
        let f = configuration.featureCount, hn = configuration.hidden, s = configuration.slots
        var h = [Float](repeating: 0, count: hn)
        var z = [Float](repeating: 0, count: s)
        parameters.withUnsafeBufferPointer { p in
            x.withUnsafeBufferPointer { x in
                for j in 0..<hn {
                    let row = p.baseAddress! + j * f
                    var a0: Float = 0, a1: Float = 0
                    var k = 0
                    while k + 1 < f {
                        a0 += row[k] * x[k]
                        a1 += row[k + 1] * x[k + 1]
                        k += 2
                    }
                    if k < f { a0 += row[k] * x[k] }
                    h[j] = tanh(a0 + a1 + p[b1Offset + j])
                }
                for i in 0..<s {
                    var a: Float = p[b2Offset + i]
                    for j in 0..<hn { a += p[w2Offset + i * hn + j] * h[j] }
                    z[i] = a
                }
            }
        }
        return (h, z)
    }

    /// The expert weights α for a feature vector: softmax of the logits over the slots where `mask` is true;
    /// 0 elsewhere. With no slot active, every slot gets the same weight.
    public func weights(_ x: [Float], mask: [Bool]) -> [Float] {
        Self.maskedSoftmax(activations(x).logits, mask: mask)
    }

    /// Softmax over the masked-in entries.
    public static func maskedSoftmax(_ z: [Float], mask: [Bool]) -> [Float] {
        let active = z.indices.filter { $0 < mask.count && mask[$0] }
        guard !active.isEmpty else { return [Float](repeating: 1 / Float(max(z.count, 1)), count: z.count) }
        let top = active.map { z[$0] }.max()!
        var out = [Float](repeating: 0, count: z.count)
        var total: Float = 0
        for i in active {
            out[i] = exp(z[i] - top)
            total += out[i]
        }
        for i in active { out[i] /= total }
        return out
    }
}

// MARK: - Features

/// The model's token embedding table (`token_embd.weight`), dequantised one row at a time: the PCM's view of
/// the text, free of any forward pass.
public struct TokenEmbeddings: @unchecked Sendable {
    // Safe to share: the matrix points into the immutable, memory-mapped file that `file` keeps alive.
    private let file: GGUFFile
    private let matrix: QuantizedMatrix

    /// The embedding width.
    public var width: Int { matrix.columns }
    /// The vocabulary size.
    public var rows: Int { matrix.rows }

    /// Reads the table from a loaded model.
    /// - Throws: `GGUFError` when the model has no usable `token_embd.weight`.
    public init(model: LanguageModel) throws {
        try self.init(file: model.file)
    }

    /// Reads the table from a model file without loading the rest of the model.
    /// - Throws: `GGUFError` when the file has no usable `token_embd.weight`.
    public init(file: GGUFFile) throws {
        self.file = file
        matrix = try file.matrix("token_embd.weight")
    }

    /// Adds row `id` into `sum` (ids out of range add nothing).
    public func accumulate(_ id: Int, into sum: inout [Float], scratch: inout [Float]) {
        guard id >= 0, id < rows else { return }
        if scratch.count != width { scratch = [Float](repeating: 0, count: width) }
        scratch.withUnsafeMutableBufferPointer { Kernels.dequantizeRow(matrix, row: id, into: $0.baseAddress!) }
        for k in 0..<width { sum[k] += scratch[k] }
    }

    /// The mean embedding of `ids` (zeros when empty).
    public func mean(_ ids: some Collection<Int>) -> [Float] {
        var sum = [Float](repeating: 0, count: width)
        var scratch: [Float] = []
        for id in ids { accumulate(id, into: &sum, scratch: &scratch) }
        if !ids.isEmpty { for k in 0..<width { sum[k] /= Float(ids.count) } }
        return sum
    }
}

/// Builds the PCM's feature vectors (see `PCMConfiguration` for the layout).
public struct PCMFeaturizer: Sendable {
    /// The sizes.
    public let configuration: PCMConfiguration
    private let projectionMatrix: [Float]

    /// Creates the featurizer; the projection is drawn from `configuration.projectionSeed`.
    public init(configuration: PCMConfiguration) {
        self.configuration = configuration
        var rng = PCMRandom(seed: configuration.projectionSeed)
        projectionMatrix = (0..<(configuration.projection * configuration.embeddingWidth)).map { _ in
            Float(rng.gaussian())
        }
    }

    /// The preference as 6 weights summing to 1 (zeros for the empty preference).
    public static func preferenceVector(_ preference: PreferenceSpec) -> [Float] {
        var v = [Float](repeating: 0, count: 6)
        for term in preference.terms { v[term.dimension.ordinal] = term.weight }
        let total = v.reduce(0, +)
        return total > 0 ? v.map { $0 / total } : v
    }

    /// The slots whose expert serves a dimension of the preference (every slot for the empty preference).
    public static func mask(_ preference: PreferenceSpec) -> [Bool] {
        if preference.isEmpty { return [Bool](repeating: true, count: 6) }
        var m = [Bool](repeating: false, count: 6)
        for term in preference.terms { m[term.dimension.ordinal] = true }
        return m
    }

    /// A mean embedding scaled to unit length and projected (zeros for a zero or mis-sized vector).
    public func project(_ meanEmbedding: [Float]) -> [Float] {
        let p = configuration.projection, d = configuration.embeddingWidth
        var out = [Float](repeating: 0, count: p)
        guard meanEmbedding.count == d, d > 0 else { return out }
        let norm = meanEmbedding.reduce(0) { $0 + $1 * $1 }.squareRoot()
        guard norm > 0 else { return out }
        for i in 0..<p {
            var a: Float = 0
            for k in 0..<d { a += projectionMatrix[i * d + k] * meanEmbedding[k] }
            out[i] = a / norm
        }
        return out
    }

    /// Entropy (over ln(k + 1)) and top-1 probability of one expert's list.
    public static func listStatistics(_ c: TopKCandidates) -> (entropy: Float, top: Float) {
        var h: Float = 0
        var top: Float = 0
        for lp in c.logProbs where lp.isFinite {
            let p = exp(min(lp, 0))
            h -= p * min(lp, 0)
            top = max(top, p)
        }
        let tail = min(max(c.tailMass, 0), 1)
        if tail > 0 { h -= tail * log(tail) }
        return (h / log(Float(c.logProbs.count + 1)), top)
    }

    /// The feature vector of one step. `candidates` has one entry per slot (nil for a slot without an expert).
    public func features(preference: [Float], prompt: [Float], recent: [Float], step: Int,
                         candidates: [TopKCandidates?]) -> [Float]
    {
        var x = preference
        x.append(contentsOf: prompt)
        x.append(contentsOf: recent)
        x.append(min(Float(step) / Float(configuration.horizon), 2))
        for slot in 0..<configuration.slots {
            if slot < candidates.count, let c = candidates[slot], !c.logProbs.isEmpty {
                let s = Self.listStatistics(c)
                x.append(s.entropy)
                x.append(s.top)
            } else {
                x.append(0)
                x.append(0)
            }
        }
        return x
    }
}

// MARK: - Random numbers

/// SplitMix64 with Box–Muller Gaussians: the PCM's seeded initialisation and projection.
struct PCMRandom {
    private var state: UInt64
    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func unit() -> Double { Double(next() >> 11) * 0x1p-53 }

    mutating func gaussian() -> Double {
        let u = max(unit(), 1e-300), v = unit()
        return (-2 * log(u)).squareRoot() * cos(2 * Double.pi * v)
    }
}
