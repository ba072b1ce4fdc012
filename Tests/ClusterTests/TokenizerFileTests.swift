import ClusterCore
import Decoding
import Expert
import WorkerCore
import Foundation
import Inference
import TestKit
import Testing
import Wire

/// A coordinator whose machine holds no model file: it reads the tokenizer from `mope tokenizer-file`'s output.
@Suite(.serialized)
struct TokenizerFileTests {
    @Test("a coordinator with only a tokenizer file (its experts' model paths do not exist there) answers as with the model")
    func coordinatorWithoutModelFile() throws {
        let cluster = try TestCluster(experts: [TinyExperts.concise, TinyExperts.friendly])
        let tokenizerPath = cluster.directory.appendingPathComponent("tokenizer.gguf").path
        let made = try ChildProcess.run(cluster.mope, ["tokenizer-file", TinyExperts.concise.model, tokenizerPath])
        try #require(made.status == 0, "\(made.errorOutput)")
        #expect(made.output.contains("wrote \(tokenizerPath)"))
        // Smaller than the model: metadata and the embedding table only.
        let size = try #require(try FileManager.default.attributesOfItem(atPath: tokenizerPath)[.size] as? Int)
        let modelSize = try #require(
            try FileManager.default.attributesOfItem(atPath: TinyExperts.concise.model)[.size] as? Int)
        #expect(size < modelSize)

        // The coordinator's config: the same cluster, but every model path points nowhere.
        var json = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: cluster.configPath)))
                as? [String: Any])
        var experts = try #require(json["experts"] as? [[String: Any]])
        for index in experts.indices { experts[index]["model"] = "/nonexistent/\(index).gguf" }
        json["experts"] = experts
        json["tokenizer"] = tokenizerPath
        let coordinatorConfig = cluster.directory.appendingPathComponent("coordinator.json").path
        try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: coordinatorConfig))

        try cluster.start(coordinatorConfig: coordinatorConfig)
        let prompt = "Tell me about cats."
        for expert in cluster.experts {
            let (done, events) = try cluster.generate(prompt, preference: expert.name, maxTokens: 16)
            let model = try LanguageModel(path: expert.model, threads: 1)
            let rendering = try WorkerPrompt(model: model, systemPrompt: expert.systemPrompt)
            let ids = try rendering.tokens(for: .chat([ChatTurn(role: "user", content: prompt)]))
            let reference = try model.decode(prompt: ids.map { Int32(bitPattern: $0) }, maxTokens: 16)
            #expect(events.map(\.token) == reference.tokens, "expert \(expert.name)")
            #expect(!done.text.isEmpty && events.map(\.text).joined() == done.text, "expert \(expert.name)")
            #expect(done.lostExperts.isEmpty)
        }
        #expect(cluster.logs().contains("tokenizer of \(tokenizerPath)"))
    }

    @Test("mope tokenizer-file refuses a file with no tokenizer, and an existing output without --force")
    func tokenizerFileErrors() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("mope-tok-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let junk = directory.appendingPathComponent("junk.gguf").path
        try Data("not a gguf file".utf8).write(to: URL(fileURLWithPath: junk))
        let out = directory.appendingPathComponent("out.gguf").path
        let bad = try ChildProcess.run(try mopeBinary(), ["tokenizer-file", junk, out])
        #expect(bad.status == 1)
        #expect(bad.errorOutput.contains("cannot read the tokenizer of \(junk)"))
        #expect(!FileManager.default.fileExists(atPath: out))

        try Data().write(to: URL(fileURLWithPath: out))
        let exists = try ChildProcess.run(try mopeBinary(), ["tokenizer-file", Fixtures.tinyA, out])
        #expect(exists.status == 1)
        #expect(exists.errorOutput.contains("exists"))
        let forced = try ChildProcess.run(try mopeBinary(), ["tokenizer-file", "--force", Fixtures.tinyA, out])
        #expect(forced.status == 0, "\(forced.errorOutput)")
        let usage = try ChildProcess.run(try mopeBinary(), ["tokenizer-file", Fixtures.tinyA])
        #expect(usage.status == 2)
    }
}
