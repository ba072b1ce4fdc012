import Foundation
import ProcessSupport
import TestKit
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The container target (Deploy/container/): build.sh's usage and checks, the build context it writes against the
/// Containerfile, and, where podman and a mope binary with the static Swift runtime are at hand, the image built
/// and a whole cluster run in a container (its answer asked from outside).
@Suite(.serialized)
struct ContainerTests {
    static let script = Deploy.path("container/build.sh")

    @Test("build.sh answers --help; usage errors exit 2; a binary that loads the Swift runtime from shared libraries is refused")
    func buildScriptUsage() throws {
        let help = try Deploy.runScript(Self.script, ["--help"], deadline: .seconds(30))
        #expect(help.status == 0 && help.output.contains("Deploy/container/build.sh"), "\(help.output)")
        for arguments in [["--bogus"], ["--engine", "docker"], ["--tag"]] {
            let run = try Deploy.runScript(Self.script, arguments, deadline: .seconds(30))
            #expect(run.status == 2, "\(arguments): \(run.status) \(run.errorOutput)")
        }
        // The tests' own mope is a debug build against the shared Swift runtime: not for an image.
        let shared = try Deploy.runScript(Self.script, ["--binary", try MopeProcess.binary().path,
                                                        "--context-only", "/nonexistent/never-written"],
                                          deadline: .seconds(30))
        #expect(shared.status == 1 && shared.errorOutput.contains("--static-swift-stdlib"), "\(shared.status) \(shared.output) \(shared.errorOutput)")
        #expect(!FileManager.default.fileExists(atPath: "/nonexistent/never-written"))
    }

    @Test("the build context build.sh writes has every file the Containerfile copies; the image runs mope as a user that is not root")
    func containerfileMatchesContext() throws {
        let work = try Deploy.temporaryDirectory("context")
        defer { try? FileManager.default.removeItem(at: work) }
        let context = work.appendingPathComponent("context")
        // Any executable without the shared Swift runtime stands in for the static binary here.
        let run = try Deploy.runScript(Self.script, ["--binary", "/bin/true", "--context-only", context.path],
                                       deadline: .seconds(30))
        #expect(run.status == 0, "\(run.errorOutput)")
        let text = try String(contentsOf: context.appendingPathComponent("Containerfile"), encoding: .utf8)
        let lines = text.split(separator: "\n").map(String.init).filter { !$0.hasPrefix("#") && !$0.isEmpty }
        var copied: [String: String] = [:]
        for line in lines where line.hasPrefix("COPY ") || line.hasPrefix("ADD ") {
            let words = line.split(separator: " ").dropFirst().filter { !$0.hasPrefix("--") }.map(String.init)
            try #require(words.count == 2, "\(line)")
            #expect(FileManager.default.fileExists(atPath: context.appendingPathComponent(words[0]).path),
                    "the Containerfile copies \(words[0]), which the context lacks")
            copied[words[1]] = words[0]
        }
        #expect(copied == ["/usr/local/bin/mope": "mope"])
        let entrypoint = lines.first { $0.hasPrefix("ENTRYPOINT ") }
        #expect(entrypoint == #"ENTRYPOINT ["/usr/local/bin/mope"]"#)
        let user = lines.first { $0.hasPrefix("USER ") }.map { String($0.dropFirst(5)) } ?? ""
        let ids = user.split(separator: ":").compactMap { Int($0) }
        #expect(ids.count == 2 && ids.allSatisfy { $0 > 0 }, "USER \(user): numeric and not root")
        // The base the Containerfile defaults to is the one build.sh makes.
        let script = try String(contentsOfFile: Self.script, encoding: .utf8)
        let base = lines.first { $0.hasPrefix("ARG BASE=") }.map { String($0.dropFirst("ARG BASE=".count)) }
        #expect(base != nil && script.contains("base=\(base ?? "?")"), "ARG BASE=\(base ?? "none")")
        #expect(lines.contains("FROM ${BASE}"))
        // The Kubernetes manifests run the image as the same user.
        let coordinator = try String(contentsOf: KubernetesTests.folder.appendingPathComponent("base/coordinator.yaml"),
                                     encoding: .utf8)
        #expect(coordinator.contains("runAsUser: \(ids.first ?? -1)") && coordinator.contains("runAsGroup: \(ids.last ?? -1)"))
    }

    @Test("the image builds, and a cluster started in a container (mope cluster) answers from outside and drains on podman stop",
          .enabled(if: ContainerImage.staticBinary != nil && Deploy.which("podman") != nil,
                   "needs podman and a mope binary with the static Swift runtime (MOPE_STATIC_BINARY, or .build/static/release/mope from build.sh)"))
    func imageRunsACluster() throws {
        let binary = try #require(ContainerImage.staticBinary)
        let podman = try #require(Deploy.which("podman"))
        let tag = "localhost/mope-test:\(getpid())"
        let build = try Deploy.runScript(Self.script, ["--binary", binary, "--tag", tag], deadline: .seconds(300))
        try #require(build.status == 0, "build.sh: \(build.output)\(build.errorOutput.suffix(3000))")
        defer { _ = try? ChildProcess.run(podman, ["rmi", "-f", tag], deadline: .seconds(60)) }

        // Plain `podman run` first; where the sandbox forbids what it does by default (raising rlimits,
        // crun on hybrid cgroups), runc with the limits this process has.
        let candidates: [[String]] = [[], ["--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]]
        var options: [String]?
        var failures: [String] = []
        for candidate in candidates {
            let run = try ChildProcess.run(podman, ["run", "--rm"] + candidate + ["--entrypoint", "/bin/sh", tag, "-c",
                                                  "id -u; command -v install; command -v grep; mope keygen"],
                                           deadline: .seconds(60))
            if run.status == 0 {
                options = candidate
                let words = run.output.split(separator: "\n")
                #expect(words.first == "10001", "the image runs as \(words.first ?? "?")")
                #expect(run.output.contains("/install") && run.output.contains("/grep") && run.output.contains("public-key: "),
                        "\(run.output)")
                break
            }
            failures.append("podman run \(candidate.joined(separator: " ")): \(run.errorOutput)")
        }
        let runOptions = try #require(options, "no way to run a container here:\n\(failures.joined(separator: "\n"))")
        if !runOptions.isEmpty { print("containers run here with: \(runOptions.joined(separator: " "))") }

        // A cluster of two tiny experts in one container on the host's network, its keys in a mounted folder.
        let work = try Deploy.temporaryDirectory("image")
        defer { try? FileManager.default.removeItem(at: work) }
        chmod(work.path, 0o777)
        let port = 20000 + Int(getpid() % 20000)
        let config: [String: Any] = [
            "coordinator": "tcp://127.0.0.1:\(port)", "heartbeatIntervalMs": 500, "stepDeadlineMs": 5000,
            "openDeadlineMs": 10000, "topK": 16, "maxNewTokens": 8,
            "experts": [
                ["name": "concise", "dimension": "concise", "systemPrompt": "Be brief.", "model": "/fixtures/tiny-a.gguf", "replicas": 1],
                ["name": "friendly", "dimension": "friendly", "systemPrompt": "Be kind.", "model": "/fixtures/tiny-b.gguf", "replicas": 1],
            ],
        ]
        let configPath = work.appendingPathComponent("cluster.json")
        try JSONSerialization.data(withJSONObject: config).write(to: configPath)
        chmod(configPath.path, 0o644)
        let name = "mope-test-cluster-\(getpid())"
        let start = try ChildProcess.run(podman, ["run", "-d", "--name", name, "--network", "host"] + runOptions + [
            "-v", "\(Fixtures.directory.path):/fixtures:ro", "-v", "\(configPath.path):/etc/mope/cluster.json:ro",
            "-v", "\(work.path):/work", tag, "cluster", "--config", "/etc/mope/cluster.json", "--keys", "/work/keys",
            "--threads", "1",
        ], deadline: .seconds(60))
        defer { _ = try? ChildProcess.run(podman, ["rm", "-f", "-t", "0", name], deadline: .seconds(60)) }
        try #require(start.status == 0, "\(start.errorOutput)")
        func logs() -> String { (try? ChildProcess.run(podman, ["logs", name], deadline: .seconds(30)))
            .map { $0.output + $0.errorOutput } ?? "" }

        let keys = work.appendingPathComponent("keys")
        let client = ["--coordinator", "tcp://127.0.0.1:\(port + 1)",
                      "--curve-server-key-file", keys.appendingPathComponent("coordinator.pub").path,
                      "--curve-secret-key-file", keys.appendingPathComponent("client.key").path]
        // The key folder appears once the launcher made it.
        let deadline = ContinuousClock.now.advanced(by: .seconds(60))
        while !FileManager.default.fileExists(atPath: keys.appendingPathComponent("client.key").path),
              ContinuousClock.now < deadline { usleep(100_000) }
        let status = try MopeProcess.run(["status", "--wait", "60"] + client, deadline: .seconds(90))
        #expect(status.status == 0, "\(status.output)\(status.errorOutput)\n\(logs())")
        let answer = try MopeProcess.run(["generate", "--preference", "concise, friendly"] + client + ["Hello"],
                                         deadline: .seconds(90))
        #expect(answer.status == 0 && (answer.output + answer.errorOutput).contains("8 tokens"), "\(answer.output)\(answer.errorOutput)")

        let stop = try ChildProcess.run(podman, ["stop", "-t", "30", name], deadline: .seconds(60))
        #expect(stop.status == 0, "\(stop.errorOutput)")
        let exit = try ChildProcess.run(podman, ["inspect", name, "--format", "{{.State.ExitCode}}"], deadline: .seconds(30))
        #expect(exit.output.trimmingCharacters(in: .whitespacesAndNewlines) == "0", "exit \(exit.output)\n\(logs())")
        #expect(logs().contains("drained"), "\(logs())")
    }
}

/// Where the image's binary comes from in the tests.
enum ContainerImage {
    /// `$MOPE_STATIC_BINARY`, else build.sh's own output (.build/static/release/mope), when it exists.
    static var staticBinary: String? {
        let candidates: [String?] = [ProcessInfo.processInfo.environment["MOPE_STATIC_BINARY"],
                          BuiltProduct.packageRoot.appendingPathComponent(".build/static/release/mope").path]
        return candidates.compactMap { $0 }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }
}
