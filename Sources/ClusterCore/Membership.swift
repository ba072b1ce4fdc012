import Decoding
import Wire

/// A worker's id in the cluster (also its ZeroMQ routing identity).
public typealias WorkerID = String

/// What the coordinator knows of one registered worker.
public struct WorkerInfo: Sendable, Equatable {
    /// Whether a worker takes new sessions.
    public enum State: Sendable, Equatable {
        /// Serving and taking new sessions.
        case live
        /// Finishing its sessions after `goodbye`; takes no new ones.
        case draining
    }

    /// The worker's id.
    public var id: WorkerID
    /// The expert it serves.
    public var expert: String
    /// Its model's fingerprint.
    public var modelFingerprint: String
    /// Its vocabulary size.
    public var vocabSize: UInt32
    /// Its vocabulary hash.
    public var vocabHash: UInt64
    /// The token ids that end a generation for it.
    public var eosTokenIDs: [UInt32]
    /// The most tokens one of its sessions may hold.
    public var contextLimit: UInt32
    /// The most sessions it holds at once.
    public var sessionCapacity: UInt32
    /// When it was last heard from (nanoseconds).
    public var lastSeen: UInt64
    /// When the coordinator last sent it anything (nanoseconds).
    public var lastSent: UInt64
    /// Until when the worker may stay silent because it computes a reply the coordinator asked for
    /// (the request's own deadline governs it meanwhile); 0 when nothing is outstanding.
    public var busyUntil: UInt64 = 0
    /// Requests sent to the worker and not yet answered (each `open`, `replay` and `step` gets one `dist` or
    /// `error`); when none is left, `busyUntil` no longer protects it.
    public var outstanding: Int = 0
    /// Live or draining.
    public var state: State
    /// How many sessions the coordinator has placed on it.
    public var load: Int
    /// It let a request's deadline pass and has not answered since: new sessions go elsewhere while another
    /// replica can take them, so a silent worker costs one deadline, not one per request.
    public var missedDeadline = false
    /// When it was last given a session (a placement counter; 0: never), for rotating among equally loaded
    /// replicas instead of letting the id's sort order decide.
    public var lastPlacement: UInt64 = 0
    /// When it registered (a registration counter): the order among replicas never placed yet.
    public var registration: UInt64 = 0
    /// When each strike (a misbehaviour) was counted, within the strike window.
    public var strikes: [UInt64] = []

    /// Creates the record of a worker from its `hello`.
    public init(hello: Hello, now: UInt64) {
        id = hello.workerID
        expert = hello.expert
        modelFingerprint = hello.modelFingerprint
        vocabSize = hello.vocabSize
        vocabHash = hello.vocabHash
        eosTokenIDs = hello.eosTokenIDs
        contextLimit = hello.contextLimit
        sessionCapacity = hello.sessionCapacity
        lastSeen = now
        lastSent = now
        state = .live
        load = 0
    }

    /// True when it can take one more session.
    public var acceptsSessions: Bool { state == .live && load < Int(sessionCapacity) }
}

/// The answer to a `hello`.
public enum HelloOutcome: Sendable, Equatable {
    /// Accepted: send `welcome`. `replaced` is set when a worker with the same id was registered before
    /// (it restarted): every session on the old registration is lost and must be handled like a dead worker.
    case welcome(Welcome, replaced: WorkerInfo?)
    /// Refused: send `reject` with this reason.
    case reject(Reject)
}

/// What the membership asks the shell to do on a tick.
public enum MembershipDirective: Sendable, Equatable {
    /// The worker missed 3 heartbeat intervals: it is removed; fail over its sessions.
    case dead(WorkerInfo)
    /// Nothing was sent to the worker for one interval: send it a heartbeat.
    case sendHeartbeat(WorkerID)
}

/// The workers of the cluster, their health and their load (pure: time is passed in).
///
/// Rejection reasons go to the peer: they say what it must fix and disclose none of the cluster's settings (its
/// experts, its vocabulary, its protocol version); the coordinator's log adds those.
///
/// - Registration: the first accepted worker fixes the cluster's vocabulary (size + hash); a later `hello` with
///   another vocabulary, another protocol version, or (when the config lists experts) an unknown expert is
///   rejected. A `hello` from a registered id replaces the old registration.
/// - Health (the Paranoid Pirate pattern): any message from a worker is a sign of life; a worker not heard
///   from for 3 heartbeat intervals is dead. The coordinator sends a heartbeat to a worker it has sent nothing
///   to for one interval.
/// - `goodbye` puts a worker in draining: it keeps its sessions but is not chosen for new ones.
public struct Membership: Sendable {
    /// How often each side sends a heartbeat when otherwise silent (nanoseconds).
    public let heartbeatIntervalNanos: UInt64
    /// How many missed intervals make a worker dead.
    public static let missedIntervalsForDeath: UInt64 = 3
    /// Expected experts and their replica counts from the config (empty: any expert is accepted).
    public let expectedReplicas: [String: Int]
    /// The registered workers by id.
    public private(set) var workers: [WorkerID: WorkerInfo] = [:]
    /// The vocabulary (size, hash) fixed by the first registered worker.
    public private(set) var vocabulary: (size: UInt32, hash: UInt64)?
    /// How many times each worker id was accepted (a restart adds one; kept after the worker is removed, for
    /// at most `maxRememberedRegistrations` ids that are no longer registered).
    public private(set) var registrations: [WorkerID: Int] = [:]
    /// The most ids of departed workers whose registration counts are kept.
    public static let maxRememberedRegistrations = 1024
    /// When `onTick` last ran.
    private var lastTick: UInt64?
    /// The most sessions the coordinator believes one worker holds, whatever its `hello` claims.
    public var capacityCap: UInt32 = 256
    /// How many strikes within `strikeWindowNanos` evict a worker.
    public var strikeLimit = 3
    /// How long a strike counts (nanoseconds).
    public var strikeWindowNanos: UInt64 = 60_000_000_000
    /// How long an evicted worker's id is refused (nanoseconds).
    public var cooldownNanos: UInt64 = 60_000_000_000
    /// Evicted ids and until when they are refused.
    public private(set) var cooldowns: [WorkerID: UInt64] = [:]
    private var placements: UInt64 = 0
    private var registrationCounter: UInt64 = 0

    /// Creates an empty membership.
    public init(heartbeatIntervalMs: UInt32, expectedReplicas: [String: Int] = [:]) {
        heartbeatIntervalNanos = UInt64(max(heartbeatIntervalMs, 1)) * 1_000_000
        self.expectedReplicas = expectedReplicas
    }

    /// Creates the membership a config describes.
    public init(config: ClusterConfig) {
        var expected: [String: Int] = [:]
        for expert in config.experts { expected[expert.name, default: 0] += expert.replicas }
        self.init(heartbeatIntervalMs: config.heartbeatIntervalMs, expectedReplicas: expected)
    }

    // MARK: Events

    /// A worker registers.
    public mutating func onHello(_ hello: Hello, now: UInt64) -> HelloOutcome {
        guard hello.protocolVersion == WireProtocol.version else {
            return .reject(Reject(
                reason: "protocol version \(hello.protocolVersion) is not supported: run the same mope release "
                    + "on every machine"
            ))
        }
        guard !hello.workerID.isEmpty else {
            return .reject(Reject(reason: "the worker id is empty; start the worker with a unique --id"))
        }
        if let until = cooldowns[hello.workerID] {
            if now < until {
                return .reject(Reject(
                    reason: "this worker id was evicted for misbehaving; fix the worker and register again later"
                ))
            }
            cooldowns[hello.workerID] = nil
        }
        if !expectedReplicas.isEmpty, expectedReplicas[hello.expert] == nil {
            return .reject(Reject(
                reason: "expert \"\(hello.expert)\" is not in the cluster config: start the worker with an "
                    + "expert name from the config"
            ))
        }
        if let vocabulary {
            guard hello.vocabSize == vocabulary.size, hello.vocabHash == vocabulary.hash else {
                return .reject(Reject(
                    reason: "the model's vocabulary (size \(hello.vocabSize), hash \(hex(hello.vocabHash))) differs "
                        + "from the cluster's: every expert must share one tokenizer; use the cluster's model"
                ))
            }
        } else {
            vocabulary = (hello.vocabSize, hello.vocabHash)
        }
        let replaced = workers[hello.workerID]
        var info = WorkerInfo(hello: hello, now: now)
        info.sessionCapacity = min(info.sessionCapacity, capacityCap)
        registrationCounter += 1
        info.registration = registrationCounter
        workers[hello.workerID] = info
        registrations[hello.workerID, default: 0] += 1
        if registrations.count > workers.count + Self.maxRememberedRegistrations {
            registrations = registrations.filter { workers[$0.key] != nil }
        }
        return .welcome(Welcome(heartbeatIntervalMs: UInt32(heartbeatIntervalNanos / 1_000_000)), replaced: replaced)
    }

    /// Any message arrived from a worker. Returns false when the worker is not registered (it should be asked
    /// to register again, e.g. by ignoring it until it sends `hello`).
    @discardableResult
    public mutating func onMessage(from worker: WorkerID, now: UInt64) -> Bool {
        guard workers[worker] != nil else { return false }
        workers[worker]!.lastSeen = max(workers[worker]!.lastSeen, now)
        return true
    }

    /// The coordinator sent something to a worker (it counts as a heartbeat to it).
    public mutating func onSent(to worker: WorkerID, now: UInt64) {
        guard workers[worker] != nil else { return }
        workers[worker]!.lastSent = max(workers[worker]!.lastSent, now)
    }

    /// The coordinator sent a request whose reply is due by `deadline`: a worker busy computing it (a long
    /// prefill, a large batch) sends nothing meanwhile, and is not taken for dead before that deadline; the
    /// request's own deadline decides then.
    public mutating func expectReply(from worker: WorkerID, by deadline: UInt64) {
        guard workers[worker] != nil else { return }
        workers[worker]!.busyUntil = max(workers[worker]!.busyUntil, deadline)
        workers[worker]!.outstanding += 1
    }

    /// A worker answered one request (`dist` or `error`): once every request is answered, only heartbeats
    /// judge it again. An answer also ends the avoidance a missed deadline started.
    public mutating func onReply(from worker: WorkerID) {
        guard workers[worker] != nil else { return }
        workers[worker]!.missedDeadline = false
        workers[worker]!.outstanding = max(0, workers[worker]!.outstanding - 1)
        if workers[worker]!.outstanding == 0 { workers[worker]!.busyUntil = 0 }
    }

    /// The coordinator sent `message` to a worker: a heartbeat to it, and for a request (`open`, `replay`,
    /// `step`) a reply expected by the matching deadline of `config`.
    public mutating func onSent(_ message: Message, to worker: WorkerID, now: UInt64, config: ClusterConfig) {
        onSent(to: worker, now: now)
        switch message {
        case .open, .replay:
            expectReply(from: worker, by: now &+ UInt64(config.openDeadlineMs) &* 1_000_000)
        case .step:
            expectReply(from: worker, by: now &+ UInt64(config.stepDeadlineMs) &* 1_000_000)
        default:
            break
        }
    }

    /// A worker said goodbye: it drains.
    public mutating func onGoodbye(from worker: WorkerID, now: UInt64) {
        guard workers[worker] != nil else { return }
        workers[worker]!.state = .draining
        workers[worker]!.lastSeen = max(workers[worker]!.lastSeen, now)
    }

    /// Removes a worker (it left, or the shell could not reach it). Returns its record.
    @discardableResult
    public mutating func remove(_ worker: WorkerID) -> WorkerInfo? {
        workers.removeValue(forKey: worker)
    }

    /// Time passes: dead workers are removed, silent links get a heartbeat. Directives are ordered by worker id.
    public mutating func onTick(now: UInt64) -> [MembershipDirective] {
        // Ticks come at least once an interval while workers are registered. A longer gap means this process
        // was not running (stopped, starved): the workers' messages of that time are still queued, unread, so
        // the gap is not their silence.
        if let lastTick, now > lastTick, now - lastTick > 2 * heartbeatIntervalNanos {
            let paused = now - lastTick - heartbeatIntervalNanos
            for id in workers.keys { workers[id]!.lastSeen = min(now, workers[id]!.lastSeen &+ paused) }
        }
        lastTick = now
        var directives: [MembershipDirective] = []
        for id in workers.keys.sorted() {
            let info = workers[id]!
            if now >= info.lastSeen, now - info.lastSeen >= Self.missedIntervalsForDeath * heartbeatIntervalNanos,
                now >= info.busyUntil
            {
                workers.removeValue(forKey: id)
                directives.append(.dead(info))
            } else if now >= info.lastSent, now - info.lastSent >= heartbeatIntervalNanos {
                directives.append(.sendHeartbeat(id))
            }
        }
        return directives
    }

    /// The next instant at which `onTick` has something to do, if any worker is registered.
    public var nextTick: UInt64? {
        workers.values.map { info in
            min(max(info.lastSeen &+ Self.missedIntervalsForDeath * heartbeatIntervalNanos, info.busyUntil),
                info.lastSent &+ heartbeatIntervalNanos)
        }.min()
    }

    // MARK: Accountability

    /// A worker let a request's deadline pass: it is avoided for new sessions until it answers again.
    public mutating func onMissedDeadline(_ worker: WorkerID) {
        workers[worker]?.missedDeadline = true
    }

    /// Counts a strike against a worker (a late or foreign answer, a malformed distribution, a missed deadline).
    /// Returns its record when this strike evicts it: it is removed and its id refused for `cooldownNanos`.
    public mutating func strike(_ worker: WorkerID, now: UInt64) -> WorkerInfo? {
        guard var info = workers[worker] else { return nil }
        info.strikes.removeAll { now >= $0 && now - $0 >= strikeWindowNanos }
        info.strikes.append(now)
        guard info.strikes.count >= strikeLimit else {
            workers[worker] = info
            return nil
        }
        workers[worker] = nil
        cooldowns[worker] = now &+ cooldownNanos
        return info
    }

    // MARK: Placement

    /// The least loaded live worker of an expert that takes sessions, not among `excluding`. Workers that missed
    /// a deadline come last; among equals the one given a session longest ago (then the earliest registered)
    /// wins, so that equal replicas take turns and no id is favoured by its name.
    public func chooseReplica(expert: String, excluding: Set<WorkerID> = []) -> WorkerInfo? {
        var best: WorkerInfo?
        for info in workers.values where info.expert == expert && info.acceptsSessions && !excluding.contains(info.id) {
            if let current = best,
               (current.missedDeadline ? 1 : 0, current.load, current.lastPlacement, current.registration)
                <= (info.missedDeadline ? 1 : 0, info.load, info.lastPlacement, info.registration)
            {
                continue
            }
            best = info
        }
        return best
    }

    /// A session was placed on a worker.
    public mutating func assign(_ worker: WorkerID) {
        guard workers[worker] != nil else { return }
        workers[worker]!.load += 1
    }

    /// A new session (or a failover) chose this worker: it goes to the back of the rotation among equals.
    public mutating func placed(_ worker: WorkerID) {
        guard workers[worker] != nil else { return }
        placements += 1
        workers[worker]!.lastPlacement = placements
    }

    /// A session left a worker.
    public mutating func release(_ worker: WorkerID) {
        guard let load = workers[worker]?.load, load > 0 else { return }
        workers[worker]!.load = load - 1
    }

    /// The names of the experts that have at least one live worker, sorted.
    public var availableExperts: [String] {
        Set(workers.values.filter { $0.state == .live }.map(\.expert)).sorted()
    }

    /// Every expert of `experts` (names in order, repeated names merged, replicas summed) with its registered
    /// workers by id; an expert's replica count comes from the config this membership was made from.
    public func expertStatus(experts: [String]) -> [ExpertStatus] {
        var seen = Set<String>()
        return experts.filter { seen.insert($0).inserted }.map { name in
            let workers = self.workers.values.filter { $0.expert == name }.sorted { $0.id < $1.id }.map { info in
                WorkerStatus(
                    id: info.id, sessions: UInt32(clamping: info.load), capacity: info.sessionCapacity,
                    draining: info.state == .draining, registrations: UInt32(clamping: registrations[info.id] ?? 1)
                )
            }
            return ExpertStatus(name: name, replicas: UInt32(clamping: expectedReplicas[name] ?? 0), workers: workers)
        }
    }

    /// Expected experts (from the config) with fewer live workers than replicas configured, with the count
    /// missing, sorted by name.
    public var missingReplicas: [(expert: String, missing: Int)] {
        expectedReplicas.keys.sorted().compactMap { name in
            let live = workers.values.filter { $0.expert == name && $0.state == .live }.count
            let missing = expectedReplicas[name]! - live
            return missing > 0 ? (name, missing) : nil
        }
    }
}

private func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }
