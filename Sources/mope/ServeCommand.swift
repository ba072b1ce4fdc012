import CLI
import Coordinator
import Dispatch
import Foundation
import HTTPServer
import OpenAIAPI
import ProcessSupport
import Wire
import ZeroMQ

/// `mope serve`: the OpenAI-compatible HTTP front of a cluster.
enum ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        name: "serve",
        abstract: "Serve a mope cluster over an OpenAI-compatible HTTP API.",
        discussion: """
            Listens on --listen (HOST:PORT; port 0 picks a free one) and answers, with each request run as a
            request of its own to the coordinator:

              POST /v1/chat/completions  multi-turn messages (system/user/assistant), every expert gets them
                                         through its chat template; "stream": true for server-sent events
                                         (chat.completion.chunk, then data: [DONE]); max_tokens, temperature,
                                         top_p, seed, stop; mope's "preference" (the text form of
                                         mope generate --preference, or {"concise": 2, "friendly": 1}) and
                                         "merge" ("probability" or "logit"), "preference_schedule"
                                         ([{"from_token": N, "preference": …}], ascending)
              POST /v1/completions       raw "prompt" continued as is (no chat template)
              POST /v1/mope/sessions/{id}/preference
                                         {"preference": …} changes a running answer's preference from its
                                         next token ({id}: the answer's "id", also in the first chunk's
                                         "mope" object); answers {"from_token": N}
              GET  /v1/models            the one model the cluster serves (--model-name)
              GET  /health, /ready       200 when every expert has a live replica, else 503 naming what is
                                         missing (from the coordinator's status answer)
              GET  /metrics              Prometheus text: requests by outcome, time to first token and
                                         inter-token latency histograms, HTTP errors by status, sessions
                                         running

            Answers carry "usage" and a "mope" object: the experts with their mean weights, lost experts
            ("degraded": true), failovers. Errors are OpenAI error objects: 400 naming the field, 404, 405,
            413 (body over --max-body-bytes), 429 with Retry-After (every replica busy and the coordinator's
            admission queue full), 503 (no live worker, coordinator unreachable or draining), 504 (past
            --timeout).

            With several coordinators (--coordinator A,B) a request goes to the first one that accepts a
            connection within --connect-timeout. A coordinator that goes silent mid-answer (two --heartbeat
            intervals without an answer to the front's pings) is left: the request resumes on the next one from
            the tokens already sent, with the same seed, so the text is the same; with none left the client gets
            an error saying how many tokens were sent. A client that disconnects mid-stream has its request
            cancelled: the coordinator closes its sessions on every worker at the next token.
            SIGTERM or SIGINT drains: no new connections, running streams finish (at most --drain-grace
            seconds), then the process exits 0.
            Exit codes: 0 after a drain, 1 when it cannot listen, 2 usage.
            """,
        options: [
            .value("coordinator", "endpoints", default: "tcp://127.0.0.1:5556",
                   help: "The coordinator's endpoint, or several separated by commas."),
            .value("listen", "host:port", default: "127.0.0.1:8000", help: "Where to listen (port 0: any free one)."),
            .value("model-name", "id", default: APIModel.defaultID, help: "The model id /v1/models lists."),
            .value("timeout", "seconds", default: "300", help: "The deadline of each request (then 504)."),
            .value("connect-timeout", "seconds", default: "2",
                   help: "How long to wait for a connection to a coordinator (then the next one, or 503)."),
            .value("max-body-bytes", "n", default: "1048576", help: "The largest request body (then 413)."),
            .value("idle-timeout", "seconds", default: "60",
                   help: "Close a connection that sends or receives nothing for this long."),
            .value("max-connections", "n", default: "256", help: "The most HTTP connections at once."),
            .value("drain-grace", "seconds", default: "30", help: "How long a drain lets running requests finish."),
            .value("heartbeat", "seconds", default: "1",
                   help: "While a request waits, ping the coordinator after this much silence; two mean it is lost."),
        ] + CurveOptions.clientOptions(role: "front")
    )

    static func run(_ arguments: ParsedArguments) async throws -> Int32 {
        ShutdownSignals.install()
        defer { ShutdownSignals.uninstall() }
        let endpoints = try arguments.require("coordinator").split(separator: ",")
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard !endpoints.isEmpty else {
            throw UsageError.invalidValue(option: "coordinator", value: "", expected: "one or more endpoints")
        }
        let listen = try arguments.require("listen")
        guard let (host, port) = parseListen(listen) else {
            throw UsageError.invalidValue(option: "listen", value: listen, expected: "HOST:PORT, e.g. 127.0.0.1:8000")
        }
        func seconds(_ name: String, allowZero: Bool = false) throws -> Double {
            let value = try arguments.require(name, as: Double.self)
            guard value.isFinite, allowZero ? value >= 0 : value > 0 else {
                throw UsageError.invalidValue(option: name, value: "\(value)",
                                              expected: allowZero ? "seconds ≥ 0" : "seconds > 0")
            }
            return value
        }
        let timeout = try seconds("timeout")
        let connectTimeout = try seconds("connect-timeout")
        let idle = try seconds("idle-timeout", allowZero: true)
        let grace = try seconds("drain-grace", allowZero: true)
        let heartbeat = try seconds("heartbeat")
        let maxBody = try arguments.require("max-body-bytes", as: Int.self)
        guard maxBody > 0 else {
            throw UsageError.invalidValue(option: "max-body-bytes", value: "\(maxBody)", expected: "a size > 0")
        }
        let maxConnections = try arguments.require("max-connections", as: UInt32.self)
        guard maxConnections > 0 else {
            throw UsageError.invalidValue(option: "max-connections", value: "0", expected: "at least 1")
        }
        let curve = try CurveOptions.clientKeys(arguments)
        let service = APIService(
            endpoints: endpoints, curve: curve, modelName: try arguments.require("model-name"),
            timeout: .milliseconds(Int64(timeout * 1000)), connectTimeout: .milliseconds(Int64(connectTimeout * 1000)),
            maxBodyBytes: maxBody, heartbeat: .milliseconds(Int64(heartbeat * 1000))
        )
        let server: HTTPServer
        do {
            server = try HTTPServer(
                host: host, port: port,
                limits: HTTPServerLimits(maxBodyBytes: maxBody, connectionTimeoutSeconds: UInt32(idle.rounded(.up)),
                                         maxConnections: maxConnections),
                handler: service.handle
            )
        } catch {
            CLI.writeErr("error: \(error.description)\n")
            return CLI.failure
        }
        let shown = host.contains(":") ? "[\(host)]" : host
        CLI.writeErr("[serve] listening on http://\(shown):\(server.port) (coordinators: "
            + endpoints.joined(separator: ", ") + ")\n")
        let stopping = ReadinessLatch(needed: 1)
        if SystemdNotify.isEnabled {
            let listening = "listening on http://\(shown):\(server.port)"
            SystemdNotify.status("\(listening); waiting for a coordinator to answer")
            Threads.start(name: "mope-serve-notify", stackSize: 1 << 20) {
                notifyWhenReachable(endpoints: endpoints, curve: curve, connectTimeout: connectTimeout,
                                    listening: listening, stopping: stopping)
            }
        }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let once = Once()
            ShutdownSignals.onSignal { count in
                if stopping.mark("signal") {
                    SystemdNotify.stopping(status: "draining: running streams finish, new connections are refused")
                }
                if count >= 2 {
                    server.stop()
                    CLI.writeErr("[serve] second signal: stopped\n")
                    exit(CLI.success)
                }
                guard once.first() else { return }
                Threads.start(name: "mope-serve-drain", stackSize: 1 << 20) {
                    CLI.writeErr("[serve] draining: \(server.activeRequests) requests running\n")
                    let ended = server.drain(timeout: .milliseconds(Int64(grace * 1000)))
                    server.stop()
                    CLI.writeErr(ended ? "[serve] drained\n" : "[serve] drain grace over; stopped\n")
                    continuation.resume()
                }
            }
        }
        return CLI.success
    }

    /// Tells systemd (Type=notify) the front is ready once it listens (it does when this is called) and one of the
    /// coordinators answers a status request, asked every second until then or until a drain begins.
    static func notifyWhenReachable(
        endpoints: [String], curve: CurveClientKeys?, connectTimeout: Double, listening: String,
        stopping: ReadinessLatch
    ) {
        let timeout = Duration.milliseconds(Int64(connectTimeout * 1000))
        while !stopping.isOpen {
            for endpoint in endpoints {
                do throws(ClientError) {
                    let client = try CoordinatorClient(endpoint: endpoint, curve: curve, connectTimeout: timeout)
                    let status = try client.status(timeout: timeout)
                    guard !stopping.isOpen else { return }
                    let experts = status.ready ? "every expert has its replicas" : "not every expert is up yet"
                    SystemdNotify.ready(status: "\(listening); coordinator \(endpoint) answers (\(experts))")
                    return
                } catch {
                    SystemdNotify.status("\(listening); coordinator \(endpoint): \(error.description)")
                }
            }
            usleep(1_000_000)
        }
    }

    /// HOST:PORT, or [IPv6]:PORT.
    static func parseListen(_ text: String) -> (String, UInt16)? {
        guard let colon = text.lastIndex(of: ":"), let port = UInt16(text[text.index(after: colon)...]) else {
            return nil
        }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return host.isEmpty ? nil : (host, port)
    }
}

/// Lets a signal handler run its body once.
private final class Once: @unchecked Sendable {
    private let lock = NSLock()
    private var done = false

    func first() -> Bool {
        lock.lock()
        defer { lock.unlock() }
        if done { return false }
        done = true
        return true
    }
}

// MARK: - The service

/// One generation's events, handed from the thread that runs the coordinator client to the HTTP side.
final class GenerationPipe: @unchecked Sendable {
    enum Event {
        case token(TokenEvent)
        case done(Done)
        case failed(APIError)
    }

    private let condition = NSCondition()
    private var events: [Event] = []
    /// Cancels the generation and carries preference changes to it.
    let control = GenerationControl()

    func push(_ event: Event) {
        condition.lock()
        events.append(event)
        condition.signal()
        condition.unlock()
    }

    /// The next event, waiting for it.
    func next() -> Event {
        condition.lock()
        defer { condition.unlock() }
        while events.isEmpty { condition.wait() }
        return events.removeFirst()
    }

    /// The HTTP client went away: the generation stops at its next poll.
    func cancel() { control.cancel() }
}

/// Answers the API's requests; each generation is a `CoordinatorClient` request of its own, on its own thread
/// (the connection's thread, or one started for a stream), never on Swift's cooperative pool.
final class APIService: @unchecked Sendable {
    let endpoints: [String]
    let curve: CurveClientKeys?
    let modelName: String
    let timeout: Duration
    let connectTimeout: Duration
    let maxBodyBytes: Int
    let pool: CoordinatorPool
    let metrics = ServeMetrics.makeRegistry()
    /// The running generations by answer id, for preference changes.
    private var live: [String: GenerationControl] = [:]
    private let created = Int(Date().timeIntervalSince1970)
    private let lock = NSLock()
    private var preferred = 0
    private var counter: UInt64 = 0
    private var running = 0

    init(
        endpoints: [String], curve: CurveClientKeys?, modelName: String, timeout: Duration, connectTimeout: Duration,
        maxBodyBytes: Int, heartbeat: Duration = .seconds(1)
    ) {
        pool = CoordinatorPool(endpoints: endpoints, curve: curve, connectTimeout: connectTimeout,
                               heartbeatInterval: heartbeat)
        self.endpoints = endpoints
        self.curve = curve
        self.modelName = modelName
        self.timeout = timeout
        self.connectTimeout = connectTimeout
        self.maxBodyBytes = maxBodyBytes
    }

    /// The HTTP handler.
    func handle(_ request: HTTPRequest) -> HTTPResponse {
        let route: APIRoute
        switch APIRoute.match(method: request.method, path: request.path) {
        case let .success(matched): route = matched
        case let .failure(error): return errorResponse(error, endpoint: "unknown")
        }
        switch route {
        case .models:
            count(route, "ok")
            return json(200, APIModel.list(ids: [modelName], created: created))
        case .metrics:
            count(route, "ok")
            scrapeCoordinator()
            return HTTPResponse(status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8",
                                body: Array(metrics.render().utf8))
        case .health, .ready:
            return health(route)
        case .chatCompletions:
            do throws(APIError) {
                let parsed = try ChatCompletionRequest.parse(request.body)
                return generate(parsed.generate, options: parsed.options, route: route)
            } catch {
                return errorResponse(error, endpoint: route.name)
            }
        case .completions:
            do throws(APIError) {
                let parsed = try CompletionRequest.parse(request.body)
                return generate(parsed.generate, options: parsed.options, route: route)
            } catch {
                return errorResponse(error, endpoint: route.name)
            }
        case let .sessionPreference(id):
            return changePreference(id: id, body: request.body, route: route)
        }
    }

    // MARK: Preference changes

    /// `POST /v1/mope/sessions/{id}/preference`: the running answer `id` takes the new preference from its next
    /// token; the answer says which (`from_token`, 0 = the first generated token).
    private func changePreference(id: String, body: [UInt8], route: APIRoute) -> HTTPResponse {
        let update: PreferenceUpdate
        do throws(APIError) {
            update = try PreferenceUpdate.parse(body)
        } catch {
            return errorResponse(error, endpoint: route.name)
        }
        lock.lock()
        let control = live[id]
        lock.unlock()
        let missing = APIError(status: 404, message: "no running answer has the id \(id) (it may have ended)",
                               type: "invalid_request_error", code: "session_not_found")
        guard let control else { return errorResponse(missing, endpoint: route.name) }
        guard let from = control.changePreference(update.preference, timeout: .seconds(10)) else {
            return errorResponse(missing, endpoint: route.name)
        }
        count(route, "ok")
        return json(200, JSONBody.bytes(["session": id, "preference": update.preference, "from_token": Int(from)]
            as [String: Any]))
    }

    // MARK: Metrics from the coordinator

    /// Sets the gauges the coordinator's status answers: sessions running and queued, live workers per expert.
    private func scrapeCoordinator() {
        lock.lock()
        let index = preferred
        lock.unlock()
        guard index < endpoints.count else { return }
        do throws(ClientError) {
            let client = try CoordinatorClient(endpoint: endpoints[index], curve: curve,
                                               connectTimeout: min(connectTimeout, .milliseconds(500)))
            let status = try client.status(timeout: .milliseconds(500))
            metrics.set(ServeMetrics.sessionsQueued, Double(status.sessionsQueued))
            metrics.set(ServeMetrics.oldestQueued, Double(status.oldestQueuedMicros) / 1e6)
            metrics.set(ServeMetrics.coordinatorSessions, Double(status.sessionsRunning))
            for expert in status.experts {
                metrics.set(ServeMetrics.workersLive, Double(expert.live), labels: [("expert", expert.name)])
            }
        } catch {
            // The page still renders what the front itself counted.
        }
    }

    // MARK: Health

    /// `/health`: 200 when every expert has at least one live worker, `/ready`: 200 when every expert has its
    /// wanted replicas live and the coordinator takes requests; else 503 naming what is missing. The body is the
    /// coordinator's status as `mope status --json` prints it, with a `reason` when the answer is 503.
    private func health(_ route: APIRoute) -> HTTPResponse {
        var failure = "no coordinator configured"
        for endpoint in endpoints {
            do throws(ClientError) {
                let client = try CoordinatorClient(endpoint: endpoint, curve: curve, connectTimeout: connectTimeout)
                let status = try client.status(timeout: connectTimeout)
                let healthy: Bool
                let reason: String?
                if route == .ready {
                    healthy = status.ready
                    reason = status.notReadyReason
                } else {
                    let dead = status.experts.filter { $0.live == 0 }.map(\.name)
                    healthy = !status.draining && dead.isEmpty
                    reason = status.draining ? "the coordinator is draining"
                        : dead.isEmpty ? nil : "no live worker for " + dead.joined(separator: ", ")
                }
                var body = (try? JSONSerialization.jsonObject(with: Data(StatusCommand.jsonText(status).utf8)))
                    as? [String: Any] ?? [:]
                body["coordinator"] = endpoint
                if let reason, !healthy { body["reason"] = reason }
                count(route, healthy ? "ok" : "unavailable")
                if !healthy { metrics.add(ServeMetrics.httpErrors, labels: [("code", "503")]) }
                return json(healthy ? 200 : 503, JSONBody.bytes(body))
            } catch {
                failure = "\(endpoint): \(error.description)"
            }
        }
        count(route, "unavailable")
        metrics.add(ServeMetrics.httpErrors, labels: [("code", "503")])
        return json(503, JSONBody.bytes(["ready": false, "reason": failure] as [String: Any]))
    }

    // MARK: Generation

    private func nextID(_ route: APIRoute) -> String {
        lock.lock()
        counter += 1
        let number = counter
        lock.unlock()
        let prefix = route == .chatCompletions ? "chatcmpl" : "cmpl"
        return "\(prefix)-\(String(UInt32(truncatingIfNeeded: created), radix: 16))\(String(number, radix: 16))"
    }

    private func generate(_ generate: Generate, options: GenerationOptions, route: APIRoute) -> HTTPResponse {
        let identity = AnswerIdentity(id: nextID(route), created: Int(Date().timeIntervalSince1970),
                                      model: options.model)
        let pipe = GenerationPipe()
        lock.lock()
        live[identity.id] = pipe.control
        lock.unlock()
        if !options.stream {
            run(generate, route: route, into: pipe, id: identity.id)
            while true {
                switch pipe.next() {
                case .token: continue
                case let .done(done):
                    let body = route == .chatCompletions
                        ? Answers.chatCompletion(done, identity: identity, options: options)
                        : Answers.completion(done, identity: identity, options: options)
                    return json(200, body)
                case let .failed(error):
                    return errorResponse(error, endpoint: nil)
                }
            }
        }
        let started = Threads.start(name: "mope-serve-stream", stackSize: 4 << 20) { [self] in
            run(generate, route: route, into: pipe, id: identity.id)
        }
        if !started {
            forget(identity.id)
            return errorResponse(.internalError("the server could not start a thread"), endpoint: nil) }
        // The status line waits for the first event, so that a refused request gets its real status.
        let first = pipe.next()
        if case let .failed(error) = first { return errorResponse(error, endpoint: nil) }
        let stream = SSEStream(first: first, pipe: pipe, identity: identity, options: options, route: route)
        return HTTPResponse(
            status: 200,
            headers: [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")],
            body: .stream(HTTPStream(next: { stream.next() }, onClose: { gone in if gone { pipe.cancel() } }))
        )
    }

    private func forget(_ id: String) {
        lock.lock()
        live[id] = nil
        lock.unlock()
    }

    /// Runs one request against the coordinators (the first that accepts a connection, then the next when one is
    /// lost mid-answer), pushing its events.
    private func run(_ generate: Generate, route: APIRoute, into pipe: GenerationPipe, id: String) {
        let start = ContinuousClock.now
        var last: ContinuousClock.Instant?
        adjustRunning(+1)
        defer {
            adjustRunning(-1)
            forget(id)
        }
        lock.lock()
        let first = preferred
        lock.unlock()
        var outcome = "error"
        defer {
            count(route, outcome)
            metrics.observe(ServeMetrics.requestDuration, seconds(start.duration(to: .now)),
                            labels: [("endpoint", route.name)])
        }
        do throws(ClientError) {
            let (done, index) = try pool.generate(
                generate, first: first, timeout: timeout, control: pipe.control,
                onFailover: { [metrics] _, _ in metrics.add(ServeMetrics.coordinatorFailovers) }
            ) { event in
                let now = ContinuousClock.now
                if let last {
                    metrics.observe(ServeMetrics.interTokenLatency, seconds(last.duration(to: now)))
                } else {
                    metrics.observe(ServeMetrics.timeToFirstToken, seconds(start.duration(to: now)))
                }
                last = now
                pipe.push(.token(event))
            }
            lock.lock()
            preferred = index
            lock.unlock()
            metrics.add(ServeMetrics.tokens, Double(done.tokens))
            metrics.observe(ServeMetrics.queueWait, Double(done.queuedMicros) / 1e6)
            for expert in done.experts where expert.meanStepMicros > 0 {
                metrics.observe(ServeMetrics.expertStep, Double(expert.meanStepMicros) / 1e6,
                                labels: [("expert", expert.expert)])
            }
            if done.failovers > 0 { metrics.add(ServeMetrics.failovers, Double(done.failovers)) }
            if !done.lostExperts.isEmpty { metrics.add(ServeMetrics.degraded) }
            outcome = done.lostExperts.isEmpty ? "ok" : "degraded"
            pipe.push(.done(done))
        } catch {
            switch error {
            case .cancelled: outcome = "client_gone"
            case .rejected(let reply) where reply.code == .overloaded: outcome = "overloaded"
            default: break
            }
            pipe.push(.failed(Self.apiError(error)))
        }
    }

    static func apiError(_ error: ClientError) -> APIError {
        switch error {
        case let .rejected(reply): APIError(reply: reply)
        case .timeout: .timeout(error.description)
        case .unreachable: .unavailable(error.description, code: "coordinator_unavailable")
        case .cancelled: APIError(status: 499, message: error.description, type: "cancelled", code: "cancelled")
        case .coordinatorLost: .unavailable(error.description, code: "coordinator_lost")
        case .socket: .unavailable(error.description, code: "coordinator_unavailable")
        }
    }

    private func adjustRunning(_ delta: Int) {
        lock.lock()
        running += delta
        let now = running
        lock.unlock()
        metrics.set(ServeMetrics.sessionsRunning, Double(now))
    }

    // MARK: Answers

    private func count(_ route: APIRoute, _ outcome: String) {
        metrics.add(ServeMetrics.requests, labels: [("endpoint", route.name), ("outcome", outcome)])
    }

    private func json(_ status: Int, _ body: [UInt8]) -> HTTPResponse {
        HTTPResponse(status: status, contentType: "application/json", body: body)
    }

    /// An error answer, counted by status (and as a request outcome when `endpoint` is given: errors found before
    /// a generation started).
    private func errorResponse(_ error: APIError, endpoint: String?) -> HTTPResponse {
        metrics.add(ServeMetrics.httpErrors, labels: [("code", String(error.status))])
        if let endpoint { metrics.add(ServeMetrics.requests, labels: [("endpoint", endpoint), ("outcome", "invalid")]) }
        var headers: [(name: String, value: String)] = []
        if error.status == 405 { headers.append(("Allow", error.message.components(separatedBy: "use ").last ?? "")) }
        if error.status == 429 { headers.append(("Retry-After", String(APIError.retryAfterSeconds))) }
        return HTTPResponse(status: error.status, contentType: "application/json", body: error.body, headers: headers)
    }
}

/// Turns a generation's events into server-sent events, pulled by the HTTP server chunk by chunk.
final class SSEStream: @unchecked Sendable {
    private let pipe: GenerationPipe
    private let identity: AnswerIdentity
    private let options: GenerationOptions
    private let route: APIRoute
    private let lock = NSLock()
    private var pending: GenerationPipe.Event?
    private var sentRole = false
    private var ended = false
    /// The text streamed so far (the end may release text held back as a possible stop string).
    private var streamed = ""

    init(first: GenerationPipe.Event, pipe: GenerationPipe, identity: AnswerIdentity, options: GenerationOptions,
         route: APIRoute) {
        pending = first
        self.pipe = pipe
        self.identity = identity
        self.options = options
        self.route = route
    }

    /// The next chunk: a token's text, or the end (finish chunk, usage chunk when asked, `data: [DONE]`); nil
    /// after the end.
    func next() -> [UInt8]? {
        lock.lock()
        defer { lock.unlock() }
        while !ended {
            let event = pending ?? pipe.next()
            pending = nil
            let chat = route == .chatCompletions
            switch event {
            case let .token(token):
                if token.text.isEmpty && sentRole { continue }
                let role = !sentRole
                sentRole = true
                streamed += token.text
                return chat
                    ? Answers.chatChunk(identity: identity, role: role, text: token.text)
                    : Answers.completionChunk(identity: identity, text: token.text)
            case let .done(done):
                ended = true
                var out: [UInt8] = []
                // Text held back as a possible stop string, released only with `done` (after an end of sequence).
                let rest = done.text.hasPrefix(streamed) ? String(done.text.dropFirst(streamed.count)) : ""
                if chat && (!sentRole || !rest.isEmpty) {
                    out += Answers.chatChunk(identity: identity, role: !sentRole, text: rest)
                } else if !chat && !rest.isEmpty {
                    out += Answers.completionChunk(identity: identity, text: rest)
                }
                out += chat
                    ? Answers.chatChunk(identity: identity, finish: done.finish, done: done, options: options)
                    : Answers.completionChunk(identity: identity, text: "", finish: done.finish, done: done,
                                              options: options)
                if options.includeUsage {
                    out += Answers.usageChunk(identity: identity, object: chat ? "chat.completion.chunk"
                        : "text_completion", done: done)
                }
                return out + SSE.done
            case let .failed(error):
                ended = true
                return SSE.error(error) + SSE.done
            }
        }
        return nil
    }
}

/// JSON output of Foundation values.
enum JSONBody {
    static func bytes(_ object: Any) -> [UInt8] {
        (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])).map { [UInt8]($0) } ?? []
    }
}

private func seconds(_ duration: Duration) -> Double {
    let (whole, fraction) = duration.components
    return Double(whole) + Double(fraction) * 1e-18
}
