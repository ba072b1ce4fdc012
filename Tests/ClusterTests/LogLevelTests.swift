import Foundation
import TestKit
import Testing

/// `--log-level` on the long-running commands, through real processes.
@Suite(.serialized)
struct LogLevelTests {
    /// The log of the worker serving `expert` in `cluster`.
    static func workerLog(_ cluster: TestCluster, _ expert: String) -> String {
        let path = cluster.directory.appendingPathComponent("worker-\(expert).log").path
        return (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
    }

    static func coordinatorLog(_ cluster: TestCluster) -> String {
        (try? String(contentsOfFile: cluster.coordinatorLog, encoding: .utf8)) ?? ""
    }

    /// Waits until the coordinator's log contains `text` (it writes a session's line just after its answer).
    static func waitForCoordinatorLine(_ cluster: TestCluster, _ text: String) -> Bool {
        let deadline = ContinuousClock.now.advanced(by: .seconds(30))
        while ContinuousClock.now < deadline {
            if coordinatorLog(cluster).contains(text) { return true }
            usleep(20_000)
        }
        return false
    }

    @Test("--log-level debug logs a line per request, in the LEVEL [label] text shape; warn logs none")
    func debugShowsRequestsWarnDoesNot() throws {
        let debug = try TestCluster(experts: [TinyExperts.concise])
        try debug.start(logLevel: "debug")
        _ = try debug.generate("Tell me about cats.", preference: "concise", maxTokens: 4)
        // The worker logs the session's opening before it answers the first step.
        let debugWorker = Self.workerLog(debug, "concise")
        #expect(debugWorker.contains("DEBUG [worker concise] opened session "), "\(debug.logs())")
        #expect(debugWorker.contains("INFO [worker concise] registered with the coordinator"))
        #expect(Self.waitForCoordinatorLine(debug, "INFO [coordinator] session "), "\(debug.logs())")
        debug.group.killAll()

        let warn = try TestCluster(experts: [TinyExperts.concise])
        try warn.start(logLevel: "warn")
        _ = try warn.generate("Tell me about cats.", preference: "concise", maxTokens: 4)
        warn.group.killAll()
        let warnWorker = Self.workerLog(warn, "concise")
        #expect(!warnWorker.contains("opened session"), "\(warn.logs())")
        #expect(!warnWorker.contains("INFO "))
        #expect(!Self.coordinatorLog(warn).contains(" done: "), "\(warn.logs())")
    }

    @Test("an unknown --log-level is a usage error")
    func unknownLevelIsUsageError() throws {
        let run = try MopeProcess.run(["worker", "--model", "x.gguf", "--expert", "a", "--log-level", "loud"])
        #expect(run.status == 2, "stderr: \(run.errorOutput)")
        #expect(run.errorOutput.contains("log-level"))
    }
}
