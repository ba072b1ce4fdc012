import Foundation
import Preference
import TestKit
import Testing

/// `mope train` and `mope eval` as a user runs them, on the tiny generated model.
@Suite struct TrainEvalCommandTests {
    static let fixtures = Fixtures.directory

    /// A scratch folder with two prompts and a three-word sentiment lexicon (VADER's tab-separated format).
    static func workspace() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mope-train-eval-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try Data(#"[{"prompt": "hi"}, {"prompt": "sky"}]"#.utf8).write(to: dir.appendingPathComponent("prompts.json"))
        try Data("good\t1.9\t0.9\t[2, 2]\nbad\t-2.5\t0.7\t[-3, -2]\nnice\t1.8\t0.6\t[2, 2]\n".utf8)
            .write(to: dir.appendingPathComponent("lexicon.txt"))
        return dir
    }

    @Test("mope train with exploration writes a loadable PCM, and mope eval scores it against every baseline")
    func trainThenEvaluate() throws {
        let dir = try Self.workspace()
        defer { try? FileManager.default.removeItem(at: dir) }
        let common = ["--model", Self.fixtures.appendingPathComponent("tiny-a.gguf").path,
                      "--prompts", dir.appendingPathComponent("prompts.json").path,
                      "--lexicon", dir.appendingPathComponent("lexicon.txt").path,
                      "--max-tokens", "3", "--threads", "1",
                      "--plot-script", dir.appendingPathComponent("none.py").path]
        let trained = dir.appendingPathComponent("train").path
        let train = try MopeProcess.run(["train"] + common + [
            "--out", trained, "--steps", "2", "--batch", "2", "--responses", "2", "--hidden", "4",
            "--projection", "0", "--explore", "0.25",
        ])
        #expect(train.status == 0, "stderr: \(train.errorOutput)")
        let pcm = try PCMFile.load(trained + "/pcm.json")
        #expect(pcm.configuration.hidden == 4)
        let rewards = try String(contentsOfFile: trained + "/rewards.csv", encoding: .utf8)
        #expect(rewards.split(separator: "\n").count == 3, "a header and a row per step")
        let checkpoint = try String(contentsOfFile: trained + "/checkpoint.json", encoding: .utf8)
        #expect(checkpoint.contains("\"explore\":0.25"))

        let evaluated = dir.appendingPathComponent("eval").path
        let eval = try MopeProcess.run(["eval"] + common + [
            "--out", evaluated, "--pcm", trained + "/pcm.json", "--limit", "1",
        ])
        #expect(eval.status == 0, "stderr: \(eval.errorOutput)")
        let results = try String(contentsOfFile: evaluated + "/results.md", encoding: .utf8)
        #expect(results.hasPrefix("# PCM evaluation\n\n1 prompts of prompts.json × 8 combinations, 3 tokens"))
        #expect(results.contains("vs only informativeness pole"))
        let items = try String(contentsOfFile: evaluated + "/items.csv", encoding: .utf8).split(separator: "\n")
        #expect(items.first == "combination,method,prompt,reward")
        // One prompt, 8 combinations: the PCM, prompting, uniform and three single experts each (no soup: these
        // experts have no tuned offsets to average).
        #expect(items.count == 1 + 8 * 6)
        #expect(!results.contains("vs soup"))
    }

    @Test("mope train refuses an exploration outside [0, 1) before loading anything")
    func exploreOutOfRange() throws {
        for value in ["1", "-0.1"] {
            let run = try MopeProcess.run(["train", "--model", "/nonexistent.gguf", "--prompts", "/nonexistent.json",
                                           "--out", "/nonexistent-dir/x", "--explore", value])
            #expect(run.status == 2)
            #expect(run.errorOutput.contains("'--explore'"), "stderr: \(run.errorOutput)")
        }
    }
}
