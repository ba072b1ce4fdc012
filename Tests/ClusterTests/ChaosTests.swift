import ClusterCore
import Coordinator
import Decoding
import Foundation
import TestKit
import Testing
import Wire

#if canImport(Glibc)
import Glibc
#endif

/// Several faults at once under concurrent load: the short form of `Scripts/chaos.sh`.
@Suite(.serialized)
struct ChaosTests {
    static let prompts = ["Tell me about cats.", "Why is the sky blue?"]
    static let preference = "concise, friendly"

    @Test("with 8 answers in flight, a killed and a frozen worker leave every answer complete and right")
    func killAndFreezeUnderLoad() throws {
        var concise = TinyExperts.concise
        concise.replicas = 2
        var friendly = TinyExperts.friendly
        friendly.replicas = 2
        // Deadlines far above a debug forward pass on a busy machine: the faults, not the load, must be what
        // the cluster notices.
        let cluster = try TestCluster(
            experts: [concise, friendly], stepDeadlineMs: 6000, openDeadlineMs: 30000, heartbeatMs: 1500,
            maxNewTokens: 40
        )
        try cluster.start()
        var reference: [String] = []
        for prompt in Self.prompts {
            let done = try cluster.generate(prompt, preference: Self.preference).done
            try #require(done.lostExperts.isEmpty && done.failovers == 0, "the fault-free answer was not clean")
            reference.append(done.text)
        }

        let killed = try #require(cluster.workerPIDs["concise-1"])
        let frozen = try #require(cluster.workerPIDs["friendly-2"])
        let faults = FaultOnce {
            kill(killed, SIGSTOP)  // Frozen first, so it cannot finish anything before it dies.
            kill(killed, SIGKILL)
            kill(frozen, SIGSTOP)
        }
        let endpoint = cluster.clientEndpoint
        let results = concurrently(8) { index -> Result<Done, ClientError> in
            do throws(ClientError) {
                let client = try CoordinatorClient(endpoint: endpoint)
                let request = Generate(
                    request: 0, prompt: Self.prompts[index % Self.prompts.count], preference: Self.preference,
                    maxNewTokens: 0
                )
                return .success(try client.generate(request, timeout: .seconds(180)) { event in
                    if event.step >= 2 { faults.fire() }
                })
            } catch {
                return .failure(error)
            }
        }
        kill(frozen, SIGCONT)

        #expect(faults.fired)
        #expect(results.count == 8)
        var noticed = 0
        for (index, result) in results.enumerated() {
            guard case let .success(done) = result else {
                Issue.record("request \(index) failed: \(result)\n\(cluster.logs())")
                continue
            }
            noticed += Int(done.failovers) + done.lostExperts.count
            #expect(done.tokens > 0, "request \(index)")
            #expect(Set(done.lostExperts).isSubset(of: ["concise", "friendly"]), "request \(index)")
            if done.lostExperts.isEmpty {
                #expect(done.text == reference[index % Self.prompts.count], "request \(index)")
            }
        }
        // Sessions were open on the killed worker when it died: some answer moved or lost an expert.
        #expect(noticed > 0, "no answer saw the faults\n\(cluster.logs())")

        // Afterwards the surviving replicas serve the fault-free answer.
        let after = try cluster.generate(Self.prompts[0], preference: Self.preference).done
        #expect(after.lostExperts.isEmpty)
        #expect(after.text == reference[0])
    }

    @Test("a worker restarted under its old id takes over an answer whose other replica then fails")
    func restartedWorkerTakesOverAgain() throws {
        var concise = TinyExperts.concise
        concise.replicas = 2
        // A long heartbeat: the frozen friendly worker (the pacing below) must not be taken for dead.
        let cluster = try TestCluster(
            experts: [concise, TinyExperts.friendly], stepDeadlineMs: 40_000, openDeadlineMs: 40_000,
            heartbeatMs: 8000, maxNewTokens: 40
        )
        try cluster.start()
        let reference = try cluster.generate(Self.prompts[0], preference: Self.preference).done
        try #require(reference.lostExperts.isEmpty)
        // Equal replicas take turns from the earliest registered: the reference opened on concise-1, so the
        // answer below opens on concise-2 ("first"), and concise-1 is the replica it moves to ("second").
        let first = try #require(cluster.workerPIDs["concise-2"])
        let second = try #require(cluster.workerPIDs["concise-1"])
        let friendly = try #require(cluster.workerPIDs["friendly"])
        var restartError: (any Error)?
        // At step 2, with friendly frozen so that the answer waits: concise-2 dies, the answer moves to
        // concise-1, concise-2 comes back under its old id, then concise-1 freezes. The answer has one live
        // concise worker left: the restarted concise-2.
        let done = try cluster.generate(Self.prompts[0], preference: Self.preference, timeout: .seconds(300)) {
            event in
            guard event.step == 2 else { return }
            do {
                cluster.group.signal(friendly, SIGSTOP)
                cluster.group.signal(first, SIGSTOP)
                cluster.group.signal(first, SIGKILL)
                // The answer has moved: concise-2 is gone from the coordinator and concise-1 holds the session.
                try cluster.waitForStatus("concise-2 gone and its session on concise-1") { status in
                    let workers = status.workers
                    return !workers.contains { $0.id == "concise-2" }
                        && workers.contains { $0.id == "concise-1" && $0.sessions >= 1 }
                }
                try cluster.group.spawn(
                    cluster.mope,
                    ["worker", "--config", cluster.configPath, "--expert", "concise", "--id", "concise-2",
                     "--threads", "1", "--coordinator", cluster.endpoint, "--drain-grace", "2"],
                    log: cluster.directory.appendingPathComponent("worker-concise-2-again.log").path
                )
                try cluster.waitForRegistrations([("concise-2", 2)])
            } catch {
                restartError = error
            }
            cluster.group.signal(second, SIGSTOP)
            cluster.group.signal(friendly, SIGCONT)
        }.done
        if let restartError { Issue.record("restart: \(restartError)") }
        #expect(done.failovers >= 1)
        // The restarted "concise-2" registered afresh, so the session may replay to it again.
        #expect(done.lostExperts.isEmpty)
        #expect(done.text == reference.text)
    }
}

/// Runs its action once, from whichever thread calls `fire` first.
final class FaultOnce: @unchecked Sendable {
    // Invariant: `done` is read and written only while holding `lock`.
    private let lock = NSLock()
    private var done = false
    private let action: @Sendable () -> Void

    init(_ action: @escaping @Sendable () -> Void) { self.action = action }

    func fire() {
        lock.lock()
        defer { lock.unlock() }
        guard !done else { return }
        done = true
        action()
    }

    var fired: Bool {
        lock.lock()
        defer { lock.unlock() }
        return done
    }
}
