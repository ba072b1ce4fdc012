import Coordinator
import Foundation
import Testing
import Wire

#if canImport(Glibc)
import Glibc
import ClusterCore
import Decoding
#endif

/// One expert of a test cluster.
struct TestExpert {
    var name: String
    var model: String
    var systemPrompt: String
    var replicas = 1
}

/// The tiny test experts (random-weight models sharing one vocabulary).
enum TinyExperts {
    static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func model(_ name: String) -> String { root.appendingPathComponent("Tests/Fixtures/\(name)").path }

    static let concise = TestExpert(
        name: "concise", model: model("tiny-a.gguf"),
        systemPrompt: "Generate a response that is concise and to the point, without being verbose."
    )
    static let friendly = TestExpert(
        name: "friendly", model: model("tiny-b.gguf"),
        systemPrompt: "Generate a response that is friendly, witty, funny, and humorous, like a close friend."
    )
    static let knowledgeable = TestExpert(
        name: "knowledgeable", model: model("tiny-c.gguf"),
        systemPrompt: "Generate a response that only a PhD Student in that specific field could understand."
    )
}

/// The `mope` binary's path.
func mopeBinary() throws -> String { try MopeProcess.binary().path }

/// A failure of the test harness itself.
struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Child processes in one process group of their own; `killAll` (also run by `deinit`) SIGKILLs the group.
final class ProcessGroup {
    private(set) var pgid: pid_t = 0
    private(set) var pids: [pid_t] = []

    /// Starts `executable` with `arguments`, standard output and error appended to `log` (standard input empty).
    @discardableResult
    func spawn(_ executable: String, _ arguments: [String], log: String) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, log, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP))
        posix_spawnattr_setpgroup(&attributes, pgid)
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid: pid_t = 0
        let status = posix_spawn(&pid, executable, &actions, &attributes, argv, environ)
        guard status == 0 else { throw HarnessError("posix_spawn \(executable): \(String(cString: strerror(status)))") }
        if pgid == 0 { pgid = pid }
        pids.append(pid)
        return pid
    }

    /// Sends `signal` to one child.
    func signal(_ pid: pid_t, _ signal: Int32) { _ = kill(pid, signal) }

    /// Waits for a child to exit, at most `timeout`; its exit status, nil if it is still running.
    func wait(_ pid: pid_t, timeout: Duration) -> Int32? {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        while ContinuousClock.now < deadline {
            var status: Int32 = 0
            let result = waitpid(pid, &status, WNOHANG)
            if result == pid {
                pids.removeAll { $0 == pid }
                return (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
            }
            if result < 0 { return -1 }
            usleep(20_000)
        }
        return nil
    }

    /// SIGKILLs every child (the whole group) and reaps them.
    func killAll() {
        guard pgid != 0 else { return }
        _ = kill(-pgid, SIGCONT)
        _ = kill(-pgid, SIGKILL)
        for pid in pids {
            var status: Int32 = 0
            _ = waitpid(pid, &status, 0)
        }
        pids.removeAll()
    }

    deinit { killAll() }
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
        maxNewTokens: Int = 24, topK: Int = 16, extraExperts: [TestExpert] = []
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
            ["name": expert.name, "dimension": expert.name, "systemPrompt": expert.systemPrompt,
             "model": expert.model, "replicas": expert.replicas]
        }
        let config: [String: Any] = [
            "coordinator": endpoint, "heartbeatIntervalMs": heartbeatMs, "stepDeadlineMs": stepDeadlineMs,
            "openDeadlineMs": openDeadlineMs, "topK": topK, "maxNewTokens": maxNewTokens,
            "experts": entries,
        ]
        let data = try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys])
        try data.write(to: URL(fileURLWithPath: configPath))
    }

    deinit {
        group.killAll()
        try? FileManager.default.removeItem(at: directory)
    }

    var coordinatorLog: String { directory.appendingPathComponent("coordinator.log").path }

    /// Starts the coordinator and every worker of `experts`, and waits until each has registered. With `shared`,
    /// the experts of one model file share a worker process per replica (`mope cluster --shared-workers`'s plan).
    func start(shared: Bool = false) throws {
        coordinatorPID = try group.spawn(
            mope, ["coordinator", "--config", configPath, "--drain-grace", "5"], log: coordinatorLog
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
                 "--threads", "1", "--coordinator", endpoint, "--drain-grace", "2"],
                log: directory.appendingPathComponent("worker-\(plan.ids.joined(separator: "+")).log").path
            )
            for id in plan.ids { workerPIDs[id] = pid }
            // One at a time, in the plan's order: equally loaded replicas take turns from the earliest
            // registered, so the tests know which replica an idle cluster's first answer opens on.
            try waitForRegistrations(plan.ids.map { ($0, 1) })
        }
    }

    /// How many times each worker id was registered, from the coordinator's log.
    func registrations() -> [String: Int] {
        let text = (try? String(contentsOfFile: coordinatorLog, encoding: .utf8)) ?? ""
        var counts: [String: Int] = [:]
        for line in text.split(separator: "\n") where line.hasPrefix(CoordinatorServer.registeredLogPrefix) {
            let rest = line.dropFirst(CoordinatorServer.registeredLogPrefix.count)
            guard let range = rest.range(of: " expert ") else { continue }
            counts[String(rest[..<range.lowerBound]), default: 0] += 1
        }
        return counts
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
            usleep(50_000)
        }
        throw HarnessError("workers did not register within \(timeout):\n\(logs())")
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
    func client() throws -> CoordinatorClient { try CoordinatorClient(endpoint: clientEndpoint) }

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
        let thread = Thread {
            results.set(index, body(index))
            group.leave()
        }
        thread.stackSize = 4 << 20
        thread.start()
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
