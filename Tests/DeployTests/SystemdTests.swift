import Foundation
import ProcessSupport
import TestKit
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The systemd target (Deploy/systemd/): the units as `systemd-analyze` judges them, and the units' own command
/// lines, expanded from the shipped settings files as systemd expands them, run as real processes that tell a
/// notify socket of the test's when they are ready and when they stop. No systemd runs as PID 1 here, so the
/// sandboxing options are checked by `systemd-analyze` only, never enforced.
@Suite(.serialized)
struct SystemdTests {
    @Test("SystemdNotify sends one datagram to a path socket and to an abstract @ socket, and refuses other addresses")
    func notifyDatagrams() throws {
        let directory = try Deploy.temporaryDirectory("notify")
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("notify").path
        let socket = try NotifySocket(path: path)
        #expect(SystemdNotify.send("READY=1\nSTATUS=up", to: path))
        #expect(socket.next(timeout: .seconds(5)) == "READY=1\nSTATUS=up")

        let name = "@mope-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let abstract = try NotifySocket(path: name)
        #expect(SystemdNotify.send("STOPPING=1", to: name))
        #expect(abstract.next(timeout: .seconds(5)) == "STOPPING=1")
        // Nothing strayed to the other socket.
        #expect(socket.next(timeout: .milliseconds(100)) == nil)

        #expect(SystemdNotify.message([("READY", "1"), ("STATUS", "two\nlines")]) == "READY=1\nSTATUS=two lines")
        #expect(!SystemdNotify.send("READY=1", to: "vsock:2:1234"))
        #expect(!SystemdNotify.send("READY=1", to: "relative/path"))
        #expect(!SystemdNotify.send("READY=1", to: "@"))
        #expect(!SystemdNotify.send("READY=1", to: "/" + String(repeating: "x", count: 200)))
        #expect(!SystemdNotify.send("READY=1", to: directory.appendingPathComponent("nobody-listens").path))
    }

    @Test("systemd-analyze verify accepts the rendered units without a warning, and its security score is low")
    func analyzeUnits() throws {
        guard let analyze = Deploy.which("systemd-analyze") else {
            Issue.record("systemd-analyze is missing: install the Debian package systemd (it needs no running systemd)")
            return
        }
        let directory = try Deploy.temporaryDirectory("units")
        defer { try? FileManager.default.removeItem(at: directory) }
        let units = try SystemdUnits.render(into: directory)
        // A template is verified as itself and as an instance.
        let instance = units.directory.appendingPathComponent("mope-worker@concise.service").path
        try FileManager.default.copyItem(atPath: units.path("mope-worker@.service"), toPath: instance)
        let files = SystemdUnits.names.map(units.path) + [instance]
        let verify = try ChildProcess.run(analyze, ["verify"] + files, deadline: .seconds(60))
        #expect(verify.status == 0, "\(verify.output)\(verify.errorOutput)")
        #expect((verify.output + verify.errorOutput).isEmpty, "\(verify.output)\(verify.errorOutput)")

        // The check is real here: a misspelled directive and type are reported.
        let broken = directory.appendingPathComponent("mope-broken.service")
        let text = try String(contentsOfFile: units.path("mope-serve.service"), encoding: .utf8)
            .replacingOccurrences(of: "Type=notify", with: "Type=notfy")
            .replacingOccurrences(of: "ProtectHome=yes", with: "ProtectHomes=yes")
        try text.write(to: broken, atomically: true, encoding: .utf8)
        let caught = try ChildProcess.run(analyze, ["verify", broken.path], deadline: .seconds(60))
        let complaint = caught.output + caught.errorOutput
        #expect(complaint.contains("notfy") && complaint.contains("ProtectHomes"), "\(complaint)")

        for name in SystemdUnits.names {
            let run = try ChildProcess.run(analyze, ["security", "--offline=yes", units.path(name)],
                                           deadline: .seconds(60))
            let all = run.output + run.errorOutput
            guard let line = all.range(of: "Overall exposure level for "),
                let range = all[line.upperBound...].range(of: ": ")
            else {
                Issue.record("no exposure level for \(name): \(all.suffix(2000))")
                continue
            }
            let score = Double(all[range.upperBound...].prefix { $0.isNumber || $0 == "." }) ?? 99
            #expect(score <= 2.0, "\(name): exposure \(score)\n\(all.suffix(3000))")
        }
    }

    @Test("the units' command lines start a cluster that says READY=1 when bound, registered and reachable, answers, and says STOPPING=1 on SIGTERM")
    func unitsRunAndNotify() throws {
        let directory = try Deploy.temporaryDirectory("systemd")
        defer { try? FileManager.default.removeItem(at: directory) }
        let units = try SystemdUnits.render(into: directory)
        let etc = units.configDirectory
        let mope = try MopeProcess.binary().path

        // The keys where the shipped coordinator.env, worker.env and serve.env name them.
        let keygen = try MopeProcess.run(["keygen", "--cluster", etc.appendingPathComponent("keys").path],
                                         deadline: .seconds(30))
        #expect(keygen.status == 0, "\(keygen.errorOutput)")

        // The shared settings file: the shipped one with this test's values (every variable the units use must be
        // in it already).
        let socket = directory.appendingPathComponent("c.sock").path
        let config = etc.appendingPathComponent("cluster.json").path
        try SystemdUnits.writeConfig(to: config, endpoint: "ipc://" + socket)
        let shared = etc.appendingPathComponent("mope.env")
        let values = [
            "MOPE_CONFIG": config, "MOPE_WORKERS_ENDPOINT": "ipc://" + socket,
            "MOPE_CLIENTS_ENDPOINT": "ipc://\(socket).clients", "MOPE_COORDINATOR": "ipc://" + socket,
            "MOPE_SERVE_COORDINATORS": "ipc://\(socket).clients", "MOPE_SERVE_LISTEN": "127.0.0.1:0",
            "MOPE_THREADS": "1", "MOPE_DRAIN_GRACE": "5", "MOPE_LOG_LEVEL": "info",
        ]
        let shipped = try EnvironmentFile.parse(contentsOf: shared.path)
        for name in SystemdUnits.names {
            let used = try SystemdUnit(contentsOf: units.path(name)).variablesUsed
            #expect(used.isSubset(of: Set(shipped.keys).union(["MOPE_EXPERT", "MOPE_WORKER_ID"])),
                    "\(name) uses \(used.subtracting(shipped.keys).sorted()) that mope.env does not set")
        }
        #expect(Set(values.keys) == Set(shipped.keys), "mope.env sets \(shipped.keys.sorted())")
        try EnvironmentFile.replacing(values, in: shared.path)

        let group = ProcessGroup()
        defer { group.killAll() }
        func start(_ unit: String, instance: String? = nil, notify: NotifySocket, log: String) throws -> pid_t {
            let command = try SystemdUnit(contentsOf: units.path(unit)).command(instance: instance)
            #expect(command.arguments.first == mope)
            var environment = command.environment
            environment["NOTIFY_SOCKET"] = notify.path
            return try group.spawn(command.arguments[0], Array(command.arguments.dropFirst()),
                                   environment: environment,
                                   standardOutput: .file(directory.appendingPathComponent(log).path),
                                   standardError: .file(directory.appendingPathComponent(log).path))
        }
        func logs() -> String {
            ["serve.log", "coordinator.log", "worker.log"].map { file in
                let text = (try? String(contentsOfFile: directory.appendingPathComponent(file).path, encoding: .utf8))
                return "== \(file)\n" + String((text ?? "").suffix(3000))
            }.joined(separator: "\n")
        }

        // The front starts first: it listens at once but is not ready while no coordinator answers.
        let serveNotify = try NotifySocket(path: directory.appendingPathComponent("serve.notify").path)
        let serve = try start("mope-serve.service", notify: serveNotify, log: "serve.log")
        let waiting = serveNotify.next(timeout: .seconds(60))
        #expect(waiting?.hasPrefix("STATUS=listening on http://127.0.0.1:") == true, "\(waiting ?? "nothing")\n\(logs())")
        let listeningPort = waiting.flatMap { text -> Int? in
            guard let range = text.range(of: "http://127.0.0.1:") else { return nil }
            return Int(text[range.upperBound...].prefix { $0.isNumber })
        }
        let early = serveNotify.collect(for: .seconds(3))
        #expect(!early.contains { $0.hasPrefix("READY=1") }, "ready without a coordinator: \(early)")

        let coordinatorNotify = try NotifySocket(path: directory.appendingPathComponent("coordinator.notify").path)
        let coordinator = try start("mope-coordinator.service", notify: coordinatorNotify, log: "coordinator.log")
        let bound = coordinatorNotify.waitFor("READY=1", timeout: .seconds(60))
        try #require(bound != nil, "no READY=1 from the coordinator\n\(logs())")
        #expect(bound?.contains("STATUS=listening on ipc://\(socket) for workers") == true, "\(bound ?? "")")
        // Ready means bound: a client's status request is answered at once.
        let keys = etc.appendingPathComponent("keys")
        let statusArguments = ["status", "--coordinator", "ipc://\(socket).clients", "--json",
                               "--curve-server-key-file", keys.appendingPathComponent("coordinator.pub").path,
                               "--curve-secret-key-file", keys.appendingPathComponent("client.key").path]
        let first = try MopeProcess.run(statusArguments, deadline: .seconds(30))
        #expect(first.output.contains("\"ready\":false"), "\(first.output)\(first.errorOutput)")

        let front = serveNotify.waitFor("READY=1", timeout: .seconds(30))
        #expect(front?.contains("coordinator ipc://\(socket).clients answers") == true, "\(front ?? "none")\n\(logs())")

        let workerNotify = try NotifySocket(path: directory.appendingPathComponent("worker.notify").path)
        let worker = try start("mope-worker@.service", instance: "concise", notify: workerNotify, log: "worker.log")
        let registered = workerNotify.waitFor("READY=1", timeout: .seconds(90))
        try #require(registered != nil, "no READY=1 from the worker\n\(logs())")
        // Ready means registered: the coordinator lists the worker (id EXPERT-HOSTNAME, from the unit) right away.
        let id = "concise-\(SystemdUnit.hostName)"
        let second = try MopeProcess.run(statusArguments, deadline: .seconds(30))
        #expect(second.status == 0 && second.output.contains("\"id\":\"\(id)\""), "\(second.output)\(second.errorOutput)")
        #expect(registered?.contains("STATUS=registered with ipc://\(socket) as \(id)") == true, "\(registered ?? "")")

        // A first answer through the front.
        let port = try #require(listeningPort, "no port in the front's status: \(waiting ?? "")")
        do {
            let ready = try ChildProcess.run("/usr/bin/curl", ["-sS", "-o", "/dev/null", "-w", "%{http_code}",
                                                               "--max-time", "30", "http://127.0.0.1:\(port)/ready"],
                                             deadline: .seconds(40))
            #expect(ready.output == "200", "\(ready.output)\(ready.errorOutput)")
            let body = #"{"model":"mope","messages":[{"role":"user","content":"Hi"}],"max_tokens":4,"preference":"concise"}"#
            let answer = try ChildProcess.run("/usr/bin/curl", [
                "-sS", "--max-time", "60", "-H", "Content-Type: application/json", "-d", body,
                "http://127.0.0.1:\(port)/v1/chat/completions",
            ], deadline: .seconds(70))
            #expect(answer.output.contains("\"chat.completion\"") && answer.output.contains("\"completion_tokens\":"),
                    "\(answer.output)\(answer.errorOutput)\n\(logs())")
        }

        // SIGTERM, as systemctl stop sends it: each says STOPPING=1 and drains to exit 0.
        for (name, pid, notify) in [("worker", worker, workerNotify), ("serve", serve, serveNotify),
                                    ("coordinator", coordinator, coordinatorNotify)] {
            group.signal(pid, SIGTERM)
            let stopping = notify.waitFor("STOPPING=1", timeout: .seconds(30))
            #expect(stopping != nil, "no STOPPING=1 from the \(name)\n\(logs())")
            let exit = group.wait(pid, timeout: .seconds(30))
            #expect(exit == .exited(0), "the \(name) ended with \(exit.map(\.description) ?? "no exit")\n\(logs())")
        }
    }
}

extension SystemdTests {
    @Test("every system call and socket family the coordinator, a worker and the front use (start, one answer, drain) is allowed by the units' SystemCallFilter and RestrictAddressFamilies")
    func sandboxAdmitsWhatMopeUses() throws {
        guard let strace = Deploy.which("strace"), let analyze = Deploy.which("systemd-analyze") else {
            Issue.record("strace or systemd-analyze is missing: install the Debian packages strace and systemd")
            return
        }
        let directory = try Deploy.temporaryDirectory("syscalls")
        defer { try? FileManager.default.removeItem(at: directory) }
        let units = try SystemdUnits.render(into: directory)
        let etc = units.configDirectory
        #expect(try MopeProcess.run(["keygen", "--cluster", etc.appendingPathComponent("keys").path],
                                    deadline: .seconds(30)).status == 0)
        let socket = directory.appendingPathComponent("c.sock").path
        let config = etc.appendingPathComponent("cluster.json").path
        try SystemdUnits.writeConfig(to: config, endpoint: "ipc://" + socket)
        try EnvironmentFile.replacing([
            "MOPE_CONFIG": config, "MOPE_WORKERS_ENDPOINT": "ipc://" + socket,
            "MOPE_CLIENTS_ENDPOINT": "ipc://\(socket).clients", "MOPE_COORDINATOR": "ipc://" + socket,
            "MOPE_SERVE_COORDINATORS": "ipc://\(socket).clients", "MOPE_SERVE_LISTEN": "127.0.0.1:0",
            "MOPE_THREADS": "2", "MOPE_DRAIN_GRACE": "5",
        ], in: etc.appendingPathComponent("mope.env").path)

        // What the units allow: the first filter is an allow-list, a "~" one takes groups away.
        var groups: [String: Set<String>] = [:]
        func expand(_ group: String) throws -> Set<String> {
            if let known = groups[group] { return known }
            let run = try ChildProcess.run(analyze, ["syscall-filter", group], deadline: .seconds(30))
            var calls: Set<String> = []
            for line in run.output.split(separator: "\n").dropFirst() where line.hasPrefix("    ") {
                let name = line.trimmingCharacters(in: .whitespaces).split(separator: " ").first.map(String.init) ?? ""
                if name.hasPrefix("@") { calls.formUnion(try expand(name)) } else if !name.isEmpty { calls.insert(name) }
            }
            groups[group] = calls
            return calls
        }

        let group = ProcessGroup()
        defer { group.killAll() }
        var traces: [(unit: String, file: String, tracer: pid_t)] = []
        for (unit, instance) in [("mope-coordinator.service", nil), ("mope-worker@.service", "concise"),
                                 ("mope-serve.service", nil)] as [(String, String?)] {
            let command = try SystemdUnit(contentsOf: units.path(unit)).command(instance: instance)
            let notify = directory.appendingPathComponent("\(unit).notify").path
            let receiver = try NotifySocket(path: notify)
            var environment = command.environment
            environment["NOTIFY_SOCKET"] = notify
            let file = directory.appendingPathComponent("\(unit).strace").path
            let log = directory.appendingPathComponent("\(unit).log").path
            let tracer = try group.spawn(strace, ["-f", "-qq", "-o", file, "--"] + command.arguments,
                                         environment: environment, standardOutput: .file(log), standardError: .file(log))
            let ready = receiver.waitFor("READY=1", timeout: .seconds(90))
            try #require(ready != nil, "\(unit) under strace sent no READY=1: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
            traces.append((unit, file, tracer))
        }
        // One answer through the front (its port from its log).
        let serveLog = (try? String(contentsOfFile: directory.appendingPathComponent("mope-serve.service.log").path,
                                    encoding: .utf8)) ?? ""
        let port = try #require(serveLog.range(of: "listening on http://127.0.0.1:").flatMap {
            Int(serveLog[$0.upperBound...].prefix { $0.isNumber })
        })
        let body = #"{"messages":[{"role":"user","content":"Hi"}],"max_tokens":4,"preference":"concise"}"#
        let answer = try ChildProcess.run("/usr/bin/curl", ["-sS", "--max-time", "60", "-H", "Content-Type: application/json",
                                                            "-d", body, "http://127.0.0.1:\(port)/v1/chat/completions"],
                                          deadline: .seconds(70))
        #expect(answer.output.contains("\"chat.completion\""), "\(answer.output)\(answer.errorOutput)")
        // SIGTERM to each traced mope (strace's child), worker and front first; each drains and exits 0.
        for trace in traces.reversed() {
            let children = (try? String(contentsOfFile: "/proc/\(trace.tracer)/task/\(trace.tracer)/children",
                                        encoding: .utf8)) ?? ""
            let child = try #require(children.split(separator: " ").first.flatMap { pid_t($0) }, "no child of strace")
            kill(child, SIGTERM)
            #expect(group.wait(trace.tracer, timeout: .seconds(30)) == .exited(0), "\(trace.unit) did not drain")
        }

        let families: Set<String> = ["AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"]
        for trace in traces {
            let unit = try String(contentsOfFile: units.path(trace.unit), encoding: .utf8)
            let filters = unit.split(separator: "\n").filter { $0.hasPrefix("SystemCallFilter=") }
                .map { String($0.dropFirst("SystemCallFilter=".count)) }
            #expect(filters == ["@system-service", "~@privileged"], "\(trace.unit): \(filters)")
            let allowed = try expand("@system-service").subtracting(try expand("@privileged"))
            #expect(allowed.count > 100)
            let unitFamilies = unit.split(separator: "\n").first { $0.hasPrefix("RestrictAddressFamilies=") }
                .map { Set($0.dropFirst("RestrictAddressFamilies=".count).split(separator: " ").map(String.init)) }
            #expect(unitFamilies == families, "\(trace.unit)")
            let text = try String(contentsOfFile: trace.file, encoding: .utf8)
            var used: Set<String> = []
            var socketFamilies: Set<String> = []
            for line in text.split(separator: "\n") {
                // "PID name(" or "PID <... name resumed>"
                let fields = line.split(separator: " ", maxSplits: 1)
                guard fields.count == 2 else { continue }
                let rest = fields[1].drop { $0 == " " }
                let name = rest.prefix { $0.isLetter || $0.isNumber || $0 == "_" }
                guard !name.isEmpty, rest.dropFirst(name.count).first == "(" else { continue }
                used.insert(String(name))
                if name == "socket", let family = rest.dropFirst(7).split(separator: ",").first {
                    socketFamilies.insert(String(family))
                }
            }
            #expect(used.count > 20, "\(trace.unit): the trace has \(used.count) system calls")
            #expect(used.isSubset(of: allowed), "\(trace.unit) uses \(used.subtracting(allowed).sorted()), which its SystemCallFilter denies")
            #expect(socketFamilies.isSubset(of: families), "\(trace.unit) opens sockets of \(socketFamilies.subtracting(families).sorted())")
        }
    }
}

extension SystemdTests {
    @Test("ReadinessLatch opens once, on the last distinct part; a worker process serving two experts says READY=1 naming both and the coordinator lists both; --quiet does not hide readiness")
    func sharedWorkerReady() throws {
        let latch = ReadinessLatch(needed: 2)
        #expect(!latch.mark("worker c1") && !latch.mark("worker c1") && !latch.isOpen)
        #expect(latch.mark("worker f1") && latch.isOpen)
        #expect(!latch.mark("worker f1") && !latch.mark("worker c1"))

        let directory = try Deploy.temporaryDirectory("shared")
        defer { try? FileManager.default.removeItem(at: directory) }
        let mope = try MopeProcess.binary().path
        let socket = directory.appendingPathComponent("c.sock").path
        let config = directory.appendingPathComponent("cluster.json")
        let experts: [[String: Any]] = ["concise", "friendly"].map {
            ["name": $0, "dimension": $0, "systemPrompt": "Be \($0).", "model": Fixtures.tinyA, "replicas": 1]
        }
        try JSONSerialization.data(withJSONObject: [
            "coordinator": "ipc://" + socket, "heartbeatIntervalMs": 500, "stepDeadlineMs": 5000,
            "openDeadlineMs": 10000, "topK": 16, "maxNewTokens": 8, "experts": experts,
        ] as [String: Any]).write(to: config)
        let group = ProcessGroup()
        defer { group.killAll() }
        let log = directory.appendingPathComponent("cluster.log").path
        let coordinatorNotify = try NotifySocket(path: directory.appendingPathComponent("c.notify").path)
        let coordinator = try group.spawn(mope, ["coordinator", "--config", config.path, "--quiet", "--drain-grace", "5"],
                                          environment: ["NOTIFY_SOCKET": coordinatorNotify.path],
                                          standardOutput: .file(log), standardError: .file(log))
        #expect(coordinatorNotify.waitFor("READY=1", timeout: .seconds(60)) != nil,
                "\((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        let workerNotify = try NotifySocket(path: directory.appendingPathComponent("w.notify").path)
        let worker = try group.spawn(mope, ["worker", "--config", config.path, "--expert", "concise,friendly",
                                            "--id", "c1,f1", "--threads", "1", "--quiet", "--drain-grace", "2"],
                                     environment: ["NOTIFY_SOCKET": workerNotify.path],
                                     standardOutput: .file(log), standardError: .file(log))
        let ready = workerNotify.waitFor("READY=1", timeout: .seconds(60))
        try #require(ready != nil, "\((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        #expect(ready?.contains("as c1, f1") == true, "\(ready ?? "")")
        // Both were registered by then: the coordinator is ready (one replica of each) at the first ask.
        let status = try MopeProcess.run(["status", "--coordinator", "ipc://\(socket).clients", "--json"],
                                         deadline: .seconds(30))
        #expect(status.status == 0 && status.output.contains("\"id\":\"c1\"") && status.output.contains("\"id\":\"f1\""),
                "\(status.output)\(status.errorOutput)")
        // --quiet: the info lines readiness comes from were observed, not written.
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        #expect(!text.contains("INFO "), "\(text)")
        for pid in [worker, coordinator] {
            group.signal(pid, SIGTERM)
            #expect(group.wait(pid, timeout: .seconds(30)) == .exited(0))
        }
        #expect(workerNotify.waitFor("STOPPING=1", timeout: .seconds(5)) != nil)
    }
}

// MARK: - Support

/// The units of Deploy/systemd rendered by its install.sh into a temporary folder, with the test's mope binary.
struct SystemdUnits {
    static let names = ["mope-coordinator.service", "mope-worker@.service", "mope-serve.service"]
    let directory: URL
    let configDirectory: URL

    func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    /// Runs `install.sh --render-only` into `folder/units` and `folder/etc`.
    static func render(into folder: URL) throws -> SystemdUnits {
        let units = folder.appendingPathComponent("units")
        let etc = folder.appendingPathComponent("etc")
        let run = try Deploy.runScript(Deploy.path("systemd/install.sh"), [
            "--render-only", "--binary", try MopeProcess.binary().path, "--unit-dir", units.path,
            "--config-dir", etc.path,
        ], deadline: .seconds(30))
        guard run.status == 0 else {
            throw DeployTestError("install.sh --render-only failed (\(run.status)): \(run.output)\(run.errorOutput)")
        }
        return SystemdUnits(directory: units, configDirectory: etc)
    }

    /// A config of one tiny expert on `endpoint`.
    static func writeConfig(to path: String, endpoint: String) throws {
        let config: [String: Any] = [
            "coordinator": endpoint, "heartbeatIntervalMs": 500, "stepDeadlineMs": 5000, "openDeadlineMs": 10000,
            "topK": 16, "maxNewTokens": 8,
            "experts": [["name": "concise", "dimension": "concise", "systemPrompt": "Be brief.",
                         "model": Fixtures.tinyA, "replicas": 1]],
        ]
        try JSONSerialization.data(withJSONObject: config, options: [.sortedKeys]).write(to: URL(fileURLWithPath: path))
    }
}

struct DeployTestError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// `KEY=VALUE` lines as systemd's `EnvironmentFile=` reads them (comments and blank lines skipped, one level of
/// quotes removed).
enum EnvironmentFile {
    static func parse(contentsOf path: String) throws -> [String: String] {
        var values: [String: String] = [:]
        for line in try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n") {
            let text = line.trimmingCharacters(in: .whitespaces)
            guard !text.isEmpty, !text.hasPrefix("#"), !text.hasPrefix(";"), let equals = text.firstIndex(of: "=")
            else { continue }
            var value = String(text[text.index(after: equals)...]).trimmingCharacters(in: .whitespaces)
            if value.count >= 2, let quote = value.first, quote == "\"" || quote == "'", value.last == quote {
                value = String(value.dropFirst().dropLast())
            }
            values[String(text[..<equals]).trimmingCharacters(in: .whitespaces)] = value
        }
        return values
    }

    /// Rewrites the values of `values`' keys in the file, keeping every other line.
    static func replacing(_ values: [String: String], in path: String) throws {
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
        let out = lines.map { line -> String in
            guard !line.hasPrefix("#"), let equals = line.firstIndex(of: "="),
                let value = values[String(line[..<equals])] else { return String(line) }
            return "\(line[..<equals])=\(value)"
        }
        try out.joined(separator: "\n").write(toFile: path, atomically: true, encoding: .utf8)
    }
}

/// The `[Service]` settings of a unit that decide what runs: `Environment=`, `EnvironmentFile=` and `ExecStart=`,
/// expanded the way systemd does it for the syntax these units use: the specifiers `%i`, `%I`, `%H`, `%%`, then
/// `${NAME}` inside a word and `$NAME` as a word of its own (split at whitespace). Anything else (quotes,
/// backslashes, several ExecStart lines, prefixes like `-` or `@` on the program) is refused rather than guessed.
struct SystemdUnit {
    var environment: [String] = []
    var environmentFiles: [String] = []
    var execStart: String?

    init(contentsOf path: String) throws {
        var section = ""
        for raw in try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n") {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("[") { section = line; continue }
            guard section == "[Service]", !line.hasPrefix("#"), let equals = line.firstIndex(of: "=") else { continue }
            let key = String(line[..<equals])
            let value = String(line[line.index(after: equals)...])
            switch key {
            case "Environment": environment.append(value)
            case "EnvironmentFile": environmentFiles.append(value)
            case "ExecStart":
                guard execStart == nil else { throw DeployTestError("\(path): more than one ExecStart") }
                execStart = value
            default: break
            }
        }
        guard let execStart else { throw DeployTestError("\(path): no ExecStart") }
        guard !execStart.contains("\""), !execStart.contains("'"), !execStart.contains("\\"),
            execStart.hasPrefix("/")
        else { throw DeployTestError("\(path): ExecStart uses syntax this test does not expand: \(execStart)") }
    }

    static var hostName: String {
        var buffer = [CChar](repeating: 0, count: 256)
        gethostname(&buffer, buffer.count)
        return String(cString: buffer)
    }

    static func specifiers(_ text: String, instance: String?) throws -> String {
        var out = ""
        var iterator = text.makeIterator()
        while let c = iterator.next() {
            guard c == "%" else { out.append(c); continue }
            switch iterator.next() {
            case "i", "I":
                guard let instance else { throw DeployTestError("%i in a unit run without an instance") }
                out += instance
            case "H": out += hostName
            case "%": out += "%"
            case let other: throw DeployTestError("specifier %\(other.map(String.init) ?? "") not expanded here")
            }
        }
        return out
    }

    /// The names of the variables the command line uses.
    var variablesUsed: Set<String> {
        let text = execStart ?? ""
        var names: Set<String> = []
        var rest = Substring(text)
        while let dollar = rest.firstIndex(of: "$") {
            rest = rest[rest.index(after: dollar)...]
            let braced = rest.first == "{"
            if braced { rest = rest.dropFirst() }
            let name = rest.prefix { $0.isLetter || $0.isNumber || $0 == "_" }
            names.insert(String(name))
            rest = rest.dropFirst(name.count + (braced ? 1 : 0))
        }
        return names
    }

    /// The program and its arguments, and the environment the unit gives it.
    func command(instance: String? = nil) throws -> (arguments: [String], environment: [String: String]) {
        var variables: [String: String] = [:]
        for line in environment {
            for assignment in try Self.specifiers(line, instance: instance).split(separator: " ") {
                guard let equals = assignment.firstIndex(of: "=") else { continue }
                variables[String(assignment[..<equals])] = String(assignment[assignment.index(after: equals)...])
            }
        }
        for entry in environmentFiles {
            let optional = entry.hasPrefix("-")
            let path = try Self.specifiers(optional ? String(entry.dropFirst()) : entry, instance: instance)
            guard FileManager.default.fileExists(atPath: path) else {
                if optional { continue }
                throw DeployTestError("the unit's EnvironmentFile \(path) is missing")
            }
            variables.merge(try EnvironmentFile.parse(contentsOf: path)) { $1 }
        }
        var arguments: [String] = []
        for word in try Self.specifiers(execStart ?? "", instance: instance).split(separator: " ") {
            if word.hasPrefix("$"), !word.hasPrefix("${") {
                arguments += (variables[String(word.dropFirst())] ?? "").split(separator: " ").map(String.init)
                continue
            }
            var out = ""
            var rest = Substring(word)
            while let start = rest.range(of: "${") {
                out += rest[..<start.lowerBound]
                guard let end = rest[start.upperBound...].firstIndex(of: "}") else {
                    throw DeployTestError("unterminated ${ in \(word)")
                }
                out += variables[String(rest[start.upperBound..<end])] ?? ""
                rest = rest[rest.index(after: end)...]
            }
            arguments.append(out + rest)
        }
        return (arguments, variables)
    }
}

/// A datagram socket of the test's, bound where `NOTIFY_SOCKET` will point (a path, or `@name` for an abstract
/// socket), as systemd binds its own.
final class NotifySocket {
    let path: String
    private let fd: Int32

    init(path: String) throws {
        self.path = path
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw DeployTestError("socket: \(String(cString: strerror(errno)))") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(path.utf8)
        if path.hasPrefix("@") { bytes[0] = 0 }
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard bytes.count < capacity else { throw DeployTestError("socket path too long: \(path)") }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        let length = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + bytes.count
            + (path.hasPrefix("@") ? 0 : 1))
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        guard bound == 0 else {
            close(fd)
            throw DeployTestError("bind \(path): \(String(cString: strerror(errno)))")
        }
    }

    deinit {
        close(fd)
        if !path.hasPrefix("@") { unlink(path) }
    }

    /// The next datagram's text, or nil when none came within `timeout`.
    func next(timeout: Duration) -> String? {
        var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let milliseconds = Int32(timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        guard poll(&entry, 1, milliseconds) == 1 else { return nil }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = recv(fd, &buffer, buffer.count, 0)
        guard count >= 0 else { return nil }
        return String(decoding: buffer[..<count], as: UTF8.self)
    }

    /// Every datagram that comes within `duration`.
    func collect(for duration: Duration) -> [String] {
        let deadline = ContinuousClock.now.advanced(by: duration)
        var messages: [String] = []
        while case let left = ContinuousClock.now.duration(to: deadline), left > .zero {
            if let message = next(timeout: left) { messages.append(message) }
        }
        return messages
    }

    /// The first datagram within `timeout` that has the line `assignment`.
    func waitFor(_ assignment: String, timeout: Duration) -> String? {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        while case let left = ContinuousClock.now.duration(to: deadline), left > .zero {
            guard let message = next(timeout: left) else { return nil }
            if message.split(separator: "\n").contains(Substring(assignment)) { return message }
        }
        return nil
    }
}
