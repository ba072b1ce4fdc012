import Decoding
import Expert
import Foundation
import Inference
import TestKit
import Testing
import Wire
import WorkerCore

/// A worker keeps a finished session's KV cache and the next prompt that starts the same way prefills only the rest.
@Suite(.serialized)
struct PrefixCacheTests {
    static func reference(_ expert: TestExpert, prompt: String, maxTokens: Int) throws -> [UInt32] {
        let model = try LanguageModel(path: expert.model, threads: 1)
        let rendering = try WorkerPrompt(model: model, systemPrompt: expert.systemPrompt)
        let ids = try rendering.tokens(for: .chat([ChatTurn(role: "user", content: prompt)]))
        return try model.decode(prompt: ids.map { Int32(bitPattern: $0) }, maxTokens: maxTokens).tokens
    }

    static func kept(_ log: String) -> [Int] {
        log.split(separator: "\n").compactMap { line -> Int? in
            guard let range = line.range(of: "prefill keeps ") else { return nil }
            return Int(line[range.upperBound...].prefix { $0.isNumber })
        }
    }

    @Test("a repeated prompt and a prompt with the same system prompt reuse cached positions and answer exactly as fresh")
    func reusedPrefixesGiveTheSameAnswers() throws {
        let expert = TinyExperts.concise
        let cluster = try TestCluster(experts: [expert])
        try cluster.start(logLevel: "debug")
        let first = "Tell me about cats."
        let other = "Tell me about dogs, please."
        let answers = try [first, first, other].map { prompt in
            try cluster.generate(prompt, preference: expert.name, maxTokens: 12).events.map(\.token)
        }
        #expect(answers[0] == (try Self.reference(expert, prompt: first, maxTokens: 12)))
        #expect(answers[1] == answers[0], "the repeated prompt's answer")
        #expect(answers[2] == (try Self.reference(expert, prompt: other, maxTokens: 12)), "the other prompt's answer")
        let log = cluster.logs()
        let kept = Self.kept(log)
        let promptLength = try WorkerPrompt(model: LanguageModel(path: expert.model, threads: 1),
                                            systemPrompt: expert.systemPrompt)
            .tokens(for: .chat([ChatTurn(role: "user", content: first)])).count
        // The repeat keeps all of its prompt but the last token; the other prompt keeps the shared beginning.
        try #require(kept.count == 2, "\(log)")
        #expect(kept[0] == promptLength - 1)
        #expect(kept[1] > 0 && kept[1] < promptLength - 1)
    }
}
