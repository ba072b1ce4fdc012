import ClusterCore
import Coordinator
import Decoding
import Foundation
import ProcessSupport
import TestKit
import Testing
import Wire
import ZeroMQ

#if canImport(Glibc)
import Glibc
#endif

/// The `mope` binary's path.
func mopeBinary() throws -> String { try MopeProcess.binary().path }

/// A failure of the test harness itself.
struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A coordinator and its workers as real `mope` processes on an ipc endpoint, with short deadlines.
final class TestCluster {
    let directory: URL
    /// The coordinator's workers' endpoint.
    let endpoint: String
    /// The coordinator's clients' endpoint (derived from `endpoint`, as a config without "clientEndpoint" does).
    let clientEndpoint: String
    let configPath: String
    let experts: [TestExpert]
    let group = ProcessGroup()
    private(set) var coordinatorPID: pid_t = 0
    /// Worker pids by worker id ("concise", or "concise-1", "concise-2" for replicas).
    private(set) var workerPIDs: [String: pid_t] = [:]
    let mope: String

    /// Writes the config. `stepDeadlineMs` is short so that faults resolve quickly; the heartbeat interval is
    /// longer than a debug build's forward pass on a loaded machine (a worker cannot send while it computes).
    init(
        experts: [TestExpert], stepDeadlineMs: Int = 1500, openDeadlineMs: Int = 5000, heartbeatMs: Int = 500,
        maxNewTokens: Int = 24, topK: Int = 16, extraExperts: [TestExpert] = [], extraConfig: [String: Any] = [:]
    ) throws {
        mope = try mopeBinary()
        self.experts = experts
        let name = "mope-cluster-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        directory = FileManager.default.temporaryDirectory.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        endpoint = "ipc://" + directory.appendingPathComponent("coordinator.sock").path
        clientEndpoint = endpoint + ".clients"
        configPath = directory.appendingPathComponent("cluster.json").path
        let entries = (experts + extraExperts).map { expert -> [String: Any] in
            var entry: [String: Any] = [
                "name": expert.name, "dimension": expert.name, "systemPrompt": expert.systemPrompt,
                "model": expert.model, "replicas": expert.replicas,
            ]
            if let lora = expert.lora { entry["lora"] = lora }
            return entry
        }
        var config: [String: Any] = [
            "coordinator": endpoint, "heartbeatIntervalMs": heartbeatMs, "stepDeadlineMs": stepDeadlineMs,
            "openDeadlineMs": openDeadlineMs, "topK": topK, "maxNewTokens": maxNewTokens,
            "experts": entries,
        ]
        config.merge(extraConfig) { $1 }
        let data = try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys])
        try data.write(to: URL(fileURLWithPath: configPath))
    }

    deinit {
        group.killAll()
        try? FileManager.default.removeItem(at: directory)
    }

    var coordinatorLog: String { directory.appendingPathComponent("coordinator.log").path }
    /// Where a `mope cluster` started by a test writes.
    var launcherLog: String { directory.appendingPathComponent("launcher.log").path }

    /// Starts the coordinator and every worker of `experts`, and waits until each has registered. With `shared`,
    /// the experts of one model file share a worker process per replica (`mope cluster --shared-workers`'s plan).
    /// `logLevel` is passed to every process as `--log-level`. `coordinatorConfig` gives the coordinator a config
    /// of its own (the workers keep `configPath`'s).
    func start(shared: Bool = false, logLevel: String? = nil, coordinatorConfig: String? = nil) throws {
        let logArguments = logLevel.map { ["--log-level", $0] } ?? []
        coordinatorPID = try group.spawn(
            mope, ["coordinator", "--config", coordinatorConfig ?? configPath, "--drain-grace", "5"] + logArguments,
            log: coordinatorLog
        )
        // The config's `extraExperts` are not started.
        let plans = try ClusterConfig.load(contentsOf: configPath).workerProcesses(shared: shared).compactMap {
            plan -> WorkerProcessPlan? in
            let keep = plan.experts.indices.filter { i in experts.contains { $0.name == plan.experts[i] } }
            guard !keep.isEmpty else { return nil }
            return WorkerProcessPlan(
                model: plan.model, experts: keep.map { plan.experts[$0] }, ids: keep.map { plan.ids[$0] }
            )
        }
        for plan in plans {
            let ids = plan.ids.joined(separator: ",")
            let pid = try group.spawn(
                mope,
                ["worker", "--config", configPath, "--expert", plan.experts.joined(separator: ","), "--id", ids,
                 "--threads", "1", "--coordinator", endpoint, "--drain-grace", "2"] + logArguments,
                log: directory.appendingPathComponent("worker-\(plan.ids.joined(separator: "+")).log").path
            )
            for id in plan.ids { workerPIDs[id] = pid }
            // One at a time, in the plan's order: equally loaded replicas take turns from the earliest
            // registered, so the tests know which replica an idle cluster's first answer opens on.
            try waitForRegistrations(plan.ids.map { ($0, 1) })
        }
    }

    /// The coordinator's status answer (nil while it does not answer).
    func status(timeout: Duration = .seconds(2)) -> ClusterStatus? {
        try? statusClient?.status(timeout: timeout)
    }

    /// How many times each registered worker id was registered, from the coordinator's status answer.
    func registrations() -> [String: Int] {
        let workers = status()?.workers ?? []
        return Dictionary(workers.map { ($0.id, Int($0.registrations)) }, uniquingKeysWith: max)
    }

    /// Waits until each worker id has registered at least the given number of times.
    func waitForRegistrations(_ expected: [(id: String, times: Int)], timeout: Duration = .seconds(90)) throws {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        while ContinuousClock.now < deadline {
            let counts = registrations()
            if expected.allSatisfy({ (counts[$0.id] ?? 0) >= $0.times }) { return }
            if group.wait(coordinatorPID, timeout: .zero) != nil {
                throw HarnessError("the coordinator exited:\n\(logs())")
            }
            usleep(100_000)
        }
        throw HarnessError("workers did not register within \(timeout):\n\(logs())")
    }

    /// Waits until the coordinator's status says ready; fails early when `process` (the coordinator or a
    /// launcher) exits.
    func waitForReady(process: pid_t? = nil, timeout: Duration = .seconds(90)) throws {
        let watched = process ?? coordinatorPID
        let deadline = ContinuousClock.now.advanced(by: timeout)
        while ContinuousClock.now < deadline {
            if status()?.ready == true { return }
            if let exit = group.wait(watched, timeout: .zero) {
                throw HarnessError("process \(watched) exited (\(exit)) before the cluster was ready:\n\(logs())")
            }
            usleep(100_000)
        }
        throw HarnessError("the cluster was not ready within \(timeout):\n\(logs())")
    }

    /// Waits until the coordinator's status answer satisfies `condition` (described by `what` in the failure).
    func waitForStatus(
        _ what: String, timeout: Duration = .seconds(90), _ condition: (ClusterStatus) -> Bool
    ) throws {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        while ContinuousClock.now < deadline {
            if let status = status(), condition(status) { return }
            usleep(50_000)
        }
        throw HarnessError("the coordinator's status did not show \(what) within \(timeout):\n\(logs())")
    }

    /// Every log of the cluster, for failure messages.
    func logs() -> String {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return files.filter { $0.hasSuffix(".log") }.sorted().map { file in
            let text = (try? String(contentsOfFile: directory.appendingPathComponent(file).path, encoding: .utf8))
            return "== \(file)\n" + String((text ?? "").suffix(3000))
        }.joined(separator: "\n")
    }

    /// A connected client.
    func client() throws -> CoordinatorClient { try CoordinatorClient(endpoint: clientEndpoint, curve: clientKeys) }

    /// The client's CURVE keys, for a cluster that runs CURVE (`mope cluster --keys`); nil for plain connections.
    /// Set before the harness's first status request.
    var clientKeys: CurveClientKeys?

    /// One client for the harness's status requests, made on first use.
    private lazy var statusClient: CoordinatorClient? = try? client()

    /// One request, with every token event.
    func generate(
        _ prompt: String, preference: String, maxTokens: UInt32 = 0, trace: Bool = false,
        timeout: Duration = .seconds(60), onToken: (TokenEvent) -> Void = { _ in }
    ) throws -> (done: Done, events: [TokenEvent]) {
        let client = try client()
        var events: [TokenEvent] = []
        let done = try client.generate(
            Generate(request: 0, prompt: prompt, preference: preference, maxNewTokens: maxTokens, trace: trace),
            timeout: timeout
        ) { event in
            events.append(event)
            onToken(event)
        }
        return (done, events)
    }
}

/// Runs `body` on `count` threads at once and returns their results in order.
func concurrently<T: Sendable>(_ count: Int, _ body: @escaping @Sendable (Int) -> T) -> [T] {
    let results = ResultBox<T>(count: count)
    let group = DispatchGroup()
    for index in 0..<count {
        group.enter()
        Threads.start(name: "mope-test-\(index)", stackSize: 4 << 20) {
            results.set(index, body(index))
            group.leave()
        }
    }
    group.wait()
    return results.values
}

/// Results written by several threads, each to its own slot.
final class ResultBox<T: Sendable>: @unchecked Sendable {
    // Invariant: every access holds `lock`.
    private let lock = NSLock()
    private var slots: [T?]

    init(count: Int) { slots = Array(repeating: nil, count: count) }

    func set(_ index: Int, _ value: T) {
        lock.lock()
        slots[index] = value
        lock.unlock()
    }

    var values: [T] {
        lock.lock()
        defer { lock.unlock() }
        return slots.compactMap { $0 }
    }
}
