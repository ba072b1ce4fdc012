import Foundation
import ProcessSupport
import TestKit
import Testing

/// `mope status` and the readiness of `mope cluster`, against real tiny clusters.
extension ClusterTests {
    @Test("mope status names the missing expert and exits 1, then exits 0 once every replica is live; --json parses")
    func statusCommand() throws {
        let cluster = try TestCluster(experts: [TinyExperts.concise], extraExperts: [TinyExperts.friendly])
        try cluster.start()
        let missing = try MopeProcess.run(["status", "--coordinator", cluster.clientEndpoint], deadline: .seconds(60))
        #expect(missing.status == 1, "\(missing.errorOutput)")
        #expect(missing.errorOutput.contains("friendly (0 of 1 live)"), "\(missing.errorOutput)")
        #expect(missing.output.contains("not ready"), "\(missing.output)")
        #expect(missing.output.contains("concise"), "\(missing.output)")

        let json = try MopeProcess.run(["status", "--coordinator", cluster.clientEndpoint, "--json"], deadline: .seconds(60))
        #expect(json.status == 1)
        let object = try #require(
            try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [String: Any], "\(json.output)"
        )
        #expect(object["ready"] as? Bool == false)
        #expect(object["draining"] as? Bool == false)
        #expect((object["sessions"] as? [String: Int]) == ["running": 0, "queued": 0, "oldestQueuedMs": 0])
        let experts = try #require(object["experts"] as? [[String: Any]])
        #expect(experts.map { $0["name"] as? String } == ["concise", "friendly"])
        #expect(experts.map { $0["live"] as? Int } == [1, 0])
        let workers = try #require(experts.first?["workers"] as? [[String: Any]])
        #expect(workers.map { $0["id"] as? String } == ["concise"])
        #expect(workers.first?["capacity"] as? Int == 32)
        let absent = try #require(object["missing"] as? [[String: Any]])
        #expect(absent.count == 1)
        #expect(absent.first?["expert"] as? String == "friendly")
        #expect(absent.first?["wanted"] as? Int == 1)

        // --wait gives up when the time runs out, with the last answer.
        let waited = try MopeProcess.run(
            ["status", "--coordinator", cluster.clientEndpoint, "--wait", "1"], deadline: .seconds(60)
        )
        #expect(waited.status == 1)
        #expect(waited.errorOutput.contains("friendly"))

        // The missing expert starts: --wait returns as soon as it is live.
        try cluster.group.spawn(
            cluster.mope,
            ["worker", "--config", cluster.configPath, "--expert", "friendly", "--threads", "1",
             "--coordinator", cluster.endpoint],
            log: cluster.directory.appendingPathComponent("worker-friendly.log").path
        )
        let ready = try MopeProcess.run(
            ["status", "--coordinator", cluster.clientEndpoint, "--wait", "90", "--json"], deadline: .seconds(120)
        )
        #expect(ready.status == 0, "\(ready.errorOutput)")
        let readyObject = try JSONSerialization.jsonObject(with: Data(ready.output.utf8)) as? [String: Any]
        #expect(readyObject?["ready"] as? Bool == true)
        #expect((readyObject?["missing"] as? [Any])?.isEmpty == true)
    }

    @Test("mope status without a coordinator fails naming the address; a bad option is a usage error")
    func statusWithoutCoordinator() throws {
        let endpoint = "ipc:///tmp/mope-no-coordinator-\(getpid()).sock"
        let run = try MopeProcess.run(["status", "--coordinator", endpoint, "--timeout", "0.5"], deadline: .seconds(60))
        #expect(run.status == 1)
        #expect(run.errorOutput.contains(endpoint), "\(run.errorOutput)")
        let waited = try MopeProcess.run(
            ["status", "--coordinator", endpoint, "--timeout", "0.2", "--wait", "0.5"], deadline: .seconds(60)
        )
        #expect(waited.status == 1)
        #expect(waited.errorOutput.contains(endpoint), "\(waited.errorOutput)")
        for bad in [["--wait", "-1"], ["--timeout", "0"], ["--colour"]] {
            let usage = try MopeProcess.run(["status", "--coordinator", endpoint] + bad, deadline: .seconds(60))
            #expect(usage.status == 2, "\(bad)")
        }
    }

    @Test("mope cluster fails at once, naming the worker and its exit status, when a worker exits before ready")
    func launcherFailsFastOnWorkerExit() throws {
        // The second expert's model is not a GGUF file: its worker exits at once; the coordinator (which reads the
        // first expert's model) starts fine.
        let broken = FileManager.default.temporaryDirectory.appendingPathComponent("mope-not-a-model-\(getpid()).gguf")
        try Data("not a model".utf8).write(to: broken)
        defer { try? FileManager.default.removeItem(at: broken) }
        var friendly = TinyExperts.friendly
        friendly.model = broken.path
        let cluster = try TestCluster(experts: [TinyExperts.concise, friendly])
        let launcher = try cluster.group.spawn(
            cluster.mope, ["cluster", "--config", cluster.configPath, "--threads", "1", "--stop-grace", "5"],
            log: cluster.launcherLog
        )
        // Well within the ready timeout (300 s): the launcher does not wait for it.
        let status = cluster.group.wait(launcher, timeout: .seconds(120))
        #expect(status == .exited(1))
        let text = (try? String(contentsOfFile: cluster.launcherLog, encoding: .utf8)) ?? ""
        #expect(text.contains("error: worker friendly exited (exit status 1) before the cluster was ready"), "\(text)")
        #expect(!text.contains("cluster ready"))
        let children = text.split(separator: "\n").compactMap { line -> pid_t? in
            guard let range = line.range(of: " pid ") else { return nil }
            return pid_t(line[range.upperBound...])
        }
        #expect(children.count == 3)
        for child in children {
            #expect(kill(child, 0) != 0, "child \(child) still running")
        }
    }
}
