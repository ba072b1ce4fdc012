import Decoding
import Expert
import Foundation
import Inference
import TestKit
import Testing
import Wire
import WorkerCore

/// Experts that are LoRA adapters over one model file, served by real workers.
@Suite(.serialized)
struct LoRAClusterTests {
    static let prompt = "Tell me about cats."

    /// Writes a seeded random LoRA adapter (rank 4, F32) for `model`'s Q, V and down projections to `path`.
    static func writeAdapter(for model: String, to path: String, seed: UInt64) throws {
        let bytes = try TestAdapters.bytes(for: GGUFFile(path: model), targets: ["attn_q.weight", "attn_v.weight",
                                           "ffn_down.weight"], rank: 4, alpha: 8, seed: seed)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    /// The expert's greedy token ids computed in this process, with its adapter if it has one.
    static func reference(_ expert: TestExpert, maxTokens: Int) throws -> [UInt32] {
        let model = try LanguageModel(path: expert.model, threads: 1)
        let adapter = try expert.lora.map { try LoRAAdapter(path: $0, model: model) }
        let rendering = try WorkerPrompt(model: model, systemPrompt: expert.systemPrompt)
        let ids = try rendering.tokens(for: .chat([ChatTurn(role: "user", content: prompt)]))
        return try model.decode(prompt: ids.map { Int32(bitPattern: $0) }, maxTokens: maxTokens, adapter: adapter).tokens
    }

    @Test("two experts of one model file, one a LoRA adapter, in one shared worker process: each answers as itself",
          arguments: [false, true])
    func adapterExperts(shared: Bool) throws {
        var adapted = TinyExperts.concise
        var plain = TinyExperts.friendly
        plain.model = adapted.model  // one model file: the adapter is all that tells them apart (with the prompt)
        let cluster = try TestCluster(experts: [adapted, plain])
        let path = cluster.directory.appendingPathComponent("concise-lora.gguf").path
        try Self.writeAdapter(for: adapted.model, to: path, seed: 11)
        adapted.lora = path
        let withAdapter = try TestCluster(experts: [adapted, plain])
        try withAdapter.start(shared: shared)
        if shared {
            #expect(Set(withAdapter.workerPIDs.values).count == 1, "one process serves both experts")
        }
        var answers: [String: [UInt32]] = [:]
        for expert in [adapted, plain] {
            let (done, events) = try withAdapter.generate(Self.prompt, preference: expert.name, maxTokens: 16)
            #expect(events.map(\.token) == (try Self.reference(expert, maxTokens: 16)), "expert \(expert.name)")
            #expect(done.lostExperts.isEmpty)
            answers[expert.name] = events.map(\.token)
        }
        // The adapter changes the answer: without it the concise expert would say something else.
        var bare = adapted
        bare.lora = nil
        #expect(try Self.reference(bare, maxTokens: 16) != answers[adapted.name])
        #expect(withAdapter.logs().contains("expert concise runs the LoRA adapter \(path)"))
    }

    @Test("a worker whose adapter does not fit its model exits with the reason")
    func mismatchedAdapterRefused() throws {
        let cluster = try TestCluster(experts: [TinyExperts.concise])
        let path = cluster.directory.appendingPathComponent("bad.gguf").path
        // A model file is no adapter: mope run refuses it with the reason; a seeded adapter runs.
        let run = try ChildProcess.run(cluster.mope, [
            "run", "--model", TinyExperts.concise.model, "--lora", TinyExperts.concise.model, "--prompt", "hi",
            "--max-tokens", "2", "--threads", "1",
        ])
        #expect(run.status == 1)
        #expect(run.errorOutput.contains("is not an adapter"), "\(run.errorOutput)")
        try Self.writeAdapter(for: TinyExperts.concise.model, to: path, seed: 3)
        let ok = try ChildProcess.run(cluster.mope, [
            "run", "--model", TinyExperts.concise.model, "--lora", path, "--prompt", "hi", "--max-tokens", "2",
            "--threads", "1",
        ])
        #expect(ok.status == 0, "\(ok.errorOutput)")
        let worker = try ChildProcess.run(cluster.mope, [
            "worker", "--model", TinyExperts.concise.model, "--expert", "concise", "--lora", TinyExperts.concise.model,
            "--coordinator", cluster.endpoint, "--threads", "1",
        ], deadline: .seconds(60))
        #expect(worker.status != 0)
        #expect(worker.errorOutput.contains("LoRA adapter of concise"), "\(worker.errorOutput)")
    }
}
