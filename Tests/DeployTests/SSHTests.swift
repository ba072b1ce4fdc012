import Foundation
import TestKit
import Testing

/// The ssh target (`Deploy/ssh-cluster.sh`): its usage errors, and the whole up/status/down cycle against two
/// sshd "hosts" in network namespaces (`Deploy/ssh/test-netns.sh`).
@Suite(.serialized)
struct SSHTests {
    static let script = Deploy.path("ssh-cluster.sh")

    @Test("--help exits 0; missing arguments, an unknown command or option, a bad hosts file exit 2")
    func usage() throws {
        let help = try Deploy.runScript(Self.script, ["--help"], deadline: .seconds(20))
        #expect(help.status == 0 && help.output.contains("HOST EXPERT..."))
        let none = try Deploy.runScript(Self.script, [], deadline: .seconds(20))
        #expect(none.status == 2 && none.errorOutput.contains("expected HOSTS CONFIG"))

        let folder = try Deploy.temporaryDirectory("ssh-usage")
        defer { try? FileManager.default.removeItem(at: folder) }
        let config = Fixtures.configs.appendingPathComponent("tiny-test.json").path
        func hosts(_ text: String) throws -> String {
            let url = folder.appendingPathComponent("hosts-\(UInt32.random(in: 0...UInt32.max))")
            try Data(text.utf8).write(to: url)
            return url.path
        }
        let good = try hosts("# comment\nnode1 concise\n\nnode2 friendly knowledgeable\n")
        let unknown = try Deploy.runScript(Self.script, [good, config, "restart"], deadline: .seconds(20))
        #expect(unknown.status == 2 && unknown.errorOutput.contains("unknown command 'restart'"))
        let option = try Deploy.runScript(Self.script, [good, config, "up", "--bogus"], deadline: .seconds(20))
        #expect(option.status == 2 && option.errorOutput.contains("unknown option --bogus"))
        let port = try Deploy.runScript(Self.script, [good, config, "down", "--port", "x"], deadline: .seconds(20))
        #expect(port.status == 2)
        let serve = try Deploy.runScript(Self.script, [good, config, "up", "--serve", "8000"], deadline: .seconds(20))
        #expect(serve.status == 2 && serve.errorOutput.contains("--serve wants HOST:PORT"))

        let noExperts = try hosts("node1 concise\nnode2\n")
        let empty = try Deploy.runScript(Self.script, [noExperts, config, "down"], deadline: .seconds(20))
        #expect(empty.status == 2 && empty.errorOutput.contains(":2: node2 lists no expert"), "\(empty.errorOutput)")
        let badHost = try hosts("node;rm concise\n")
        let bad = try Deploy.runScript(Self.script, [badHost, config, "down"], deadline: .seconds(20))
        #expect(bad.status == 2 && bad.errorOutput.contains("is not a host name"))
        let twice = try hosts("node1 concise\nroot@node1 friendly\n")
        let duplicate = try Deploy.runScript(Self.script, [twice, config, "down"], deadline: .seconds(20))
        #expect(duplicate.status == 2 && duplicate.errorOutput.contains("twice"))

        // up checks the hosts file against the config (and its key files) before it reaches any host.
        let keys = folder.appendingPathComponent("keys").path
        let made = try MopeProcess.run(["keygen", "--cluster", keys], deadline: .seconds(30))
        try #require(made.status == 0, "\(made.errorOutput)")
        let stranger = try hosts("node1 concise wise\n")
        let notInConfig = try Deploy.runScript(
            Self.script, [stranger, config, "up", "--keys", keys, "--local-mope", try MopeProcess.binary().path],
            deadline: .seconds(20)
        )
        #expect(notInConfig.status == 2 && notInConfig.errorOutput.contains("'wise', not an expert"),
                "\(notInConfig.errorOutput)")
        let noKeys = try Deploy.runScript(Self.script, [good, config, "up"], environment: ["MOPE_KEYS": ""],
                                          deadline: .seconds(20))
        #expect(noKeys.status == 2 && noKeys.errorOutput.contains("needs --keys"))
    }

    @Test("up, status and down over ssh on two namespace hosts: placement, keys as files, one answer, nothing left")
    func liveCluster() throws {
        // test-netns.sh fails (exit 1, naming the package) when sshd, ssh or ip netns is missing.
        let run = try Deploy.runScript(Deploy.path("ssh/test-netns.sh"), [], deadline: .seconds(240))
        let transcript = run.output + run.errorOutput
        #expect(run.status == 0, "\(transcript)")
        #expect(run.output.contains("PASSED"), "\(transcript)")
        let passed = run.output.split(separator: "\n").filter { $0.hasPrefix("  ok: ") }
        for check in ["the failed up exited 1", "and left no mope process on the hosts", "the coordinator runs on host 1", "the HTTP front runs on host 1", "run on host 2", "mode 700", "no key text on any command line",
                      "answered over tcp", "not on the allow-list gets no answer", "GET /health on host 1's front is 200",
                      "POST /v1/completions is 200", "status exited 0",
                      "no mope process is left", "stale pid file named was left alone"] {
            #expect(passed.contains { $0.contains(check) }, "missing check: \(check)\n\(transcript)")
        }
        #expect(!passed.isEmpty && !run.output.contains("  FAILED"), "\(transcript)")
    }
}
