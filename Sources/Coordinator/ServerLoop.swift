import Dispatch
import Foundation
import Preference
import Wire
import ZeroMQ

/// The coordinator's loop state: the socket, the membership, the sessions and who asked for them. Lives on the
/// one thread that runs `CoordinatorServer.run()`.
struct ServerLoop {
    /// Where a session's replies go.
    struct Route {
        let identity: [UInt8]
        let request: UInt64
    }

    /// A client's request, as the client numbers it.
    struct ClientKey: Hashable {
        let identity: [UInt8]
        let request: UInt64
    }

    private let server: CoordinatorServer
    private let control: ServerControl
    private let settings: CoordinatorSettings
    private let config: ClusterConfig
    private let tokenizer: ClusterTokenizer
    private let controllerFactory: @Sendable () -> any PreferenceController
    private let context: ZMQContext
    private let socket: ZMQSocket
    private var poller = ZMQPoller()

    private var membership: Membership
    private var sessions: [SessionID: CoordinatorSession] = [:]
    private var routes: [SessionID: Route] = [:]
    private var inFlight: [ClientKey: SessionID] = [:]
    /// The workers each session was counted on (the load last reported to the membership).
    private var loads: [SessionID: [WorkerID]] = [:]
    private var workerIdentity: [WorkerID: [UInt8]] = [:]
    private var workerByIdentity: [[UInt8]: WorkerID] = [:]
    private var nextSession: SessionID = 1
    /// Per session: the slowest expert's forward-pass time of each step, summed (for the finish log line).
    private var timings: [SessionID: SessionTiming] = [:]

    /// Workers found gone while carrying out directives; handled once the current event is done.
    private var pendingDead: [WorkerID] = []
    /// Sessions whose client is gone.
    private var pendingCancel: [SessionID] = []

    private var draining = false
    private var drainsSeen = 0
    private var drainDeadline: UInt64?
    private var finished = false

    init(
        server: CoordinatorServer, control: ServerControl,
        controller: @escaping @Sendable () -> any PreferenceController
    ) throws(CoordinatorError) {
        self.server = server
        self.control = control
        settings = server.settings
        config = settings.config
        tokenizer = server.tokenizer
        controllerFactory = controller
        membership = Membership(config: config)
        do {
            context = try ZMQContext()
            socket = try ZMQSocket(.router, context: context)
            try socket.set(.routerMandatory, true)
            try socket.set(.sendHighWaterMark, settings.highWaterMark)
            try socket.set(.receiveHighWaterMark, settings.highWaterMark)
            try socket.set(.linger, settings.linger)
            if let curve = settings.curve {
                try socket.set(.curveServer, true)
                try socket.set(.curveSecretKey, curve.secretKey)
            }
            try socket.bind(settings.endpoint)
        } catch {
            throw .socket(error)
        }
        poller.register(socket)
        poller.register(fileDescriptor: control.readDescriptor)
    }

    // MARK: The loop

    mutating func run() throws(CoordinatorError) {
        defer {
            socket.close()
            context.shutdown()
        }
        let experts = config.experts.map { "\($0.name)×\($0.replicas)" }.joined(separator: ", ")
        server.log(
            "listening on \(settings.endpoint) for experts \(experts); heartbeat \(config.heartbeatIntervalMs) ms, "
                + "step deadline \(config.stepDeadlineMs) ms; tokenizer of \(config.experts.first?.model ?? "?")"
        )
        while !finished {
            let timeout = pollTimeout(now: Self.now())
            do {
                _ = try poller.poll(timeout: timeout)
            } catch {
                throw .socket(error)
            }
            handleControl(now: Self.now())
            if finished { break }
            try receiveAll()
            tick(now: Self.now())
            if draining { checkDrain(now: Self.now()) }
        }
        server.log("stopped")
    }

    /// Monotonic nanoseconds.
    static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    /// Until the nearest deadline (at most one second).
    private func pollTimeout(now: UInt64) -> Duration {
        var next = now &+ 1_000_000_000
        if let tick = membership.nextTick { next = min(next, tick) }
        for session in sessions.values {
            if let deadline = session.nextDeadline { next = min(next, deadline.nanoseconds) }
        }
        if let drainDeadline { next = min(next, drainDeadline) }
        return next > now ? .nanoseconds(Int64(next - now)) : .zero
    }

    private mutating func handleControl(now: UInt64) {
        let state = control.take()
        if state.stop {
            finished = true
            return
        }
        guard state.drains > drainsSeen else { return }
        drainsSeen = state.drains
        if draining {
            server.log("second shutdown request: stopping now")
            finished = true
            return
        }
        draining = true
        let grace = settings.drainGrace.components
        let graceNanos = UInt64(max(0, grace.seconds)) * 1_000_000_000
            + UInt64(max(0, grace.attoseconds)) / 1_000_000_000
        drainDeadline = now &+ graceNanos
        server.log("draining: new requests are refused; \(activeSessionCount) running sessions may finish")
    }

    private var activeSessionCount: Int {
        sessions.values.filter { $0.state == .opening || $0.state == .running }.count
    }

    private mutating func checkDrain(now: UInt64) {
        if activeSessionCount == 0 {
            server.log("drained: every session finished")
            finished = true
            return
        }
        guard let drainDeadline, now >= drainDeadline else { return }
        server.log("drain grace over: failing \(activeSessionCount) sessions")
        for id in sessions.keys.sorted() {
            guard let session = sessions[id], session.state == .opening || session.state == .running else { continue }
            if let route = routes[id] {
                sendToClient(route.identity, .error(ErrorReply(
                    session: route.request, code: .draining,
                    text: "the coordinator shut down before the request finished; retry it"
                )))
            }
            withSession(id, now: now) { session, _ in session.cancel(now: now) }
        }
        finished = true
    }

    // MARK: Receiving

    private mutating func receiveAll() throws(CoordinatorError) {
        for _ in 0..<8192 {
            let frames: [[UInt8]]?
            do {
                frames = try socket.tryReceiveMultipart()
            } catch {
                throw .socket(error)
            }
            guard let frames else { return }
            let now = Self.now()
            guard frames.count == 2 else {
                server.log("dropped a message of \(frames.count) frames (expected routing id + one frame)")
                continue
            }
            handle(identity: frames[0], payload: frames[1], now: now)
            settle(now: now)
        }
    }

    private mutating func handle(identity: [UInt8], payload: [UInt8], now: UInt64) {
        let worker = workerByIdentity[identity]
        let message: Message
        do {
            message = try WireCodec.decode(payload)
        } catch {
            if let worker {
                membership.onMessage(from: worker, now: now)
                server.log("dropped a malformed frame from worker \(worker): \(error)")
            } else {
                server.log("dropped a malformed frame from a client: \(error)")
                sendToClient(identity, .error(ErrorReply(
                    session: 0, code: .badRequest, text: "the coordinator could not decode the request: \(error)"
                )))
            }
            return
        }
        switch message {
        case let .hello(hello):
            onHello(hello, identity: identity, now: now)
        case .heartbeat:
            if let worker { membership.onMessage(from: worker, now: now) }
        case let .goodbye(goodbye):
            guard let worker else { return }
            membership.onGoodbye(from: worker, now: now)
            server.log("worker \(worker) is draining (\(goodbye.reason)); it gets no new sessions")
        case let .dist(dist):
            guard let worker, membership.onMessage(from: worker, now: now) else { return }
            membership.onReply(from: worker)
            if sessions[dist.session] != nil { timings[dist.session, default: SessionTiming()].add(dist) }
            withSession(dist.session, now: now) { session, choose in
                session.onDist(dist, from: worker, now: now, chooseReplica: choose)
            }
        case let .error(reply):
            guard let worker, membership.onMessage(from: worker, now: now) else { return }
            membership.onReply(from: worker)
            if settings.verbose, reply.code != .desync {
                server.log("worker \(worker) failed session \(reply.session): \(reply.code) \(reply.text)")
            }
            withSession(reply.session, now: now) { session, choose in
                session.onError(reply, from: worker, now: now, chooseReplica: choose)
            }
        case let .generate(generate):
            onGenerate(generate, identity: identity, now: now)
        default:
            if let worker {
                membership.onMessage(from: worker, now: now)
                server.log("dropped an unexpected \(message.kind) from worker \(worker)")
            } else {
                sendToClient(identity, .error(ErrorReply(
                    session: 0, code: .badRequest,
                    text: "the coordinator takes only generate requests from clients, not \(message.kind)"
                )))
            }
        }
    }

    // MARK: Workers

    private mutating func onHello(_ hello: Hello, identity: [UInt8], now: UInt64) {
        if hello.vocabHash != tokenizer.vocabHash {
            let reason = "the model's vocabulary hash \(String(hello.vocabHash, radix: 16)) differs from the "
                + "cluster tokenizer's \(String(tokenizer.vocabHash, radix: 16)) (read from "
                + "\(config.experts.first?.model ?? "the first expert's model")): every expert must share one tokenizer"
            send(identity, .reject(Reject(reason: reason)))
            server.log("rejected worker \(hello.workerID): \(reason)")
            return
        }
        switch membership.onHello(hello, now: now) {
        case let .welcome(welcome, replaced):
            if let old = workerIdentity[hello.workerID], old != identity { workerByIdentity[old] = nil }
            workerIdentity[hello.workerID] = identity
            workerByIdentity[identity] = hello.workerID
            if replaced != nil { sessionsRestart(on: hello.workerID, now: now) }
            // A fresh registration holds nothing of any session: sessions that saw this id fail may use it again.
            for id in sessions.keys { sessions[id]!.onWorkerRegistered(hello.workerID) }
            if send(identity, .welcome(welcome)) { membership.onSent(to: hello.workerID, now: now) }
            if replaced == nil {
                writeStandardError(CoordinatorServer.registeredLogPrefix + "\(hello.workerID) expert \(hello.expert)\n")
            }
        case let .reject(reject):
            send(identity, .reject(reject))
            server.log("rejected worker \(hello.workerID): \(reject.reason)")
        }
    }

    /// A worker is gone (missed heartbeats, unreachable): forget it and fail over its sessions.
    private mutating func workerDead(_ worker: WorkerID, now: UInt64) {
        membership.remove(worker)
        if let identity = workerIdentity.removeValue(forKey: worker) { workerByIdentity[identity] = nil }
        sessionsLose(worker, now: now)
    }

    /// A registered worker said `hello` again: it restarted, or dropped its sessions after taking the
    /// coordinator for dead. Its sessions are rebuilt on it by replay (as after `error unknownSession`).
    private mutating func sessionsRestart(on worker: WorkerID, now: UInt64) {
        for id in sessions.keys.sorted() where loads[id]?.contains(worker) == true {
            let reply = ErrorReply(session: id, code: .unknownSession, text: "the worker registered again")
            withSession(id, now: now) { session, choose in
                session.onError(reply, from: worker, now: now, chooseReplica: choose)
            }
        }
    }

    private mutating func sessionsLose(_ worker: WorkerID, now: UInt64) {
        for id in sessions.keys.sorted() where loads[id]?.contains(worker) == true {
            withSession(id, now: now) { session, choose in
                session.onWorkerDead(worker, now: now, chooseReplica: choose)
            }
        }
    }

    // MARK: Clients

    private mutating func onGenerate(_ generate: Generate, identity: [UInt8], now: UInt64) {
        func refuse(_ code: ErrorCode, _ text: String) {
            sendToClient(identity, .error(ErrorReply(session: generate.request, code: code, text: text)))
        }
        guard !draining else {
            return refuse(.draining, "the coordinator is shutting down and takes no new requests")
        }
        let key = ClientKey(identity: identity, request: generate.request)
        guard inFlight[key] == nil else {
            return refuse(.badRequest, "request id \(generate.request) is already in flight on this connection")
        }
        guard !generate.prompt.isEmpty else { return refuse(.badRequest, "the prompt is empty") }
        let sampling = generate.sampling
        guard sampling.temperature.isFinite, sampling.temperature >= 0 else {
            return refuse(.badRequest, "temperature must be 0 (greedy) or a positive number")
        }
        guard sampling.topP.isFinite, sampling.topP > 0, sampling.topP <= 1 else {
            return refuse(.badRequest, "top-p must be in (0, 1]")
        }
        let preference: PreferenceSpec
        do {
            preference = try PreferenceSpec.parse(generate.preference)
        } catch {
            return refuse(.badRequest, error.description)
        }
        guard sessions.count < settings.maxSessions else {
            return refuse(.unavailable, "the coordinator holds \(sessions.count) sessions, its limit; retry later")
        }
        let experts = selectExperts(for: preference)
        let served = experts.filter { membership.chooseReplica(expert: $0.name) != nil }
        guard !served.isEmpty, let vocabulary = membership.vocabulary else {
            let names = experts.map(\.name).joined(separator: ", ")
            return refuse(.unavailable, "no live worker serves the experts this request needs (\(names)); "
                + "start them with mope worker --expert NAME")
        }
        var eos = Set<UInt32>()
        for info in membership.workers.values { eos.formUnion(info.eosTokenIDs) }
        let sessionSettings = SessionSettings(config: config, vocabSize: Int(vocabulary.size), eosTokenIDs: eos)
        let id = nextSession
        nextSession += 1
        sessions[id] = CoordinatorSession(
            id: id, request: generate, preference: preference,
            experts: experts.map { SessionExpert(name: $0.name, dimension: $0.dimension) },
            settings: sessionSettings, controller: controllerFactory(), decoder: tokenizer.makeDecoder(),
            promptTokens: tokenizer.promptTokens(generate.prompt), now: now
        )
        routes[id] = Route(identity: identity, request: generate.request)
        inFlight[key] = id
        withSession(id, now: now) { session, choose in session.start(now: now, chooseReplica: choose) }
    }

    /// The experts a request involves.
    private func selectExperts(for preference: PreferenceSpec) -> [ExpertConfig] {
        guard settings.expertSelection == .namedByPreference else { return config.experts }
        let named = config.experts.filter { expert in
            expert.dimension.map { preference.weight(of: $0) > 0 } ?? false
        }
        return named.isEmpty ? config.experts : named
    }

    // MARK: Sessions

    /// Feeds one event to a session and carries out its directives.
    private mutating func withSession(
        _ id: SessionID, now: UInt64,
        _ body: (inout CoordinatorSession, ReplicaChooser) -> [SessionDirective]
    ) {
        guard var session = sessions.removeValue(forKey: id) else { return }
        let (lostBefore, failoversBefore) = (session.lostExperts.count, session.failovers)
        let snapshot = membership
        let directives = body(&session) { expert, excluding in
            snapshot.chooseReplica(expert: expert, excluding: excluding)?.id
        }
        let assigned = session.assignedWorkers
        for worker in loads[id] ?? [] { membership.release(worker) }
        for worker in assigned { membership.assign(worker) }
        loads[id] = assigned
        if session.lostExperts.count > lostBefore {
            server.log("session \(id) lost expert(s) " + session.lostExperts[lostBefore...].joined(separator: ", ")
                + "; going on without them")
        }
        if session.failovers > failoversBefore {
            server.log("session \(id) moved an expert to a replica (\(session.failovers) failovers so far)")
        }
        if session.state == .closed {
            forget(id)
        } else {
            sessions[id] = session
        }
        perform(directives, session: id, now: now)
    }

    private mutating func forget(_ id: SessionID) {
        timings[id] = nil
        for worker in loads.removeValue(forKey: id) ?? [] { membership.release(worker) }
        sessions[id] = nil
        if let route = routes.removeValue(forKey: id) {
            let key = ClientKey(identity: route.identity, request: route.request)
            if inFlight[key] == id { inFlight[key] = nil }
        }
    }

    private mutating func perform(_ directives: [SessionDirective], session id: SessionID, now: UInt64) {
        for directive in directives {
            switch directive {
            case let .send(worker, message):
                sendToWorker(worker, message, now: now)
            case let .emitToken(event):
                guard let route = routes[id] else { continue }
                if !sendToClient(route.identity, .token(event)) { pendingCancel.append(id) }
            case let .finish(done):
                replyFinal(id, .done(done))
                logFinish(id, done)
            case let .fail(reply):
                replyFinal(id, .error(reply))
            }
        }
    }

    private mutating func replyFinal(_ id: SessionID, _ message: Message) {
        guard let route = routes[id] else { return }
        sendToClient(route.identity, message)
        let key = ClientKey(identity: route.identity, request: route.request)
        if inFlight[key] == id { inFlight[key] = nil }
    }

    private func logFinish(_ id: SessionID, _ done: Done) {
        guard settings.verbose else { return }
        let compute = timings[id]?.totalMicros ?? 0
        var line = "session \(id) done: \(done.tokens) tokens in \(done.elapsedMicros / 1000) ms (\(done.finish)); "
            + "slowest expert compute \(compute / 1000) ms"
        if !done.lostExperts.isEmpty { line += "; lost experts " + done.lostExperts.joined(separator: ", ") }
        if done.failovers > 0 { line += "; \(done.failovers) failovers" }
        server.log(line)
    }

    /// Handles the consequences of the last event: dead workers and gone clients.
    private mutating func settle(now: UInt64) {
        while true {
            if let worker = pendingDead.popLast() {
                if workerIdentity[worker] != nil || membership.workers[worker] != nil {
                    server.log("worker \(worker) is unreachable: taken for dead")
                    workerDead(worker, now: now)
                }
            } else if let id = pendingCancel.popLast() {
                withSession(id, now: now) { session, _ in session.cancel(now: now) }
                forget(id)
            } else {
                return
            }
        }
    }

    // MARK: Time

    private mutating func tick(now: UInt64) {
        for directive in membership.onTick(now: now) {
            switch directive {
            case let .dead(info):
                server.log("worker \(info.id) (expert \(info.expert)) missed 3 heartbeats: taken for dead")
                if let identity = workerIdentity.removeValue(forKey: info.id) { workerByIdentity[identity] = nil }
                sessionsLose(info.id, now: now)
            case let .sendHeartbeat(worker):
                sendToWorker(worker, .heartbeat, now: now)
            }
        }
        let due = sessions.compactMap { id, session in
            session.nextDeadline.map { $0.hasPassed(now: now) } == true ? id : nil
        }
        for id in due.sorted() {
            withSession(id, now: now) { session, choose in session.onTick(now: now, chooseReplica: choose) }
        }
        settle(now: now)
    }

    // MARK: Sending

    private mutating func sendToWorker(_ worker: WorkerID, _ message: Message, now: UInt64) {
        guard let identity = workerIdentity[worker] else { return }
        switch trySend(identity, message) {
        case .sent: membership.onSent(message, to: worker, now: now, config: config)
        case .unreachable: pendingDead.append(worker)
        case .dropped: break
        }
    }

    /// Sends to a client; false when the client is gone.
    @discardableResult
    private func sendToClient(_ identity: [UInt8], _ message: Message) -> Bool {
        trySend(identity, message) != .unreachable
    }

    @discardableResult
    private func send(_ identity: [UInt8], _ message: Message) -> Bool {
        trySend(identity, message) == .sent
    }

    private enum SendOutcome: Equatable { case sent, unreachable, dropped }

    private func trySend(_ identity: [UInt8], _ message: Message) -> SendOutcome {
        do {
            if try socket.trySend([identity, WireCodec.encode(message)]) { return .sent }
            server.log("dropped a \(message.kind) message: the peer's queue is full")
            return .dropped
        } catch {
            if error.isHostUnreachable { return .unreachable }
            server.log("could not send a \(message.kind) message: \(error)")
            return .dropped
        }
    }
}

/// The slowest expert's forward-pass time per step of one session, summed over its steps.
struct SessionTiming {
    private var step: UInt32 = 0
    private var slowest: UInt32 = 0
    private var earlier: UInt64 = 0

    /// Counts one `dist`.
    mutating func add(_ dist: Dist) {
        if dist.step != step {
            earlier += UInt64(slowest)
            step = dist.step
            slowest = 0
        }
        slowest = max(slowest, dist.timing.computeMicros)
    }

    /// The sum over steps, in microseconds.
    var totalMicros: UInt64 { earlier + UInt64(slowest) }
}
