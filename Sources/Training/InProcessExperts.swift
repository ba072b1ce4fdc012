import Decoding
import Foundation
import Inference
import Preference
import Wire

/// Why training or evaluation could not run.
public enum TrainingError: Error, Sendable, CustomStringConvertible {
    /// A prompts file could not be read or has no prompt.
    case unreadablePrompts(path: String, reason: String)
    /// The model could not be used (no chat template, no tokenizer, …).
    case unusableModel(String)
    /// An output file or directory could not be written or read.
    case io(path: String, reason: String)
    /// A checkpoint does not match the run being resumed.
    case badCheckpoint(path: String, reason: String)
    /// A forward pass failed.
    case inference(String)

    /// A message a user can act on.
    public var description: String {
        switch self {
        case let .unreadablePrompts(path, reason): "cannot read the prompts file \(path): \(reason)"
        case let .unusableModel(reason): "the model cannot serve as the experts: \(reason)"
        case let .io(path, reason): "cannot write or read \(path): \(reason)"
        case let .badCheckpoint(path, reason): "cannot resume from \(path): \(reason); start without --resume"
        case let .inference(reason): "a forward pass failed: \(reason)"
        }
    }
}

/// A prompts file: a JSON array of `{"id": …, "prompt": …}` (the project's data files).
public struct PromptSet: Sendable {
    /// The prompts' texts.
    public var prompts: [String]

    /// Creates a set.
    public init(_ prompts: [String]) { self.prompts = prompts }

    /// Reads a prompts file.
    public static func load(_ path: String) throws(TrainingError) -> PromptSet {
        struct Entry: Decodable { var prompt: String }
        do {
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            let entries = try JSONDecoder().decode([Entry].self, from: data)
            guard !entries.isEmpty else { throw TrainingError.unreadablePrompts(path: path, reason: "no prompt") }
            return PromptSet(entries.map(\.prompt))
        } catch let error as TrainingError {
            throw error
        } catch {
            throw .unreadablePrompts(path: path, reason: "expected a JSON array of {\"prompt\": …}: \(error)")
        }
    }
}

/// The 8 combinations of Personalized Soups: one pole of each axis, each with weight 1.
public enum Combinations {
    /// All 8, in the order P1A+P2A+P3A, P1A+P2A+P3B, … P1B+P2B+P3B.
    public static let all: [PreferenceSpec] = {
        var out: [PreferenceSpec] = []
        for a in [PreferenceDimension.elementary, .knowledgeable] {
            for b in [PreferenceDimension.concise, .informative] {
                for c in [PreferenceDimension.friendly, .unfriendly] {
                    if let spec = try? PreferenceSpec(a, b, c) { out.append(spec) }
                }
            }
        }
        return out
    }()

    /// A short label such as "P1A+P2B+P3A".
    public static func label(_ spec: PreferenceSpec) -> String {
        spec.dimensions.map(\.id).joined(separator: "+")
    }
}

/// The experts run inside one process: one model, one expert per dimension that differs only by its system
/// prompt, every session of every sequence advanced by ONE batched forward pass per token. The math is the
/// cluster's (top-k lists, `Merger` in probability mode, the coordinator's `TokenDecoder`), without the network.
public final class InProcessExperts: @unchecked Sendable {
    // Safe to share: every stored property is immutable; decoding creates its own caches.

    /// The model.
    public let model: LanguageModel
    /// Its tokenizer.
    public let tokenizer: any Tokenizer
    /// Its chat template.
    public let template: ChatTemplate
    /// The system prompt of each dimension's expert.
    public let prompts: PreferencePrompts
    /// What each expert of a mixture is told of the user's preference.
    public let context: ExpertContext
    /// The token embeddings the PCM reads.
    public let embeddings: TokenEmbeddings?
    /// The length of each expert's top-k list.
    public let topK: Int
    /// The tuned experts' logit biases (dense), by dimension; an expert without one is its system prompt alone.
    public let biases: [PreferenceDimension: [Float]]
    /// The trained experts' LoRA adapters, by dimension; an expert without one runs the base model.
    public let adapters: [PreferenceDimension: LoRAAdapter]
    private let stops: Set<Int32>

    /// Wraps a loaded model.
    public init(model: LanguageModel, prompts: PreferencePrompts = .builtIn, context: ExpertContext = .own,
                biases: [PreferenceDimension: LogitBias] = [:], adapters: [PreferenceDimension: LoRAAdapter] = [:],
                topK: Int = 32) throws(TrainingError)
    {
        self.model = model
        self.adapters = adapters
        self.context = context
        var resolved: [PreferenceDimension: [Float]] = [:]
        for (dimension, bias) in biases {
            do {
                resolved[dimension] = try bias.logits(model: model, path: "the \(dimension.rawValue) expert's bias")
            } catch {
                throw .unusableModel(error.description)
            }
        }
        self.biases = resolved
        do {
            tokenizer = try makeTokenizer(model.vocabulary)
            template = try ChatTemplate(vocabulary: model.vocabulary)
        } catch {
            throw .unusableModel("\(error)")
        }
        self.prompts = prompts
        embeddings = try? TokenEmbeddings(model: model)
        self.topK = topK
        stops = model.endOfGenerationTokens.union(tokenizer.eosTokenIDs)
    }

    /// The prompt tokens of one session: the chat template with `system` (the template's default when nil)
    /// and the user's message, ending with the assistant's turn; the messages' content is always text.
    public func sessionPrompt(system: String?, user: String) throws(TrainingError) -> [Int32] {
        var messages: [ChatMessage] = []
        if let system { messages.append(ChatMessage(role: "system", content: system)) }
        messages.append(ChatMessage(role: "user", content: user))
        do {
            return tokenizer.encode(try template.segments(messages, addGenerationPrompt: true))
        } catch {
            throw .unusableModel("\(error)")
        }
    }

    /// The system prompt of `dimension`'s expert serving `preference` (`context` applied).
    public func system(for dimension: PreferenceDimension, in preference: PreferenceSpec) -> String {
        prompts.system(for: dimension, in: preference, context: context)
    }

    /// The sessions of `preference`'s experts, in its dimensions' order: slot and system prompt.
    public func sessions(for preference: PreferenceSpec) -> [(slot: Int, system: String?)] {
        preference.dimensions.map { (slot: $0.ordinal, system: Optional(system(for: $0, in: preference))) }
    }

    /// The user's message alone, as the PCM's prompt feature sees it.
    public func userTokens(_ user: String) -> [UInt32] {
        tokenizer.encode(user, parseSpecial: false).map { UInt32(bitPattern: $0) }
    }

    /// The biases of the experts of `dimensions`, in order, for `DecodeRequest.biases`.
    public func biases(for dimensions: [PreferenceDimension]) -> [[Float]?] { dimensions.map { biases[$0] } }

    /// The adapters of the experts of `dimensions`, in order, for `DecodeRequest.adapters`.
    public func adapters(for dimensions: [PreferenceDimension]) -> [LoRAAdapter?] { dimensions.map { adapters[$0] } }

    /// Whether a token ends the answer.
    public func isStop(_ id: Int32) -> Bool { stops.contains(id) }
}

// MARK: - Decoding

/// How a sequence's expert weights are chosen at each step.
public enum WeightPolicy: Sendable {
    /// Fixed weights per slot.
    case fixed([Float])
    /// The PCM's weights for a preference.
    case pcm(PCMNetwork, PreferenceSpec)
    /// Fixed weights `first` for the first `steps` tokens, then fixed weights `then` (a hand-made schedule, to
    /// measure what switching experts during an answer can gain).
    case schedule(first: [Float], steps: Int, then: [Float])

    /// The fixed weights at `step` (nil for the PCM, whose weights depend on the features).
    func fixedWeights(at step: Int) -> [Float]? {
        switch self {
        case let .fixed(w): w
        case let .schedule(first, steps, then): step < steps ? first : then
        case .pcm: nil
        }
    }
}

/// One sequence to generate: its sessions (slot → system prompt), how to weight them, how to sample.
public struct DecodeRequest: Sendable {
    /// The user's message.
    public var user: String
    /// The sessions: slot (dimension ordinal, 0…5) and the session's system prompt (nil: the template's default).
    public var sessions: [(slot: Int, system: String?)]
    /// The weights.
    public var policy: WeightPolicy
    /// Sampling (temperature 0: greedy).
    public var sampling: SamplingParameters
    /// Whether to record the PCM's features and the experts' probabilities at every step (for REBEL).
    public var record: Bool
    /// How the experts' distributions are combined. `logProb` and the recorded steps describe the probability
    /// mixture, so REBEL training uses `.probability`.
    public var mode: MergeMode
    /// Prompt guidance γ (0: off). Each session's logits become (1 + γ)·ℓ − γ·ℓ₀, where ℓ₀ are the logits of the
    /// same conversation under the template's default system prompt: what the session's own system prompt changes
    /// is amplified, as in classifier-free guidance. One more session (the default prompt) runs for the request.
    public var guidance: Float
    /// Each session's logit bias (dense, one value per token; `LogitBias`), aligned with `sessions`; nil or a
    /// missing entry: none. A tuned expert's session carries its bias; preference prompting's does not.
    public var biases: [[Float]?]
    /// Each session's LoRA adapter, aligned with `sessions`; nil or a missing entry: the base model.
    public var adapters: [LoRAAdapter?] = []
    /// Whether to record every step's candidates for tuning the single session's bias (`BiasStep`): only for a
    /// one-session request drawn at a temperature without truncation.
    public var recordBias: Bool
    /// Exploration ε of a PCM policy (0: off). Tokens are drawn from the mixture under (1 − ε)·α + ε·u, u the
    /// uniform weights over the active experts, while `logProb`, the recorded steps and `meanWeights` stay those
    /// of the PCM's own α: REBEL regresses against the current PCM and may take its responses from another policy.
    public var explore: Float
    /// Stop strings: the answer ends at the first one (its text excluded), as in the cluster.
    public var stop: [String]

    /// Creates a request.
    public init(user: String, sessions: [(slot: Int, system: String?)], policy: WeightPolicy,
                sampling: SamplingParameters, record: Bool = false, mode: MergeMode = .probability,
                guidance: Float = 0, biases: [[Float]?] = [], recordBias: Bool = false, explore: Float = 0,
                stop: [String] = [], adapters: [LoRAAdapter?] = [])
    {
        self.adapters = adapters
        self.stop = stop
        self.explore = explore
        self.biases = biases
        self.recordBias = recordBias
        self.user = user
        self.sessions = sessions
        self.policy = policy
        self.sampling = sampling
        self.record = record
        self.mode = mode
        self.guidance = guidance
    }
}

/// A generated sequence.
public struct DecodeResult: Sendable {
    /// The generated tokens (without the end token).
    public var tokens: [Int32]
    /// Their text.
    public var text: String
    /// The recorded steps (when requested; the end token's step included).
    public var steps: [RebelStep]
    /// With `record`, the log-probability of the tokens under the policy's weights α (with `explore`, not the
    /// weights they were drawn with), summed over the steps (`RebelStep.logProb`: the tempered mixture renormalised
    /// over the candidates; log Σ_i α_i π_i(y_t) when greedy, truncated by top-k/top-p, or merged as a product of
    /// experts). 0 without `record`.
    public var logProb: Double
    /// The mean of the weights α over the steps, per slot.
    public var meanWeights: [Float]
    /// With `recordBias`, every step's candidates, for tuning the session's bias.
    public var biasSteps: [BiasStep] = []
    /// With `recordBias`, log π_b(y) under the bias that drew the tokens (Σ of the steps' log-probabilities).
    public var biasLogProb: Double = 0
}

extension InProcessExperts {
    /// Generates every request at once: all sessions of all requests go through one forward pass per token.
    /// - Parameter onStep: called after every token step with the number of sessions advanced.
    public func decode(_ requests: [DecodeRequest], maxTokens: Int, onStep: (Int) -> Void = { _ in })
        throws(TrainingError) -> [DecodeResult]
    {
        let vocab = model.vocabularySize
        struct Session {
            var request: Int
            var slot: Int
            var cache: KVCache
            var bias: [Float]?
        }
        var sessions: [Session] = []
        var prefill: [[Int32]] = []
        /// The slot of a guided request's default-prompt session.
        let guide = -1
        for (r, request) in requests.enumerated() {
            let guided = request.guidance != 0 ? [(slot: guide, system: String?.none)] : []
            for (index, s) in (request.sessions + guided).enumerated() {
                let bias = s.slot != guide && index < request.biases.count ? request.biases[index] : nil
                if let bias, bias.count != vocab {
                    throw .inference("a logit bias has \(bias.count) values, the vocabulary \(vocab)")
                }
                let prompt = try sessionPrompt(system: s.system, user: request.user)
                let cache: KVCache
                do {
                    cache = try model.makeCache(capacity: min(prompt.count + maxTokens + 1,
                                                              model.configuration.contextLength))
                } catch {
                    throw .inference("\(error)")
                }
                if s.slot != guide && index < request.adapters.count { cache.adapter = request.adapters[index] }
                sessions.append(Session(request: r, slot: s.slot, cache: cache, bias: bias))
                prefill.append(prompt)
            }
        }
        let endOfSequence = Set(stops.map { UInt32(bitPattern: $0) })
        var sequences = requests.map { request in
            SequenceDecoder(
                request: request, vocabSize: vocab, maxTokens: maxTokens, endOfSequence: endOfSequence,
                embeddings: embeddings, promptTokens: userTokens(request.user),
                text: request.stop.isEmpty ? nil : StreamingDecoder(tokenizer: tokenizer, skipControlTokens: true)
            )
        }
        var logits: [Float] = []
        var pending: [Int] = Array(sessions.indices)
        var inputs = prefill
        var lists = [TopKCandidates?](repeating: nil, count: sessions.count)
        var guidedRow: [Float] = []
        var step = 0
        while !pending.isEmpty {
            let batch = pending.map { (cache: sessions[$0].cache, tokens: inputs[$0]) }
            do {
                try model.forward(batch, into: &logits)
            } catch {
                throw .inference("\(error)")
            }
            onStep(pending.count)
            var guideRows: [Int: Int] = [:]  // request → row of its default-prompt session
            for (row, s) in pending.enumerated() where sessions[s].slot == guide { guideRows[sessions[s].request] = row }
            for (row, s) in pending.enumerated() where sessions[s].slot != guide {
                let gamma = requests[sessions[s].request].guidance
                let top: TopK
                if gamma != 0, let base = guideRows[sessions[s].request] {
                    guidedRow.removeAll(keepingCapacity: true)
                    for j in 0..<vocab {
                        guidedRow.append((1 + gamma) * logits[row * vocab + j] - gamma * logits[base * vocab + j])
                    }
                    if let bias = sessions[s].bias {
                        guidedRow.withUnsafeMutableBufferPointer { LogitBias.apply(bias, to: $0) }
                    }
                    top = TopK(logits: guidedRow, k: topK)
                } else {
                    top = logits.withUnsafeMutableBufferPointer { buffer in
                        let r = UnsafeMutableBufferPointer(rebasing: buffer[(row * vocab)..<((row + 1) * vocab)])
                        if let bias = sessions[s].bias { LogitBias.apply(bias, to: r) }
                        return TopK(logits: UnsafeBufferPointer(r), k: topK)
                    }
                }
                lists[s] = TopKCandidates(ids: top.ids.map { UInt32(bitPattern: $0) }, logProbs: top.logProbs,
                                          tailMass: top.tailMass)
            }
            pending.removeAll(keepingCapacity: true)
            for r in requests.indices where !sequences[r].isDone {
                var slotLists = [TopKCandidates?](repeating: nil, count: 6)
                var mask = [Bool](repeating: false, count: 6)
                for (s, session) in sessions.enumerated() where session.request == r && session.slot != guide {
                    slotLists[session.slot] = lists[s]
                    mask[session.slot] = true
                }
                let decision = sequences[r].next(slotLists: slotLists, mask: mask, step: step)
                guard !sequences[r].isDone, let chosen = decision.chosen else { continue }
                let token = Int32(bitPattern: chosen)
                var contextFull = false
                for (s, session) in sessions.enumerated() where session.request == r {
                    if session.cache.remaining < 1 {
                        contextFull = true
                        break
                    }
                    pending.append(s)
                    inputs[s] = [token]
                }
                if contextFull {
                    sequences[r].stop()
                    pending.removeAll { sessions[$0].request == r }
                }
            }
            step += 1
        }
        return sequences.indices.map { r in
            sequences[r].finish { tokenizer.decode($0, skipControlTokens: true) }
        }
    }

    /// What REBEL needs of one drawn token: each active expert's probability of it and, for a draw at a temperature
    /// without truncation (from the tempered mixture renormalised over the candidates), every active expert's
    /// probability of every candidate, for the draw's exact log-probability.
    static func record(chosen: UInt32, merged: MergedDistribution, lists: [TopKCandidates?], mask: [Bool],
                       features: [Float], request: DecodeRequest, vocabSize: Int) -> RebelStep
    {
        var probs = [Float](repeating: 0, count: 6)
        for i in 0..<6 where mask[i] {
            guard let list = lists[i] else { continue }
            probs[i] = probability(of: chosen, in: list, vocabSize: vocabSize)
        }
        var step = RebelStep(features: features, mask: mask, expertProbs: probs)
        let sampling = request.sampling
        if request.mode == .probability, sampling.temperature.isFinite, sampling.temperature > 0,
           sampling.topK == 0, !(sampling.topP < 1), let chosenIndex = merged.ids.firstIndex(of: chosen)
        {
            step.candidateProbs = (0..<6).map { i in
                guard mask[i], let list = lists[i] else { return [] }
                return probabilities(of: merged.ids, in: list, vocabSize: vocabSize)
            }
            step.chosen = chosenIndex
            step.inverseTemperature = 1 / sampling.temperature
        }
        return step
    }

    /// What tuning a single expert's bias needs of one drawn token: the candidates, their log-probabilities
    /// without the bias, the chosen index. Nil unless the draw was from one expert's list at a temperature without
    /// truncation.
    static func biasStep(chosen: UInt32, merged: MergedDistribution, list: TopKCandidates, bias: [Float]?,
                         sampling: SamplingParameters) -> BiasStep?
    {
        guard sampling.temperature.isFinite, sampling.temperature > 0, sampling.topK == 0, !(sampling.topP < 1),
              let chosenIndex = merged.ids.firstIndex(of: chosen)
        else { return nil }
        var listed: [UInt32: Float] = [:]
        for (id, lp) in zip(list.ids, list.logProbs) where listed[id] == nil { listed[id] = lp }
        var base: [Float] = []
        base.reserveCapacity(merged.ids.count)
        for id in merged.ids {
            guard let lp = listed[id] else { return nil }
            base.append(lp - (bias.map { Int(id) < $0.count ? $0[Int(id)] : 0 } ?? 0))
        }
        return BiasStep(ids: merged.ids.map { Int32(bitPattern: $0) }, baseLogProbs: base, chosen: chosenIndex,
                        inverseTemperature: 1 / sampling.temperature)
    }

    /// An expert's probability of `token`: listed, or the merge's missing-token estimate.
    static func probability(of token: UInt32, in list: TopKCandidates, vocabSize: Int) -> Float {
        if let j = list.ids.firstIndex(of: token) { return exp(list.logProbs[j]) }
        return Merger.missingTokenEstimate(list, vocabSize: vocabSize)
    }

    /// An expert's probability of each of `tokens` (listed, or the missing-token estimate).
    static func probabilities(of tokens: [UInt32], in list: TopKCandidates, vocabSize: Int) -> [Float] {
        var listed: [UInt32: Float] = [:]
        listed.reserveCapacity(list.ids.count)
        for (id, lp) in zip(list.ids, list.logProbs) where listed[id] == nil { listed[id] = exp(lp) }
        let estimate = Merger.missingTokenEstimate(list, vocabSize: vocabSize)
        return tokens.map { listed[$0] ?? estimate }
    }
}
