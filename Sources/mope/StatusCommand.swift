import CLI
import Coordinator
import Foundation
import ProcessSupport
import Wire
import ZeroMQ

/// `mope status`: the cluster's state as the coordinator answers a `status` request.
enum StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        name: "status",
        abstract: "Show a cluster's experts, workers and sessions, and whether it is ready.",
        discussion: """
            Asks the coordinator for its state: the protocol version, whether it drains, the sessions running
            and queued, and for every expert of its config the replicas wanted and the workers registered
            (id, sessions, capacity, draining). Prints a table, or with --json one JSON object:
            {"protocolVersion":N,"ready":B,"draining":B,"sessions":{"running":N,"queued":N},
             "experts":[{"name":S,"replicas":N,"live":N,"workers":[{"id":S,"sessions":N,"capacity":N,
             "draining":B,"registrations":N}]}],"missing":[{"expert":S,"wanted":N,"live":N}]}

            The cluster is ready when the coordinator does not drain and every expert has at least its wanted
            replicas live (registered and not draining). With --wait SECONDS the command asks again until the
            cluster is ready or the time runs out (a coordinator that is still starting is waited for), then
            prints the last answer: scripts wait for a cluster with `mope status --coordinator ADDR --wait 300`.

            Exit codes: 0 ready, 1 not ready (what is missing is named on standard error) or no answer from the
            coordinator, 2 usage.
            """,
        options: [
            .value("coordinator", "endpoint", default: "tcp://127.0.0.1:5556",
                   help: "The coordinator's clients' endpoint."),
            .flag("json", help: "Print one JSON object instead of the table."),
            .value("wait", "seconds", help: "Ask again until the cluster is ready, for at most this long."),
            .value("timeout", "seconds", default: "5", help: "How long to wait for each answer."),
        ] + CurveOptions.clientOptions(role: "client")
    )

    static func run(_ arguments: ParsedArguments) async throws -> Int32 {
        let endpoint = try arguments.require("coordinator")
        let timeout = try arguments.require("timeout", as: Double.self)
        guard timeout.isFinite, timeout > 0 else {
            throw UsageError.invalidValue(option: "timeout", value: "\(timeout)", expected: "seconds > 0")
        }
        let wait = try arguments.value("wait", as: Double.self)
        if let wait, !(wait.isFinite && wait >= 0) {
            throw UsageError.invalidValue(option: "wait", value: "\(wait)", expected: "seconds ≥ 0")
        }
        let curve = try CurveOptions.clientKeys(arguments)
        let json = arguments.flag("json")
        let outcome = await Threads.run(name: "mope-status") { () -> Result<ClusterStatus, ClientError> in
            Result { () throws(ClientError) in
                let client = try CoordinatorClient(endpoint: endpoint, curve: curve)
                return try poll(client, timeout: .milliseconds(Int64(timeout * 1000)),
                                wait: wait.map { .milliseconds(Int64($0 * 1000)) })
            }
        }
        let status: ClusterStatus
        switch outcome {
        case let .success(answer):
            status = answer
        case let .failure(error):
            CLI.writeErr("error: \(error.description)\n")
            return CLI.failure
        }
        CLI.writeOut(json ? jsonText(status) + "\n" : table(status, endpoint: endpoint))
        if let reason = status.notReadyReason {
            CLI.writeErr("not ready: \(reason)\n")
            return CLI.failure
        }
        return CLI.success
    }

    /// One answer, or with `wait` the first ready answer (else the last one) within that time.
    static func poll(_ client: CoordinatorClient, timeout: Duration, wait: Duration?) throws(ClientError)
        -> ClusterStatus
    {
        guard let wait else { return try client.status(timeout: timeout) }
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: wait)
        var lastStatus: ClusterStatus?
        var lastError = ClientError.timeout(endpoint: client.endpoint, seconds: GenerateCommand.seconds(timeout))
        while true {
            let left = clock.now.duration(to: deadline)
            do throws(ClientError) {
                let status = try client.status(timeout: max(.milliseconds(100), min(timeout, left)))
                if status.ready { return status }
                lastStatus = status
            } catch {
                // A coordinator that is still starting: ask again while there is time.
                if case .socket = error { throw error }
                lastError = error
            }
            let rest = clock.now.duration(to: deadline)
            guard rest > .zero else { break }
            Thread.sleep(forTimeInterval: min(0.2, GenerateCommand.seconds(rest)))
        }
        if let lastStatus { return lastStatus }
        throw lastError
    }

    // MARK: Output

    /// The readable table.
    static func table(_ status: ClusterStatus, endpoint: String) -> String {
        var lines = [
            "coordinator \(endpoint): \(status.ready ? "ready" : "not ready")\(status.draining ? ", draining" : ""); "
                + "protocol \(status.protocolVersion); sessions \(status.sessionsRunning) running, "
                + "\(status.sessionsQueued) queued"
                + (status.sessionsQueued > 0 ? " (the oldest for \(status.oldestQueuedMicros / 1000) ms)" : ""),
        ]
        var rows: [[String]] = [["EXPERT", "REPLICAS", "LIVE", "WORKER", "SESSIONS", "STATE"]]
        for expert in status.experts {
            let head = [expert.name, "\(expert.replicas)", "\(expert.live)"]
            if expert.workers.isEmpty { rows.append(head + ["-", "", ""]) }
            for (index, worker) in expert.workers.enumerated() {
                rows.append((index == 0 ? head : ["", "", ""]) + [
                    worker.id, "\(worker.sessions)/\(worker.capacity)", worker.draining ? "draining" : "live",
                ])
            }
        }
        let widths = rows[0].indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
        for row in rows {
            let cells = row.enumerated().map { column, cell in
                column == row.count - 1 ? cell : cell.padding(toLength: widths[column] + 2, withPad: " ", startingAt: 0)
            }
            var line = cells.joined()
            while line.hasSuffix(" ") { line.removeLast() }
            lines.append(line)
        }
        for missing in status.missing {
            lines.append("missing: \(missing.expert) has \(missing.live) of \(missing.wanted) replicas live")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// The JSON object `--json` prints.
    struct JSONStatus: Codable, Equatable {
        struct Sessions: Codable, Equatable {
            var running: UInt32
            var queued: UInt32
            /// How long the oldest queued request has waited, in milliseconds.
            var oldestQueuedMs: UInt64
        }

        struct Worker: Codable, Equatable {
            var id: String
            var sessions: UInt32
            var capacity: UInt32
            var draining: Bool
            var registrations: UInt32
        }

        struct Expert: Codable, Equatable {
            var name: String
            var replicas: UInt32
            var live: Int
            var workers: [Worker]
        }

        struct Missing: Codable, Equatable {
            var expert: String
            var wanted: Int
            var live: Int
        }

        var protocolVersion: UInt8
        var ready: Bool
        var draining: Bool
        var sessions: Sessions
        var experts: [Expert]
        var missing: [Missing]

        init(_ status: ClusterStatus) {
            protocolVersion = status.protocolVersion
            ready = status.ready
            draining = status.draining
            sessions = Sessions(running: status.sessionsRunning, queued: status.sessionsQueued,
                                oldestQueuedMs: status.oldestQueuedMicros / 1000)
            experts = status.experts.map { expert in
                Expert(name: expert.name, replicas: expert.replicas, live: expert.live, workers: expert.workers.map {
                    Worker(id: $0.id, sessions: $0.sessions, capacity: $0.capacity, draining: $0.draining,
                           registrations: $0.registrations)
                })
            }
            missing = status.missing.map { Missing(expert: $0.expert, wanted: $0.wanted, live: $0.live) }
        }
    }

    /// `status` as one line of JSON.
    static func jsonText(_ status: ClusterStatus) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(JSONStatus(status)) else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }
}
