import Foundation
import TestKit
import Testing

/// The LoRA experts' training pipeline on the real model: scored samples (`mope sample`), DPO with PEFT and TRL
/// (`Scripts/train-lora.py`), the conversion to the GGUF adapter layout (`Scripts/lora-to-gguf.py`) and the engine
/// running the result; and the conversion checked against PyTorch's logits (`Scripts/check-lora.py`).
@Suite(.serialized, .enabled(if: Fixtures.realModelPresent, "needs models/SmolLM2-135M-Instruct.Q4_1.gguf or $MOPE_MODEL"))
struct LoRATrainingTests {
    static func script(_ name: String) -> String { Fixtures.packageRoot.appendingPathComponent("Scripts/\(name)").path }

    static func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory
            .appendingPathComponent("mope-lora-training-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    @Test("a random PEFT adapter, converted, gives PyTorch's logits in mope's engine (within 0.5 over the top 20)")
    func conversionMatchesPyTorch() throws {
        let run = try ChildProcess.run("/usr/bin/env", [
            "python3", Self.script("check-lora.py"), "--model", Fixtures.realModel, "--random",
        ], deadline: .seconds(600))
        #expect(run.status == 0, "\(run.output)\n\(run.errorOutput.suffix(3000))")
        #expect(run.output.contains("check-lora: ok"), "\(run.output)")
    }

    @Test("mope sample, then train-lora.py (DPO, one epoch on two prompts), gives an adapter mope runs")
    func samplesTrainAndServe() throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let mope = try mopeBinary()
        let samples = directory.appendingPathComponent("concise.jsonl").path
        let promptsFile = try Self.writePrompts(in: directory)
        let sampled = try ChildProcess.run(mope, [
            "sample", "--model", Fixtures.realModel, "--prompts", promptsFile, "--dimension", "concise",
            "--count", "3", "--limit", "2", "--max-tokens", "24", "--out", samples,
        ], deadline: .seconds(300))
        try #require(sampled.status == 0, "\(sampled.errorOutput)")
        let lines = try String(contentsOfFile: samples, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 2)
        for line in lines {
            let record = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            #expect(record["dimension"] as? String == "concise")
            let responses = try #require(record["responses"] as? [[String: Any]])
            #expect(responses.count == 3)
            #expect(responses.allSatisfy { (($0["reward"] as? Double) ?? -1) >= 0 && (($0["reward"] as? Double) ?? 2) <= 1 })
        }

        let out = directory.appendingPathComponent("lora").path
        let trained = try ChildProcess.run("/usr/bin/env", [
            "python3", Self.script("train-lora.py"), "--model", Fixtures.realModel, "--samples", samples,
            "--out", out, "--epochs", "1", "--batch", "1", "--min-margin", "0",
        ], deadline: .seconds(600))
        try #require(trained.status == 0, "\(trained.errorOutput.suffix(3000))")
        let log = try #require(try JSONSerialization.jsonObject(
            with: Data(contentsOf: URL(fileURLWithPath: out + "/training.json"))) as? [String: Any])
        #expect(log["method"] as? String == "dpo")
        #expect(((log["losses"] as? [Any]) ?? []).count >= 1)

        let adapter = out + "/concise.lora.gguf"
        let answered = try ChildProcess.run(mope, [
            "run", "--model", Fixtures.realModel, "--lora", adapter, "--prompt", "What is a star?",
            "--max-tokens", "8", "--threads", "1",
        ], deadline: .seconds(120))
        #expect(answered.status == 0, "\(answered.errorOutput)")
        #expect(!answered.output.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty)
    }

    static func writePrompts(in directory: URL) throws -> String {
        let path = directory.appendingPathComponent("prompts.json").path
        let prompts = [["prompt": "Name a fruit that is yellow."], ["prompt": "How many legs does a spider have?"]]
        try JSONSerialization.data(withJSONObject: prompts).write(to: URL(fileURLWithPath: path))
        return path
    }
}
