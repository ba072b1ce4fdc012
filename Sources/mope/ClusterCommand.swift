import CLI
import Coordinator
import Foundation
import ProcessSupport
import Synchronization
import ZeroMQ

#if canImport(Glibc)
import Glibc
import ClusterCore
import Decoding
#endif

/// `mope cluster`: a whole cluster on this machine, as child processes.
enum ClusterCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        name: "cluster",
        abstract: "Start a local cluster: the coordinator and one worker per expert replica.",
        discussion: """
            Starts `mope coordinator --config FILE` and, for every expert of the config, one
            `mope worker --config FILE --expert NAME --id NAME[-N]` per replica, all as children in the
            launcher's process group (the launcher makes itself a group leader, so `kill -- -PID` reaches
            every process). Prints "coordinator pid P" and "worker ID pid P" for each child on standard output.

            With --shared-workers (or "sharedWorkers": true in the config), replica N of every expert that
            uses the same model file runs in one process (`mope worker --expert A,B,C --id A,B,C`): the
            weights are loaded once and each forward pass batches the sessions of all its experts, which
            is faster when the experts outnumber the cores. Each expert still registers on its own.

            Readiness: the launcher reads the coordinator's log and waits until it has logged
            "registered worker ID expert NAME" for as many distinct workers of each expert as the config's
            replicas, then prints "cluster ready". Requests may be sent from then on
            (`mope generate --coordinator CLIENT-ADDR ...`, the clients' endpoint printed on that line).

            Secure by default: unless --insecure, the launcher generates CURVE keys (as `mope keygen` does)
            for the coordinator, the workers and one client into a private directory (--keys DIR, or a
            temporary one); the coordinator admits only the workers' key on its workers' endpoint and only
            the client's key on its clients' endpoint. Children get
            the key files' paths, never keys. The launcher prints "keys DIR"; a client then runs
            `mope generate --curve-server-key-file DIR/coordinator.pub --curve-secret-key-file DIR/client.key`.

            SIGTERM or SIGINT stops the cluster: every child gets SIGTERM (they drain), and SIGKILL after
            --stop-grace seconds. The launcher exits 0 after a requested stop, 1 if the coordinator dies or
            the cluster is not ready within --ready-timeout seconds (the children are stopped then too).
            A worker that dies is reported and not restarted (the coordinator fails over or degrades).
            If the launcher itself dies (even by SIGKILL), its children notice within a second that their
            parent is gone and drain and exit as on SIGTERM.
            """,
        options: [
            .value("config", "file", help: "The cluster config JSON."),
            .value("endpoint", "endpoint", help: "The coordinator's workers' endpoint (default: the config's)."),
            .value("client-endpoint", "endpoint", help: "The coordinator's clients' endpoint (default: the config's "
                + "\"clientEndpoint\", else derived from --endpoint as mope coordinator does)."),
            .value("threads", "n", help: "Forward-pass threads per worker (default: each worker uses every core)."),
            .flag("shared-workers", help: "One worker process per replica for all experts of one model file."),
            .value("ready-timeout", "seconds", default: "300", help: "How long to wait for every expert."),
            .value("stop-grace", "seconds", default: "10", help: "How long children may drain before SIGKILL."),
            .value("keys", "dir", help: "Write the cluster's CURVE keys into this directory (created mode 0700; "
                + "default: a fresh private temporary directory, removed when the cluster stops)."),
            .flag("insecure", help: "Plain connections without CURVE: any local process may join or ask."),
        ]
    )

    static func run(_ arguments: ParsedArguments) async throws -> Int32 {
        let configPath = try arguments.require("config")
        let config = try ClusterConfig.load(contentsOf: configPath)
        let endpoint = try arguments.endpoint("endpoint", binding: true) ?? config.coordinator
        let clientEndpoint = try arguments.endpoint("client-endpoint", binding: true)
            ?? (arguments.value("endpoint") == nil ? config.clientEndpoint : ClusterConfig.clientEndpoint(for: endpoint))
        let threads = try arguments.threads()
        let readyTimeout = try arguments.positive("ready-timeout", as: Double.self)
        let stopGrace = try arguments.nonNegative("stop-grace", as: Double.self)
        let keys: ClusterKeys?
        if arguments.flag("insecure") {
            if let dir = arguments.value("keys") {
                throw UsageError.invalidValue(option: "keys", value: dir, expected: "no --keys with --insecure")
            }
            keys = nil
        } else {
            let made = try ClusterKeys.create(in: arguments.value("keys"))
            CLI.writeOut("keys \(made.directory)\n")
            keys = made
        }
        defer { keys?.removeIfTemporary() }
        if getpgrp() != getpid() { _ = setpgid(0, 0) }

        let launcher = Launcher(config: config, stopGrace: stopGrace)
        let signals = SignalHandlers { launcher.events.yield(.signal) }
        defer { signals.cancel() }

        let executable = currentExecutable()
        let connectTo = localAddress(of: endpoint)
        do {
            var coordinatorArgs = ["coordinator", "--config", configPath, "--endpoint", endpoint,
                                   "--client-endpoint", clientEndpoint]
            if let keys {
                coordinatorArgs += ["--curve-secret-key-file", keys.coordinatorSecret,
                                    "--curve-authorized-keys", keys.authorizedKeys,
                                    "--curve-worker-keys", keys.workerKeys]
            } else {
                coordinatorArgs += ["--insecure"]
            }
            try launcher.startCoordinator(executable, coordinatorArgs)
            let shared = arguments.flag("shared-workers") ? true : nil
            for plan in config.workerProcesses(shared: shared) {
                let ids = plan.ids.joined(separator: ",")
                var args = ["worker", "--config", configPath, "--expert", plan.experts.joined(separator: ","),
                            "--coordinator", connectTo, "--id", ids]
                if let threads { args += ["--threads", "\(threads)"] }
                if let keys {
                    args += ["--curve-server-key-file", keys.coordinatorPublic, "--curve-secret-key-file", keys.workerSecret]
                }
                try launcher.startWorker(executable, args, id: ids)
            }
        } catch {
            CLI.writeErr("error: cannot start a child process: \(error)\n")
            await launcher.stopAll()
            return CLI.failure
        }
        Task {
            try? await Task.sleep(for: .milliseconds(Int64(readyTimeout * 1000)))
            launcher.events.yield(.readyTimeout)
        }

        var ready = false
        for await event in launcher.stream {
            switch event {
            case .ready:
                guard !ready else { continue }
                ready = true
                CLI.writeOut("cluster ready: coordinator \(endpoint), clients \(localAddress(of: clientEndpoint)), "
                    + "\(launcher.workerCount) worker processes\n")
            case .readyTimeout:
                guard !ready else { continue }
                CLI.writeErr("error: the cluster was not ready within \(readyTimeout) s; stopping it\n")
                await launcher.stopAll()
                return CLI.failure
            case .signal:
                CLI.writeErr("[cluster] stopping every process\n")
                await launcher.stopAll()
                return CLI.success
            case let .exited(name, status, isCoordinator):
                CLI.writeErr("[cluster] \(name) exited with status \(status)\n")
                if isCoordinator && !launcher.isStopping {
                    CLI.writeErr("error: the coordinator exited; stopping the workers\n")
                    await launcher.stopAll()
                    return CLI.failure
                }
            }
        }
        return CLI.success
    }

    /// The path of the running `mope` binary.
    static func currentExecutable() -> String {
        if let path = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") { return path }
        return Bundle.main.executablePath ?? CommandLine.arguments[0]
    }

    /// A bind address (`tcp://0.0.0.0:5555`, `tcp://*:5555`) as a local client reaches it.
    static func localAddress(of endpoint: String) -> String {
        for wildcard in ["tcp://0.0.0.0:", "tcp://*:"] where endpoint.hasPrefix(wildcard) {
            return "tcp://127.0.0.1:" + endpoint.dropFirst(wildcard.count)
        }
        return endpoint
    }
}

/// The key files of a secure local cluster, in a directory only its owner may enter.
struct ClusterKeys {
    let directory: String
    let temporary: Bool
    var coordinatorSecret: String { directory + "/coordinator.key" }
    var coordinatorPublic: String { directory + "/coordinator.pub" }
    var workerSecret: String { directory + "/worker.key" }
    var clientSecret: String { directory + "/client.key" }
    var authorizedKeys: String { directory + "/authorized-keys" }
    var workerKeys: String { directory + "/worker-keys" }

    /// Generates the coordinator's, the workers' and a client's key pairs and the two allow-lists
    /// (`authorized-keys`: the client's public key; `worker-keys`: the workers') into `directory` (created 0700 if missing), or into a fresh temporary directory.
    static func create(in directory: String?) throws -> ClusterKeys {
        let keys: ClusterKeys
        if let directory {
            if mkdir(directory, 0o700) != 0 && errno != EEXIST { throw KeygenError.writeFailed(directory, errno: errno) }
            guard chmod(directory, 0o700) == 0 else { throw KeygenError.writeFailed(directory, errno: errno) }
            keys = ClusterKeys(directory: directory, temporary: false)
        } else {
            let base = ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
            var template = Array((base + "/mope-keys-XXXXXX").utf8CString)
            guard let made = mkdtemp(&template) else { throw KeygenError.writeFailed(base, errno: errno) }
            keys = ClusterKeys(directory: String(cString: made), temporary: true)
        }
        var lists: [String: String] = [:]
        for name in ["coordinator", "worker", "client"] {
            let pair = try CurveKeyPair.generate()
            try Keygen.writeKey(pair.secretKey + "\n", to: keys.directory + "/\(name).key", mode: 0o600)
            try Keygen.writeKey(pair.publicKey + "\n", to: keys.directory + "/\(name).pub", mode: 0o644)
            lists[name] = "\(pair.publicKey) \(name)\n"
        }
        try Keygen.writeKey(lists["client", default: ""], to: keys.authorizedKeys, mode: 0o644)
        try Keygen.writeKey(lists["worker", default: ""], to: keys.workerKeys, mode: 0o644)
        return keys
    }

    /// Removes a temporary key directory (keys written to a named directory stay).
    func removeIfTemporary() {
        guard temporary else { return }
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// What the launcher reacts to.
enum LauncherEvent: Sendable {
    case ready
    case readyTimeout
    case signal
    case exited(name: String, status: Int32, isCoordinator: Bool)
}

/// The launcher's children and the readiness count; callbacks arrive on Foundation's threads.
final class Launcher: Sendable {
    private struct State {
        var children: [(name: String, process: Process)] = []
        var registered: [String: Set<String>] = [:]
        var logBuffer: [UInt8] = []
        var stopping = false
        var ready = false
    }

    let stream: AsyncStream<LauncherEvent>
    let events: AsyncStream<LauncherEvent>.Continuation
    private let config: ClusterConfig
    private let stopGrace: Double
    private let state = Mutex(State())

    init(config: ClusterConfig, stopGrace: Double) {
        (stream, events) = AsyncStream.makeStream(of: LauncherEvent.self)
        self.config = config
        self.stopGrace = stopGrace
    }

    var isStopping: Bool { state.withLock { $0.stopping } }
    var workerCount: Int { state.withLock { $0.children.count - 1 } }

    func startCoordinator(_ executable: String, _ arguments: [String]) throws {
        let pipe = Pipe()
        pipe.fileHandleForReading.readabilityHandler = { [self] handle in
            let data = handle.availableData
            guard !data.isEmpty else {
                handle.readabilityHandler = nil
                return
            }
            FileHandle.standardError.write(data)
            readLog(Array(data))
        }
        try start(executable, arguments, name: "coordinator", stderr: pipe, isCoordinator: true)
    }

    func startWorker(_ executable: String, _ arguments: [String], id: String) throws {
        try start(executable, arguments, name: "worker \(id)", stderr: nil, isCoordinator: false)
    }

    private func start(
        _ executable: String, _ arguments: [String], name: String, stderr: Pipe?, isCoordinator: Bool
    ) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment[ParentWatch.variable] = "\(getpid())"
        // The launcher names every key file on its children's command lines; variables of its caller would mix in.
        for option in [CurveOptions.secretKeyFile, CurveOptions.serverKeyFile, CurveOptions.authorizedKeys,
                       CurveOptions.workerKeys] {
            environment[CurveOptions.variable(for: option)] = nil
        }
        process.environment = environment
        if let stderr { process.standardError = stderr }
        process.terminationHandler = { [events] process in
            events.yield(.exited(name: name, status: process.terminationStatus, isCoordinator: isCoordinator))
        }
        try process.run()
        state.withLock { $0.children.append((name, process)) }
        CLI.writeOut("\(name) pid \(process.processIdentifier)\n")
    }

    /// Counts "registered worker ID expert NAME" lines of the coordinator's log.
    private func readLog(_ bytes: [UInt8]) {
        let becameReady: Bool = state.withLock { state in
            state.logBuffer += bytes
            while let newline = state.logBuffer.firstIndex(of: 0x0A) {
                let line = String(decoding: state.logBuffer[..<newline], as: UTF8.self)
                state.logBuffer.removeSubrange(...newline)
                guard line.hasPrefix(CoordinatorServer.registeredLogPrefix) else { continue }
                let rest = line.dropFirst(CoordinatorServer.registeredLogPrefix.count)
                guard let range = rest.range(of: " expert ") else { continue }
                let id = String(rest[..<range.lowerBound])
                let expert = String(rest[range.upperBound...])
                state.registered[expert, default: []].insert(id)
            }
            guard !state.ready else { return false }
            let complete = config.experts.allSatisfy { (state.registered[$0.name]?.count ?? 0) >= $0.replicas }
            if complete { state.ready = true }
            return complete
        }
        if becameReady { events.yield(.ready) }
    }

    /// SIGTERM to every child, SIGKILL to those still running after the grace period.
    func stopAll() async {
        let children = state.withLock { state in
            state.stopping = true
            return state.children.map(\.process)
        }
        for process in children where process.isRunning { kill(process.processIdentifier, SIGTERM) }
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: .milliseconds(Int64(stopGrace * 1000)))
        while clock.now < deadline, children.contains(where: \.isRunning) {
            try? await Task.sleep(for: .milliseconds(50))
        }
        for process in children where process.isRunning { kill(process.processIdentifier, SIGKILL) }
        for process in children { process.waitUntilExit() }
    }
}
