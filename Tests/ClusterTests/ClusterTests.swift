import ClusterCore
import Coordinator
import Decoding
import Expert
import Foundation
import Inference
import Preference
import ProcessSupport
import TestKit
import Testing
import Wire
import WorkerCore
import ZeroMQ

#if canImport(Glibc)
import Glibc
#endif

/// End-to-end tests: a real coordinator and real workers (`mope` processes) on an ipc socket, tiny models.
@Suite(.serialized)
struct ClusterTests {
    static let prompt = "Tell me about cats."

    @Test("with the weight on one expert, the cluster's greedy answer is that expert's own greedy answer")
    func oneHotEqualsExpert() throws {
        let cluster = try TestCluster(experts: [TinyExperts.concise, TinyExperts.friendly, TinyExperts.knowledgeable])
        try cluster.start()
        for expert in cluster.experts {
            let (done, events) = try cluster.generate(Self.prompt, preference: expert.name, maxTokens: 20)
            let reference = try greedyTokens(expert, prompt: Self.prompt, maxTokens: 20)
            #expect(events.map(\.token) == reference, "expert \(expert.name)")
            // `mope run` shows the same text; it also flushes an unfinished trailing UTF-8 character as U+FFFD,
            // which the cluster's answer leaves out.
            var local = try runLocally(expert, prompt: Self.prompt, maxTokens: 20, mope: cluster.mope)
            if local.count == done.text.count + 1, local.hasSuffix("\u{FFFD}") { local.removeLast() }
            #expect(done.text == local, "expert \(expert.name)")
            #expect(events.map(\.text).joined() == done.text)
            #expect(done.lostExperts.isEmpty)
        }
    }

    @Test("each traced token is the argmax of the merge of the traced top-k lists with the traced weights")
    func tracedMergeMatchesInProcessMerge() throws {
        let cluster = try TestCluster(experts: [TinyExperts.concise, TinyExperts.friendly], maxNewTokens: 16)
        try cluster.start()
        let (done, events) = try cluster.generate(Self.prompt, preference: "concise:3, friendly", trace: true)
        #expect(events.count == Int(done.tokens))
        try #require(!events.isEmpty)
        var merger = Merger(vocabSize: 448)
        for event in events {
            try #require(event.experts.map(\.expert) == ["concise", "friendly"])
            #expect(abs(event.experts[0].weight - 0.75) < 1e-6)
            #expect(abs(event.experts[1].weight - 0.25) < 1e-6)
            let candidates = event.experts.map { expert in
                let listed = expert.logProbs.reduce(Float(0)) { $0 + exp($1) }
                let tail = max(0, 1 - listed)
                return Optional(TopKCandidates(ids: expert.ids, logProbs: expert.logProbs, tailMass: tail))
            }
            let merged = merger.merge(candidates, weights: event.experts.map(\.weight), mode: .probability)
            #expect(merged.ids.first == event.token, "step \(event.step)")
        }
    }

    @Test("a worker killed mid-answer fails over to its replica and the answer is unchanged")
    func killedWorkerFailsOverToReplica() throws {
        var concise = TinyExperts.concise
        concise.replicas = 2
        let cluster = try TestCluster(experts: [concise, TinyExperts.friendly], maxNewTokens: 40)
        try cluster.start()
        let clean = try cluster.generate(Self.prompt, preference: "concise, friendly").done
        // Equal replicas take turns from the earliest registered: the clean answer opened on concise-1, so this
        // one opens on concise-2.
        let victim = try #require(cluster.workerPIDs["concise-2"])
        let faulty = try cluster.generate(Self.prompt, preference: "concise, friendly") { event in
            if event.step == 2 {
                cluster.group.signal(victim, SIGSTOP)  // Freeze it so the answer cannot finish without it …
                cluster.group.signal(victim, SIGKILL)  // … then kill it.
            }
        }.done
        #expect(faulty.text == clean.text)
        #expect(faulty.tokens == clean.tokens)
        #expect(faulty.failovers >= 1)
        #expect(faulty.lostExperts.isEmpty)
    }

    @Test("experts sharing a worker process answer as in processes of their own; killed, it fails over to the other")
    func sharedWorkerProcess() throws {
        // Three experts of one model file, told apart by their system prompts.
        let experts = [TinyExperts.concise, TinyExperts.friendly, TinyExperts.knowledgeable].map { expert in
            var expert = expert
            expert.model = Fixtures.path("tiny-a.gguf")
            return expert
        }
        let preferences = ["concise, friendly:2, knowledgeable"] + experts.map(\.name)
        var reference: [String: String] = [:]
        do {
            let separate = try TestCluster(experts: experts, maxNewTokens: 20)
            try separate.start()
            #expect(Set(separate.workerPIDs.values).count == 3)
            for preference in preferences {
                reference[preference] = try separate.generate(Self.prompt, preference: preference).done.text
            }
        }
        // Each expert's own answer differs from the others' (else this test could not tell them apart).
        #expect(Set(experts.map { reference[$0.name] }).count == 3)

        let replicated = experts.map { expert in
            var expert = expert
            expert.replicas = 2
            return expert
        }
        let shared = try TestCluster(experts: replicated, maxNewTokens: 20)
        try shared.start(shared: true)
        #expect(Set(shared.workerPIDs.values).count == 2)
        for preference in preferences {
            let done = try shared.generate(Self.prompt, preference: preference).done
            #expect(done.text == reference[preference], "\(preference)")
            #expect(done.lostExperts.isEmpty)
        }
        // Equal replicas take turns: the three single-expert answers used the -2 replicas, so this one opens on
        // the -1 replicas, all of them in the first process.
        let victim = try #require(shared.workerPIDs["concise-1"])
        #expect(shared.workerPIDs["friendly-1"] == victim && shared.workerPIDs["knowledgeable-1"] == victim)
        let preference = preferences[0]
        let faulty = try shared.generate(Self.prompt, preference: preference) { event in
            if event.step == 2 {
                shared.group.signal(victim, SIGSTOP)
                shared.group.signal(victim, SIGKILL)
            }
        }.done
        #expect(faulty.text == reference[preference])
        #expect(faulty.lostExperts.isEmpty)
        #expect(faulty.failovers >= 3)
    }

    @Test(
        "mope worker refuses expert lists it cannot serve in one process, naming the option",
        arguments: [
            (["--expert", "concise,friendly", "--model", "Tests/Fixtures/tiny-a.gguf"], "--expert"),
            (["--expert", "concise,friendly", "--config", "Configs/tiny-test.json"], "one model file"),
            (["--expert", "concise,,friendly", "--config", "Configs/tiny-test.json"], "--expert"),
            (["--expert", "concise,friendly", "--config", "Configs/tiny-test.json", "--model",
              "Tests/Fixtures/tiny-a.gguf", "--id", "only-one"], "--id"),
            (["--expert", "concise,friendly", "--config", "Configs/tiny-test.json", "--model",
              "Tests/Fixtures/tiny-a.gguf", "--system-prompt", "Be brief."], "--system-prompt"),
            (["--expert", "concise,friendly", "--config", "Configs/tiny-test.json", "--model",
              "Tests/Fixtures/tiny-a.gguf", "--bias", "b.json"], "--bias"),
        ]
    )
    func workerRefusesBadExpertLists(arguments: [String], mention: String) throws {
        let absolute = arguments.map { word in
            word.hasPrefix("Configs/") || word.hasPrefix("Tests/")
                ? Fixtures.packageRoot.appendingPathComponent(word).path : word
        }
        let run = try MopeProcess.run(["worker"] + absolute + ["--coordinator", "tcp://127.0.0.1:1"],
                                      deadline: .seconds(60))
        #expect(run.status == 2, "\(run.errorOutput)")
        #expect(run.errorOutput.contains(mention), "\(run.errorOutput)")
    }

    @Test("mope worker with an unreadable logit-bias file fails at start, naming the file")
    func workerRefusesBadBias() throws {
        let run = try MopeProcess.run(["worker", "--model", Fixtures.packageRoot.appendingPathComponent(
            "Tests/Fixtures/tiny-a.gguf").path, "--expert", "concise", "--bias", "/nonexistent/concise.bias.json",
            "--coordinator", "tcp://127.0.0.1:1"], deadline: .seconds(60))
        #expect(run.status == 1, "\(run.errorOutput)")
        #expect(run.errorOutput.contains("/nonexistent/concise.bias.json"), "\(run.errorOutput)")
    }

    @Test("a worker killed mid-answer without a replica: the answer completes degraded and names the lost expert")
    func killedWorkerWithoutReplicaDegrades() throws {
        let cluster = try TestCluster(experts: [TinyExperts.concise, TinyExperts.friendly], maxNewTokens: 40)
        try cluster.start()
        let victim = try #require(cluster.workerPIDs["friendly"])
        let done = try cluster.generate(Self.prompt, preference: "concise, friendly") { event in
            if event.step == 2 {
                cluster.group.signal(victim, SIGSTOP)
                cluster.group.signal(victim, SIGKILL)
            }
        }.done
        #expect(done.lostExperts == ["friendly"])
        #expect(done.tokens > 2)
        // The next request starts degraded at once, and says so.
        let next = try cluster.generate(Self.prompt, preference: "concise, friendly", maxTokens: 4).done
        #expect(next.lostExperts == ["friendly"])
    }

    @Test("a stopped worker is dropped at its deadline; resumed, it rejoins and later answers are right")
    func stoppedWorkerDegradesThenRejoins() throws {
        let cluster = try TestCluster(experts: [TinyExperts.concise, TinyExperts.friendly], maxNewTokens: 24)
        try cluster.start()
        let clean = try cluster.generate(Self.prompt, preference: "concise, friendly").done
        let victim = try #require(cluster.workerPIDs["friendly"])
        let stopped = try cluster.generate(Self.prompt, preference: "concise, friendly") { event in
            if event.step == 2 { cluster.group.signal(victim, SIGSTOP) }
        }.done
        #expect(stopped.lostExperts == ["friendly"])
        #expect(stopped.tokens > 2)

        cluster.group.signal(victim, SIGCONT)
        try cluster.waitForRegistrations([("friendly", 2)])
        // The resumed worker's stale replies must not leak into later answers.
        for _ in 0..<2 {
            let again = try cluster.generate(Self.prompt, preference: "concise, friendly").done
            #expect(again.text == clean.text)
            #expect(again.lostExperts.isEmpty)
        }
    }

    @Test("32 concurrent sessions through 3 workers each get the answer they get alone")
    func concurrentSessionsMatchSequential() throws {
        let cluster = try TestCluster(
            experts: [TinyExperts.concise, TinyExperts.friendly, TinyExperts.knowledgeable], stepDeadlineMs: 60000,
            openDeadlineMs: 120_000, heartbeatMs: 2000, maxNewTokens: 12
        )
        try cluster.start()
        let prompts = ["Tell me about cats.", "Why is the sky blue?", "Write a haiku.", "What is 2+2?"]
        let preference = "concise, friendly, knowledgeable"
        var alone: [String] = []
        for prompt in prompts { alone.append(try cluster.generate(prompt, preference: preference).done.text) }
        let endpoint = cluster.clientEndpoint
        let results = concurrently(32) { index -> Result<Done, ClientError> in
            do throws(ClientError) {
                let client = try CoordinatorClient(endpoint: endpoint)
                let request = Generate(request: 0, prompt: prompts[index % prompts.count], preference: preference,
                                       maxNewTokens: 0)
                return .success(try client.generate(request, timeout: .seconds(120)))
            } catch {
                return .failure(error)
            }
        }
        #expect(results.count == 32)
        for (index, result) in results.enumerated() {
            guard case let .success(done) = result else {
                Issue.record("session \(index): \(result)\n\(cluster.logs())")
                continue
            }
            #expect(done.text == alone[index % prompts.count], "session \(index)")
            #expect(done.lostExperts.isEmpty)
        }
    }

    @Test("requests the cluster cannot serve are refused at once with the reason")
    func refusals() throws {
        let cluster = try TestCluster(experts: [TinyExperts.concise], extraExperts: [TinyExperts.friendly])
        try cluster.start()
        let client = try cluster.client()
        let cases: [(String, ErrorCode)] = [("friendly", .unavailable), ("concize", .badRequest)]
        for (preference, code) in cases {
            let error = #expect(throws: ClientError.self) {
                _ = try client.generate(Generate(request: 0, prompt: "hi", preference: preference, maxNewTokens: 4))
            }
            #expect(error?.code == code, "preference \(preference)")
        }
        // The cluster still serves what it can.
        #expect(try client.generate(Generate(request: 0, prompt: "hi", preference: "concise", maxNewTokens: 4))
            .tokens > 0)
    }

    @Test("SIGTERM drains the coordinator: it exits 0 and refuses nothing it had accepted")
    func coordinatorDrainsOnSIGTERM() throws {
        let cluster = try TestCluster(experts: [TinyExperts.concise], maxNewTokens: 8)
        try cluster.start()
        let done = try cluster.generate(Self.prompt, preference: "concise") { event in
            if event.step == 1 { cluster.group.signal(cluster.coordinatorPID, SIGTERM) }
        }.done
        #expect(done.tokens >= 1)
        #expect(cluster.group.wait(cluster.coordinatorPID, timeout: .seconds(20)) == .exited(0))
    }

    @Test("mope cluster starts every process, reports ready, serves mope generate, and stops them all on SIGTERM")
    func launcherStartsAndStops() throws {
        let cluster = try TestCluster(experts: [TinyExperts.concise, TinyExperts.friendly], maxNewTokens: 6)
        let (launcher, children) = try startLauncher(cluster)
        #expect(children.count == 3)

        // Secure by default: CURVE keys in files, the children given their paths only.
        let keys = cluster.directory.appendingPathComponent("keys").path
        var secrets: [String] = []
        for name in ["coordinator", "worker", "client"] {
            let path = keys + "/\(name).key"
            var info = stat()
            #expect(stat(path, &info) == 0 && info.st_mode & 0o077 == 0, "\(path) is private")
            secrets.append(try String(contentsOfFile: path, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines))
            secrets.append(try String(contentsOfFile: keys + "/\(name).pub", encoding: .utf8)
                .trimmingCharacters(in: .whitespacesAndNewlines))
        }
        for child in children {
            let argv = try String(contentsOfFile: "/proc/\(child)/cmdline", encoding: .utf8)
            #expect(argv.contains("--curve-secret-key-file"), "child \(child) runs with CURVE")
            for key in secrets { #expect(!argv.contains(key), "child \(child)'s argv holds key material") }
        }

        let generated = cluster.directory.appendingPathComponent("generate.out").path
        let generate = try cluster.group.spawn(
            cluster.mope,
            ["generate", "--coordinator", cluster.clientEndpoint, "--preference", "concise", "--timeout", "60",
             "--curve-server-key-file", keys + "/coordinator.pub", "--curve-secret-key-file", keys + "/client.key",
             "hello"],
            log: generated
        )
        #expect(cluster.group.wait(generate, timeout: .seconds(90)) == .exited(0))
        #expect(((try? String(contentsOfFile: generated, encoding: .utf8)) ?? "").contains("finish: "))

        // The launcher announces what its own status polls found (readiness itself came from the status above).
        let announcement = "cluster ready: coordinator \(cluster.endpoint), clients \(cluster.clientEndpoint), 2 worker processes"
        let deadline = ContinuousClock.now.advanced(by: .seconds(30))
        var said = ""
        repeat {
            said = (try? String(contentsOfFile: cluster.launcherLog, encoding: .utf8)) ?? ""
            if said.contains(announcement) { break }
            usleep(50_000)
        } while ContinuousClock.now < deadline
        #expect(said.contains(announcement), "\(said)")
        // A client without keys, and one whose key is not on the allow-list, get nothing through.
        let refused = cluster.directory.appendingPathComponent("refused.out").path
        let plain = try cluster.group.spawn(
            cluster.mope,
            ["generate", "--coordinator", cluster.clientEndpoint, "--preference", "concise", "--timeout", "3", "hello"],
            log: refused
        )
        #expect(cluster.group.wait(plain, timeout: .seconds(30)) == .exited(1))
        let stranger = try cluster.group.spawn(
            cluster.mope,
            ["generate", "--coordinator", cluster.clientEndpoint, "--preference", "concise", "--timeout", "3",
             "--curve-server-key-file", keys + "/coordinator.pub", "hello"],
            log: refused
        )
        #expect(cluster.group.wait(stranger, timeout: .seconds(30)) == .exited(1))

        cluster.group.signal(launcher, SIGTERM)
        #expect(cluster.group.wait(launcher, timeout: .seconds(30)) == .exited(0))
        for child in children {
            #expect(kill(child, 0) != 0, "child \(child) still running")
        }
    }

    @Test("when mope cluster is killed with SIGKILL, its children see the launcher gone and exit on their own")
    func orphansExit() throws {
        let cluster = try TestCluster(experts: [TinyExperts.concise], maxNewTokens: 6)
        let (launcher, children) = try startLauncher(cluster)
        #expect(children.count == 2)
        // The launcher leads its own process group, which the harness's group kill does not reach.
        defer { for child in children { kill(child, SIGKILL) } }

        cluster.group.signal(launcher, SIGKILL)
        _ = cluster.group.wait(launcher, timeout: .seconds(10))
        // Re-parented children: gone, or zombies waiting for their new parent to reap them.
        func exited(_ pid: pid_t) -> Bool {
            guard kill(pid, 0) == 0 else { return true }
            let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
            guard let close = stat.lastIndex(of: ")") else { return true }
            return stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).hasPrefix("Z")
        }
        let deadline = ContinuousClock.now.advanced(by: .seconds(60))
        while ContinuousClock.now < deadline, !children.allSatisfy(exited) { usleep(100_000) }
        for child in children {
            #expect(exited(child), "child \(child) outlived its launcher")
        }
    }

    // MARK: Helpers

    /// Starts `mope cluster` on the test cluster's config and waits until the coordinator's status says ready;
    /// the launcher's pid and the pids of the children it reported.
    func startLauncher(_ cluster: TestCluster) throws -> (launcher: pid_t, children: [pid_t]) {
        let output = cluster.launcherLog
        let launcher = try cluster.group.spawn(
            cluster.mope,
            ["cluster", "--config", cluster.configPath, "--threads", "1", "--stop-grace", "5",
             "--keys", cluster.directory.appendingPathComponent("keys").path],
            log: output
        )
        // The launcher writes the cluster's keys before it starts a child; the harness asks for the status with the
        // client key it wrote.
        let keys = cluster.directory.appendingPathComponent("keys").path
        let deadline = ContinuousClock.now.advanced(by: .seconds(30))
        while !FileManager.default.fileExists(atPath: keys + "/client.key"), ContinuousClock.now < deadline {
            usleep(50_000)
        }
        cluster.clientKeys = CurveClientKeys(serverPublicKey: try CurveKeyFile.readPublic(keys + "/coordinator.pub"),
                                             keyPair: try CurveKeyFile.readSecret(keys + "/client.key"))
        try cluster.waitForReady(process: launcher)
        // Every child's pid is printed before the launcher starts asking for the status.
        let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
        let children = text.split(separator: "\n").compactMap { line -> pid_t? in
            guard let range = line.range(of: " pid ") else { return nil }
            return pid_t(line[range.upperBound...])
        }
        return (launcher, children)
    }

    /// The expert's own greedy token ids, computed in this process with the worker's prompt rendering.
    func greedyTokens(_ expert: TestExpert, prompt: String, maxTokens: Int) throws -> [UInt32] {
        let model = try LanguageModel(path: expert.model, threads: 1)
        let rendering = try WorkerPrompt(model: model, systemPrompt: expert.systemPrompt)
        let ids = try rendering.tokens(for: .chat([ChatTurn(role: "user", content: prompt)]))
        return try model.decode(prompt: ids.map { Int32(bitPattern: $0) }, maxTokens: maxTokens).tokens
    }

    /// The expert's own greedy answer from `mope run` with the same model and system prompt.
    func runLocally(_ expert: TestExpert, prompt: String, maxTokens: Int, mope: String) throws -> String {
        let run = try ChildProcess.run(mope, [
            "run", "--model", expert.model, "--system-prompt", expert.systemPrompt, "--prompt", prompt,
            "--max-tokens", "\(maxTokens)", "--threads", "1",
        ])
        try #require(run.status == 0, "\(run.errorOutput)")
        var text = run.output
        if text.hasSuffix("\n") { text.removeLast() }
        return text
    }
}
