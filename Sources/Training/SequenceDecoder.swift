import Decoding
import Inference
import Preference
import Wire

/// One sequence of `InProcessExperts.decode` as a pure value: at each step, the slots' top-k lists → the policy's
/// weights (fixed, schedule or the PCM's, with exploration ε) → the shared `TokenDecoder` (merge, sample, end
/// conditions) → what REBEL and bias tuning record. The forward passes stay in `InProcessExperts.decode`; tests
/// drive this value with scripted lists.
public struct SequenceDecoder: Sendable {
    /// The request.
    public let request: DecodeRequest
    /// What was generated so far.
    public private(set) var result: DecodeResult
    /// True once the sequence ended.
    public private(set) var isDone = false

    private var decoder: TokenDecoder
    private let vocabSize: Int
    private let embeddings: TokenEmbeddings?
    private let featurizer: PCMFeaturizer?
    private let promptFeatures: [Float]
    /// The slot and bias of a one-session request (for `recordBias`).
    private let biasSession: (slot: Int, bias: [Float]?)?
    private var stepsTaken = 0
    private var releasedText = ""
    /// Whether stop strings are decoded (else the caller decodes the tokens at the end).
    private let decodesText: Bool

    /// Creates the decoder of one request.
    /// - Parameters:
    ///   - promptTokens: the user's message alone (the PCM's prompt feature).
    ///   - endOfSequence: the ids that end the answer.
    ///   - text: turns tokens into text, for `request.stop` (nil: no stop strings; the caller decodes the text).
    public init(request: DecodeRequest, vocabSize: Int, maxTokens: Int, endOfSequence: Set<UInt32>,
                embeddings: TokenEmbeddings?, promptTokens: [UInt32], text: (any TokenTextDecoder)? = nil)
    {
        self.request = request
        self.vocabSize = vocabSize
        self.embeddings = embeddings
        decodesText = text != nil && !request.stop.isEmpty
        result = DecodeResult(tokens: [], text: "", steps: [], logProb: 0,
                              meanWeights: [Float](repeating: 0, count: 6))
        decoder = TokenDecoder(vocabSize: vocabSize, sampling: request.sampling, mode: request.mode,
                               maxTokens: maxTokens, endOfSequence: endOfSequence, stops: request.stop, text: text)
        if case let .pcm(network, _) = request.policy {
            let f = PCMFeaturizer(configuration: network.configuration)
            featurizer = f
            let ids = promptTokens.map { Int($0) }
            promptFeatures = embeddings.map { f.project($0.mean(ids)) }
                ?? [Float](repeating: 0, count: network.configuration.projection)
        } else {
            featurizer = nil
            promptFeatures = []
        }
        if request.recordBias, request.sessions.count == 1 {
            biasSession = (request.sessions[0].slot, request.biases.first ?? nil)
        } else {
            biasSession = nil
        }
    }

    /// Decides step `step` from the lists of the six slots (nil: no session) and which slots have a session.
    /// After a decision that ends the sequence `isDone` is true; otherwise the sessions are fed the token.
    public mutating func next(slotLists: [TopKCandidates?], mask given: [Bool], step: Int) -> TokenDecoder.Decision {
        var mask = given
        var alpha: [Float]
        var features: [Float] = []
        switch request.policy {
        case .fixed, .schedule:
            let w = request.policy.fixedWeights(at: step) ?? []
            alpha = (0..<6).map { mask[$0] && $0 < w.count ? w[$0] : 0 }
            let total = alpha.reduce(0, +)
            let even = PCMNetwork.maskedSoftmax([Float](repeating: 0, count: 6), mask: mask)
            alpha = total > 0 ? alpha.map { $0 / total } : even
        case let .pcm(network, preference):
            let featurizer = featurizer!
            let recentIDs = result.tokens.suffix(network.configuration.recentTokens).map { Int($0) }
            let recent = embeddings.map { featurizer.project($0.mean(recentIDs)) }
                ?? [Float](repeating: 0, count: network.configuration.projection)
            features = featurizer.features(preference: PCMFeaturizer.preferenceVector(preference),
                                           prompt: promptFeatures, recent: recent, step: step,
                                           candidates: slotLists)
            var m = PCMFeaturizer.mask(preference)
            for i in 0..<6 where !mask[i] { m[i] = false }
            if !m.contains(true) { m = mask }
            mask = m
            alpha = network.weights(features, mask: mask)
        }
        var drawn = alpha
        if case .pcm = request.policy, request.explore > 0 {
            let epsilon = min(request.explore, 1)
            let even = PCMNetwork.maskedSoftmax([Float](repeating: 0, count: 6), mask: mask)
            drawn = (0..<6).map { (1 - epsilon) * alpha[$0] + epsilon * even[$0] }
        }
        let decision = decoder.next(candidates: slotLists, weights: drawn)
        guard let chosen = decision.chosen else {
            isDone = true
            return decision
        }
        let merged = decoder.merged
        if request.record {
            let step = InProcessExperts.record(chosen: chosen, merged: merged, lists: slotLists, mask: mask,
                                               features: features, request: request, vocabSize: vocabSize)
            result.logProb += step.logProb(alpha: alpha)
            result.steps.append(step)
        }
        if let biasSession, let list = slotLists[biasSession.slot],
           let step = InProcessExperts.biasStep(chosen: chosen, merged: merged, list: list, bias: biasSession.bias,
                                                sampling: request.sampling)
        {
            result.biasLogProb += step.logProb(bias: biasSession.bias ?? [])
            result.biasSteps.append(step)
        }
        for i in 0..<6 { result.meanWeights[i] += alpha[i] }
        stepsTaken += 1
        switch decision {
        case .empty, .endOfSequence:
            isDone = true
        case let .token(token, text, finish):
            result.tokens.append(Int32(bitPattern: token))
            releasedText += text
            if finish != nil { isDone = true }
        }
        return decision
    }

    /// Ends the sequence early (the context is full).
    public mutating func stop() { isDone = true }

    /// The finished result: `text` is the released text when stop strings were decoded, else `decodeText` of the
    /// tokens; the mean weights are divided by the steps taken.
    public mutating func finish(decodeText: ([Int32]) -> String) -> DecodeResult {
        if decodesText {
            releasedText += decoder.finishText()
            result.text = releasedText
        } else {
            result.text = decodeText(result.tokens)
        }
        let count = Float(max(stepsTaken, 1))
        result.meanWeights = result.meanWeights.map { $0 / count }
        return result
    }
}
