/// One expert as the preference controller sees it.
public struct ExpertDescriptor: Sendable, Equatable, Hashable {
    /// The expert's name in the cluster, e.g. "concise".
    public var name: String
    /// The dimension the expert serves, when it serves one.
    public var dimension: PreferenceDimension?

    /// Creates a descriptor.
    public init(name: String, dimension: PreferenceDimension?) {
        self.name = name
        self.dimension = dimension
    }
}

/// One expert's top-k next-token candidates: ids with natural-log probabilities (descending) and the
/// probability mass outside the list.
public struct TopKCandidates: Sendable, Equatable {
    /// Token ids, most likely first.
    public var ids: [UInt32]
    /// Natural-log probabilities, one per id.
    public var logProbs: [Float]
    /// The probability of every token not listed.
    public var tailMass: Float

    /// Creates candidates.
    public init(ids: [UInt32], logProbs: [Float], tailMass: Float) {
        self.ids = ids
        self.logProbs = logProbs
        self.tailMass = tailMass
    }
}

/// What a controller knows when it chooses the weights of one step.
public struct ControllerContext: Sendable {
    /// The prompt's token ids (the user's message, without any expert's template), or empty when unknown.
    public var promptTokens: [UInt32]
    /// The tokens chosen so far.
    public var generatedTokens: [UInt32]
    /// The step whose token is being chosen (0 for the first generated token).
    public var step: Int
    /// Each expert's latest candidates, aligned with the experts; nil for an expert that is lost.
    public var candidates: [TopKCandidates?]

    /// Creates a context.
    public init(promptTokens: [UInt32], generatedTokens: [UInt32], step: Int, candidates: [TopKCandidates?] = []) {
        self.promptTokens = promptTokens
        self.generatedTokens = generatedTokens
        self.step = step
        self.candidates = candidates
    }
}

/// Chooses the weights α of the experts at every token: the Preference Control Model's role.
///
/// The coordinator calls `weights` once per generated token. A controller may keep state between calls
/// (hence `mutating`); the learned PCM implements the same protocol.
public protocol PreferenceController: Sendable {
    /// The weight of each expert, aligned with `experts`: non-negative and summing to 1.
    mutating func weights(preference: PreferenceSpec, experts: [ExpertDescriptor], context: ControllerContext)
        -> [Float]
}

/// Equal weight for every expert whose dimension the preference names, scaled by the preference's weights.
///
/// With "concise:2, friendly" and experts concise, friendly, unfriendly the weights are 2/3, 1/3, 0.
/// When the preference names no dimension that any expert serves (or is empty), every expert gets the same
/// weight. Two experts serving the same dimension share it equally.
public struct UniformController: PreferenceController {
    /// Creates the controller.
    public init() {}

    /// Weights proportional to the preference's weight of each expert's dimension.
    public mutating func weights(
        preference: PreferenceSpec, experts: [ExpertDescriptor], context: ControllerContext
    ) -> [Float] {
        Self.weights(preference: preference, experts: experts)
    }

    /// The uniform weights, without state.
    public static func weights(preference: PreferenceSpec, experts: [ExpertDescriptor]) -> [Float] {
        guard !experts.isEmpty else { return [] }
        var raw = experts.map { expert in expert.dimension.map { preference.weight(of: $0) } ?? 0 }
        var total = raw.reduce(0, +)
        if total <= 0 {
            raw = [Float](repeating: 1, count: experts.count)
            total = Float(experts.count)
        }
        return raw.map { $0 / total }
    }
}
