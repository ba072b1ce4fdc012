import Decoding
import Foundation
import Inference
import Preference
import TestKit
import Testing
import Training
import Wire

/// In-process experts that are LoRA adapters: each session runs its own expert's adapter, and the evaluation's
/// soup is the adapters' merge.
@Suite struct AdapterExpertsTests {
    /// A seeded rank-2 F32 adapter of the tiny model's Q and down projections.
    static func adapter(model: LanguageModel, seed: UInt64) throws -> LoRAAdapter {
        let bytes = try TestAdapters.bytes(for: model.file, targets: ["attn_q.weight", "ffn_down.weight"], rank: 2,
                                           seed: seed, magnitude: 0.4)
        return try LoRAAdapter(file: GGUFFile(bytes: bytes), model: model)
    }

    @Test("an expert's session runs its adapter: greedy, it is the model's own greedy answer with that adapter")
    func sessionsRunTheirAdapters() throws {
        let model = try LanguageModel(path: Fixtures.tinyA)
        let concise = try Self.adapter(model: model, seed: 5)
        let experts = try InProcessExperts(model: model, adapters: [.concise: concise], topK: 16)
        #expect(experts.adapters(for: [.concise, .friendly]).map { $0 != nil } == [true, false])
        for dimension in [PreferenceDimension.concise, .friendly] {
            var weights = [Float](repeating: 0, count: 6)
            weights[dimension.ordinal] = 1
            let request = DecodeRequest(
                user: "tell me about cats", sessions: [(slot: dimension.ordinal, system: experts.prompts[dimension])],
                policy: .fixed(weights), sampling: SamplingParameters(temperature: 0),
                adapters: experts.adapters(for: [dimension]))
            let result = try #require(try experts.decode([request], maxTokens: 12).first)
            let prompt = try experts.sessionPrompt(system: experts.prompts[dimension], user: "tell me about cats")
            let reference = try model.decode(prompt: prompt, maxTokens: 12, endOfSequence: [],
                                             adapter: experts.adapters[dimension])
            #expect(result.tokens.map { UInt32(bitPattern: $0) } == Array(reference.tokens.prefix(result.tokens.count)),
                    "\(dimension)")
            #expect(result.tokens.count >= 1)
        }
    }

    @Test("the evaluation's soup merges the three adapters of a combination whose experts all have one")
    func soupsOfAdapters() throws {
        let model = try LanguageModel(path: Fixtures.tinyA)
        var adapters: [PreferenceDimension: LoRAAdapter] = [:]
        for (i, d) in PreferenceDimension.allCases.enumerated() { adapters[d] = try Self.adapter(model: model, seed: UInt64(i + 1)) }
        let experts = try InProcessExperts(model: model, adapters: adapters, topK: 16)
        let evaluator = try Evaluator(experts: experts, prompts: PromptSet(["hi"]), maxTokens: 2, temperature: 1, seed: 1)
        #expect(evaluator.soups.count == 8)
        #expect(evaluator.soups.values.allSatisfy { $0.maxRank == 6 })
        let partial = try InProcessExperts(model: model, adapters: [.concise: try #require(adapters[.concise])], topK: 16)
        #expect(try Evaluator(experts: partial, prompts: PromptSet(["hi"]), maxTokens: 2, temperature: 1, seed: 1)
            .soups.isEmpty)
    }
}
