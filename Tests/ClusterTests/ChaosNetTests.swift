import Foundation
import TestKit
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The short run of `Scripts/chaos-net.sh`: every kind of fault once against a cluster on network namespaces.
@Suite(.serialized)
struct ChaosNetTests {
    static let isRoot = getuid() == 0

    @Test(
        "each kind of process, network and hostile-peer fault once, against a cluster on network namespaces: no answer hung or wrong",
        .enabled(if: isRoot, "needs root to create network namespaces (run the tests as root, as CI does)"),
        .timeLimit(.minutes(4))
    )
    func shortFaultRun() throws {
        let script = BuiltProduct.packageRoot.appendingPathComponent("Scripts/chaos-net.sh").path
        let run = try ChildProcess.run(
            "/bin/bash", [script, "--short", "--binary", try mopeBinary(), "--seed", "3"], deadline: .seconds(170)
        )
        let output = run.output + run.errorOutput
        // As root the run must happen: a missing tool is a setup error, not a reason to skip.
        #expect(!output.contains("SKIPPED"), "chaos-net.sh skipped as root:\n\(output)")
        #expect(run.status == 0, "chaos-net.sh failed (exit \(run.status)):\n\(output)")
        #expect(output.contains("PASSED: no hang, no wrong answer"), "\(output)")

        // Every kind of fault was injected once.
        for kind in [
            "kill -9 a worker", "SIGSTOP/SIGCONT a worker", "SIGTERM a worker (drain, restart)",
            "kill -9 the coordinator, restart", "kill a client mid-answer", "packet loss", "bandwidth limit (tc tbf)",
            "latency (", "partition (link down/up)", "hostile peer",
        ] {
            #expect(output.contains("| \(kind)"), "no '\(kind)' fault in the report:\n\(output)")
        }
        // The answers: "| total | exact | degraded | refused | hung | wrong | clients killed |".
        let row = output.split(separator: "\n").first { line in
            line.hasPrefix("| ") && line.split(separator: "|").count == 7
                && line.split(separator: "|").allSatisfy { Int($0.trimmingCharacters(in: .whitespaces)) != nil }
        }
        let counts = try #require(row, "no answers row in the report:\n\(output)").split(separator: "|").map {
            Int($0.trimmingCharacters(in: .whitespaces))!
        }
        #expect(counts[0] > 20, "too few answers for the faults to meet: \(counts)")
        #expect(counts[1] > 0, "no exact answer: \(counts)")
        #expect(counts[4] == 0 && counts[5] == 0, "hung or wrong answers: \(counts)")
        // Every hostile probe ran and was refused.
        for probe in [
            "no-keys-client", "no-keys-worker", "unknown-key-client", "worker-key-as-client", "client-key-as-worker",
            "unknown-key-as-worker", "garbage-with-client-key",
        ] {
            let line = output.split(separator: "\n").first { $0.hasPrefix("| \(probe) |") }
            #expect(line?.contains("| pass (") == true, "probe \(probe): \(line.map(String.init) ?? "missing")")
        }
        // Nothing is left behind: no namespace of this run remains.
        let namespaces = try ChildProcess.run("/bin/sh", ["-c", "ip netns list"], deadline: .seconds(10)).output
        #expect(!namespaces.contains("mope-x"), "namespaces left behind:\n\(namespaces)")
    }
}
