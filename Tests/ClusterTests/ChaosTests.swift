import ClusterCore
import Coordinator
import Decoding
import Foundation
import TestKit
import Testing
import Wire
import ZeroMQ

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

/// A peer that floods the coordinator with frames it cannot use: the coordinator's log stays bounded (a few lines per
/// peer and interval, then one summary line), and the coordinator goes on serving.
@Suite(.serialized)
struct FrameFloodTests {
    @Test("a ZeroMQ peer flooding both endpoints with garbage leaves a bounded log with a summary line per peer")
    func garbageFloodKeepsTheLogBounded() throws {
        let cluster = try TestCluster(
            experts: [TinyExperts.concise], stepDeadlineMs: 6000, openDeadlineMs: 30000, heartbeatMs: 1500,
            maxNewTokens: 12
        )
        try cluster.start()
        let prompt = ChaosTests.prompts[0]
        let reference = try cluster.generate(prompt, preference: "concise").done
        try #require(reference.lostExperts.isEmpty)

        // Bytes no decoder accepts (an unknown kind), a valid message of the wrong role, and a message of the
        // wrong shape (several frames).
        let garbage: [UInt8] = [0xFF, 0xFE, 0x00, 0x0A, 0x1B] + Array("junk".utf8)
        #expect(throws: WireError.self) { try WireCodec.decode(garbage) }
        let generate = WireCodec.encode(.generate(Generate(request: 1, prompt: "x", preference: "concise", maxNewTokens: 1)))
        // The identities are hostile too: a line break and a terminal escape.
        let clientIdentity = Array("\u{1b}[31mevil\npeer".utf8)
        let workerIdentity = Array("bogus\nworker".utf8)
        let clientName = #"\x1b[31mevil\x0apeer"#
        let workerName = #"bogus\x0aworker"#

        let context = try ZMQContext()
        defer { context.shutdown() }
        func dealer(_ identity: [UInt8], _ endpoint: String) throws -> ZMQSocket {
            let socket = try ZMQSocket(.dealer, context: context)
            try socket.set(.routingID, identity)
            try socket.set(.linger, .zero)
            try socket.connect(endpoint)
            return socket
        }
        let client = try dealer(clientIdentity, cluster.clientEndpoint)
        let worker = try dealer(workerIdentity, cluster.endpoint)
        defer {
            client.close()
            worker.close()
        }
        // The client's dealer never reads the coordinator's error replies: they pile up and are dropped too.
        let clientFrames = 3000, workerGarbage = 1500, workerGenerates = 1000, workerShapes = 500
        for _ in 0..<clientFrames { try client.send([garbage]) }
        for _ in 0..<workerGarbage { try worker.send([garbage]) }
        for _ in 0..<workerGenerates { try worker.send([generate]) }
        for _ in 0..<workerShapes { try worker.send([garbage, garbage]) }
        let sent = [clientName: clientFrames, workerName: workerGarbage + workerGenerates + workerShapes]

        // Every frame is either one of the few lines let through or counted in a summary line, which comes once
        // the peer's 10 s interval is over.
        func accounting() -> (logged: [String: Int], suppressed: [String: Int], lines: [String]) {
            let text = (try? String(contentsOfFile: cluster.coordinatorLog, encoding: .utf8)) ?? ""
            let lines = text.split(separator: "\n").map(String.init)
            var logged: [String: Int] = [:], suppressed: [String: Int] = [:]
            for name in sent.keys {
                for line in lines {
                    if let range = line.range(of: "peer \(name): "), line.hasSuffix("more malformed frames suppressed in the last 10 s") {
                        let count = line[range.upperBound...].prefix { $0.isNumber }
                        suppressed[name, default: 0] += Int(count) ?? 0
                    } else if line.hasSuffix("(peer \(name))") || line.hasSuffix("one frame) from \(name)") {
                        logged[name, default: 0] += 1
                    }
                }
            }
            return (logged, suppressed, lines)
        }
        let deadline = ContinuousClock.now.advanced(by: .seconds(60))
        var result = accounting()
        while ContinuousClock.now < deadline {
            result = accounting()
            if sent.keys.allSatisfy({ (result.logged[$0] ?? 0) + (result.suppressed[$0] ?? 0) >= sent[$0]! }) { break }
            usleep(250_000)
        }
        for (name, count) in sent {
            let logged = result.logged[name] ?? 0
            #expect(logged + (result.suppressed[name] ?? 0) == count, "peer \(name)\n\(cluster.logs())")
            #expect(logged > 0 && logged <= 30, "peer \(name): \(logged) lines let through")
            #expect((result.suppressed[name] ?? 0) > 0, "no summary line for peer \(name)\n\(cluster.logs())")
        }
        // 6000 bad frames in, a few dozen lines out; no raw line break or escape from a peer reached the log.
        #expect(result.lines.count < 120, "\(result.lines.count) log lines:\n\(cluster.logs())")
        let levels = ["ERROR [", "WARN [", "INFO [", "DEBUG ["]
        #expect(result.lines.allSatisfy { line in levels.contains { line.hasPrefix($0) } && !line.contains("\u{1b}") })

        // The coordinator survived and answers as before.
        let after = try cluster.generate(prompt, preference: "concise").done
        #expect(after.lostExperts.isEmpty)
        #expect(after.text == reference.text)
    }
}

extension FrameFloodTests {
    @Test("a coordinator flooding a worker with garbage leaves the worker's log bounded, with a summary line")
    func workerLogBoundedUnderGarbage() throws {
        // The test is the coordinator: a ROUTER on the cluster's endpoint that never welcomes the worker.
        let cluster = try TestCluster(experts: [TinyExperts.concise], heartbeatMs: 1500)
        let context = try ZMQContext()
        defer { context.shutdown() }
        let router = try ZMQSocket(.router, context: context)
        defer { router.close() }
        try router.set(.linger, .zero)
        try router.set(.routerMandatory, true)
        try router.set(.sendHighWaterMark, 100_000)
        try router.bind(cluster.endpoint)
        let log = cluster.directory.appendingPathComponent("worker-concise.log").path
        _ = try cluster.group.spawn(
            cluster.mope,
            ["worker", "--config", cluster.configPath, "--expert", "concise", "--id", "concise", "--threads", "1",
             "--coordinator", cluster.endpoint],
            log: log
        )
        // Its first hello names its routing identity.
        var identity: [UInt8]?
        let deadline = ContinuousClock.now.advanced(by: .seconds(90))
        while identity == nil, ContinuousClock.now < deadline {
            if let frames = try router.receiveMultipart(timeout: .seconds(1)), frames.count == 2,
                case .hello? = try? WireCodec.decode(frames[1]) {
                identity = frames[0]
            }
        }
        let worker = try #require(identity, "the worker sent no hello:\n\(cluster.logs())")

        let garbage: [UInt8] = [0xFF, 0xFE, 0x00, 0x0A, 0x1B] + Array("junk".utf8)
        let unexpected = WireCodec.encode(.generate(Generate(request: 1, prompt: "x", preference: "concise", maxNewTokens: 1)))
        let counts = (garbage: 2000, unexpected: 500, shapes: 500)
        for _ in 0..<counts.garbage { try router.send([worker, garbage]) }
        for _ in 0..<counts.unexpected { try router.send([worker, unexpected]) }
        for _ in 0..<counts.shapes { try router.send([worker, garbage, garbage]) }
        let sent = counts.garbage + counts.unexpected + counts.shapes

        func accounting() -> (logged: Int, suppressed: Int, lines: [String]) {
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            let lines = text.split(separator: "\n").map(String.init)
            var logged = 0, suppressed = 0
            for line in lines {
                if let range = line.range(of: "peer coordinator@concise: "),
                    line.hasSuffix("more malformed frames suppressed in the last 10 s") {
                    suppressed += Int(line[range.upperBound...].prefix { $0.isNumber }) ?? 0
                } else if line.contains("dropped a malformed frame of") || line.contains("ignored an unexpected generate")
                            || line.contains("dropped a message of 2 frames") {
                    logged += 1
                }
            }
            return (logged, suppressed, lines)
        }
        var result = accounting()
        let end = ContinuousClock.now.advanced(by: .seconds(60))
        while result.logged + result.suppressed < sent, ContinuousClock.now < end {
            usleep(250_000)
            result = accounting()
        }
        #expect(result.logged + result.suppressed == sent, "\(result.logged) + \(result.suppressed) ≠ \(sent)\n\(cluster.logs())")
        #expect(result.logged > 0 && result.logged <= 30, "\(result.logged) lines let through")
        #expect(result.suppressed > 0, "no summary line:\n\(cluster.logs())")
        #expect(result.lines.count < 80, "\(result.lines.count) log lines for \(sent) bad frames")
        // The worker lives on: it still asks to register.
        var helloAfter = false
        let again = ContinuousClock.now.advanced(by: .seconds(10))
        while !helloAfter, ContinuousClock.now < again {
            if let frames = try router.receiveMultipart(timeout: .seconds(1)), frames.count == 2,
                case .hello? = try? WireCodec.decode(frames[1]) {
                helloAfter = true
            }
        }
        #expect(helloAfter, "the worker stopped asking to register:\n\(cluster.logs())")
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
