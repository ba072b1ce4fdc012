import Foundation

/// The learned Preference Control Model as a `PreferenceController`: at every token, features of the preference,
/// the prompt, the latest response tokens, the step and the experts' current lists go through the PCM network,
/// whose softmax over the experts serving the preference gives α.
///
/// Experts map to the network's slots by their dimension. Two experts of one dimension share its weight; an
/// expert without a dimension gets 0. When the preference names no dimension any expert serves, the weights are
/// `UniformController`'s. Without token embeddings (a coordinator that has no model file), the two embedding
/// features are zero; the trained PCM then still sees the preference, the step and the experts' lists.
public struct PCMController: PreferenceController {
    /// The network.
    public let network: PCMNetwork
    /// The feature builder.
    public let featurizer: PCMFeaturizer
    /// The token embeddings, when available.
    public let embeddings: TokenEmbeddings?

    private var promptKey: [UInt32] = []
    private var promptFeature: [Float] = []

    /// Creates the controller.
    public init(network: PCMNetwork, embeddings: TokenEmbeddings?) {
        self.network = network
        featurizer = PCMFeaturizer(configuration: network.configuration)
        self.embeddings = embeddings?.width == network.configuration.embeddingWidth ? embeddings : nil
    }

    /// The projected mean embedding of `tokens` (zeros without embeddings).
    public func embeddingFeature(_ tokens: some Collection<UInt32>) -> [Float] {
        guard let embeddings, !tokens.isEmpty else {
            return [Float](repeating: 0, count: network.configuration.projection)
        }
        return featurizer.project(embeddings.mean(tokens.map { Int($0) }))
    }

    /// The weights of the experts for one step.
    public mutating func weights(
        preference: PreferenceSpec, experts: [ExpertDescriptor], context: ControllerContext
    ) -> [Float] {
        var slotCandidates = [TopKCandidates?](repeating: nil, count: 6)
        var slotCount = [Int](repeating: 0, count: 6)
        for (i, expert) in experts.enumerated() {
            guard let d = expert.dimension else { continue }
            slotCount[d.ordinal] += 1
            if slotCandidates[d.ordinal] == nil, i < context.candidates.count {
                slotCandidates[d.ordinal] = context.candidates[i]
            }
        }
        var mask = PCMFeaturizer.mask(preference)
        for s in 0..<6 where slotCount[s] == 0 { mask[s] = false }
        guard mask.contains(true) else { return UniformController.weights(preference: preference, experts: experts) }
        if promptKey != context.promptTokens || promptFeature.isEmpty {
            promptKey = context.promptTokens
            promptFeature = embeddingFeature(context.promptTokens)
        }
        let recent = embeddingFeature(context.generatedTokens.suffix(network.configuration.recentTokens))
        let x = featurizer.features(preference: PCMFeaturizer.preferenceVector(preference), prompt: promptFeature,
                                    recent: recent, step: context.step, candidates: slotCandidates)
        let alpha = network.weights(x, mask: mask)
        return experts.map { expert in
            guard let d = expert.dimension, slotCount[d.ordinal] > 0 else { return 0 }
            return alpha[d.ordinal] / Float(slotCount[d.ordinal])
        }
    }
}
