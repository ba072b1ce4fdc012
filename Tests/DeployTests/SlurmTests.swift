import Foundation
import TestKit
import Testing

/// The Slurm target (`Deploy/slurm/`): the job script's usage and placement, and the whole job on a one-host
/// Slurm cluster brought up by `Deploy/slurm/test-local.sh` (munged, slurmctld, slurmd on this machine).
@Suite(.serialized)
struct SlurmTests {
    static let sbatch = Deploy.path("slurm/mope.sbatch")

    @Test("mope.sbatch --help exits 0; a bad option, a missing config or a run outside a job exit 2")
    func usage() throws {
        let help = try Deploy.runScript(Self.sbatch, ["--help"], deadline: .seconds(20))
        #expect(help.status == 0)
        #expect(help.output.contains("--keys DIR"))
        let bad = try Deploy.runScript(Self.sbatch, ["--bogus"], deadline: .seconds(20))
        #expect(bad.status == 2 && bad.errorOutput.contains("unknown option --bogus"))
        let noConfig = try Deploy.runScript(Self.sbatch, [], environment: ["MOPE_CONFIG": ""], deadline: .seconds(20))
        #expect(noConfig.status == 2 && noConfig.errorOutput.contains("no cluster config"))
        let outside = try Deploy.runScript(
            Self.sbatch, ["--config", Fixtures.configs.appendingPathComponent("tiny-test.json").path],
            environment: ["SLURM_JOB_ID": ""], deadline: .seconds(20)
        )
        #expect(outside.status == 2 && outside.errorOutput.contains("not inside a Slurm job"))
        let script = try Deploy.runScript(Deploy.path("slurm/test-local.sh"), ["--bogus"], deadline: .seconds(20))
        #expect(script.status == 2)
        let scriptHelp = try Deploy.runScript(Deploy.path("slurm/test-local.sh"), ["--help"], deadline: .seconds(20))
        #expect(scriptHelp.status == 0 && scriptHelp.output.contains("--real-model"))
    }

    @Test("replica r of every expert goes to node r mod N")
    func placement() throws {
        let folder = try Deploy.temporaryDirectory("slurm-plan")
        defer { try? FileManager.default.removeItem(at: folder) }
        let config = folder.appendingPathComponent("cluster.json")
        try Data("""
            {"coordinator": "tcp://127.0.0.1:5555", "experts": [
              {"name": "a", "model": "a.gguf", "systemPrompt": "", "replicas": 3},
              {"name": "b", "model": "b.gguf", "systemPrompt": "", "replicas": 1},
              {"name": "c", "model": "c.gguf", "systemPrompt": "", "replicas": 2}]}
            """.utf8).write(to: config)
        let run = try Deploy.runScript(Self.sbatch, ["--plan", "--nodes", "n1 n2", "--config", config.path],
                                       deadline: .seconds(20))
        #expect(run.status == 0, "\(run.errorOutput)")
        #expect(run.output.split(separator: "\n").map(String.init) == [
            "a 0 n1 a-1", "a 1 n2 a-2", "a 2 n1 a-3", "b 0 n1 b-1", "c 0 n1 c-1", "c 1 n2 c-2",
        ])
    }

    @Test("a one-host Slurm cluster runs the job: ready, answers by mope generate and HTTP, scancel leaves nothing")
    func liveJob() throws {
        // test-local.sh fails (exit 1, naming the package) when slurm-wlm or munge is missing.
        let run = try Deploy.runScript(Deploy.path("slurm/test-local.sh"), [], deadline: .seconds(240))
        let transcript = run.output + run.errorOutput
        #expect(run.status == 0, "\(transcript)")
        #expect(run.output.contains("PASSED"), "\(transcript)")
        #expect(!run.output.contains("FAILED"), "\(transcript)")
        let passed = run.output.split(separator: "\n").filter { $0.hasPrefix("  ok: ") }
        for check in ["worker job steps, each on its node", "mope generate answered", "GET /health is 200",
                      "POST /v1/completions is 200", "trapped SIGTERM", "no mope process of the job is left",
                      "ended by itself within 60 s", "with exit code 1", "saying the cluster was not ready",
                      "no mope process of that job is left"] {
            #expect(passed.contains { $0.contains(check) }, "missing check: \(check)\n\(transcript)")
        }
    }

    @Test("two Slurm nodes in network namespaces: replicas spread, a node cut off leaves every expert and the job")
    func twoNodesAndANodeLoss() throws {
        // test-local.sh --nodes 2: each node a network namespace with its own slurmd; it fails (exit 1, naming
        // the package) when slurm-wlm, munge or iproute2 is missing.
        let run = try Deploy.runScript(Deploy.path("slurm/test-local.sh"), ["--nodes", "2"], deadline: .seconds(240))
        let transcript = run.output + run.errorOutput
        #expect(run.status == 0, "\(transcript)")
        #expect(run.output.contains("PASSED"), "\(transcript)")
        let passed = run.output.split(separator: "\n").filter { $0.hasPrefix("  ok: ") }
        for check in ["6 worker job steps, each on its node", "mope-node1 (10.215.0.11) runs 3 worker processes",
                      "mope-node2 (10.215.0.12) runs 3 worker processes", "dropped mope-node2's workers",
                      "with mope-node2 gone, mope generate answered", "with no expert lost", "the same text as before",
                      "Slurm has mope-node2 down", "the job is still running without it", "no mope process of the job"] {
            #expect(passed.contains { $0.contains(check) }, "missing check: \(check)\n\(transcript)")
        }
    }
}
