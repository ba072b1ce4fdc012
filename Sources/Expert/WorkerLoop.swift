import Foundation
import Inference
import ProcessSupport
import Wire
import ZeroMQ

/// The worker's loop state: socket, session machine, KV caches and pending forward passes. Lives on the one
/// thread that runs `Worker.run()`.
struct WorkerLoop {
    /// A forward pass the state machine asked for that has not finished: a prefill (possibly in chunks) or a
    /// decode of one token.
    struct Job {
        let session: SessionID
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

    private let worker: Worker
    private let control: LoopControl
    private let settings: WorkerSettings
    private let model: LanguageModel
    private let clock = ContinuousClock()
    private let context: ZMQContext
    private var socket: ZMQSocket
    private var poller = ZMQPoller()

    private var phase = Phase.registering
    /// Heartbeats and the coordinator's liveness (Paranoid Pirate), in nanoseconds since `origin`.
    private var liveness: CoordinatorLiveness
    private let origin: ContinuousClock.Instant
    /// When to reconnect to a coordinator taken for dead.
    private var reconnectAt: ContinuousClock.Instant?

    private var sessions: ExpertSessions
    private var caches: [SessionID: KVCache] = [:]
    private var spareCaches: [KVCache] = []
    private var jobs: [SessionID: Job] = [:]
    /// Sessions with a job, in the order the jobs arrived (prefill chunks are handed out in this order).
    private var jobOrder: [SessionID] = []
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
        liveness = CoordinatorLiveness(
            heartbeatIntervalMs: Self.milliseconds(settings.defaultHeartbeatInterval), now: 0,
            maxReconnectMs: Self.milliseconds(settings.maxReconnectDelay)
        )
        sessions = Self.makeSessions(worker)
        context = try ZMQContext()
        socket = try Self.connect(settings: settings, id: worker.hello.workerID, context: context)
        poller.register(socket)
        poller.register(fileDescriptor: control.readDescriptor)
    }

    /// A DEALER connected to the coordinator, its options set.
    private static func connect(settings: WorkerSettings, id: String, context: ZMQContext) throws -> ZMQSocket {
        let socket = try ZMQSocket(.dealer, context: context)
        try socket.set(.routingID, Array(id.utf8))
        try socket.set(.linger, settings.linger)
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

    /// A fresh socket after the coordinator was taken for dead: queued messages to the old one are dropped.
    private mutating func reconnect() throws {
        socket.close()
        socket = try Self.connect(settings: settings, id: worker.hello.workerID, context: context)
        poller = ZMQPoller()
        poller.register(socket)
        poller.register(fileDescriptor: control.readDescriptor)
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

    private static func makeSessions(_ worker: Worker) -> ExpertSessions {
        ExpertSessions(
            contextLimit: Int(worker.hello.contextLimit), sessionCapacity: Int(worker.hello.sessionCapacity),
            vocabSize: worker.model.vocabularySize
        )
    }

    // MARK: The loop

    mutating func run() throws -> WorkerExit {
        defer {
            socket.close()
            context.shutdown()
        }
        worker.log(
            "serving expert \(settings.expert) with \(settings.modelPath) (\(model.configuration.architecture), "
                + "vocabulary \(model.vocabularySize), context \(worker.hello.contextLimit), "
                + "\(settings.sessionCapacity) sessions, \(model.pool.threads) threads); coordinator "
                + settings.coordinator
        )
        if let path = Timeline.start(role: "worker-\(worker.id)") { worker.log("timeline: \(path)") }
        if worker.prompt.template == nil {
            worker.log("warning: \(worker.prompt.templateProblem ?? "no chat template"); only raw requests served")
        }
        sendHello()
        while exit == nil {
            let timeout = jobs.isEmpty ? timeUntilNextTimer() : .zero
            let ready = try poller.poll(timeout: timeout)
            now = clock.now
            if !ready[1].isEmpty || control.isDrainRequested {
                handleControl()
                if exit != nil { break }
            }
            if ready[0].contains(.readable) || !jobs.isEmpty { try receiveAll() }
            if exit != nil { break }
            if !jobs.isEmpty {
                runForwardPass()
                // A long pass (a prefill chunk of a big model on a loaded machine) can outlast heartbeat
                // intervals: read what arrived meanwhile before judging the coordinator silent.
                now = clock.now
                try receiveAll()
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
        var next = origin + .nanoseconds(Int64(clamping: liveness.nextTick))
        if let reconnectAt { next = min(next, reconnectAt) }
        if let drainDeadline { next = min(next, drainDeadline) }
        return max(.zero, clock.now.duration(to: next))
    }

    private mutating func checkTimers() throws {
        if let drainDeadline, now >= drainDeadline {
            worker.log("the drain grace period ended with \(sessions.count) sessions still open; exiting")
            finish(.drained(abandonedSessions: sessions.count))
            return
        }
        if let reconnectAt {
            guard now >= reconnectAt else { return }
            self.reconnectAt = nil
            try reconnect()
            sendHello()
            return
        }
        for directive in liveness.onTick(now: nanos) {
            switch directive {
            case .sendHeartbeat:
                // Until welcomed, the heartbeat slot repeats the registration.
                if phase == .registered { send(.heartbeat) } else { sendHello() }
            case .reconnect(let afterMs):
                coordinatorLost(reconnectAfter: .milliseconds(Int64(afterMs)))
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
            worker.log("draining: no new sessions; \(sessions.count) open, grace period \(settings.drainGrace)")
            send(.goodbye(Goodbye(reason: "the worker is shutting down")))
            if phase == .registering && sessions.count == 0 {
                finish(.drained(abandonedSessions: 0))
                return
            }
            carryOut(sessions.onDrain())
        }
    }

    private mutating func finish(_ how: WorkerExit) {
        if exit == nil { exit = how }
    }

    // MARK: Registration and liveness

    private mutating func sendHello() {
        send(.hello(worker.hello))
    }

    /// The coordinator was silent for 3 intervals: drop every session and register again after `delay`.
    private mutating func coordinatorLost(reconnectAfter delay: Duration) {
        if phase == .registered || sessions.count > 0 {
            worker.log(
                "no word from the coordinator for 3 heartbeat intervals; dropping \(sessions.count) sessions and "
                    + "registering again"
            )
        }
        if draining {
            finish(.drained(abandonedSessions: sessions.count))
            return
        }
        for (_, cache) in caches { recycle(cache) }
        caches.removeAll()
        jobs.removeAll()
        jobOrder.removeAll()
        sessions = Self.makeSessions(worker)
        phase = .registering
        reconnectAt = now + delay
    }

    // MARK: Receiving

    /// Handles every message already queued.
    private mutating func receiveAll() throws {
        var handled = 0
        while exit == nil, handled < 10_000, let frames = try socket.tryReceiveMultipart() {
            handled += 1
            liveness.onReceived(now: nanos)
            guard frames.count == 1 else {
                worker.log("dropped a message of \(frames.count) frames (one frame per message expected)")
                continue
            }
            let message: Message
            do {
                message = try WireCodec.decode(frames[0])
            } catch {
                worker.log("dropped a malformed frame of \(frames[0].count) bytes: \(error.description)")
                continue
            }
            handle(message)
        }
    }

    private mutating func handle(_ message: Message) {
        switch message {
        case .welcome(let welcome):
            if phase != .registered {
                worker.log("registered with the coordinator (heartbeat every \(welcome.heartbeatIntervalMs) ms)")
            }
            phase = .registered
            liveness.onWelcome(welcome, now: nanos)
        case .reject(let reject):
            worker.log("the coordinator rejected this worker: \(reject.reason)")
            finish(.rejected(reason: reject.reason))
        case .heartbeat:
            break
        case .open(let open):
            guard let tokens = promptTokens(open.session, open.request) else { return }
            let isNew = sessions.session(open.session) == nil
            let directives = sessions.onOpen(open, promptTokens: tokens)
            if isNew, sessions.session(open.session) != nil {
                worker.log("opened session \(open.session) (\(tokens.count) prompt tokens, top-\(open.topK))")
            }
            carryOut(directives)
        case .step(let step):
            Timeline.record("step-read", worker: worker.id, session: step.session, step: step.step)
            carryOut(sessions.onStep(step))
        case .replay(let replay):
            guard let tokens = promptTokens(replay.session, replay.request) else { return }
            let directives = sessions.onReplay(replay, promptTokens: tokens)
            if sessions.session(replay.session) != nil {
                worker.log("replaying session \(replay.session) (\(tokens.count) + \(replay.tokens.count) tokens)")
            }
            carryOut(directives)
        case .close(let close):
            let known = sessions.session(close.session) != nil
            carryOut(sessions.onClose(close))
            if known { worker.log("closed session \(close.session)") }
        case .hello, .goodbye, .dist, .error, .generate, .token, .done:
            worker.log("ignored an unexpected \(message.kind) message")
        }
    }

    /// The prompt tokens of a request, or nil after answering `error badRequest`.
    private mutating func promptTokens(_ session: SessionID, _ request: Request) -> [UInt32]? {
        do {
            return try worker.prompt.tokens(for: request)
        } catch {
            reply(error: ErrorReply(session: session, code: .badRequest, text: error.description))
            return nil
        }
    }

    // MARK: Directives

    private mutating func carryOut(_ directives: [ExpertDirective]) {
        var queue = directives[...]
        while let directive = queue.popFirst() {
            switch directive {
            case .prefill(let session, let tokens):
                let cache: KVCache
                if let existing = caches[session] {
                    existing.reset()
                    cache = existing
                } else if let spare = spareCaches.popLast() {
                    cache = spare
                } else {
                    do {
                        cache = try model.makeCache(capacity: Int(worker.hello.contextLimit))
                    } catch {
                        queue.append(contentsOf: sessions.onForwardFailed(session: session, reason: error.description))
                        continue
                    }
                }
                caches[session] = cache
                enqueue(Job(session: session, tokens: tokens.map { Int32(bitPattern: $0) }, received: now))
            case .decode(let session, let token):
                enqueue(Job(session: session, tokens: [Int32(bitPattern: token)], received: now))
            case .freeCache(let session):
                if jobs.removeValue(forKey: session) != nil {
                    jobOrder.removeAll { $0 == session }
                    // Every forward pass is reported once; this one will never run.
                    queue.append(contentsOf: sessions.onForwardFailed(session: session, reason: "cancelled"))
                }
                if let cache = caches.removeValue(forKey: session) { recycle(cache) }
            case .reply(let message):
                if case .error(let error) = message { reply(error: error) } else { send(message) }
            case .drained:
                worker.log("drained: every session is closed")
                finish(.drained(abandonedSessions: 0))
            }
        }
    }

    private mutating func enqueue(_ job: Job) {
        if jobs[job.session] == nil { jobOrder.append(job.session) }
        jobs[job.session] = job
    }

    /// Keeps a freed cache for reuse, up to the session capacity.
    private mutating func recycle(_ cache: KVCache) {
        cache.reset()
        if spareCaches.count < settings.sessionCapacity { spareCaches.append(cache) }
    }

    // MARK: The forward pass

    /// Runs one forward pass over every pending decode and the next prefill chunks (at most `prefillChunk`
    /// prompt tokens in all, the oldest prefill first), then replies for every job that finished.
    private mutating func runForwardPass() {
        var budget = settings.prefillChunk
        var batch: [(session: SessionID, count: Int)] = []
        for session in jobOrder {
            guard let job = jobs[session], caches[session] != nil else { continue }
            if job.tokens.count == 1 {
                batch.append((session, 1))
            } else if budget > 0 {
                let take = min(job.remaining, budget)
                budget -= take
                batch.append((session, take))
            }
        }
        guard !batch.isEmpty else { return }
        let start = clock.now
        var entries: [(cache: KVCache, tokens: [Int32])] = []
        entries.reserveCapacity(batch.count)
        for (session, count) in batch {
            let job = jobs[session]!
            entries.append((caches[session]!, Array(job.tokens[job.done..<job.done + count])))
            if job.started == nil { jobs[session]!.started = start }
        }
        var failed: [SessionID: String] = [:]
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
                    failed[batch[i].session] = error.description
                }
            }
            logits = merged
        }
        let end = clock.now
        let elapsed = start.duration(to: end)
        var directives: [ExpertDirective] = []
        for (i, (session, count)) in batch.enumerated() {
            if let reason = failed[session] {
                removeJob(session)
                directives += sessions.onForwardFailed(session: session, reason: reason)
                worker.log("session \(session) lost: the forward pass failed: \(reason)")
                continue
            }
            jobs[session]!.done += count
            jobs[session]!.compute += elapsed
            let job = jobs[session]!
            guard job.remaining == 0 else { continue }
            removeJob(session)
            let k = Int(sessions.session(session)?.topK ?? 1)
            let top = logits.withUnsafeBufferPointer { buffer in
                let v = model.vocabularySize
                return TopK(logits: UnsafeBufferPointer(rebasing: buffer[i * v..<(i + 1) * v]), k: k)
            }
            let timing = WorkerTiming(
                queueMicros: Self.micros(job.received.duration(to: job.started ?? start)),
                computeMicros: Self.micros(job.compute), batchSize: UInt16(clamping: batch.count)
            )
            directives += sessions.onForwardDone(
                session: session, ids: top.ids.map { UInt32(bitPattern: $0) }, logProbs: top.logProbs,
                tailMass: top.tailMass, timing: timing
            )
        }
        now = end
        carryOut(directives)
    }

    private mutating func removeJob(_ session: SessionID) {
        jobs.removeValue(forKey: session)
        jobOrder.removeAll { $0 == session }
    }

    private static func micros(_ d: Duration) -> UInt32 {
        let (seconds, attoseconds) = d.components
        return UInt32(clamping: max(0, seconds * 1_000_000 + attoseconds / 1_000_000_000_000))
    }

    // MARK: Sending

    private mutating func reply(error: ErrorReply) {
        worker.log("session \(error.session): error \(error.code): \(error.text)")
        send(.error(error))
    }

    /// Sends without blocking; a message the socket cannot queue (no coordinator yet, queue full) is dropped and
    /// logged: the coordinator's deadlines and replays recover from it.
    private mutating func send(_ message: Message) {
        if case .dist(let dist) = message {
            Timeline.record("dist-sent", worker: worker.id, session: dist.session, step: dist.step)
        }
        let frame = WireCodec.encode(message)
        do {
            if try socket.trySend([frame]) {
                liveness.onSent(now: nanos)
            } else if message.kind != .hello && message.kind != .heartbeat {
                worker.log("dropped an outgoing \(message.kind) message: the coordinator is not reachable")
            }
        } catch {
            worker.log("failed to send a \(message.kind) message: \(error.description)")
        }
    }
}
