import Foundation
import ProcessSupport
import TestKit
import Testing
import Wire

#if canImport(Glibc)
import Glibc
#endif

/// A streaming request by `curl -N`, its output written to a file as it arrives.
final class CurlStream {
    let pid: pid_t
    let output: String
    private let group: ProcessGroup

    init(group: ProcessGroup, directory: URL, url: String, body: String) throws {
        self.group = group
        output = directory.appendingPathComponent("curl-\(UInt32.random(in: 0...UInt32.max)).out").path
        pid = try group.spawn("/usr/bin/curl", ["-sN", "--max-time", "120", "-H", "Content-Type: application/json",
                                                "-d", body, url], standardOutput: .file(output))
    }

    var text: String { (try? String(contentsOfFile: output, encoding: .utf8)) ?? "" }

    /// The JSON events streamed so far (without `[DONE]`).
    var events: [[String: Any]] {
        text.components(separatedBy: "\n").compactMap { line -> [String: Any]? in
            guard line.hasPrefix("data: {") else { return nil }
            return (try? JSONSerialization.jsonObject(with: Data(line.dropFirst(6).utf8))) as? [String: Any]
        }
    }

    var finished: Bool { text.contains("data: [DONE]") }

    /// The text of the streamed chunks.
    var content: String {
        events.map { event in
            let choice = (event["choices"] as? [[String: Any]])?.first
            return ((choice?["delta"] as? [String: Any])?["content"] as? String) ?? (choice?["text"] as? String) ?? ""
        }.joined()
    }

    /// The `mope` object of the last chunk that has one.
    var mope: [String: Any]? { events.last { $0["mope"] != nil }?["mope"] as? [String: Any] }

    /// Waits until `condition` holds of the stream (or the deadline passes, or curl exits without it).
    func wait(for what: String, timeout: Duration = .seconds(60), _ condition: (CurlStream) -> Bool) throws {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        while ContinuousClock.now < deadline {
            if condition(self) { return }
            if group.wait(pid, timeout: .zero) != nil {
                if condition(self) { return }
                throw HarnessError("curl ended before \(what):\n\(text)")
            }
            usleep(2_000)
        }
        throw HarnessError("the stream did not show \(what) within \(timeout):\n\(text)")
    }
}

/// One request by curl: status, headers and body.
func curlRequest(_ url: String, body: String? = nil) throws -> (code: Int, headers: String, body: String) {
    var arguments = ["-sS", "-D", "-", "--max-time", "120"]
    if let body { arguments += ["-H", "Content-Type: application/json", "-d", body] }
    let run = try ChildProcess.run("/usr/bin/curl", arguments + [url], deadline: .seconds(180))
    let parts = run.output.components(separatedBy: "\r\n\r\n")
    let headers = parts.first ?? ""
    let status = headers.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
    return (status, headers, parts.dropFirst().joined(separator: "\r\n\r\n"))
}

func jsonObject(_ text: String) -> [String: Any]? {
    (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any]
}

/// The answer text of a whole chat completion.
func answerText(_ object: [String: Any]?) -> String? {
    let choice = (object?["choices"] as? [[String: Any]])?.first
    return (choice?["message"] as? [String: Any])?["content"] as? String
}

/// Admission, disconnects, coordinator loss and preference changes through `mope serve` on real clusters.
@Suite(.serialized)
struct ServeLifetimeTests {
    func chat(_ prompt: String, _ extra: String) -> String {
        #"{"messages":[{"role":"user","content":"\#(prompt)"}]"# + (extra.isEmpty ? "" : "," + extra) + "}"
    }

    @Test("a burst of three times the capacity all completes or gets 429 with Retry-After; none is degraded")
    func burst() throws {
        // Two sessions per worker, one worker per expert: a capacity of two requests, and a queue of two.
        let cluster = try TestCluster(
            experts: [TinyExperts.concise, TinyExperts.friendly], maxNewTokens: 24,
            extraConfig: ["maxWorkerSessions": 2, "admissionQueueLength": 2, "admissionQueueWaitMs": 60_000]
        )
        try cluster.start()
        let serve = try ServeProcess(group: cluster.group, mope: cluster.mope, directory: cluster.directory,
                                     coordinator: cluster.clientEndpoint)
        let body = chat("Tell me a story", #""max_tokens":24,"preference":"concise, friendly""#)
        let url = serve.base + "/v1/chat/completions"
        let answers = concurrently(6) { _ in try? curlRequest(url, body: body) }
        #expect(answers.count == 6)
        var completed = 0
        for answer in answers {
            guard let answer else {
                Issue.record("curl failed")
                continue
            }
            if answer.code == 429 {
                #expect(answer.headers.lowercased().contains("retry-after: 1"), "\(answer.headers)")
                #expect(answer.body.contains("overloaded"), "\(answer.body)")
                continue
            }
            #expect(answer.code == 200, "\(answer.body)")
            let mope = jsonObject(answer.body)?["mope"] as? [String: Any]
            #expect(mope?["degraded"] as? Bool == false, "\(answer.body)")
            completed += 1
        }
        // Two run and two wait whatever the order of arrival: at least four complete.
        #expect(completed >= 4, "\(answers.map { $0?.code ?? 0 })")
        try cluster.waitForStatus("no session running or queued") { $0.sessionsRunning == 0 && $0.sessionsQueued == 0 }
        let metrics = try curlRequest(serve.base + "/metrics")
        #expect(metrics.body.contains("mope_queue_wait_seconds_count"))
        #expect(metrics.body.contains("mope_sessions_queued 0"))
        #expect(metrics.body.contains("mope_expert_step_seconds_count{expert=\"concise\"}"), "\(metrics.body)")
        #expect(metrics.body.contains("mope_workers_live{expert=\"concise\"} 1"), "\(metrics.body)")
    }

    @Test("with every replica busy a request waits (status counts it queued) and over the queue gets 429")
    func queueThen429() throws {
        // The worker is stopped while it holds the sessions: the open deadline is long, so nothing fails over.
        let cluster = try TestCluster(
            experts: [TinyExperts.concise], stepDeadlineMs: 120_000, openDeadlineMs: 120_000, maxNewTokens: 8,
            extraConfig: ["maxWorkerSessions": 1, "admissionQueueLength": 1]
        )
        try cluster.start()
        let serve = try ServeProcess(group: cluster.group, mope: cluster.mope, directory: cluster.directory,
                                     coordinator: cluster.clientEndpoint)
        let worker = try #require(cluster.workerPIDs["concise"])
        cluster.group.signal(worker, SIGSTOP)
        defer { cluster.group.signal(worker, SIGCONT) }
        let body = chat("Hi", #""max_tokens":8,"stream":true"#)
        let url = serve.base + "/v1/chat/completions"
        let running = try CurlStream(group: cluster.group, directory: cluster.directory, url: url, body: body)
        try cluster.waitForStatus("one session running") { $0.sessionsRunning == 1 }
        let waiting = try CurlStream(group: cluster.group, directory: cluster.directory, url: url, body: body)
        try cluster.waitForStatus("one request queued") { $0.sessionsQueued == 1 }
        let refused = try curlRequest(url, body: chat("Hi", #""max_tokens":8"#))
        #expect(refused.code == 429, "\(refused.body)")
        #expect(refused.headers.lowercased().contains("retry-after:"))
        #expect(jsonObject(refused.body).flatMap { $0["error"] as? [String: Any] }?["code"] as? String == "overloaded")

        cluster.group.signal(worker, SIGCONT)
        try running.wait(for: "the end") { $0.finished }
        try waiting.wait(for: "the end") { $0.finished }
        for stream in [running, waiting] {
            #expect(stream.mope?["degraded"] as? Bool == false, "\(stream.text)")
            #expect(!stream.text.contains("\"error\""), "\(stream.text)")
        }
        #expect(((waiting.mope?["queued_ms"] as? Double) ?? 0) > 0, "\(waiting.text)")
    }

    @Test("an HTTP client that disconnects mid-stream has its session closed on every worker")
    func disconnectFreesSessions() throws {
        let cluster = try TestCluster(experts: [TinyExperts.concise, TinyExperts.friendly], maxNewTokens: 64)
        try cluster.start()
        let serve = try ServeProcess(group: cluster.group, mope: cluster.mope, directory: cluster.directory,
                                     coordinator: cluster.clientEndpoint)
        let stream = try CurlStream(
            group: cluster.group, directory: cluster.directory, url: serve.base + "/v1/chat/completions",
            body: chat("Tell me a story", #""max_tokens":64,"stream":true,"preference":"concise, friendly""#)
        )
        try stream.wait(for: "a first token") { !$0.content.isEmpty }
        #expect(!stream.finished)
        try cluster.waitForStatus("a session on both workers") { status in
            status.workers.filter { $0.sessions == 1 }.count == 2
        }
        cluster.group.signal(stream.pid, SIGKILL)
        _ = cluster.group.wait(stream.pid, timeout: .seconds(10))
        try cluster.waitForStatus("no session on any worker") { status in
            status.sessionsRunning == 0 && status.workers.allSatisfy { $0.sessions == 0 }
        }
        let log = (try? String(contentsOfFile: cluster.coordinatorLog, encoding: .utf8)) ?? ""
        #expect(!log.contains(" done: "), "the answer ended by itself, so the test proved nothing:\n\(log)")
    }

    @Test("Ctrl-C of mope generate closes its session on every worker")
    func generateInterrupt() throws {
        let cluster = try TestCluster(experts: [TinyExperts.concise, TinyExperts.friendly], stepDeadlineMs: 120_000,
                                      openDeadlineMs: 120_000, maxNewTokens: 128)
        try cluster.start()
        let output = cluster.directory.appendingPathComponent("generate.out").path
        let pid = try cluster.group.spawn(cluster.mope, [
            "generate", "--coordinator", cluster.clientEndpoint, "--preference", "concise, friendly",
            "--max-tokens", "128", "Tell me a long story",
        ], standardOutput: .file(output), standardError: .file(output + ".err"))
        // Stop the experts once the answer streams, so that it is still running when the signal comes.
        let deadline = ContinuousClock.now.advanced(by: .seconds(60))
        while ((try? String(contentsOfFile: output, encoding: .utf8)) ?? "").isEmpty, ContinuousClock.now < deadline {
            usleep(2_000)
        }
        for worker in Set(cluster.workerPIDs.values) { cluster.group.signal(worker, SIGSTOP) }
        try cluster.waitForStatus("a session on both workers") { status in
            status.workers.filter { $0.sessions == 1 }.count == 2
        }
        cluster.group.signal(pid, SIGINT)
        let exit = cluster.group.wait(pid, timeout: .seconds(30))
        for worker in Set(cluster.workerPIDs.values) { cluster.group.signal(worker, SIGCONT) }
        #expect(exit == .exited(130), "\((try? String(contentsOfFile: output + ".err", encoding: .utf8)) ?? "")")
        try cluster.waitForStatus("no session on any worker") { status in
            status.sessionsRunning == 0 && status.workers.allSatisfy { $0.sessions == 0 }
        }
        let log = (try? String(contentsOfFile: cluster.coordinatorLog, encoding: .utf8)) ?? ""
        #expect(!log.contains(" done: "), "the answer ended by itself, so the test proved nothing:\n\(log)")
    }

    @Test("mope cluster --serve starts the HTTP front on the secure cluster; a stop ends it with the cluster")
    func clusterServe() throws {
        let cluster = try TestCluster(experts: [TinyExperts.concise, TinyExperts.friendly], maxNewTokens: 8)
        let keys = cluster.directory.appendingPathComponent("keys").path
        let launcher = try cluster.group.spawn(
            cluster.mope,
            ["cluster", "--config", cluster.configPath, "--threads", "1", "--stop-grace", "5", "--keys", keys,
             "--serve", "127.0.0.1:0"],
            log: cluster.launcherLog
        )
        var port: Int?
        let deadline = ContinuousClock.now.advanced(by: .seconds(120))
        while port == nil, ContinuousClock.now < deadline {
            let text = (try? String(contentsOfFile: cluster.launcherLog, encoding: .utf8)) ?? ""
            if let range = text.range(of: "listening on http://127.0.0.1:"), text.contains("cluster ready") {
                port = Int(text[range.upperBound...].prefix { $0.isNumber })
            }
            if cluster.group.wait(launcher, timeout: .zero) != nil { break }
            usleep(50_000)
        }
        let found = try #require(port, "\((try? String(contentsOfFile: cluster.launcherLog, encoding: .utf8)) ?? "")")
        let answer = try curlRequest("http://127.0.0.1:\(found)/v1/chat/completions",
                                     body: chat("Hi", #""max_tokens":4"#))
        #expect(answer.code == 200, "\(answer.body)")
        #expect(answerText(jsonObject(answer.body)) != nil)
        #expect(try curlRequest("http://127.0.0.1:\(found)/ready").code == 200)
        cluster.group.signal(launcher, SIGTERM)
        #expect(cluster.group.wait(launcher, timeout: .seconds(60)) == .exited(0))
        #expect((try? curlRequest("http://127.0.0.1:\(found)/health"))?.code == 0)
    }

    @Test("kill -9 of one of two coordinators mid-stream: the answer resumes on the other with the identical text")
    func coordinatorLoss() throws {
        let first = try TestCluster(experts: [TinyExperts.concise, TinyExperts.friendly], stepDeadlineMs: 120_000,
                                    openDeadlineMs: 120_000, maxNewTokens: 64)
        let second = try TestCluster(experts: [TinyExperts.concise, TinyExperts.friendly], stepDeadlineMs: 120_000,
                                     openDeadlineMs: 120_000, maxNewTokens: 64)
        try first.start()
        try second.start()
        let serve = try ServeProcess(
            group: first.group, mope: first.mope, directory: first.directory,
            coordinator: "\(first.clientEndpoint),\(second.clientEndpoint)", extra: ["--heartbeat", "0.3"]
        )
        let settings = #""max_tokens":48,"temperature":0.9,"seed":7,"preference":"concise, friendly""#
        let url = serve.base + "/v1/chat/completions"
        // The reference, from the second cluster alone (the same models): what the answer must be.
        let direct = try ServeProcess(group: second.group, mope: second.mope, directory: second.directory,
                                      coordinator: second.clientEndpoint)
        let reference = try curlRequest(direct.base + "/v1/chat/completions", body: chat("Tell me a story", settings))
        let expected = try #require(answerText(jsonObject(reference.body)), "\(reference.body)")

        let stream = try CurlStream(group: first.group, directory: first.directory, url: url,
                                    body: chat("Tell me a story", settings + #","stream":true"#))
        try stream.wait(for: "a first token") { !$0.content.isEmpty }
        // Freeze the first cluster's experts so the answer is surely mid-way, then kill its coordinator.
        for worker in Set(first.workerPIDs.values) { first.group.signal(worker, SIGSTOP) }
        first.group.signal(first.coordinatorPID, SIGKILL)
        defer { for worker in Set(first.workerPIDs.values) { first.group.signal(worker, SIGCONT) } }
        try stream.wait(for: "the end", timeout: .seconds(90)) { $0.finished }
        #expect(!stream.text.contains("\"error\""), "\(stream.text)\n\(serve.logText)")
        #expect(stream.content == expected)
        #expect(((stream.mope?["failovers"] as? Int) ?? 0) >= 1, "\(stream.text)")

        // With the first gone and only it configured, the error says how many tokens were sent.
        let lonely = try ServeProcess(group: second.group, mope: second.mope, directory: second.directory,
                                      coordinator: second.clientEndpoint, extra: ["--heartbeat", "0.3"])
        let lost = try CurlStream(group: second.group, directory: second.directory, url: lonely.base
            + "/v1/chat/completions", body: chat("Tell me a story", settings + #","stream":true"#))
        try lost.wait(for: "a first token") { !$0.content.isEmpty }
        for worker in Set(second.workerPIDs.values) { second.group.signal(worker, SIGSTOP) }
        second.group.signal(second.coordinatorPID, SIGKILL)
        defer { for worker in Set(second.workerPIDs.values) { second.group.signal(worker, SIGCONT) } }
        try lost.wait(for: "the error", timeout: .seconds(60)) { $0.finished }
        #expect(lost.text.contains("coordinator_lost"), "\(lost.text)")
        #expect(lost.text.contains("tokens of the answer were sent"), "\(lost.text)")
    }

    @Test("mope generate with two coordinators resumes on the second when the first is killed, with the same text")
    func generateCoordinatorLoss() throws {
        let first = try TestCluster(experts: [TinyExperts.concise, TinyExperts.friendly], stepDeadlineMs: 120_000,
                                    openDeadlineMs: 120_000, maxNewTokens: 64)
        let second = try TestCluster(experts: [TinyExperts.concise, TinyExperts.friendly], maxNewTokens: 64)
        try first.start()
        try second.start()
        let request = ["--preference", "concise, friendly", "--max-tokens", "48", "--temperature", "0.9", "--seed", "7",
                       "Tell me a story"]
        let reference = try ChildProcess.run(first.mope, ["generate", "--coordinator", second.clientEndpoint] + request)
        #expect(reference.status == 0, "\(reference.errorOutput)")

        let output = first.directory.appendingPathComponent("generate.out").path
        let pid = try first.group.spawn(first.mope, [
            "generate", "--coordinator", "\(first.clientEndpoint),\(second.clientEndpoint)", "--heartbeat", "0.3",
        ] + request, standardOutput: .file(output), standardError: .file(output + ".err"))
        let deadline = ContinuousClock.now.advanced(by: .seconds(60))
        while ((try? String(contentsOfFile: output, encoding: .utf8)) ?? "").isEmpty, ContinuousClock.now < deadline {
            usleep(2_000)
        }
        for worker in Set(first.workerPIDs.values) { first.group.signal(worker, SIGSTOP) }
        first.group.signal(first.coordinatorPID, SIGKILL)
        defer { for worker in Set(first.workerPIDs.values) { first.group.signal(worker, SIGCONT) } }
        #expect(first.group.wait(pid, timeout: .seconds(60)) == .exited(0))
        let errors = (try? String(contentsOfFile: output + ".err", encoding: .utf8)) ?? ""
        #expect(errors.contains("resuming on the next"), "\(errors)")
        #expect((try? String(contentsOfFile: output, encoding: .utf8)) == reference.output)
    }

    @Test("a preference posted mid-stream decides from the token it names, as the same change in a schedule does")
    func preferenceChange() throws {
        let cluster = try TestCluster(experts: [TinyExperts.concise, TinyExperts.friendly], stepDeadlineMs: 120_000,
                                      openDeadlineMs: 120_000, maxNewTokens: 48)
        try cluster.start()
        let serve = try ServeProcess(group: cluster.group, mope: cluster.mope, directory: cluster.directory,
                                     coordinator: cluster.clientEndpoint)
        let url = serve.base + "/v1/chat/completions"
        let settings = #""max_tokens":40,"temperature":0.9,"seed":3,"preference":"concise, friendly""#
        let stream = try CurlStream(group: cluster.group, directory: cluster.directory, url: url,
                                    body: chat("Tell me a story", settings + #","stream":true"#))
        try stream.wait(for: "the session id") { ($0.events.first?["mope"] as? [String: Any])?["session"] != nil }
        let session = try #require((stream.events.first?["mope"] as? [String: Any])?["session"] as? String)
        #expect(session == stream.events.first?["id"] as? String)
        // Hold the experts so that the change lands mid-answer, not after it.
        let workers = Set(cluster.workerPIDs.values)
        for worker in workers { cluster.group.signal(worker, SIGSTOP) }
        var resumed = false
        defer { if !resumed { for worker in workers { cluster.group.signal(worker, SIGCONT) } } }
        let posted = try curlRequest(serve.base + "/v1/mope/sessions/\(session)/preference",
                                     body: #"{"preference":"concise"}"#)
        for worker in workers { cluster.group.signal(worker, SIGCONT) }
        resumed = true
        #expect(posted.code == 200, "\(posted.body)")
        let from = try #require(jsonObject(posted.body)?["from_token"] as? Int, "\(posted.body)")
        try stream.wait(for: "the end") { $0.finished }

        let scheduled = try curlRequest(url, body: chat("Tell me a story", settings
            + #","preference_schedule":[{"from_token":\#(from),"preference":"concise"}]"#))
        #expect(scheduled.code == 200, "\(scheduled.body)")
        #expect(answerText(jsonObject(scheduled.body)) == stream.content)

        // An unknown session is 404; a bad body is 400 naming the field.
        #expect(try curlRequest(serve.base + "/v1/mope/sessions/nope/preference",
                                body: #"{"preference":"concise"}"#).code == 404)
        let bad = try curlRequest(serve.base + "/v1/mope/sessions/\(session)/preference", body: #"{"preference":3}"#)
        #expect(bad.code == 400)
        #expect(bad.body.contains("\"param\":\"preference\""), "\(bad.body)")
        let badSchedule = try curlRequest(url, body: chat("Hi", #""preference_schedule":[{"from_token":-1}]"#))
        #expect(badSchedule.code == 400)
        #expect(badSchedule.body.contains("preference_schedule[0].from_token"), "\(badSchedule.body)")
    }

    @Test("64 concurrent streams on the tiny models all complete")
    func sixtyFourStreams() throws {
        let cluster = try TestCluster(experts: [TinyExperts.concise, TinyExperts.friendly], openDeadlineMs: 60_000,
                                      maxNewTokens: 8)
        try cluster.start()
        let serve = try ServeProcess(group: cluster.group, mope: cluster.mope, directory: cluster.directory,
                                     coordinator: cluster.clientEndpoint)
        let url = serve.base + "/v1/chat/completions"
        let streams = try (0..<64).map { index in
            try CurlStream(group: cluster.group, directory: cluster.directory, url: url,
                           body: chat("Story \(index)", #""max_tokens":8,"stream":true,"preference":"concise, friendly""#))
        }
        for stream in streams {
            try stream.wait(for: "the end", timeout: .seconds(300)) { $0.finished }
            #expect(!stream.text.contains("\"error\""), "\(stream.text)")
            #expect(stream.mope?["degraded"] as? Bool == false)
        }
    }
}
