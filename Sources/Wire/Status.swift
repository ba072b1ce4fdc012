// MARK: - Cluster status

/// A client asks the coordinator for the cluster's state; the answer is a `statusReply` with the same id.
public struct StatusRequest: Sendable, Equatable {
    /// The client's id for this request; the `statusReply` carries it.
    public var request: UInt64
    public init(request: UInt64) { self.request = request }
}

/// The coordinator's answer to `status`.
public struct StatusReply: Sendable, Equatable {
    /// The id of the `status` request answered.
    public var request: UInt64
    /// The cluster's state when the request arrived.
    public var status: ClusterStatus

    public init(request: UInt64, status: ClusterStatus) {
        self.request = request
        self.status = status
    }
}

/// One registered worker as the coordinator sees it.
public struct WorkerStatus: Sendable, Equatable {
    /// The worker's id.
    public var id: String
    /// Sessions the coordinator has placed on it.
    public var sessions: UInt32
    /// The most sessions it holds at once.
    public var capacity: UInt32
    /// True after its `goodbye`: it finishes its sessions and takes no new ones.
    public var draining: Bool
    /// How many times a worker of this id has registered with this coordinator (a restart adds one).
    public var registrations: UInt32

    public init(id: String, sessions: UInt32, capacity: UInt32, draining: Bool, registrations: UInt32 = 1) {
        self.id = id
        self.sessions = sessions
        self.capacity = capacity
        self.draining = draining
        self.registrations = registrations
    }
}

/// One expert of the cluster config and the workers registered for it.
public struct ExpertStatus: Sendable, Equatable {
    /// The expert's name.
    public var name: String
    /// The replicas the config asks for.
    public var replicas: UInt32
    /// Its registered workers (live and draining), by id.
    public var workers: [WorkerStatus]

    public init(name: String, replicas: UInt32, workers: [WorkerStatus]) {
        self.name = name
        self.replicas = replicas
        self.workers = workers
    }

    /// The workers that take new sessions (registered and not draining).
    public var live: Int { workers.filter { !$0.draining }.count }
}

/// An expert with fewer live workers than the replicas its config asks for.
public struct MissingReplicas: Sendable, Equatable {
    /// The expert's name.
    public var expert: String
    /// The replicas the config asks for.
    public var wanted: Int
    /// The live workers it has.
    public var live: Int

    public init(expert: String, wanted: Int, live: Int) {
        self.expert = expert
        self.wanted = wanted
        self.live = live
    }
}

/// The state of a cluster as its coordinator answers a `status` request: what `mope status` prints and what
/// launchers, scripts and tests poll for readiness (never log text).
public struct ClusterStatus: Sendable, Equatable {
    /// The protocol version the coordinator speaks.
    public var protocolVersion: UInt8
    /// True once the coordinator drains: it refuses new requests.
    public var draining: Bool
    /// Sessions opening or running.
    public var sessionsRunning: UInt32
    /// Requests waiting in the admission queue for a replica of a busy expert.
    public var sessionsQueued: UInt32
    /// How long the oldest of them has waited, in microseconds (0 when none waits).
    public var oldestQueuedMicros: UInt64
    /// Every expert of the config, in config order.
    public var experts: [ExpertStatus]

    public init(
        protocolVersion: UInt8 = WireProtocol.version, draining: Bool, sessionsRunning: UInt32, sessionsQueued: UInt32 = 0,
        oldestQueuedMicros: UInt64 = 0, experts: [ExpertStatus]
    ) {
        self.oldestQueuedMicros = oldestQueuedMicros
        self.protocolVersion = protocolVersion
        self.draining = draining
        self.sessionsRunning = sessionsRunning
        self.sessionsQueued = sessionsQueued
        self.experts = experts
    }

    /// The experts with fewer live workers than wanted, in config order.
    public var missing: [MissingReplicas] {
        experts.compactMap { expert in
            expert.live < Int(expert.replicas)
                ? MissingReplicas(expert: expert.name, wanted: Int(expert.replicas), live: expert.live) : nil
        }
    }

    /// True when the coordinator takes requests and every expert has at least its wanted replicas live.
    public var ready: Bool { !draining && missing.isEmpty }

    /// Every worker of every expert, by expert then id.
    public var workers: [WorkerStatus] { experts.flatMap(\.workers) }

    /// What keeps the cluster from being ready, in a sentence; nil when it is ready.
    public var notReadyReason: String? {
        var parts: [String] = []
        if draining { parts.append("the coordinator is draining") }
        let missing = missing
        if !missing.isEmpty {
            parts.append("missing replicas: " + missing.map { "\($0.expert) (\($0.live) of \($0.wanted) live)" }
                .joined(separator: ", "))
        }
        return parts.isEmpty ? nil : parts.joined(separator: "; ")
    }
}
