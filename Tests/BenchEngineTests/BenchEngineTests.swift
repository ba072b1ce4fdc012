import CLI
import Foundation
import Inference
import TestKit
import Testing

@testable import mope

private let tinyModel = Fixtures.tinyA

@Suite struct BenchEngineTests {
    private func settings(repeats: Int = 3) -> EngineBenchmark.Settings {
        EngineBenchmark.Settings(threads: 1, promptTokens: 12, decodeTokens: 5, sessions: 3, sessionPromptTokens: 4,
                                 repeats: repeats)
    }

    @Test("every figure is measured once per repeat, and the reported figure is the median")
    func measuresEachRepeat() throws {
        var benchmark = EngineBenchmark(model: try LanguageModel(path: tinyModel), settings: settings())
        let result = try benchmark.run()
        #expect(result.prefill.count == 3 && result.decode.count == 3 && result.aggregate.count == 3)
        for value in result.prefill + result.decode + result.aggregate { #expect(value > 0 && value.isFinite) }
        #expect(result.prefillMedian == result.prefill.sorted()[1])
        #expect(result.aggregateMedian == result.aggregate.sorted()[1])
    }

    @Test("the JSON line carries the settings and the three medians under the names the script reads")
    func jsonLine() throws {
        let result = EngineBenchmark.Result(settings: settings(repeats: 2), prefill: [100, 300], decode: [50, 60],
                                            aggregate: [400, 410, 420], load: 1.5)
        let line = result.jsonLine(modelPath: "/some/dir/model \"x\".gguf")
        #expect(!line.contains("\n"))
        let object = try #require(
            try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(object["model"] as? String == "model \"x\".gguf")
        #expect(object["threads"] as? Int == 1 && object["sessions"] as? Int == 3)
        #expect(object["prefill_tok_s"] as? Double == 200)
        #expect(object["decode_tok_s"] as? Double == 55)
        #expect(object["aggregate_decode_tok_s"] as? Double == 410)
        #expect(object["load"] as? Double == 1.5)
        #expect(result.table(modelPath: "m.gguf").contains("prefill pp12"))
    }

    @Test("lengths beyond the model's context are refused before anything runs")
    func tooLong() throws {
        var s = settings()
        s.promptTokens = 10_000
        var benchmark = EngineBenchmark(model: try LanguageModel(path: tinyModel), settings: s)
        #expect(throws: BenchEngineError.self) { try benchmark.run() }
    }

    @Test("the command refuses a missing model file and non-positive counts")
    func commandErrors() async throws {
        let missing = await CLI.run(BenchEngine.self, arguments: ["--model", "/nonexistent.gguf"])
        #expect(missing == CLI.failure)
        let zero = await CLI.run(BenchEngine.self, arguments: ["--model", tinyModel, "--sessions", "0"])
        #expect(zero == CLI.usage)
    }

    @Test("""
        bench pcm times the shipped PCM, an expert step and a tuned offset; a missing PCM file, an offset for \
        another model or a zero count is refused
        """)
    func benchPCM() async throws {
        let root = Fixtures.packageRoot
        let pcm = root.appendingPathComponent("Configs/pcm/pcm.json").path
        let model = try LanguageModel(path: tinyModel)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(UUID().uuidString)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let bias = directory.appendingPathComponent("tiny.bias.json")
        try LogitBias(vocabularySize: model.vocabularySize, entries: [(id: 1, value: 0.5)],
                      hidden: [Float](repeating: 0.1, count: model.hiddenWidth)).encoded().write(to: bias)
        let ok = await CLI.run(BenchPCM.self, arguments: [
            "--model", tinyModel, "--pcm", pcm, "--bias", bias.path, "--calls", "20", "--steps", "4",
        ])
        #expect(ok == CLI.success)
        // The shipped offsets are SmolLM2's: another vocabulary and width than the tiny model's.
        let shipped = root.appendingPathComponent("Configs/pcm/elementary.bias.json").path
        let mismatched = await CLI.run(BenchPCM.self, arguments: [
            "--model", tinyModel, "--pcm", pcm, "--bias", shipped, "--calls", "20", "--steps", "4",
        ])
        #expect(mismatched == CLI.failure)
        let missing = await CLI.run(BenchPCM.self, arguments: ["--model", tinyModel, "--pcm", "/nonexistent.json"])
        #expect(missing == CLI.failure)
        let zero = await CLI.run(BenchPCM.self, arguments: ["--model", tinyModel, "--pcm", pcm, "--calls", "0"])
        #expect(zero == CLI.usage)
    }
}
