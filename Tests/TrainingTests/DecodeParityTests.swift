import ClusterCore
import Decoding
import Foundation
import Preference
import Testing
import Wire

@testable import Training

/// Scripted expert outputs: each expert's top-k list at a step is a fixed function of the expert, the step and the
/// last token, so both loops see the same lists as long as they chose the same tokens.
struct ExpertScript {
    static let vocabSize = 60
    static let endOfSequence: UInt32 = 0
    /// How likely the end token is listed at all (per mille); it gets a small probability when it is.
    var endChance: UInt64 = 0

    func list(expert: Int, step: Int, last: UInt32?) -> TopKCandidates {
        var mix = SplitMix64(seed: UInt64(expert) &* 1_000_003 &+ UInt64(step) &* 7919 &+ UInt64(last ?? 999))
        var ids: [UInt32] = []
        while ids.count < 5 {
            let id = UInt32(1 + mix.next() % UInt64(Self.vocabSize - 1))
            if !ids.contains(id) { ids.append(id) }
        }
        var weights = ids.indices.map { _ in Float(1 + mix.next() % 100) }
        if mix.next() % 1000 < endChance {
            ids[4] = Self.endOfSequence
            weights[4] = 3
        }
        if last == 7, !ids.contains(8) {
            // "<e" is mostly followed by "nd>": the stop string "<end>" spans two tokens.
            ids[3] = 8
            weights[3] = 400
        }
        let order = ids.indices.sorted { weights[$0] > weights[$1] }
        let total = weights.reduce(0, +) / 0.95  // 5% of the mass outside the list
        return TopKCandidates(ids: order.map { ids[$0] }, logProbs: order.map { log(weights[$0] / total) },
                              tailMass: 0.05)
    }

    /// Token text: a letter per id, the pieces of the stop string "<end>" for 7 and 8.
    static func text(_ token: UInt32) -> String {
        switch token {
        case 7: "<e"
        case 8: "nd>"
        default: String(UnicodeScalar(UInt8(65 + token % 26)))
        }
    }
}

struct ScriptText: TokenTextDecoder {
    mutating func decode(_ token: UInt32) -> String { ExpertScript.text(token) }
}

/// What a loop generated.
struct Generated: Equatable {
    var tokens: [UInt32]
    var text: String
}

/// The same scripted expert outputs through training's in-process decode step and through the coordinator's
/// session give the same tokens: training and serving cannot drift apart.
@Suite struct DecodeParityTests {
    static let experts: [PreferenceDimension] = [.concise, .friendly]
    static let preference = "concise:2, friendly"

    /// Training's loop: `SequenceDecoder` fed the scripted lists of the six slots.
    func inProcess(_ script: ExpertScript, sampling: SamplingParameters, maxTokens: Int, stop: [String]) throws
        -> Generated
    {
        let spec = try PreferenceSpec.parse(Self.preference)
        var weights = [Float](repeating: 0, count: 6)
        for dimension in Self.experts { weights[dimension.ordinal] = spec.weight(of: dimension) }
        let request = DecodeRequest(
            user: "Hi", sessions: Self.experts.map { (slot: $0.ordinal, system: nil) }, policy: .fixed(weights),
            sampling: sampling, record: true, stop: stop
        )
        var sequence = SequenceDecoder(
            request: request, vocabSize: ExpertScript.vocabSize, maxTokens: maxTokens,
            endOfSequence: [ExpertScript.endOfSequence], embeddings: nil, promptTokens: [], text: ScriptText()
        )
        var step = 0
        var last: UInt32?
        while !sequence.isDone {
            var lists = [TopKCandidates?](repeating: nil, count: 6)
            var mask = [Bool](repeating: false, count: 6)
            for (e, dimension) in Self.experts.enumerated() {
                lists[dimension.ordinal] = script.list(expert: e, step: step, last: last)
                mask[dimension.ordinal] = true
            }
            last = sequence.next(slotLists: lists, mask: mask, step: step).chosen
            step += 1
            try #require(step <= maxTokens + 1)
        }
        let result = sequence.finish { $0.map { ExpertScript.text(UInt32(bitPattern: $0)) }.joined() }
        return Generated(tokens: result.tokens.map { UInt32(bitPattern: $0) }, text: result.text)
    }

    /// Serving's loop: a `CoordinatorSession` driven as a pure value, every worker answering with the script.
    func coordinator(_ script: ExpertScript, sampling: SamplingParameters, maxTokens: Int, stop: [String]) throws
        -> (Generated, FinishReason)
    {
        let request = Generate(
            request: 1, prompt: "Hi", preference: Self.preference, maxNewTokens: UInt32(maxTokens),
            sampling: SamplingRequest(temperature: sampling.temperature, topP: sampling.topP, topK: sampling.topK,
                                      seed: sampling.seed),
            merge: .probability, stop: stop
        )
        let workers: [WorkerID] = ["w-concise", "w-friendly"]
        var session = CoordinatorSession(
            id: 3, request: request, preference: try PreferenceSpec.parse(Self.preference),
            experts: Self.experts.map { SessionExpert(name: $0.rawValue, dimension: $0) },
            settings: SessionSettings(topK: 5, vocabSize: ExpertScript.vocabSize,
                                      eosTokenIDs: [ExpertScript.endOfSequence]),
            controller: UniformController(), decoder: ScriptText(), now: 0
        )
        let choose: ReplicaChooser = { expert, _ in workers[Self.experts.firstIndex { $0.rawValue == expert }!] }
        _ = session.start(now: 0, chooseReplica: choose)
        var step: UInt32 = 0
        while true {
            var directives: [SessionDirective] = []
            for (e, worker) in workers.enumerated() {
                let list = script.list(expert: e, step: Int(step), last: session.tokens.last)
                let dist = Dist(session: 3, step: step, ids: list.ids, logProbs: list.logProbs,
                                tailMass: list.tailMass)
                directives += session.onDist(dist, from: worker, now: 1, chooseReplica: choose)
            }
            for directive in directives {
                if case let .finish(done) = directive {
                    return (Generated(tokens: session.tokens, text: done.text), done.finish)
                }
                if case let .fail(error) = directive { Issue.record("failed: \(error)") }
            }
            step += 1
            try #require(step <= UInt32(maxTokens) + 1)
        }
    }

    @Test("greedy and seeded sampling choose the same tokens and text in training and in the coordinator",
          arguments: [
              SamplingParameters(temperature: 0),
              SamplingParameters(temperature: 1, seed: 11),
              SamplingParameters(temperature: 0.7, topP: 0.9, topK: 4, seed: 5),
          ])
    func sameTokens(sampling: SamplingParameters) throws {
        for seed in UInt64(0)..<6 {
            let params = SamplingParameters(temperature: sampling.temperature, topP: sampling.topP,
                                            topK: sampling.topK, seed: sampling.seed &+ seed)
            let script = ExpertScript()
            let training = try inProcess(script, sampling: params, maxTokens: 12, stop: [])
            let (serving, finish) = try coordinator(script, sampling: params, maxTokens: 12, stop: [])
            #expect(training == serving)
            #expect(finish == .maxTokens)
            #expect(serving.tokens.count == 12)
        }
    }

    @Test("an end token and a stop string end both loops at the same token with the same text")
    func sameEnds() throws {
        var ends: Set<FinishReason> = []
        for seed in UInt64(0)..<40 {
            let params = SamplingParameters(temperature: 1.3, seed: seed)
            let script = ExpertScript(endChance: 150)
            let stop = ["<end>", "K"]
            let training = try inProcess(script, sampling: params, maxTokens: 16, stop: stop)
            let (serving, finish) = try coordinator(script, sampling: params, maxTokens: 16, stop: stop)
            #expect(training == serving, "seed \(seed)")
            ends.insert(finish)
            if finish == .stopString { #expect(!serving.text.contains("<end>") && !serving.text.contains("K")) }
        }
        // The script reaches every way of ending.
        #expect(ends == [.endOfSequence, .stopString, .maxTokens], "\(ends)")
    }
}
