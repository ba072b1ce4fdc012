import Foundation
import TestKit
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Every command's numeric and endpoint options, given a bad value, are a usage error: exit 2, before any work,
/// with a message naming the option.
@Suite struct UsageErrorTests {
    static let model = Fixtures.path("tiny-a.gguf")
    static let config = Fixtures.configs.appendingPathComponent("tiny-test.json").path
    /// Nothing listens here; a command that got past its checks would fail or wait, not exit 2.
    static let nowhere = "tcp://127.0.0.1:1"

    struct Case: CustomTestStringConvertible, Sendable {
        let arguments: [String]
        let option: String
        var testDescription: String { arguments.joined(separator: " ") }
    }

    static func run(_ bad: [String], _ option: String) -> Case {
        Case(arguments: ["run", "--model", model, "--prompt", "hi"] + bad, option: option)
    }
    static func generate(_ bad: [String], _ option: String) -> Case {
        Case(arguments: ["generate", "--coordinator", nowhere, "--timeout", "1"] + bad + ["hi"], option: option)
    }
    static func worker(_ bad: [String], _ option: String) -> Case {
        Case(arguments: ["worker", "--model", model, "--expert", "concise", "--coordinator", nowhere] + bad,
             option: option)
    }
    static func coordinator(_ bad: [String], _ option: String) -> Case {
        Case(arguments: ["coordinator", "--config", config] + bad, option: option)
    }
    static func cluster(_ bad: [String], _ option: String) -> Case {
        Case(arguments: ["cluster", "--config", config] + bad, option: option)
    }
    static func training(_ command: String, _ bad: [String], _ option: String) -> Case {
        Case(arguments: [command, "--model", model, "--prompts", "/nonexistent/prompts.json", "--out",
                         "/nonexistent/out"] + bad, option: option)
    }
    static func bench(_ sub: String, _ bad: [String], _ option: String) -> Case {
        Case(arguments: ["bench", sub, "--model", model] + bad, option: option)
    }

    static let cases: [Case] = [
        run(["--threads", "0"], "--threads"), run(["--threads", "-2"], "--threads"),
        run(["--threads", "many"], "--threads"), run(["--max-tokens", "-1"], "--max-tokens"),
        run(["--temperature", "nan"], "--temperature"), run(["--top-p", "0"], "--top-p"),
        run(["--top-k", "-1"], "--top-k"), run(["--seed", "-1"], "--seed"),

        generate(["--max-tokens", "-1"], "--max-tokens"), generate(["--temperature", "-1"], "--temperature"),
        generate(["--top-p", "2"], "--top-p"), generate(["--top-k", "x"], "--top-k"),
        generate(["--timeout", "0"], "--timeout"), generate(["--concurrency", "0"], "--concurrency"),
        generate(["--coordinator", "tcp://127.0.0.1:99999"], "--coordinator"),
        generate(["--coordinator", "tcp://127.0.0.1:-5"], "--coordinator"),
        generate(["--coordinator", "localhost:5555"], "--coordinator"),
        generate(["--coordinator", "\(nowhere),localhost:5555"], "--coordinator"),
        generate(["--heartbeat", "0"], "--heartbeat"), generate(["--heartbeat", "soon"], "--heartbeat"),
        Case(arguments: ["serve", "--coordinator", nowhere, "--heartbeat", "-1"], option: "--heartbeat"),
        cluster(["--serve", "nowhere"], "--serve"),

        worker(["--threads", "0"], "--threads"), worker(["--threads", "4096"], "--threads"),
        worker(["--capacity", "0"], "--capacity"), worker(["--capacity", "-1"], "--capacity"),
        worker(["--kv-capacity", "1"], "--kv-capacity"), worker(["--prefill-chunk", "0"], "--prefill-chunk"),
        worker(["--drain-grace", "-1"], "--drain-grace"),
        worker(["--coordinator", "tcp://127.0.0.1:70000"], "--coordinator"),

        coordinator(["--drain-grace", "-1"], "--drain-grace"),
        coordinator(["--endpoint", "tcp://127.0.0.1:99999"], "--endpoint"),
        coordinator(["--endpoint", "127.0.0.1:5555"], "--endpoint"),
        coordinator(["--client-endpoint", "127.0.0.1:5556"], "--client-endpoint"),
        coordinator(["--curve-authorized-keys", config], "--curve-authorized-keys"),

        cluster(["--threads", "0"], "--threads"), cluster(["--ready-timeout", "0"], "--ready-timeout"),
        cluster(["--stop-grace", "-1"], "--stop-grace"),
        cluster(["--insecure", "--keys", "/nonexistent/keys"], "--keys"),
        cluster(["--endpoint", "tcp://127.0.0.1:65536"], "--endpoint"),

        training("train", ["--threads", "0"], "--threads"), training("train", ["--steps", "0"], "--steps"),
        training("train", ["--batch", "-1"], "--batch"), training("train", ["--max-tokens", "0"], "--max-tokens"),
        training("train", ["--checkpoint-every", "0"], "--checkpoint-every"),
        training("train", ["--learning-rate", "nan"], "--learning-rate"),
        training("train", ["--eta", "0"], "--eta"), training("train", ["--responses", "1"], "--responses"),
        training("train", ["--inner-epochs", "0"], "--inner-epochs"),
        training("train", ["--temperature", "0"], "--temperature"), training("train", ["--hidden", "0"], "--hidden"),
        training("train", ["--projection", "-1"], "--projection"),
        training("train", ["--explore", "1"], "--explore"),
        training("tune", ["--threads", "0"], "--threads"), training("tune", ["--steps", "0"], "--steps"),
        training("tune", ["--responses", "1"], "--responses"),
        training("tune", ["--weight-decay", "1"], "--weight-decay"),
        training("tune", ["--kl-penalty", "-1"], "--kl-penalty"),
        training("tune", ["--checkpoint-every", "0"], "--checkpoint-every"),
        training("eval", ["--threads", "0"], "--threads"), training("eval", ["--limit", "0"], "--limit"),
        training("eval", ["--max-tokens", "0"], "--max-tokens"),
        training("eval", ["--temperature", "-1"], "--temperature"),
        training("eval", ["--diagnose", "--samples", "0"], "--samples"),

        bench("engine", ["--threads", "0"], "--threads"), bench("engine", ["--sessions", "0"], "--sessions"),
        bench("pcm", ["--calls", "0"], "--calls"),
        Case(arguments: ["bench", "wire", "--steps", "0"], option: "--steps"),
        Case(arguments: ["bench", "wire-peer", "--connect", "tcp://127.0.0.1:0", "--id", "x"], option: "--connect"),
    ]

    @Test("a bad numeric or endpoint value exits 2 naming the option", arguments: cases)
    func badValueIsUsageError(item: Case) throws {
        let run = try MopeProcess.run(item.arguments, deadline: .seconds(60))
        #expect(run.status == 2, "\(run.errorOutput)")
        #expect(run.errorOutput.contains("'\(item.option)'"), "\(run.errorOutput)")
    }

    @Test("a coordinator without CURVE refuses to bind an address other machines reach, naming the fix")
    func plaintextRemoteRefused() throws {
        let run = try MopeProcess.run(
            ["coordinator", "--config", Self.config, "--endpoint", "tcp://0.0.0.0:1"], deadline: .seconds(60)
        )
        #expect(run.status == 1, "\(run.errorOutput)")
        #expect(run.errorOutput.contains("--insecure") && run.errorOutput.contains("--curve-secret-key-file"),
                "\(run.errorOutput)")
    }

    @Test("a secret key file others can read is refused with a clear error, without the key in it")
    func openSecretKeyRefused() throws {
        let prefix = FileManager.default.temporaryDirectory.appendingPathComponent("mope-open-\(getpid())").path
        let made = try MopeProcess.run(["keygen", "--out", prefix, "--force"], deadline: .seconds(30))
        #expect(made.status == 0)
        defer { unlink(prefix + ".key"); unlink(prefix + ".pub") }
        chmod(prefix + ".key", 0o644)
        let secret = try String(contentsOfFile: prefix + ".key", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let run = try MopeProcess.run(
            ["coordinator", "--config", Self.config, "--curve-secret-key-file", prefix + ".key"], deadline: .seconds(60)
        )
        #expect(run.status == 1, "\(run.errorOutput)")
        #expect(run.errorOutput.contains("chmod 600"), "\(run.errorOutput)")
        #expect(!run.errorOutput.contains(secret))
    }
}
