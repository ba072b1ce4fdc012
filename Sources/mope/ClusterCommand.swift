import CLI
import ClusterCore
import Coordinator
import Decoding
import Foundation
import ProcessSupport
import Synchronization
import ZeroMQ

#if canImport(Glibc)
import Glibc
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
            --separate-workers (or "sharedWorkers": false) gives every expert replica its own process. By
            default the launcher shares exactly when some model file serves more experts than the machine
            has cores, and prints its choice ("topology: ...").

            Readiness: the launcher asks the coordinator for its status (as `mope status` does) until every
            expert has as many live workers as the config's replicas, then prints "cluster ready". Requests
            may be sent from then on (`mope generate --coordinator CLIENT-ADDR ...`, the clients' endpoint printed on that line).

            Secure by default: unless --insecure, the launcher generates CURVE keys (as `mope keygen` does)
            for the coordinator, the workers and one client into a private directory (--keys DIR, or a
            temporary one); the coordinator admits only the workers' key on its workers' endpoint and only
            the client's key on its clients' endpoint. Children get
            the key files' paths, never keys. The launcher prints "keys DIR"; a client then runs
            `mope generate --curve-server-key-file DIR/coordinator.pub --curve-secret-key-file DIR/client.key`.

            --serve HOST:PORT also starts the OpenAI-compatible HTTP front (`mope serve --listen HOST:PORT`)
            as a child, connected to the clients' endpoint with the client key; the launcher prints
            "serve pid P" and "http http://HOST:PORT" (its own "[serve] listening on" line names the port when
            0 picks one). Then `curl http://HOST:PORT/v1/chat/completions -d '{"messages": ...}'`.

            SIGTERM or SIGINT stops the cluster: every child gets SIGTERM (they drain), and SIGKILL after
            --stop-grace seconds. The launcher exits 0 after a requested stop, 1 when a child (the coordinator
            or a worker) exits before the cluster is ready (naming the child and its exit status), when the
            coordinator exits later, or when the cluster is not ready within --ready-timeout seconds (the
            children are stopped then too). A worker that dies after the cluster was ready is reported and not
            restarted (the coordinator fails over or degrades).
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
            .flag("separate-workers", help: "One worker process per expert replica (default: chosen by cores)."),
            .value("ready-timeout", "seconds", default: "300", help: "How long to wait for every expert."),
            .value("stop-grace", "seconds", default: "10", help: "How long children may drain before SIGKILL."),
            .value("keys", "dir", help: "Write the cluster's CURVE keys into this directory (created mode 0700; "
                + "default: a fresh private temporary directory, removed when the cluster stops)."),
            .flag("insecure", help: "Plain connections without CURVE: any local process may join or ask."),
            .value("serve", "host:port", help: "Also start the HTTP front (mope serve) listening here."),
        ] + LogOptions.options
    )

    static func run(_ arguments: ParsedArguments) async throws -> Int32 {
        // The children log at the launcher's level.
        let logLevel = ["--log-level", try LogOptions.level(arguments).description]
        ShutdownSignals.install()
        let configPath = try arguments.require("config")
        let config = try ClusterConfig.load(contentsOf: configPath)
        let endpoint = try arguments.endpoint("endpoint", binding: true) ?? config.coordinator
        let clientEndpoint = try arguments.endpoint("client-endpoint", binding: true)
            ?? (arguments.value("endpoint") == nil ? config.clientEndpoint : ClusterConfig.clientEndpoint(for: endpoint))
        let threads = try arguments.threads()
        let readyTimeout = try arguments.positive("ready-timeout", as: Double.self)
        let stopGrace = try arguments.nonNegative("stop-grace", as: Double.self)
        let serveAddress = arguments.value("serve")
        if let serveAddress, ServeCommand.parseListen(serveAddress) == nil {
            throw UsageError.invalidValue(option: "serve", value: serveAddress,
                                          expected: "HOST:PORT, e.g. 127.0.0.1:8000")
        }
        if arguments.flag("shared-workers") && arguments.flag("separate-workers") {
            throw UsageError.invalidValue(option: "separate-workers", value: "",
                                          expected: "either --shared-workers or --separate-workers, not both")
        }
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
        guard let executable = CurrentExecutable.path else {
            CLI.writeErr("error: cannot find the running mope executable to start the children\n")
            return CLI.failure
        }
        if getpgrp() != getpid() { _ = setpgid(0, 0) }

        let children = ProcessGroup(grouping: .caller)
        let stop = StopRequest()
        ShutdownSignals.onSignal { _ in stop.request() }
        defer { ShutdownSignals.uninstall() }

        let connectTo = localAddress(of: endpoint)
        // The launcher names every key file on its children's command lines; its caller's variables must not mix in.
        var environment = [ParentWatch.variable: "\(getpid())"]
        for option in [CurveOptions.secretKeyFile, CurveOptions.serverKeyFile, CurveOptions.authorizedKeys,
                       CurveOptions.workerKeys] {
            environment[CurveOptions.variable(for: option)] = ""
        }
        var coordinatorPID: pid_t = 0
        do throws(SpawnError) {
            var coordinatorArgs = ["coordinator", "--config", configPath, "--endpoint", endpoint,
                                   "--client-endpoint", clientEndpoint] + logLevel
            if let keys {
                coordinatorArgs += ["--curve-secret-key-file", keys.coordinatorSecret,
                                    "--curve-authorized-keys", keys.authorizedKeys,
                                    "--curve-worker-keys", keys.workerKeys]
            } else {
                coordinatorArgs += ["--insecure"]
            }
            coordinatorPID = try children.spawn(
                executable, coordinatorArgs, name: "coordinator", environment: environment
            )
            CLI.writeOut("coordinator pid \(coordinatorPID)\n")
            let flag: Bool? = arguments.flag("shared-workers") ? true : arguments.flag("separate-workers") ? false : nil
            let topology = config.workerTopology(cores: ProcessInfo.processInfo.activeProcessorCount, override: flag)
            CLI.writeOut("topology: \(topology.reason)\n")
            for plan in config.workerProcesses(shared: topology.shared) {
                let ids = plan.ids.joined(separator: ",")
                var args = ["worker", "--config", configPath, "--expert", plan.experts.joined(separator: ","),
                            "--coordinator", connectTo, "--id", ids] + logLevel
                if let threads { args += ["--threads", "\(threads)"] }
                if let keys {
                    args += ["--curve-server-key-file", keys.coordinatorPublic,
                             "--curve-secret-key-file", keys.workerSecret]
                }
                let pid = try children.spawn(executable, args, name: "worker \(ids)", environment: environment)
                CLI.writeOut("worker \(ids) pid \(pid)\n")
            }
            if let serveAddress {
                var args = ["serve", "--coordinator", localAddress(of: clientEndpoint), "--listen", serveAddress,
                            "--drain-grace", "\(stopGrace)"]
                if let keys {
                    args += ["--curve-server-key-file", keys.coordinatorPublic,
                             "--curve-secret-key-file", keys.clientSecret]
                }
                let pid = try children.spawn(executable, args, name: "serve", environment: environment)
                CLI.writeOut("serve pid \(pid)\nhttp http://\(serveAddress)\n")
            }
        } catch {
            CLI.writeErr("error: cannot start a child process: \(error)\n")
            children.stop(grace: .milliseconds(Int64(stopGrace * 1000)))
            return CLI.failure
        }
        let workerCount = children.running.count - 1 - (serveAddress == nil ? 0 : 1)
        let coordinator = coordinatorPID
        let clientKeys = try keys.map { keys in
            CurveClientKeys(serverPublicKey: try CurveKeyFile.readPublic(keys.coordinatorPublic),
                            keyPair: try CurveKeyFile.readSecret(keys.clientSecret))
        }
        let clients = localAddress(of: clientEndpoint)
        let outcome = await Threads.run(name: "mope-cluster") {
            supervise(children, coordinator: coordinator, endpoint: clients, curve: clientKeys, stop: stop,
                      readyTimeout: .milliseconds(Int64(readyTimeout * 1000))) {
                CLI.writeOut("cluster ready: coordinator \(endpoint), clients \(clients), \(workerCount) worker "
                    + "processes\n")
            }
        }
        switch outcome {
        case .stopRequested:
            CLI.writeErr("[cluster] stopping every process\n")
        case let .exitedBeforeReady(name, status):
            CLI.writeErr("error: \(name) exited (\(status)) before the cluster was ready; stopping the cluster\n")
        case .coordinatorExited:
            CLI.writeErr("error: the coordinator exited; stopping the workers\n")
        case let .notReady(reason):
            CLI.writeErr("error: the cluster was not ready within \(readyTimeout) s (\(reason)); stopping it\n")
        }
        children.stop(grace: .milliseconds(Int64(stopGrace * 1000)))
        return outcome == .stopRequested ? CLI.success : CLI.failure
    }

    /// How supervision ended.
    enum Outcome: Equatable {
        /// SIGTERM or SIGINT.
        case stopRequested
        /// A child exited before the cluster was ready.
        case exitedBeforeReady(name: String, status: ExitStatus)
        /// The coordinator exited after the cluster was ready.
        case coordinatorExited
        /// The ready timeout passed; what was still missing.
        case notReady(String)
    }

    /// Watches the children and, until it is ready, the coordinator's status; calls `onReady` once when it is.
    /// Blocks until a stop is requested, a child exits before the cluster is ready, the coordinator exits, or
    /// the cluster is not ready within `readyTimeout`.
    static func supervise(
        _ children: ProcessGroup, coordinator: pid_t, endpoint: String, curve: CurveClientKeys?, stop: StopRequest,
        readyTimeout: Duration, onReady: () -> Void
    ) -> Outcome {
        let clock = ContinuousClock()
        let readyDeadline = clock.now.advanced(by: readyTimeout)
        var client: CoordinatorClient?
        var reason = "no answer from the coordinator at \(endpoint)"
        do throws(ClientError) {
            client = try CoordinatorClient(endpoint: endpoint, curve: curve)
        } catch {
            reason = error.description
        }
        var ready = false
        while true {
            if stop.isRequested { return .stopRequested }
            for (pid, status) in children.reapExited() {
                let name = children.name(of: pid) ?? "child \(pid)"
                CLI.writeErr("[cluster] \(name) exited with \(status)\n")
                if !ready, !stop.isRequested { return .exitedBeforeReady(name: name, status: status) }
                if pid == coordinator, !stop.isRequested { return .coordinatorExited }
            }
            if ready {
                usleep(100_000)
                continue
            }
            do throws(ClientError) {
                if let status = try client?.status(timeout: .milliseconds(500)) {
                    if status.ready {
                        ready = true
                        onReady()
                        client = nil
                        continue
                    }
                    reason = status.notReadyReason ?? reason
                }
            } catch {
                if case .socket = error { reason = error.description }
            }
            if clock.now >= readyDeadline { return .notReady(reason) }
            usleep(100_000)
        }
    }

    /// A bind address (`tcp://0.0.0.0:5555`, `tcp://*:5555`) as a local client reaches it.
    static func localAddress(of endpoint: String) -> String {
        for wildcard in ["tcp://0.0.0.0:", "tcp://*:"] where endpoint.hasPrefix(wildcard) {
            return "tcp://127.0.0.1:" + endpoint.dropFirst(wildcard.count)
        }
        return endpoint
    }
}

/// A stop asked for by a signal, read by the supervising loop.
final class StopRequest: Sendable {
    private let flag = Mutex(false)

    /// Records the request.
    func request() { flag.withLock { $0 = true } }

    /// Whether a stop was requested.
    var isRequested: Bool { flag.withLock { $0 } }
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
    /// (`authorized-keys`: the client's public key; `worker-keys`: the workers') into `directory` (created 0700 if
    /// missing), or into a fresh temporary directory.
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
