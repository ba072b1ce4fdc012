import Decoding
import Logging
import Preference
import Wire

/// Which of the coordinator's ROUTER sockets a frame arrived on.
public enum PeerEndpoint: Sendable, Equatable {
    /// The worker endpoint (`coordinator` in the config): expert workers register and answer here.
    case workers
    /// The client endpoint (`clientEndpoint`): `generate` requests arrive here.
    case clients
}

/// A client's ZeroMQ routing identity (the bytes a ROUTER gives it).
public typealias ClientID = [UInt8]

/// What the coordinator's shell must send.
public enum CoordinatorDirective: Sendable, Equatable {
    /// Send a message to a worker (its routing identity is its worker id's UTF-8 bytes). When the send fails
    /// because the worker is gone, the shell calls `CoordinatorCore.onWorkerUnreachable`.
    case sendToWorker(WorkerID, Message)
    /// Send a message to a client. When the client is gone, the shell calls `CoordinatorCore.onClientGone`.
    case sendToClient(ClientID, Message)
}

/// Something that happened, for the coordinator's log. The core decides; the shell only writes the lines.
public enum CoordinatorEvent: Sendable, Equatable, CustomStringConvertible {
    /// A worker registered for the first time under its id.
    case workerRegistered(WorkerID, expert: String)
    /// A worker's `hello` was refused.
    case workerRejected(WorkerID, reason: String)
    /// A worker was taken for dead and its sessions moved or degraded.
    case workerDead(WorkerID, reason: String)
    /// A worker said `goodbye`: it is draining and gets no new sessions.
    case workerDraining(WorkerID, reason: String)
    /// A worker failed one session with a typed error (desyncs are routine and not reported).
    case workerFailedSession(WorkerID, SessionID, ErrorCode, String)
    /// A frame could not be decoded (the worker id when a worker sent it).
    case malformedFrame(from: WorkerID?, reason: String)
    /// A worker sent a message only clients send.
    case unexpectedFromWorker(WorkerID, kind: String)
    /// A worker misbehaved (a strike; enough of them evict it).
    case workerStrike(WorkerID, reason: String)
    /// A session lost experts and goes on without them.
    case sessionLostExperts(SessionID, [String])
    /// A session moved an expert to a replica.
    case sessionFailover(SessionID, total: UInt32)
    /// A session finished; `timing` sums, over its steps, the slowest expert's forward-pass time and the
    /// slowest expert's time from receiving the step to finishing it.
    case sessionFinished(SessionID, Done, timing: SessionTiming)
    /// A drain began with this many sessions running.
    case drainStarted(running: Int)
    /// Every session finished during a drain.
    case drained
    /// The drain's grace ran out with this many sessions still running; they were failed.
    case drainExpired(failed: Int)

    /// The log line.
    public var description: String {
        switch self {
        case let .workerRegistered(id, expert): "registered worker \(LogText.escaped(id)) expert \(LogText.escaped(expert))"
        case let .workerRejected(id, reason): "rejected worker \(LogText.escaped(id)): \(LogText.escaped(reason))"
        case let .workerDead(id, reason): "worker \(LogText.escaped(id)) \(reason): taken for dead"
        case let .workerDraining(id, reason):
            "worker \(LogText.escaped(id)) is draining (\(LogText.escaped(reason))); it gets no new sessions"
        case let .workerFailedSession(id, session, code, text):
            "worker \(LogText.escaped(id)) failed session \(session): \(code) \(LogText.escaped(text))"
        case let .malformedFrame(worker?, reason):
            "dropped a malformed frame from worker \(LogText.escaped(worker)): \(reason)"
        case let .malformedFrame(nil, reason): "dropped a malformed frame from a client or an unregistered peer: \(reason)"
        case let .unexpectedFromWorker(id, kind): "dropped an unexpected \(kind) from worker \(LogText.escaped(id))"
        case let .workerStrike(id, reason): "strike against worker \(LogText.escaped(id)): \(reason)"
        case let .sessionLostExperts(id, names):
            "session \(id) lost expert(s) \(names.joined(separator: ", ")); going on without them"
        case let .sessionFailover(id, total): "session \(id) moved an expert to a replica (\(total) failovers so far)"
        case let .sessionFinished(id, done, timing):
            "session \(id) done: \(done.tokens) tokens in \(done.elapsedMicros / 1000) ms (\(done.finish)); "
                + "slowest expert compute \(timing.computeMicros / 1000) ms, "
                + "\(timing.serviceMicros / 1000) ms from receiving each step; decoding after the first token: "
                + "\(timing.decodeWallMicros / 1000) ms, slowest expert compute \(timing.decodeComputeMicros / 1000) ms"
                + (done.lostExperts.isEmpty ? "" : "; lost experts " + done.lostExperts.joined(separator: ", "))
                + (done.failovers > 0 ? "; \(done.failovers) failovers" : "")
        case let .drainStarted(running): "draining: new requests are refused; \(running) running sessions may finish"
        case .drained: "drained: every session finished"
        case let .drainExpired(failed): "drain grace over: failing \(failed) sessions"
        }
    }
}

/// What a new session needs from outside the core: the text decoder of the cluster's tokenizer, the preference
/// controller, and the prompt's token ids (for a controller that reads them).
public struct SessionResources: Sendable {
    /// Turns token ids into text as they stream.
    public var decoder: any TokenTextDecoder
    /// Weighs the experts at every step.
    public var controller: any PreferenceController
    /// The user's message as token ids (may be empty).
    public var promptTokens: [UInt32]
    /// The whole input's length in tokens, for `Done.promptTokens` (0 when not counted).
    public var inputTokenCount: UInt32

    /// Bundles a session's resources.
    public init(
        decoder: any TokenTextDecoder, controller: any PreferenceController, promptTokens: [UInt32] = [],
        inputTokenCount: UInt32 = 0
    ) {
        self.decoder = decoder
        self.controller = controller
        self.promptTokens = promptTokens
        self.inputTokenCount = inputTokenCount
    }
}

/// Which experts take part in a request.
public enum ExpertSelection: Sendable, Equatable {
    /// The experts whose dimension the preference names; every expert when it names none that is served.
    /// With `UniformController` the others would get weight 0, so they are not asked at all.
    case namedByPreference
    /// Every expert of the config (for a controller that weighs every expert, such as a learned PCM).
    case all
}

/// The coordinator's policy knobs that are not part of the cluster config.
public struct CoordinatorPolicy: Sendable, Equatable {
    /// The most sessions in flight; a `generate` beyond it gets `error unavailable`.
    public var maxSessions: Int = 4096
    /// Which experts take part in a request.
    public var expertSelection: ExpertSelection = .namedByPreference
    /// The cluster tokenizer's vocabulary hash; a worker whose model hashes differently is rejected. Nil: the
    /// first registered worker sets the vocabulary every later one must match.
    public var vocabHash: UInt64?
    /// The file the vocabulary hash was read from (named in rejections).
    public var vocabSource: String = "the cluster tokenizer"

    /// The defaults: 4096 sessions, experts named by the preference, vocabulary set by the first worker.
    public init() {}
}

/// The whole coordinator as one pure value: frame decoding, membership, every session, drain, and the routing
/// between them. The shell (`CoordinatorServer`) owns only the ROUTER sockets, the clock and the wake-up pipe:
/// it calls `onFrame` for every message received, `onTick` at `nextDeadline`, and sends what comes back; a send
/// that fails because the peer is gone comes back as `onWorkerUnreachable` / `onClientGone`.
public struct CoordinatorCore: Sendable {
    /// The cluster's settings.
    public let config: ClusterConfig
    /// The policy knobs.
    public let policy: CoordinatorPolicy
    /// The workers.
    public private(set) var membership: Membership
    /// True once a drain began: new requests are refused.
    public private(set) var isDraining = false
    /// True when the coordinator has nothing left to do after a drain (every session finished or was failed).
    public private(set) var isFinished = false

    private let makeResources: @Sendable (Generate) -> SessionResources
    private var sessions: [SessionID: CoordinatorSession] = [:]
    private var routes: [SessionID: Route] = [:]
    private var inFlight: [Route: SessionID] = [:]
    private var timings: [SessionID: SessionTiming] = [:]
    private var nextSession: SessionID = 1
    private var drainDeadline: UInt64?
    private var events: [CoordinatorEvent] = []
    /// Requests waiting for capacity, oldest first.
    private var queue: [Queued] = []

    /// A request in the admission queue: validated and parsed, waiting for a replica of every expert it needs.
    private struct Queued: Sendable {
        let generate: Generate
        let route: Route
        var preference: PreferenceSpec
        var schedule: [ScheduledPreference]
        var experts: [ExpertConfig]
        let resources: SessionResources?
        let enqueuedAt: UInt64
    }

    /// A client's request, as the client numbers it.
    private struct Route: Hashable, Sendable {
        let client: ClientID
        let request: UInt64
    }

    /// Creates a coordinator for a validated config.
    ///
    /// - Parameter resources: makes each new session's decoder, controller and prompt tokens (by default a
    ///   decoder that writes each token as `<id>`, the uniform controller and no prompt tokens).
    public init(
        config: ClusterConfig, policy: CoordinatorPolicy = CoordinatorPolicy(),
        resources: (@Sendable (Generate) -> SessionResources)? = nil
    ) {
        self.config = config
        self.policy = policy
        membership = Membership(config: config)
        membership.capacityCap = config.maxWorkerSessions
        membership.strikeLimit = Int(max(1, config.strikeLimit))
        membership.cooldownNanos = UInt64(config.evictionCooldownMs) * 1_000_000
        makeResources = resources ?? { _ in
            SessionResources(decoder: TokenIDDecoder(), controller: UniformController())
        }
    }

    /// How many sessions are in progress (including finishing ones).
    public var sessionCount: Int { sessions.count }

    /// How many sessions are opening or running.
    public var activeSessionCount: Int {
        sessions.values.filter { $0.state == .opening || $0.state == .running }.count
    }

    /// A session by id.
    public func session(_ id: SessionID) -> CoordinatorSession? { sessions[id] }

    /// The cluster's state, as a `status` request is answered: every expert of the config with its replicas
    /// wanted and its registered workers, the sessions running, and whether the coordinator drains.
    public var status: ClusterStatus { status(now: 0) }

    /// The cluster's state at `now` (which dates the oldest queued request's wait).
    public func status(now: UInt64) -> ClusterStatus {
        ClusterStatus(
            draining: isDraining, sessionsRunning: UInt32(clamping: activeSessionCount),
            sessionsQueued: UInt32(clamping: queue.count), oldestQueuedMicros: oldestQueueWait(now: now) / 1000,
            experts: membership.expertStatus(experts: config.experts.map(\.name))
        )
    }

    /// The earliest instant the shell must call `onTick` at, if any.
    public var nextDeadline: UInt64? {
        var next = membership.nextTick
        for session in sessions.values {
            if let deadline = session.nextDeadline?.nanoseconds { next = min(next ?? deadline, deadline) }
        }
        if let drainDeadline { next = min(next ?? drainDeadline, drainDeadline) }
        if let head = queue.first {
            let expiry = head.enqueuedAt &+ queueWaitNanos
            next = min(next ?? expiry, expiry)
        }
        return next
    }

    /// How many requests wait in the admission queue.
    public var queuedCount: Int { queue.count }

    /// How long the oldest queued request has waited at `now`, in nanoseconds (0 when none waits).
    public func oldestQueueWait(now: UInt64) -> UInt64 {
        guard let head = queue.first, now > head.enqueuedAt else { return 0 }
        return now - head.enqueuedAt
    }

    private var queueWaitNanos: UInt64 { UInt64(config.admissionQueueWaitMs) * 1_000_000 }

    /// The log events since the last call.
    public mutating func takeEvents() -> [CoordinatorEvent] {
        defer { events.removeAll(keepingCapacity: true) }
        return events
    }

    // MARK: Frames

    /// One frame received from the peer whose routing identity is `identity` on one of the coordinator's two
    /// ROUTER sockets. Roles never mix: the worker endpoint takes `hello` and workers' messages only (a
    /// `generate` there is dropped and logged), the client endpoint takes `generate` only (a `hello` there is
    /// refused), so a client's key or connection can never register a worker.
    public mutating func onFrame(
        identity: [UInt8], payload: [UInt8], on endpoint: PeerEndpoint, now: UInt64
    ) -> [CoordinatorDirective] {
        var directives: [CoordinatorDirective]
        switch endpoint {
        case .workers: directives = onWorkerFrame(identity: identity, payload: payload, now: now)
        case .clients: directives = onClientFrame(identity: identity, payload: payload, now: now)
        }
        return directives + admitQueued(now: now)
    }

    private mutating func onWorkerFrame(identity: [UInt8], payload: [UInt8], now: UInt64) -> [CoordinatorDirective] {
        let worker = registeredWorker(identity)
        let message: Message
        do {
            message = try WireCodec.decode(payload)
        } catch {
            events.append(.malformedFrame(from: worker, reason: "on the worker endpoint: \(error.description)"))
            if let worker { membership.onMessage(from: worker, now: now) }
            return []
        }
        switch message {
        case .hello:
            return onWorkerMessage(message, from: String(decoding: identity, as: UTF8.self), now: now)
        case .heartbeat, .goodbye, .dist, .error:
            // From a worker that is not (or no longer) registered: nothing to act on.
            guard let worker else { return [] }
            return onWorkerMessage(message, from: worker, now: now)
        default:
            if let worker { return onWorkerMessage(message, from: worker, now: now) }
            events.append(.malformedFrame(
                from: nil, reason: "a \(message.kind) from \(LogText.escaped(identity)) on the worker endpoint "
                    + "(clients connect to the client endpoint)"
            ))
            return []
        }
    }

    private mutating func onClientFrame(identity: [UInt8], payload: [UInt8], now: UInt64) -> [CoordinatorDirective] {
        let message: Message
        do {
            message = try WireCodec.decode(payload)
        } catch {
            events.append(.malformedFrame(from: nil, reason: error.description))
            return [.sendToClient(identity, .error(ErrorReply(
                session: 0, code: .badRequest, text: "the coordinator could not decode the request: \(error)"
            )))]
        }
        switch message {
        case .generate(let generate):
            return onGenerate(generate, from: identity, now: now)
        case .status(let request):
            return [.sendToClient(identity, .statusReply(StatusReply(
                request: request.request, status: status(now: now)
            )))]
        case .heartbeat:
            // A waiting client checks that the coordinator lives; the answer also tells the shell whether the
            // client does (a send to a gone client comes back as `onClientGone`).
            return [.sendToClient(identity, .heartbeat)]
        case .setPreference(let change):
            return onSetPreference(change, from: identity, now: now)
        case .hello:
            return [.sendToClient(identity, .error(ErrorReply(
                session: 0, code: .badRequest,
                text: "this is the coordinator's client endpoint: workers register on its worker endpoint"
            )))]
        default:
            return [.sendToClient(identity, .error(ErrorReply(
                session: 0, code: .badRequest,
                text: "the coordinator takes only generate, setPreference, heartbeat and status requests from "
                    + "clients, not \(message.kind)"
            )))]
        }
    }

    private func registeredWorker(_ identity: [UInt8]) -> WorkerID? {
        guard let id = String(validating: identity, as: UTF8.self), membership.workers[id] != nil else { return nil }
        return id
    }

    // MARK: Client events

    /// A client asks for a generation. `resources` overrides the core's factory (tests pass a decoder).
    ///
    /// Admission: when every live replica of an expert the request needs holds as many sessions as it can (or
    /// requests already wait), the request joins a FIFO queue of `config.admissionQueueLength`; it starts when a
    /// replica of each such expert frees up, and is refused with `error overloaded` when the queue is full or it
    /// waited `config.admissionQueueWaitMs`. A request is never started without an expert only because that
    /// expert's workers are busy.
    public mutating func onGenerate(
        _ generate: Generate, from client: ClientID, now: UInt64, resources: SessionResources? = nil
    ) -> [CoordinatorDirective] {
        func refuse(_ code: ErrorCode, _ text: String) -> [CoordinatorDirective] {
            [.sendToClient(client, .error(ErrorReply(session: generate.request, code: code, text: text)))]
        }
        guard !isDraining else {
            return refuse(.draining, "the coordinator is shutting down and takes no new requests")
        }
        let route = Route(client: client, request: generate.request)
        guard inFlight[route] == nil, !queue.contains(where: { $0.route == route }) else {
            return refuse(.badRequest, "request id \(generate.request) is already in flight on this connection")
        }
        if let problem = generate.inputProblem { return refuse(.badRequest, problem) }
        let sampling = generate.sampling.resolved(defaults: config.sampling.parameters)
        guard sampling.temperature.isFinite, sampling.temperature >= 0 else {
            return refuse(.badRequest, "temperature must be 0 (greedy) or a positive number")
        }
        guard sampling.topP.isFinite, sampling.topP > 0, sampling.topP <= 1 else {
            return refuse(.badRequest, "top-p must be in (0, 1]")
        }
        let preference: PreferenceSpec
        var schedule: [ScheduledPreference] = []
        do {
            preference = try PreferenceSpec.parse(generate.preference)
            for change in generate.schedule {
                schedule.append(ScheduledPreference(
                    fromToken: change.fromToken, preference: try PreferenceSpec.parse(change.preference)
                ))
            }
        } catch {
            return refuse(.badRequest, error.description)
        }
        let maxTokens = generate.maxNewTokens > 0 ? generate.maxNewTokens : config.maxNewTokens
        guard generate.resume.count < Int(maxTokens) else {
            return refuse(.badRequest, "a resumed request must have fewer tokens so far (\(generate.resume.count)) "
                + "than its max tokens (\(maxTokens))")
        }
        if let vocabulary = membership.vocabulary, generate.resume.contains(where: { $0 >= vocabulary.size }) {
            return refuse(.badRequest, "a resumed request's tokens must be below the vocabulary size")
        }
        let experts = selectExperts(for: [preference] + schedule.map(\.preference))
        let entry = Queued(
            generate: generate, route: route, preference: preference, schedule: schedule, experts: experts,
            resources: resources, enqueuedAt: now
        )
        guard queue.isEmpty, busyExperts(experts).isEmpty else {
            guard queue.count < Int(config.admissionQueueLength) else {
                let busy = busyExperts(experts)
                return refuse(.overloaded, "every replica of "
                    + (busy.isEmpty ? "the experts" : busy.joined(separator: ", "))
                    + " is at capacity and \(queue.count) requests are waiting already; retry later")
            }
            queue.append(entry)
            return admitQueued(now: now)
        }
        return startSession(entry, now: now)
    }

    /// The experts among `experts` that have live workers but none that takes another session.
    private func busyExperts(_ experts: [ExpertConfig]) -> [String] {
        experts.filter { expert in
            membership.chooseReplica(expert: expert.name) == nil
                && membership.workers.values.contains { $0.expert == expert.name && $0.state == .live }
        }.map(\.name)
    }

    /// Starts queued requests, oldest first, while the oldest has a free replica of every expert it needs.
    private mutating func admitQueued(now: UInt64) -> [CoordinatorDirective] {
        var directives: [CoordinatorDirective] = []
        while !isDraining, let head = queue.first, busyExperts(head.experts).isEmpty,
              sessions.count < policy.maxSessions
        {
            queue.removeFirst()
            directives += startSession(head, now: now)
        }
        return directives
    }

    /// Refuses the queued requests that waited too long (all of them while draining).
    private mutating func expireQueued(now: UInt64) -> [CoordinatorDirective] {
        var directives: [CoordinatorDirective] = []
        while let head = queue.first, isDraining || (now >= head.enqueuedAt && now - head.enqueuedAt >= queueWaitNanos) {
            queue.removeFirst()
            let reply = isDraining
                ? ErrorReply(session: head.generate.request, code: .draining,
                             text: "the coordinator is shutting down and takes no new requests")
                : ErrorReply(session: head.generate.request, code: .overloaded,
                             text: "waited \(config.admissionQueueWaitMs) ms for capacity; retry later")
            directives.append(.sendToClient(head.route.client, .error(reply)))
        }
        return directives
    }

    /// Starts the session of an admitted request.
    private mutating func startSession(_ entry: Queued, now: UInt64) -> [CoordinatorDirective] {
        let generate = entry.generate
        func refuse(_ code: ErrorCode, _ text: String) -> [CoordinatorDirective] {
            [.sendToClient(entry.route.client, .error(ErrorReply(session: generate.request, code: code, text: text)))]
        }
        guard sessions.count < policy.maxSessions else {
            return refuse(.unavailable, "the coordinator is at its session limit; retry later")
        }
        let served = entry.experts.filter { membership.chooseReplica(expert: $0.name) != nil }
        guard !served.isEmpty, let vocabulary = membership.vocabulary else {
            let names = entry.experts.map(\.name).joined(separator: ", ")
            return refuse(.unavailable, "no live worker serves the experts this request needs (\(names)); "
                + "start them with mope worker --expert NAME")
        }
        var eos = Set<UInt32>()
        for info in membership.workers.values { eos.formUnion(info.eosTokenIDs) }
        let made = entry.resources ?? makeResources(generate)
        let id = nextSession
        nextSession += 1
        var session = CoordinatorSession(
            id: id, request: generate, preference: entry.preference,
            experts: entry.experts.map { SessionExpert(name: $0.name, dimension: $0.dimension) },
            settings: SessionSettings(config: config, vocabSize: Int(vocabulary.size), eosTokenIDs: eos),
            controller: made.controller, decoder: made.decoder, promptTokens: made.promptTokens,
            inputTokenCount: made.inputTokenCount, expertSystemTurn: config.expertSystemTurn(for: entry.preference),
            schedule: entry.schedule, now: now
        )
        session.queuedMicros = (now &- entry.enqueuedAt) / 1000
        sessions[id] = session
        routes[id] = entry.route
        inFlight[entry.route] = id
        return update(id, now: now) { session, choose in session.start(now: now, chooseReplica: choose) }
    }

    /// A client changes a request's preference: a running session takes it from its next token, a queued one
    /// from its first; the client is told the token index. A change for no known request is dropped.
    private mutating func onSetPreference(
        _ change: SetPreference, from client: ClientID, now: UInt64
    ) -> [CoordinatorDirective] {
        let route = Route(client: client, request: change.request)
        let spec: PreferenceSpec
        do {
            spec = try PreferenceSpec.parse(change.preference)
        } catch {
            events.append(.malformedFrame(from: nil, reason: "a setPreference with a bad preference: \(error)"))
            return []
        }
        let from: UInt32
        if let id = inFlight[route], sessions[id] != nil {
            from = sessions[id]!.setPreference(spec)
        } else if let index = queue.firstIndex(where: { $0.route == route }) {
            queue[index].preference = spec
            queue[index].schedule = []
            queue[index].experts = selectExperts(for: [spec])
            from = 0
        } else {
            return []
        }
        return [.sendToClient(client, .preferenceSet(PreferenceSet(request: change.request, fromToken: from)))]
    }

    /// The experts a request involves: those any of its preferences names.
    private func selectExperts(for preferences: [PreferenceSpec]) -> [ExpertConfig] {
        guard policy.expertSelection == .namedByPreference else { return config.experts }
        let named = config.experts.filter { expert in
            expert.dimension.map { dimension in preferences.contains { $0.weight(of: dimension) > 0 } } ?? false
        }
        return named.isEmpty ? config.experts : named
    }

    /// A client went away: its sessions are cancelled (workers are sent `close`).
    public mutating func onClientGone(_ client: ClientID, now: UInt64) -> [CoordinatorDirective] {
        var directives: [CoordinatorDirective] = []
        queue.removeAll { $0.route.client == client }
        for id in routes.filter({ $0.value.client == client }).keys.sorted() {
            directives += update(id, now: now) { session, _ in session.cancel(now: now) }
        }
        return directives + admitQueued(now: now)
    }

    // MARK: Worker events

    /// A decoded message from the worker `worker` (for `hello`, the id its connection claims).
    public mutating func onWorkerMessage(_ message: Message, from worker: WorkerID, now: UInt64)
        -> [CoordinatorDirective]
    {
        handleWorkerMessage(message, from: worker, now: now) + admitQueued(now: now)
    }

    private mutating func handleWorkerMessage(_ message: Message, from worker: WorkerID, now: UInt64)
        -> [CoordinatorDirective]
    {
        switch message {
        case let .hello(hello):
            return onHello(hello, from: worker, now: now)
        case .heartbeat:
            membership.onMessage(from: worker, now: now)
            return []
        case let .goodbye(goodbye):
            guard membership.workers[worker] != nil else { return [] }
            membership.onGoodbye(from: worker, now: now)
            events.append(.workerDraining(worker, reason: goodbye.reason))
            return []
        case let .dist(dist):
            guard membership.onMessage(from: worker, now: now) else { return [] }
            membership.onReply(from: worker)
            // An answer for a session it was never given (a late one after a missed deadline is not counted
            // again: the deadline was).
            let foreign = sessions[dist.session].map { !$0.involves(worker) } ?? (dist.session >= nextSession)
            if foreign {
                return strike(worker, "answered a session it does not hold", now: now)
            }
            if sessions[dist.session] != nil { timings[dist.session, default: SessionTiming()].add(dist) }
            return update(dist.session, now: now) { session, choose in
                session.onDist(dist, from: worker, now: now, chooseReplica: choose)
            }
        case let .error(reply):
            guard membership.onMessage(from: worker, now: now) else { return [] }
            membership.onReply(from: worker)
            if reply.code != .desync, sessions[reply.session] != nil {
                events.append(.workerFailedSession(worker, reply.session, reply.code, reply.text))
            }
            return update(reply.session, now: now) { session, choose in
                session.onError(reply, from: worker, now: now, chooseReplica: choose)
            }
        default:
            // Not a worker's message: dropped (a sign of life all the same).
            membership.onMessage(from: worker, now: now)
            events.append(.unexpectedFromWorker(worker, kind: "\(message.kind)"))
            return []
        }
    }

    private mutating func onHello(_ hello: Hello, from worker: WorkerID, now: UInt64) -> [CoordinatorDirective] {
        // The peer learns what to fix; the cluster's own settings go to the log only.
        func reject(_ reason: String, detail: String = "") -> [CoordinatorDirective] {
            events.append(.workerRejected(hello.workerID, reason: reason + detail))
            return [.sendToWorker(worker, .reject(Reject(reason: reason)))]
        }
        guard hello.workerID == worker else {
            return reject("the worker id \"\(hello.workerID)\" differs from the connection's identity \"\(worker)\"")
        }
        if let expected = policy.vocabHash, hello.vocabHash != expected {
            return reject(
                "the model's vocabulary hash \(String(hello.vocabHash, radix: 16)) differs from the cluster "
                    + "tokenizer's: every expert must share one tokenizer; use the cluster's model",
                detail: " (cluster: \(String(expected, radix: 16)), read from \(policy.vocabSource))"
            )
        }
        switch membership.onHello(hello, now: now) {
        case let .reject(rejection):
            var detail = " (cluster: protocol \(WireProtocol.version), experts "
                + membership.expectedReplicas.keys.sorted().joined(separator: ",")
            if let vocabulary = membership.vocabulary {
                detail += ", vocabulary size \(vocabulary.size) hash \(String(vocabulary.hash, radix: 16))"
            }
            return reject(rejection.reason, detail: detail + ")")
        case let .welcome(welcome, replaced):
            var directives: [CoordinatorDirective] = [.sendToWorker(worker, .welcome(welcome))]
            membership.onSent(to: worker, now: now)
            if replaced == nil { events.append(.workerRegistered(worker, expert: hello.expert)) }
            // A fresh registration holds nothing of any session: sessions that saw this id fail may use it again,
            // and sessions it held are rebuilt by replay (as after `error unknownSession`).
            for id in sessions.keys { sessions[id]!.onWorkerRegistered(worker) }
            if replaced != nil {
                let reply = { (id: SessionID) in
                    ErrorReply(session: id, code: .unknownSession, text: "the worker registered again")
                }
                for id in sessions.keys.sorted() where sessions[id]?.assignedWorkers.contains(worker) == true {
                    directives += update(id, now: now) { session, choose in
                        session.onError(reply(id), from: worker, now: now, chooseReplica: choose)
                    }
                }
            }
            return directives
        }
    }

    /// A send to a worker failed (it is gone): it is removed and its sessions fail over.
    public mutating func onWorkerUnreachable(_ worker: WorkerID, now: UInt64) -> [CoordinatorDirective] {
        guard membership.remove(worker) != nil else { return [] }
        events.append(.workerDead(worker, reason: "is unreachable"))
        return workerLost(worker, now: now) + admitQueued(now: now)
    }

    // MARK: Time and drain

    /// Time passes: heartbeats, dead workers, session deadlines, the drain's end.
    public mutating func onTick(now: UInt64) -> [CoordinatorDirective] {
        var directives: [CoordinatorDirective] = []
        for directive in membership.onTick(now: now) {
            switch directive {
            case let .sendHeartbeat(worker):
                directives.append(.sendToWorker(worker, .heartbeat))
                membership.onSent(to: worker, now: now)
            case let .dead(info):
                events.append(.workerDead(info.id, reason: "(expert \(info.expert)) went silent"))
                directives += workerLost(info.id, now: now)
            }
        }
        for id in sessions.keys.sorted() {
            guard let deadline = sessions[id]?.nextDeadline, deadline.hasPassed(now: now) else { continue }
            directives += update(id, now: now) { session, choose in session.onTick(now: now, chooseReplica: choose) }
        }
        directives += expireQueued(now: now)
        directives += admitQueued(now: now)
        if isDraining, !isFinished {
            if activeSessionCount == 0 {
                events.append(.drained)
                isFinished = true
            } else if let drainDeadline, now >= drainDeadline {
                events.append(.drainExpired(failed: activeSessionCount))
                directives += shutdown(
                    now: now, code: .draining, text: "the coordinator shut down before the request finished; retry it"
                )
                isFinished = true
            }
        }
        return directives
    }

    /// Starts a drain: new requests are refused; running sessions may finish until `graceNanos` from `now`, then
    /// they fail with `error draining`. `isFinished` turns true when nothing is left (checked at `onTick`).
    public mutating func beginDrain(now: UInt64, graceNanos: UInt64) {
        guard !isDraining else { return }
        isDraining = true
        drainDeadline = now &+ graceNanos
        events.append(.drainStarted(running: activeSessionCount))
    }

    /// Every session in progress fails with `code` and its workers are sent `close`.
    public mutating func shutdown(
        now: UInt64, code: ErrorCode = .unavailable, text: String = "the coordinator is shutting down"
    ) -> [CoordinatorDirective] {
        var directives: [CoordinatorDirective] = []
        for entry in queue {
            directives.append(.sendToClient(entry.route.client, .error(ErrorReply(
                session: entry.generate.request, code: code, text: text
            ))))
        }
        queue.removeAll()
        for id in sessions.keys.sorted() {
            guard let session = sessions[id], let route = routes[id] else { continue }
            let running = session.state == .opening || session.state == .running
            if running {
                directives.append(.sendToClient(route.client, .error(ErrorReply(
                    session: session.request.request, code: code, text: text
                ))))
            }
            directives += update(id, now: now) { session, _ in session.cancel(now: now) }
        }
        return directives
    }

    // MARK: Routing

    private mutating func workerLost(_ worker: WorkerID, now: UInt64) -> [CoordinatorDirective] {
        var directives: [CoordinatorDirective] = []
        for id in sessions.keys.sorted() {
            directives += update(id, now: now) { session, choose in
                session.onWorkerDead(worker, now: now, chooseReplica: choose)
            }
        }
        return directives
    }

    /// Runs one event on a session, keeps the load accounting, and turns its directives into messages.
    private mutating func update(
        _ id: SessionID, now: UInt64,
        _ event: (inout CoordinatorSession, ReplicaChooser) -> [SessionDirective]
    ) -> [CoordinatorDirective] {
        guard var session = sessions[id], let route = routes[id] else { return [] }
        let before = session.assignedWorkers
        let (lostBefore, failoversBefore) = (session.lostExperts.count, session.failovers)
        let members = membership
        let directives = event(&session) { members.chooseReplica(expert: $0, excluding: $1)?.id }
        for worker in before { membership.release(worker) }
        for worker in session.assignedWorkers {
            membership.assign(worker)
            if !before.contains(worker) { membership.placed(worker) }
        }
        let strikes = session.takeStrikes()
        if session.lostExperts.count > lostBefore {
            events.append(.sessionLostExperts(id, Array(session.lostExperts[lostBefore...])))
        }
        if session.failovers > failoversBefore { events.append(.sessionFailover(id, total: session.failovers)) }

        var out: [CoordinatorDirective] = []
        out.reserveCapacity(directives.count)
        for directive in directives {
            switch directive {
            case let .send(worker, message):
                out.append(.sendToWorker(worker, message))
                membership.onSent(message, to: worker, now: now, config: config)
            case let .emitToken(event):
                out.append(.sendToClient(route.client, .token(event)))
                timings[id]?.tokenSent(now: now)
            case let .finish(done):
                out.append(.sendToClient(route.client, .done(done)))
                timings[id]?.finished(now: now)
                events.append(.sessionFinished(id, done, timing: timings[id] ?? SessionTiming()))
                finishRoute(route, of: id)
            case let .fail(reply):
                out.append(.sendToClient(route.client, .error(reply)))
                finishRoute(route, of: id)
            }
        }
        if session.state == .closed {
            sessions[id] = nil
            routes[id] = nil
            timings[id] = nil
            finishRoute(route, of: id)
        } else {
            sessions[id] = session
        }
        for strike in strikes {
            if strike.missedDeadline {
                // One silence is one strike, however many sessions it held up.
                guard membership.workers[strike.worker]?.missedDeadline == false else { continue }
                membership.onMissedDeadline(strike.worker)
            }
            out += self.strike(strike.worker, strike.reason, now: now)
        }
        return out
    }

    /// Counts a strike against a worker; past the limit it is evicted (its id refused for the cool-down) and its
    /// sessions fail over or degrade.
    private mutating func strike(_ worker: WorkerID, _ reason: String, now: UInt64) -> [CoordinatorDirective] {
        events.append(.workerStrike(worker, reason: reason))
        guard let evicted = membership.strike(worker, now: now) else { return [] }
        let seconds = membership.cooldownNanos / 1_000_000_000
        events.append(.workerDead(
            worker, reason: "(expert \(evicted.expert)) was evicted after \(evicted.strikes.count) strikes "
                + "(last: \(reason)); its id is refused for \(seconds) s"
        ))
        return workerLost(worker, now: now)
    }

    /// The client's request id may be used again once its outcome was sent.
    private mutating func finishRoute(_ route: Route, of id: SessionID) {
        if inFlight[route] == id { inFlight[route] = nil }
    }
}

/// Writes each token as `<id>` (for a core without a tokenizer).
private struct TokenIDDecoder: TokenTextDecoder {
    mutating func decode(_ token: UInt32) -> String { "<\(token)>" }
}

/// Where a session's time went at the experts, summed over its steps: per step, the slowest expert's forward-pass
/// time, and the slowest expert's time from receiving the step to finishing it (the pass plus the wait before it:
/// other sessions' passes, or a core busy elsewhere). The coordinator's wall time minus `serviceMicros` is the
/// cost of the sockets, the merge and the loops; `serviceMicros` minus `computeMicros` is time spent waiting.
///
/// The decoding figures leave out step 0 (the prompt's prefill): `decodeWallMicros` runs from the first token
/// sent to the client to the end, which covers exactly the steps counted in `decodeComputeMicros`, so their ratio
/// is the per-token latency of decoding against the experts' own step time.
public struct SessionTiming: Sendable, Equatable {
    private var step: UInt32 = 0
    private var slowestCompute: UInt32 = 0
    private var slowestService: UInt64 = 0
    private var earlierCompute: UInt64 = 0
    private var earlierService: UInt64 = 0
    private var prefillCompute: UInt64?
    private var firstTokenAt: UInt64?
    private var finishedAt: UInt64?

    public init() {}

    /// Counts one `dist`.
    mutating func add(_ dist: Dist) {
        if dist.step != step {
            if step == 0, prefillCompute == nil { prefillCompute = UInt64(slowestCompute) }
            earlierCompute += UInt64(slowestCompute)
            earlierService += slowestService
            step = dist.step
            slowestCompute = 0
            slowestService = 0
        }
        slowestCompute = max(slowestCompute, dist.timing.computeMicros)
        slowestService = max(slowestService, UInt64(dist.timing.queueMicros) + UInt64(dist.timing.computeMicros))
    }

    /// A token went to the client at `now` (nanoseconds); the first one starts the decoding time.
    mutating func tokenSent(now: UInt64) {
        if firstTokenAt == nil { firstTokenAt = now }
    }

    /// The session finished at `now` (nanoseconds).
    mutating func finished(now: UInt64) {
        finishedAt = now
    }

    /// The sum over steps of the slowest forward pass, in microseconds.
    public var computeMicros: UInt64 { earlierCompute + UInt64(slowestCompute) }
    /// The sum over steps of the slowest wait-plus-pass, in microseconds.
    public var serviceMicros: UInt64 { earlierService + slowestService }
    /// `computeMicros` without step 0.
    public var decodeComputeMicros: UInt64 { computeMicros - min(computeMicros, prefillCompute ?? computeMicros) }
    /// The wall time from the first token sent to the client to the end, in microseconds (0 before both).
    public var decodeWallMicros: UInt64 {
        guard let firstTokenAt, let finishedAt, finishedAt >= firstTokenAt else { return 0 }
        return (finishedAt - firstTokenAt) / 1000
    }
}
