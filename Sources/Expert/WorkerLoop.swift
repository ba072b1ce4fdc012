import Foundation
import Inference
import Logging
import ProcessSupport
import Wire
import WorkerCore
import ZeroMQ

/// The worker's loop: one connection and session machine per served expert around the `BatchScheduler`, which
/// decides the forward passes of all of them; this shell owns the sockets, the model and the clock. Lives on the
/// one thread that runs `Worker.run()`.
struct WorkerLoop {
    typealias JobKey = BatchScheduler<KVCache>.Key

    enum Phase: Equatable {
        /// Sending `hello` until `welcome`.
        case registering
        case registered
    }

    /// One served expert's connection and sessions.
    struct Endpoint {
        let served: Worker.Served
        var socket: ZMQSocket
        var phase = Phase.registering
        /// Heartbeats and the coordinator's liveness (Paranoid Pirate), in nanoseconds since `origin`.
        var liveness: CoordinatorLiveness
        /// When to reconnect to a coordinator taken for dead.
        var reconnectAt: ContinuousClock.Instant?
        var sessions: ExpertSessions

        var id: String { served.hello.workerID }
    }

    private let worker: Worker
    private let control: LoopControl
    private let settings: WorkerSettings
    private let model: LanguageModel
    private let clock = ContinuousClock()
    private let context: ZMQContext
    private var endpoints: [Endpoint] = []
    /// The experts' sockets at 0..<endpoints.count, then the wake pipe.
    private var poller = ZMQPoller()
    private let origin: ContinuousClock.Instant

    /// The batching decisions: jobs, passes, gathering, spare caches, drain across experts.
    private var scheduler: BatchScheduler<KVCache>
    private var logits: [Float] = []

    private var draining = false
    private var drainDeadline: ContinuousClock.Instant?
    private var exit: WorkerExit?
    /// When the messages being handled arrived.
    private var now: ContinuousClock.Instant
    /// The log lines about bad frames from the coordinator, per expert connection (a peer of its own each).
    private var frameLog = LogRateLimiter(what: "malformed frames")

    init(worker: Worker, control: LoopControl) throws {
        self.worker = worker
        self.control = control
        settings = worker.settings
        model = worker.model
        now = clock.now
        origin = now
        scheduler = BatchScheduler(
            prefillChunk: settings.prefillChunk, gatherWindow: Self.nanoseconds(Self.gatherWindow),
            spareLimit: settings.sessionCapacity * worker.served.count, expertCount: worker.served.count
        )
        context = try ZMQContext()
        for served in worker.served {
            let socket: ZMQSocket
            do {
                socket = try Self.connect(settings: settings, id: served.hello.workerID, context: context)
            } catch {
                for endpoint in endpoints { endpoint.socket.close() }
                context.shutdown()
                throw error
            }
            endpoints.append(Endpoint(
                served: served, socket: socket,
                liveness: CoordinatorLiveness(
                    heartbeatIntervalMs: Self.milliseconds(settings.defaultHeartbeatInterval), now: 0,
                    maxReconnectMs: Self.milliseconds(settings.maxReconnectDelay)
                ),
                sessions: Self.makeSessions(served, worker: worker)
            ))
        }
        registerAll()
    }

    /// The poller over every expert's socket and the wake pipe.
    private mutating func registerAll() {
        poller = ZMQPoller()
        for endpoint in endpoints { poller.register(endpoint.socket) }
        poller.register(fileDescriptor: control.readDescriptor)
    }

    /// A DEALER connected to the coordinator, its options set.
    private static func connect(settings: WorkerSettings, id: String, context: ZMQContext) throws -> ZMQSocket {
        let socket = try ZMQSocket(.dealer, context: context)
        try socket.set(.routingID, Array(id.utf8))
        try socket.set(.linger, settings.linger)
        try socket.set(.maxMessageSize, Int64(settings.maxMessageBytes))
        try socket.set(.sendHighWaterMark, settings.highWaterMark)
        try socket.set(.receiveHighWaterMark, settings.highWaterMark)
        try socket.set(.reconnectInterval, settings.reconnectInterval)
        try socket.set(.reconnectIntervalMax, .seconds(2))
        if let curve = settings.curve {
            try curve.apply(to: socket)
        }
        try socket.connect(settings.coordinator)
        return socket
    }

    /// A fresh socket for expert `e` after the coordinator was taken for dead: queued messages to the old one are
    /// dropped.
    private mutating func reconnect(_ e: Int) throws {
        endpoints[e].socket.close()
        endpoints[e].socket = try Self.connect(settings: settings, id: endpoints[e].id, context: context)
        registerAll()
    }

    private static func milliseconds(_ d: Duration) -> UInt32 {
        let (seconds, attoseconds) = d.components
        return UInt32(clamping: max(0, seconds * 1000 + attoseconds / 1_000_000_000_000_000))
    }

    /// Nanoseconds since the loop started, the liveness tracker's and the scheduler's clock.
    private var nanos: UInt64 { nanos(at: now) }

    /// Nanoseconds from the loop's start to `instant`.
    private func nanos(at instant: ContinuousClock.Instant) -> UInt64 {
        UInt64(clamping: Self.nanoseconds(origin.duration(to: instant)))
    }

    private static func nanoseconds(_ d: Duration) -> UInt64 {
        let (seconds, attoseconds) = d.components
        return UInt64(clamping: max(0, seconds * 1_000_000_000 + attoseconds / 1_000_000_000))
    }

    private static func makeSessions(_ served: Worker.Served, worker: Worker) -> ExpertSessions {
        ExpertSessions(
            contextLimit: Int(served.hello.contextLimit), sessionCapacity: Int(served.hello.sessionCapacity),
            vocabSize: worker.model.vocabularySize
        )
    }

    /// Open sessions over every expert.
    private var sessionCount: Int { endpoints.reduce(0) { $0 + $1.sessions.count } }

    // MARK: The loop

    mutating func run() throws -> WorkerExit {
        defer {
            for endpoint in endpoints { endpoint.socket.close() }
            context.shutdown()
        }
        let names = endpoints.map(\.served.hello.expert).joined(separator: ", ")
        let first = endpoints[0].served
        worker.logger.info(
            "serving expert\(endpoints.count > 1 ? "s" : "") \(names) with \(settings.modelPath) "
                + "(\(model.configuration.architecture), vocabulary \(model.vocabularySize), context "
                + "\(first.hello.contextLimit), \(settings.sessionCapacity) sessions"
                + (endpoints.count > 1 ? " each" : "") + ", \(model.pool.threads) threads); coordinator "
                + settings.coordinator
        )
        for expert in settings.experts {
            if let path = expert.biasPath { worker.logger.info("expert \(expert.name): tuned offset from \(path)") }
        }
        if let path = Timeline.start(role: "worker-\(worker.id)") { worker.logger.info("timeline: \(path)") }
        if first.prompt.template == nil {
            worker.logger.warn("\(first.prompt.templateProblem ?? "no chat template"); only raw requests served")
        }
        for e in endpoints.indices { sendHello(e) }
        while exit == nil {
            let timeout = scheduler.hasJobs ? .zero : timeUntilNextTimer()
            let ready = try poller.poll(timeout: timeout)
            now = clock.now
            if !ready[endpoints.count].isEmpty || control.isDrainRequested {
                handleControl()
                if exit != nil { break }
            }
            for e in endpoints.indices where ready[e].contains(.readable) || scheduler.hasJobs {
                try receiveAll(e)
            }
            if exit != nil { break }
            if scheduler.hasJobs {
                try gatherSteps()
                if exit != nil { break }
                runForwardPass()
                // A long pass (a prefill chunk of a big model on a loaded machine) can outlast heartbeat
                // intervals: read what arrived meanwhile before judging the coordinator silent.
                now = clock.now
                for e in endpoints.indices { try receiveAll(e) }
                if exit != nil { break }
            }
            now = clock.now
            try checkTimers()
            for line in frameLog.flush(now: nanos) { worker.logger.warn(line) }
        }
        let how = exit ?? .stopped
        worker.logger.info("exiting (\(how))")
        return how
    }

    /// Time until the next heartbeat, liveness check, reconnection or drain deadline.
    private func timeUntilNextTimer() -> Duration {
        var next = drainDeadline
        for (e, endpoint) in endpoints.enumerated() where !scheduler.isDrained(e) {
            let tick = origin + .nanoseconds(Int64(clamping: endpoint.liveness.nextTick))
            next = min(next ?? tick, tick)
            if let at = endpoint.reconnectAt { next = min(next ?? at, at) }
        }
        guard let next else { return .seconds(1) }
        return max(.zero, clock.now.duration(to: next))
    }

    private mutating func checkTimers() throws {
        if let drainDeadline, now >= drainDeadline {
            worker.logger.warn("the drain grace period ended with \(sessionCount) sessions still open; exiting")
            finish(.drained(abandonedSessions: sessionCount))
            return
        }
        for e in endpoints.indices where !scheduler.isDrained(e) && exit == nil {
            if let reconnectAt = endpoints[e].reconnectAt {
                guard now >= reconnectAt else { continue }
                endpoints[e].reconnectAt = nil
                try reconnect(e)
                sendHello(e)
                continue
            }
            for directive in endpoints[e].liveness.onTick(now: nanos) {
                switch directive {
                case .sendHeartbeat:
                    // Until welcomed, the heartbeat slot repeats the registration.
                    if endpoints[e].phase == .registered { send(.heartbeat, from: e) } else { sendHello(e) }
                case .reconnect(let afterMs):
                    coordinatorLost(e, reconnectAfter: .milliseconds(Int64(afterMs)))
                }
            }
        }
    }

    private mutating func handleControl() {
        let requests = control.take()
        if requests.stop {
            worker.logger.info("stopping")
            finish(.stopped)
            return
        }
        if requests.drains > 0 && !draining {
            draining = true
            drainDeadline = now + settings.drainGrace
            worker.logger.info("draining: no new sessions; \(sessionCount) open, grace period \(settings.drainGrace)")
            for e in endpoints.indices {
                send(.goodbye(Goodbye(reason: "the worker is shutting down")), from: e)
                if endpoints[e].phase == .registering && endpoints[e].sessions.count == 0 {
                    drained(e, abandoning: 0)
                } else {
                    carryOut(endpoints[e].sessions.onDrain(), for: e)
                }
            }
        }
    }

    /// Expert `e` has finished draining; the worker exits once every expert has.
    private mutating func drained(_ e: Int, abandoning abandoned: Int) {
        if let total = scheduler.onExpertDrained(e, abandoning: abandoned) { finish(.drained(abandonedSessions: total)) }
    }

    private mutating func finish(_ how: WorkerExit) {
        if exit == nil { exit = how }
    }

    /// The longest a forward pass waits for the steps of other experts of this process (see `gatherSteps`).
    static let gatherWindow: Duration = .milliseconds(2)

    /// Before a pass, reads the steps of a session's other experts for as long as the scheduler says
    /// (`BatchScheduler.shouldGather`: at most `gatherWindow`, only while a step is on its way). A step that never
    /// comes (an expert the coordinator has given up) costs that window and no more.
    private mutating func gatherSteps() throws {
        guard let deadline = scheduler.gatherDeadline(now: nanos(at: clock.now)) else { return }
        while true {
            let at = nanos(at: clock.now)
            guard scheduler.shouldGather(now: at, deadline: deadline, sessions: endpoints.map(\.sessions)) else {
                return
            }
            let ready = try poller.poll(timeout: .nanoseconds(Int64(clamping: deadline - at)))
            now = clock.now
            // A drain or stop request is the main loop's business.
            if !ready[endpoints.count].isEmpty || control.isDrainRequested { return }
            for e in endpoints.indices where ready[e].contains(.readable) {
                try receiveAll(e)
                if exit != nil { return }
            }
        }
    }

    // MARK: Registration and liveness

    private mutating func sendHello(_ e: Int) {
        send(.hello(endpoints[e].served.hello), from: e)
    }

    /// The coordinator was silent on expert `e`'s connection for 3 intervals: drop its sessions and register
    /// again after `delay`.
    private mutating func coordinatorLost(_ e: Int, reconnectAfter delay: Duration) {
        let open = endpoints[e].sessions.count
        if endpoints[e].phase == .registered || open > 0 {
            worker.logger(expert: e).warn(
                "no word from the coordinator for 3 heartbeat intervals; dropping \(open) sessions and "
                    + "registering again"
            )
            worker.report(.coordinatorLost(expert: e))
        }
        _ = scheduler.onExpertLost(e)
        endpoints[e].sessions = Self.makeSessions(endpoints[e].served, worker: worker)
        if draining {
            drained(e, abandoning: open)
            return
        }
        endpoints[e].phase = .registering
        endpoints[e].reconnectAt = now + delay
    }

    // MARK: Receiving

    /// Handles every message already queued for expert `e`.
    private mutating func receiveAll(_ e: Int) throws {
        var handled = 0
        while exit == nil, handled < 10_000, let frames = try endpoints[e].socket.tryReceiveMultipart() {
            handled += 1
            // An expert that has drained while others still serve: its messages are read (so that the poller does
            // not keep reporting them) and dropped.
            guard !scheduler.isDrained(e) else { continue }
            endpoints[e].liveness.onReceived(now: nanos)
            guard frames.count == 1 else {
                logFrameProblem(e) { "dropped a message of \(frames.count) frames (one frame per message expected)" }
                continue
            }
            let message: Message
            do {
                message = try WireCodec.decode(frames[0])
            } catch {
                logFrameProblem(e) {
                    "dropped a malformed frame of \(frames[0].count) bytes: \(LogText.escaped(error.description))"
                }
                continue
            }
            handle(message, for: e)
        }
    }

    private mutating func handle(_ message: Message, for e: Int) {
        switch message {
        case .welcome(let welcome):
            if endpoints[e].phase != .registered {
                worker.logger(expert: e).info(
                    "registered with the coordinator (heartbeat every \(welcome.heartbeatIntervalMs) ms)"
                )
                worker.report(.registered(expert: e))
            }
            endpoints[e].phase = .registered
            endpoints[e].liveness.onWelcome(welcome, now: nanos)
        case .reject(let reject):
            worker.logger(expert: e).error("the coordinator rejected this worker: \(LogText.escaped(reject.reason))")
            finish(.rejected(reason: reject.reason))
        case .heartbeat:
            break
        case .open(let open):
            guard let tokens = promptTokens(open.session, open.request, for: e) else { return }
            let isNew = endpoints[e].sessions.session(open.session) == nil
            let directives = endpoints[e].sessions.onOpen(open, promptTokens: tokens)
            if isNew, endpoints[e].sessions.session(open.session) != nil {
                worker.logger(expert: e).debug(
                    "opened session \(open.session) (\(tokens.count) prompt tokens, top-\(open.topK))"
                )
            }
            carryOut(directives, for: e)
        case .step(let step):
            Timeline.record("step-read", worker: endpoints[e].id, session: step.session, step: step.step)
            carryOut(endpoints[e].sessions.onStep(step), for: e)
        case .replay(let replay):
            guard let tokens = promptTokens(replay.session, replay.request, for: e) else { return }
            let directives = endpoints[e].sessions.onReplay(replay, promptTokens: tokens)
            if endpoints[e].sessions.session(replay.session) != nil {
                worker.logger(expert: e).debug(
                    "replaying session \(replay.session) (\(tokens.count) + \(replay.tokens.count) tokens)"
                )
            }
            carryOut(directives, for: e)
        case .close(let close):
            let known = endpoints[e].sessions.session(close.session) != nil
            carryOut(endpoints[e].sessions.onClose(close), for: e)
            if known { worker.logger(expert: e).debug("closed session \(close.session)") }
        case .hello, .goodbye, .dist, .error, .generate, .token, .done, .status, .statusReply, .setPreference,
             .preferenceSet:
            logFrameProblem(e) { "ignored an unexpected \(message.kind) message" }
        }
    }

    /// A warning about a bad frame on expert `e`'s connection, within that connection's budget of such lines.
    private mutating func logFrameProblem(_ e: Int, _ line: () -> String) {
        let admission = frameLog.admit(peer: Array("coordinator@\(endpoints[e].id)".utf8), now: nanos)
        for summary in admission.summaries { worker.logger(expert: e).warn(summary) }
        if admission.log { worker.logger(expert: e).warn(line()) }
    }

    /// The prompt tokens of a request to expert `e`, or nil after answering `error badRequest`.
    private mutating func promptTokens(_ session: SessionID, _ request: Request, for e: Int) -> [UInt32]? {
        do {
            return try endpoints[e].served.prompt.tokens(for: request)
        } catch {
            reply(error: ErrorReply(session: session, code: .badRequest, text: error.description), from: e)
            return nil
        }
    }

    // MARK: Directives

    private mutating func carryOut(_ directives: [ExpertDirective], for e: Int) {
        var queue = directives[...]
        while let directive = queue.popFirst() {
            switch directive {
            case .prefill(let session, let tokens):
                let key = JobKey(expert: e, session: session)
                var prompt = tokens.map { Int32(bitPattern: $0) }
                let adapter = endpoints[e].served.adapter
                // Positions a cache may keep: its common prefix with the prompt, when it ran the same adapter,
                // and never the whole prompt (its last token's pass gives the first distribution).
                let keep = { (cache: KVCache) -> Int in
                    cache.adapter === adapter ? min(cache.commonPrefix(prompt), prompt.count - 1) : 0
                }
                if let (cache, keepable) = scheduler.takeCache(for: key, reuse: keep) {
                    let kept = max(0, keepable)
                    // The cache's first `kept` positions are those of the prompt's first `kept` tokens: keep them
                    // and prefill the rest (kept ≤ the positions held, so the truncation cannot fail).
                    if kept > 0, (try? cache.truncate(to: kept)) != nil {
                        prompt.removeFirst(kept)
                        worker.logger(expert: e).debug("session \(session): prefill keeps \(kept) cached prompt tokens")
                    } else {
                        cache.reset()
                    }
                    cache.adapter = adapter
                } else {
                    do {
                        let cache = try model.makeCache(capacity: Int(endpoints[e].served.hello.contextLimit))
                        cache.adapter = endpoints[e].served.adapter
                        scheduler.attach(cache, to: key)
                    } catch {
                        queue.append(contentsOf: endpoints[e].sessions.onForwardFailed(
                            session: session, reason: error.description))
                        continue
                    }
                }
                scheduler.onPrefill(key, tokens: prompt, now: nanos)
            case .decode(let session, let token):
                scheduler.onDecode(JobKey(expert: e, session: session), token: Int32(bitPattern: token), now: nanos)
            case .freeCache(let session):
                let (cancelled, freed) = scheduler.onFreeCache(JobKey(expert: e, session: session))
                if cancelled {
                    // Every forward pass is reported once; this one will never run.
                    queue.append(
                        contentsOf: endpoints[e].sessions.onForwardFailed(session: session, reason: "cancelled"))
                }
                _ = freed  // kept with its positions, for a prompt that starts the same way
            case .reply(let message):
                if case .error(let error) = message { reply(error: error, from: e) } else { send(message, from: e) }
            case .drained:
                worker.logger(expert: e).info("drained: every session is closed")
                drained(e, abandoning: 0)
            }
        }
    }

    // MARK: The forward pass

    /// Runs the pass the scheduler chooses (every pending decode of every expert and the next prefill chunks),
    /// then replies for every job that finished.
    private mutating func runForwardPass() {
        let start = clock.now
        let pass = scheduler.nextPass(now: nanos(at: start))
        guard !pass.isEmpty else { return }
        let entries = pass.map { (cache: $0.cache, tokens: $0.tokens) }
        let timeline = Timeline.isOn
        if timeline { recordPass("pass-start", pass.map(\.key)) }
        var failed: [JobKey: String] = [:]
        do {
            try model.forward(entries, into: &logits)
        } catch {
            // Find the entries at fault: run each alone (a failed pass changes no cache).
            var row: [Float] = []
            var merged = [Float](repeating: 0, count: entries.count * model.vocabularySize)
            for (i, entry) in entries.enumerated() {
                do {
                    try model.forward([entry], into: &row)
                    merged.replaceSubrange(i * model.vocabularySize..<(i + 1) * model.vocabularySize, with: row)
                } catch {
                    failed[pass[i].key] = error.description
                }
            }
            logits = merged
        }
        let end = clock.now
        if timeline { recordPass("pass-end", pass.map(\.key)) }
        let elapsed = Self.nanoseconds(start.duration(to: end))
        var directives: [[ExpertDirective]] = Array(repeating: [], count: endpoints.count)
        for entry in pass {
            guard let reason = failed[entry.key] else { continue }
            let e = entry.key.expert
            directives[e] += endpoints[e].sessions.onForwardFailed(session: entry.key.session, reason: reason)
            worker.logger(expert: e).error("session \(entry.key.session) lost: the forward pass failed: \(reason)")
        }
        // Rows whose job is complete: their top-k becomes a reply.
        let finished = scheduler.onPassDone(pass, failed: Set(failed.keys), elapsed: elapsed)
        let rows = finished.map { done in
            TopK.Row(
                index: done.row, k: Int(endpoints[done.key.expert].sessions.session(done.key.session)?.topK ?? 1),
                bias: endpoints[done.key.expert].served.bias
            )
        }
        let tops = TopK.rows(rows, of: &logits, vocabularySize: model.vocabularySize, pool: model.pool)
        for (done, top) in zip(finished, tops) {
            let timing = WorkerTiming(
                queueMicros: UInt32(clamping: done.queueNanos / 1000),
                computeMicros: UInt32(clamping: done.computeNanos / 1000), batchSize: UInt16(clamping: pass.count)
            )
            directives[done.key.expert] += endpoints[done.key.expert].sessions.onForwardDone(
                session: done.key.session, ids: top.ids.map { UInt32(bitPattern: $0) }, logProbs: top.logProbs,
                tailMass: top.tailMass, timing: timing
            )
        }
        // The replies go out through ZeroMQ's I/O thread, and the coordinator waits for them: the pool's threads
        // must not spin on the cores those need.
        model.pool.park()
        now = end
        for e in endpoints.indices where !directives[e].isEmpty { carryOut(directives[e], for: e) }
    }

    /// Timeline events of a pass, for each decode in it (its session's pending step).
    private func recordPass(_ event: String, _ keys: [JobKey]) {
        for key in keys {
            guard let step = endpoints[key.expert].sessions.session(key.session)?.pendingStep else { continue }
            Timeline.record(event, worker: endpoints[key.expert].id, session: key.session, step: step)
        }
    }

    // MARK: Sending

    private mutating func reply(error: ErrorReply, from e: Int) {
        worker.logger(expert: e).warn("session \(error.session): error \(error.code): \(LogText.escaped(error.text))")
        send(.error(error), from: e)
    }

    /// Sends on expert `e`'s connection without blocking; a message the socket cannot queue (no coordinator yet,
    /// queue full) is dropped and logged: the coordinator's deadlines and replays recover from it.
    private mutating func send(_ message: Message, from e: Int) {
        if case .dist(let dist) = message {
            Timeline.record("dist-sent", worker: endpoints[e].id, session: dist.session, step: dist.step)
        }
        let frame = WireCodec.encode(message)
        do {
            if try endpoints[e].socket.trySend([frame]) {
                endpoints[e].liveness.onSent(now: nanos)
            } else if message.kind != .hello && message.kind != .heartbeat {
                worker.logger(expert: e).warn(
                    "dropped an outgoing \(message.kind) message: the coordinator is not reachable"
                )
            }
        } catch {
            worker.logger(expert: e).error("failed to send a \(message.kind) message: \(error.description)")
        }
    }
}
