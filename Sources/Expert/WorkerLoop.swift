import Foundation
import Inference
import ProcessSupport
import Wire
import WorkerCore
import ZeroMQ

/// The worker's loop state: one connection and session machine per served expert, the KV caches and the pending
/// forward passes of all of them. Lives on the one thread that runs `Worker.run()`.
struct WorkerLoop {
    /// A session of one served expert (session ids are the coordinator's, the same on every expert).
    struct JobKey: Hashable {
        /// Index into `Worker.served`.
        let expert: Int
        let session: SessionID
    }

    /// A forward pass the state machine asked for that has not finished: a prefill (possibly in chunks) or a
    /// decode of one token.
    struct Job {
        let key: JobKey
        var tokens: [Int32]
        /// Tokens already run.
        var done = 0
        /// When the request arrived.
        let received: ContinuousClock.Instant
        /// When its first forward pass started.
        var started: ContinuousClock.Instant?
        /// Time of its forward passes so far.
        var compute: Duration = .zero
        var remaining: Int { tokens.count - done }
    }

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
        var caches: [SessionID: KVCache] = [:]
        /// Set when this expert has finished draining: the sessions it gave up.
        var drained: Int?

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

    private var spareCaches: [KVCache] = []
    private var jobs: [JobKey: Job] = [:]
    /// Sessions with a job, in the order the jobs arrived (prefill chunks are handed out in this order).
    private var jobOrder: [JobKey] = []
    private var logits: [Float] = []

    private var draining = false
    private var drainDeadline: ContinuousClock.Instant?
    private var exit: WorkerExit?
    /// When the messages being handled arrived.
    private var now: ContinuousClock.Instant

    init(worker: Worker, control: LoopControl) throws {
        self.worker = worker
        self.control = control
        settings = worker.settings
        model = worker.model
        now = clock.now
        origin = now
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

    /// Nanoseconds since the loop started, the liveness tracker's clock.
    private var nanos: UInt64 {
        let (seconds, attoseconds) = origin.duration(to: now).components
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
        worker.log(
            "serving expert\(endpoints.count > 1 ? "s" : "") \(names) with \(settings.modelPath) "
                + "(\(model.configuration.architecture), vocabulary \(model.vocabularySize), context "
                + "\(first.hello.contextLimit), \(settings.sessionCapacity) sessions"
                + (endpoints.count > 1 ? " each" : "") + ", \(model.pool.threads) threads); coordinator "
                + settings.coordinator
        )
        for expert in settings.experts {
            if let path = expert.biasPath { worker.log("expert \(expert.name): tuned offset from \(path)") }
        }
        if let path = Timeline.start(role: "worker-\(worker.id)") { worker.log("timeline: \(path)") }
        if first.prompt.template == nil {
            worker.log("warning: \(first.prompt.templateProblem ?? "no chat template"); only raw requests served")
        }
        for e in endpoints.indices { sendHello(e) }
        while exit == nil {
            let timeout = jobs.isEmpty ? timeUntilNextTimer() : .zero
            let ready = try poller.poll(timeout: timeout)
            now = clock.now
            if !ready[endpoints.count].isEmpty || control.isDrainRequested {
                handleControl()
                if exit != nil { break }
            }
            for e in endpoints.indices where ready[e].contains(.readable) || !jobs.isEmpty {
                try receiveAll(e)
            }
            if exit != nil { break }
            if !jobs.isEmpty {
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
        }
        let how = exit ?? .stopped
        worker.log("exiting (\(how))")
        return how
    }

    /// Time until the next heartbeat, liveness check, reconnection or drain deadline.
    private func timeUntilNextTimer() -> Duration {
        var next = drainDeadline
        for endpoint in endpoints where endpoint.drained == nil {
            let tick = origin + .nanoseconds(Int64(clamping: endpoint.liveness.nextTick))
            next = min(next ?? tick, tick)
            if let at = endpoint.reconnectAt { next = min(next ?? at, at) }
        }
        guard let next else { return .seconds(1) }
        return max(.zero, clock.now.duration(to: next))
    }

    private mutating func checkTimers() throws {
        if let drainDeadline, now >= drainDeadline {
            worker.log("the drain grace period ended with \(sessionCount) sessions still open; exiting")
            finish(.drained(abandonedSessions: sessionCount))
            return
        }
        for e in endpoints.indices where endpoints[e].drained == nil && exit == nil {
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
            worker.log("stopping")
            finish(.stopped)
            return
        }
        if requests.drains > 0 && !draining {
            draining = true
            drainDeadline = now + settings.drainGrace
            worker.log("draining: no new sessions; \(sessionCount) open, grace period \(settings.drainGrace)")
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
        guard endpoints[e].drained == nil else { return }
        endpoints[e].drained = abandoned
        let done = endpoints.compactMap(\.drained)
        if done.count == endpoints.count { finish(.drained(abandonedSessions: done.reduce(0, +))) }
    }

    private mutating func finish(_ how: WorkerExit) {
        if exit == nil { exit = how }
    }

    /// The longest a forward pass waits for the steps of other experts of this process (see `gatherSteps`).
    static let gatherWindow: Duration = .milliseconds(2)

    /// With several experts in the process, the coordinator sends a session's step to each of them back to back,
    /// on separate connections; a pass started when only some have been read would compute the others in a pass
    /// of their own right after, nearly doubling the step's time. So before a pass, while a session has a step
    /// pending on one expert that another expert of the session is idle and waiting for, keep reading for at
    /// most `gatherWindow`. A step that never comes (an expert the coordinator has given up) costs that window
    /// and no more.
    private mutating func gatherSteps() throws {
        guard endpoints.count > 1 else { return }
        let deadline = clock.now + Self.gatherWindow
        while expectsSteps() {
            let left = clock.now.duration(to: deadline)
            guard left > .zero else { return }
            let ready = try poller.poll(timeout: left)
            now = clock.now
            // A drain or stop request is the main loop's business.
            if !ready[endpoints.count].isEmpty || control.isDrainRequested { return }
            for e in endpoints.indices where ready[e].contains(.readable) {
                try receiveAll(e)
                if exit != nil { return }
            }
        }
    }

    /// Whether a pending decode's step is still on its way to another expert of the same session.
    private func expectsSteps() -> Bool {
        for key in jobOrder {
            guard let job = jobs[key], job.tokens.count == 1,
                let step = endpoints[key.expert].sessions.session(key.session)?.pendingStep
            else { continue }
            for f in endpoints.indices where f != key.expert && endpoints[f].drained == nil {
                if endpoints[f].sessions.awaits(key.session, step: step) { return true }
            }
        }
        return false
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
            worker.log(
                "no word from the coordinator for 3 heartbeat intervals; dropping \(open) sessions and "
                    + "registering again", expert: e
            )
        }
        for (_, cache) in endpoints[e].caches { recycle(cache) }
        endpoints[e].caches.removeAll()
        jobs = jobs.filter { $0.key.expert != e }
        jobOrder.removeAll { $0.expert == e }
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
            guard endpoints[e].drained == nil else { continue }
            endpoints[e].liveness.onReceived(now: nanos)
            guard frames.count == 1 else {
                worker.log("dropped a message of \(frames.count) frames (one frame per message expected)", expert: e)
                continue
            }
            let message: Message
            do {
                message = try WireCodec.decode(frames[0])
            } catch {
                worker.log("dropped a malformed frame of \(frames[0].count) bytes: \(error.description)", expert: e)
                continue
            }
            handle(message, for: e)
        }
    }

    private mutating func handle(_ message: Message, for e: Int) {
        switch message {
        case .welcome(let welcome):
            if endpoints[e].phase != .registered {
                worker.log(
                    "registered with the coordinator (heartbeat every \(welcome.heartbeatIntervalMs) ms)", expert: e
                )
            }
            endpoints[e].phase = .registered
            endpoints[e].liveness.onWelcome(welcome, now: nanos)
        case .reject(let reject):
            worker.log("the coordinator rejected this worker: \(reject.reason)", expert: e)
            finish(.rejected(reason: reject.reason))
        case .heartbeat:
            break
        case .open(let open):
            guard let tokens = promptTokens(open.session, open.request, for: e) else { return }
            let isNew = endpoints[e].sessions.session(open.session) == nil
            let directives = endpoints[e].sessions.onOpen(open, promptTokens: tokens)
            if isNew, endpoints[e].sessions.session(open.session) != nil {
                worker.log(
                    "opened session \(open.session) (\(tokens.count) prompt tokens, top-\(open.topK))", expert: e
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
                worker.log(
                    "replaying session \(replay.session) (\(tokens.count) + \(replay.tokens.count) tokens)", expert: e
                )
            }
            carryOut(directives, for: e)
        case .close(let close):
            let known = endpoints[e].sessions.session(close.session) != nil
            carryOut(endpoints[e].sessions.onClose(close), for: e)
            if known { worker.log("closed session \(close.session)", expert: e) }
        case .hello, .goodbye, .dist, .error, .generate, .token, .done:
            worker.log("ignored an unexpected \(message.kind) message", expert: e)
        }
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
                let cache: KVCache
                if let existing = endpoints[e].caches[session] {
                    existing.reset()
                    cache = existing
                } else if let spare = spareCaches.popLast() {
                    cache = spare
                } else {
                    do {
                        cache = try model.makeCache(capacity: Int(endpoints[e].served.hello.contextLimit))
                    } catch {
                        queue.append(contentsOf: endpoints[e].sessions.onForwardFailed(
                            session: session, reason: error.description))
                        continue
                    }
                }
                endpoints[e].caches[session] = cache
                let key = JobKey(expert: e, session: session)
                enqueue(Job(key: key, tokens: tokens.map { Int32(bitPattern: $0) }, received: now))
            case .decode(let session, let token):
                let key = JobKey(expert: e, session: session)
                enqueue(Job(key: key, tokens: [Int32(bitPattern: token)], received: now))
            case .freeCache(let session):
                let key = JobKey(expert: e, session: session)
                if jobs.removeValue(forKey: key) != nil {
                    jobOrder.removeAll { $0 == key }
                    // Every forward pass is reported once; this one will never run.
                    queue.append(
                        contentsOf: endpoints[e].sessions.onForwardFailed(session: session, reason: "cancelled"))
                }
                if let cache = endpoints[e].caches.removeValue(forKey: session) { recycle(cache) }
            case .reply(let message):
                if case .error(let error) = message { reply(error: error, from: e) } else { send(message, from: e) }
            case .drained:
                worker.log("drained: every session is closed", expert: e)
                drained(e, abandoning: 0)
            }
        }
    }

    private mutating func enqueue(_ job: Job) {
        if jobs[job.key] == nil { jobOrder.append(job.key) }
        jobs[job.key] = job
    }

    /// Keeps a freed cache for reuse, up to the session capacity of all the experts.
    private mutating func recycle(_ cache: KVCache) {
        cache.reset()
        if spareCaches.count < settings.sessionCapacity * endpoints.count { spareCaches.append(cache) }
    }

    // MARK: The forward pass

    /// Runs one forward pass over every pending decode of every expert and the next prefill chunks (at most
    /// `prefillChunk` prompt tokens in all, the oldest prefill first), then replies for every job that finished.
    private mutating func runForwardPass() {
        var budget = settings.prefillChunk
        var batch: [(key: JobKey, count: Int)] = []
        for key in jobOrder {
            guard let job = jobs[key], endpoints[key.expert].caches[key.session] != nil else { continue }
            if job.tokens.count == 1 {
                batch.append((key, 1))
            } else if budget > 0 {
                let take = min(job.remaining, budget)
                budget -= take
                batch.append((key, take))
            }
        }
        guard !batch.isEmpty else { return }
        let start = clock.now
        var entries: [(cache: KVCache, tokens: [Int32])] = []
        entries.reserveCapacity(batch.count)
        for (key, count) in batch {
            let job = jobs[key]!
            entries.append((endpoints[key.expert].caches[key.session]!, Array(job.tokens[job.done..<job.done + count])))
            if job.started == nil { jobs[key]!.started = start }
        }
        let timeline = Timeline.isOn
        if timeline { recordPass("pass-start", batch.map(\.key)) }
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
                    failed[batch[i].key] = error.description
                }
            }
            logits = merged
        }
        let end = clock.now
        if timeline { recordPass("pass-end", batch.map(\.key)) }
        let elapsed = start.duration(to: end)
        var directives: [[ExpertDirective]] = Array(repeating: [], count: endpoints.count)
        // Rows whose job is complete: their top-k becomes a reply.
        var finished: [(row: Int, key: JobKey, k: Int)] = []
        for (i, (key, count)) in batch.enumerated() {
            let e = key.expert
            if let reason = failed[key] {
                removeJob(key)
                directives[e] += endpoints[e].sessions.onForwardFailed(session: key.session, reason: reason)
                worker.log("session \(key.session) lost: the forward pass failed: \(reason)", expert: e)
                continue
            }
            jobs[key]!.done += count
            jobs[key]!.compute += elapsed
            if jobs[key]!.remaining == 0 {
                finished.append((i, key, Int(endpoints[e].sessions.session(key.session)?.topK ?? 1)))
            }
        }
        // The top-k of each row (a pass over the vocabulary) on the model's threads: with several rows, this
        // is part of every step's time.
        let tops = topK(rows: finished.map { ($0.row, $0.k, endpoints[$0.key.expert].served.bias) })
        for ((_, key, _), top) in zip(finished, tops) {
            let job = jobs[key]!
            removeJob(key)
            let timing = WorkerTiming(
                queueMicros: Self.micros(job.received.duration(to: job.started ?? start)),
                computeMicros: Self.micros(job.compute), batchSize: UInt16(clamping: batch.count)
            )
            directives[key.expert] += endpoints[key.expert].sessions.onForwardDone(
                session: key.session, ids: top.ids.map { UInt32(bitPattern: $0) }, logProbs: top.logProbs,
                tailMass: top.tailMass, timing: timing
            )
        }
        // The replies go out through ZeroMQ's I/O thread, and the coordinator waits for them: the pool's threads
        // must not spin on the cores those need.
        model.pool.park()
        now = end
        for e in endpoints.indices where !directives[e].isEmpty { carryOut(directives[e], for: e) }
    }

    /// The top-k of the given rows of `logits`, each after its expert's logit bias (if any), spread over the
    /// model's threads when there are several.
    private mutating func topK(rows: [(row: Int, k: Int, bias: [Float]?)]) -> [TopK] {
        let v = model.vocabularySize
        let pool = model.pool
        return logits.withUnsafeMutableBufferPointer { buffer in
            /// One row's top-k; each row is touched by one task only.
            func top(_ row: Int, _ k: Int, _ bias: [Float]?) -> TopK {
                let slice = UnsafeMutableBufferPointer(rebasing: buffer[row * v..<(row + 1) * v])
                if let bias { LogitBias.apply(bias, to: slice) }
                return TopK(logits: UnsafeBufferPointer(slice), k: k)
            }
            guard rows.count > 1, pool.threads > 1 else { return rows.map { top($0.row, $0.k, $0.bias) } }
            let results = UnsafeMutableBufferPointer<TopK>.allocate(capacity: rows.count)
            defer {
                results.deinitialize()
                results.deallocate()
            }
            pool.run(tasks: rows.count) { task in
                let (row, k, bias) = rows[task]
                (results.baseAddress! + task).initialize(to: top(row, k, bias))
            }
            return Array(results)
        }
    }

    /// Timeline events of a pass, for each decode in it (its session's pending step).
    private func recordPass(_ event: String, _ keys: [JobKey]) {
        for key in keys {
            guard let step = endpoints[key.expert].sessions.session(key.session)?.pendingStep else { continue }
            Timeline.record(event, worker: endpoints[key.expert].id, session: key.session, step: step)
        }
    }

    private mutating func removeJob(_ key: JobKey) {
        jobs.removeValue(forKey: key)
        jobOrder.removeAll { $0 == key }
    }

    private static func micros(_ d: Duration) -> UInt32 {
        let (seconds, attoseconds) = d.components
        return UInt32(clamping: max(0, seconds * 1_000_000 + attoseconds / 1_000_000_000_000))
    }

    // MARK: Sending

    private mutating func reply(error: ErrorReply, from e: Int) {
        worker.log("session \(error.session): error \(error.code): \(error.text)", expert: e)
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
                worker.log("dropped an outgoing \(message.kind) message: the coordinator is not reachable", expert: e)
            }
        } catch {
            worker.log("failed to send a \(message.kind) message: \(error.description)", expert: e)
        }
    }
}
