import Preference
import Wire

/// A client's ZeroMQ routing identity (the bytes a ROUTER gives it).
public typealias ClientID = [UInt8]

/// What the coordinator's shell must send.
public enum CoordinatorDirective: Sendable, Equatable {
    /// Send a message to a worker (its routing identity is its worker id's UTF-8 bytes).
    case sendToWorker(WorkerID, Message)
    /// Send a message to a client.
    case sendToClient(ClientID, Message)
}

/// The whole coordinator as one pure value: membership plus every session, routing each event to the right
/// part and turning their directives into messages. The shell owns the ROUTER socket and the clock; it calls an
/// `on…` method for every frame received and at `nextDeadline`, and sends what comes back.
public struct CoordinatorCore: Sendable {
    /// The cluster's settings.
    public let config: ClusterConfig
    /// The workers.
    public private(set) var membership: Membership
    private var sessions: [SessionID: CoordinatorSession] = [:]
    private var clients: [SessionID: ClientID] = [:]
    private var nextSession: SessionID = 1

    /// Creates a coordinator for a validated config.
    public init(config: ClusterConfig) {
        self.config = config
        membership = Membership(config: config)
    }

    /// How many sessions are in progress (including finishing ones).
    public var sessionCount: Int { sessions.count }

    /// A session by id.
    public func session(_ id: SessionID) -> CoordinatorSession? { sessions[id] }

    /// The earliest instant the shell must call `onTick` at, if any.
    public var nextDeadline: UInt64? {
        let sessionDeadline = sessions.values.compactMap { $0.nextDeadline?.nanoseconds }.min()
        switch (sessionDeadline, membership.nextTick) {
        case let (a?, b?): return min(a, b)
        case let (a, b): return a ?? b
        }
    }

    // MARK: Client events

    /// A client asks for a generation. The shell supplies the session's text decoder, the controller and
    /// (optionally) the prompt's token ids for the controller.
    public mutating func onGenerate(
        _ generate: Generate, from client: ClientID, now: UInt64, decoder: any TokenTextDecoder,
        controller: any PreferenceController = UniformController(), promptTokens: [UInt32] = []
    ) -> [CoordinatorDirective] {
        func refuse(_ code: ErrorCode, _ text: String) -> [CoordinatorDirective] {
            [.sendToClient(client, .error(ErrorReply(session: generate.request, code: code, text: text)))]
        }
        let preference: PreferenceSpec
        do {
            preference = try PreferenceSpec.parse(generate.preference)
        } catch {
            return refuse(.badRequest, error.description)
        }
        guard !generate.prompt.isEmpty else { return refuse(.badRequest, "the prompt is empty") }
        let sampling = generate.sampling
        guard sampling.temperature.isFinite, sampling.temperature >= 0 else {
            return refuse(.badRequest, "temperature must be 0 (greedy) or a positive number")
        }
        guard sampling.topP.isFinite, sampling.topP > 0, sampling.topP <= 1 else {
            return refuse(.badRequest, "topP must be in (0, 1]")
        }
        guard let vocabulary = membership.vocabulary, !membership.availableExperts.isEmpty else {
            return refuse(.unavailable, "no expert worker is registered yet; start workers and try again")
        }
        let eos = Set(membership.workers.values.flatMap(\.eosTokenIDs))
        let id = nextSession
        nextSession += 1
        var session = CoordinatorSession(
            id: id, request: generate, preference: preference,
            experts: config.experts.map { SessionExpert(name: $0.name, dimension: $0.dimension) },
            settings: SessionSettings(config: config, vocabSize: Int(vocabulary.size), eosTokenIDs: eos),
            controller: controller, decoder: decoder, promptTokens: promptTokens, now: now
        )
        let members = membership
        let directives = session.start(now: now) { members.chooseReplica(expert: $0, excluding: $1)?.id }
        sessions[id] = session
        clients[id] = client
        return apply(directives, session: id, before: [], now: now)
    }

    /// A client went away: its sessions are cancelled (workers are sent `close`).
    public mutating func onClientGone(_ client: ClientID, now: UInt64) -> [CoordinatorDirective] {
        var directives: [CoordinatorDirective] = []
        for id in clients.filter({ $0.value == client }).keys.sorted() {
            directives += update(id, now: now) { session, _ in session.cancel(now: now) }
        }
        return directives
    }

    // MARK: Worker events

    /// A message from a worker.
    public mutating func onWorkerMessage(_ message: Message, from worker: WorkerID, now: UInt64)
        -> [CoordinatorDirective]
    {
        switch message {
        case let .hello(hello):
            guard hello.workerID == worker else {
                return [.sendToWorker(worker, .reject(Reject(
                    reason: "the worker id \"\(hello.workerID)\" differs from the connection's identity \"\(worker)\""
                )))]
            }
            switch membership.onHello(hello, now: now) {
            case let .reject(reject):
                return [.sendToWorker(worker, .reject(reject))]
            case let .welcome(welcome, replaced):
                var directives: [CoordinatorDirective] = [.sendToWorker(worker, .welcome(welcome))]
                membership.onSent(to: worker, now: now)
                if replaced != nil { directives += workerLost(worker, now: now) }
                for id in sessions.keys { sessions[id]!.onWorkerRegistered(worker) }
                return directives
            }
        case .heartbeat:
            membership.onMessage(from: worker, now: now)
            return []
        case .goodbye:
            membership.onGoodbye(from: worker, now: now)
            return []
        case let .dist(dist):
            guard membership.onMessage(from: worker, now: now) else { return [] }
            membership.onReply(from: worker)
            return update(dist.session, now: now) { session, choose in
                session.onDist(dist, from: worker, now: now, chooseReplica: choose)
            }
        case let .error(reply):
            guard membership.onMessage(from: worker, now: now) else { return [] }
            membership.onReply(from: worker)
            return update(reply.session, now: now) { session, choose in
                session.onError(reply, from: worker, now: now, chooseReplica: choose)
            }
        default:
            // Not a worker's message: ignored (a sign of life all the same).
            membership.onMessage(from: worker, now: now)
            return []
        }
    }

    /// A send to a worker failed (it is gone): it is removed and its sessions fail over.
    public mutating func onWorkerUnreachable(_ worker: WorkerID, now: UInt64) -> [CoordinatorDirective] {
        guard membership.remove(worker) != nil else { return [] }
        return workerLost(worker, now: now)
    }

    // MARK: Time

    /// Time passes: heartbeats, dead workers, session deadlines.
    public mutating func onTick(now: UInt64) -> [CoordinatorDirective] {
        var directives: [CoordinatorDirective] = []
        for directive in membership.onTick(now: now) {
            switch directive {
            case let .sendHeartbeat(worker):
                directives.append(.sendToWorker(worker, .heartbeat))
                membership.onSent(to: worker, now: now)
            case let .dead(info):
                directives += workerLost(info.id, now: now)
            }
        }
        for id in sessions.keys.sorted() {
            guard let deadline = sessions[id]?.nextDeadline, deadline.hasPassed(now: now) else { continue }
            directives += update(id, now: now) { session, choose in session.onTick(now: now, chooseReplica: choose) }
        }
        return directives
    }

    /// Shutdown: every session in progress fails with `unavailable` and its workers are sent `close`.
    public mutating func shutdown(now: UInt64) -> [CoordinatorDirective] {
        var directives: [CoordinatorDirective] = []
        for id in sessions.keys.sorted() {
            guard let session = sessions[id], let client = clients[id] else { continue }
            let running = session.state == .opening || session.state == .running
            directives += update(id, now: now) { session, _ in session.cancel(now: now) }
            if running {
                directives.append(.sendToClient(client, .error(ErrorReply(
                    session: session.request.request, code: .unavailable, text: "the coordinator is shutting down"
                ))))
            }
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
        guard var session = sessions[id] else { return [] }
        let before = session.assignedWorkers
        let directives: [SessionDirective]
        do {
            let members = membership
            directives = event(&session) { members.chooseReplica(expert: $0, excluding: $1)?.id }
        }
        sessions[id] = session
        return apply(directives, session: id, before: before, now: now)
    }

    private mutating func apply(
        _ directives: [SessionDirective], session id: SessionID, before: [WorkerID], now: UInt64
    ) -> [CoordinatorDirective] {
        guard let session = sessions[id], let client = clients[id] else { return [] }
        for worker in before { membership.release(worker) }
        for worker in session.assignedWorkers { membership.assign(worker) }
        var out: [CoordinatorDirective] = []
        out.reserveCapacity(directives.count)
        for directive in directives {
            switch directive {
            case let .send(worker, message):
                out.append(.sendToWorker(worker, message))
                membership.onSent(message, to: worker, now: now, config: config)
            case let .emitToken(event):
                out.append(.sendToClient(client, .token(event)))
            case let .finish(done):
                out.append(.sendToClient(client, .done(done)))
            case let .fail(reply):
                out.append(.sendToClient(client, .error(reply)))
            }
        }
        if session.state == .closed {
            sessions.removeValue(forKey: id)
            clients.removeValue(forKey: id)
        }
        return out
    }
}
