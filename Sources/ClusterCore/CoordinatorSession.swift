import Decoding
import Preference
import Wire

// MARK: - Inputs and directives

/// A parsed preference that holds from one token of the answer on (`Generate.schedule`).
public struct ScheduledPreference: Sendable, Equatable {
    /// The index of the first generated token it decides.
    public var fromToken: UInt32
    /// The preference.
    public var preference: PreferenceSpec

    /// A scheduled preference.
    public init(fromToken: UInt32, preference: PreferenceSpec) {
        self.fromToken = fromToken
        self.preference = preference
    }
}

/// One expert taking part in a session.
public struct SessionExpert: Sendable, Equatable {
    /// The expert's name (workers of the same expert are replicas).
    public var name: String
    /// The dimension it serves, if any (for the preference controller).
    public var dimension: PreferenceDimension?

    /// Creates a session expert.
    public init(name: String, dimension: PreferenceDimension?) {
        self.name = name
        self.dimension = dimension
    }
}

/// The settings a session runs with (from the cluster config and the registered workers).
public struct SessionSettings: Sendable, Equatable {
    /// Candidates per expert per step.
    public var topK: UInt16
    /// How long to wait for a `dist` after a `step`.
    public var stepDeadlineMs: UInt32
    /// How long to wait for a `dist` after an `open` or a `replay`.
    public var openDeadlineMs: UInt32
    /// Tokens to generate when the request says 0.
    public var defaultMaxNewTokens: UInt32
    /// Sampling for the fields a request leaves unset.
    public var defaultSampling: SamplingParameters
    /// The merge mode when a request does not choose one.
    public var defaultMerge: MergeMode
    /// The cluster's vocabulary size.
    public var vocabSize: Int
    /// Token ids that end the generation: the union of every expert's EOS ids.
    public var eosTokenIDs: Set<UInt32>

    /// Creates settings.
    public init(
        topK: UInt16 = 64, stepDeadlineMs: UInt32 = 5000, openDeadlineMs: UInt32 = 30000,
        defaultMaxNewTokens: UInt32 = 256, defaultSampling: SamplingParameters = SamplingParameters(),
        defaultMerge: MergeMode = .probability, vocabSize: Int, eosTokenIDs: Set<UInt32>
    ) {
        self.topK = topK
        self.stepDeadlineMs = stepDeadlineMs
        self.openDeadlineMs = openDeadlineMs
        self.defaultMaxNewTokens = defaultMaxNewTokens
        self.defaultSampling = defaultSampling
        self.defaultMerge = defaultMerge
        self.vocabSize = vocabSize
        self.eosTokenIDs = eosTokenIDs
    }

    /// Settings from a config, the cluster's vocabulary size and the EOS ids of its workers.
    public init(config: ClusterConfig, vocabSize: Int, eosTokenIDs: Set<UInt32>) {
        self.init(
            topK: config.topK, stepDeadlineMs: config.stepDeadlineMs, openDeadlineMs: config.openDeadlineMs,
            defaultMaxNewTokens: config.maxNewTokens, defaultSampling: config.sampling.parameters,
            defaultMerge: config.merge, vocabSize: vocabSize, eosTokenIDs: eosTokenIDs
        )
    }
}

/// What a session asks its shell to do.
public enum SessionDirective: Sendable, Equatable {
    /// Send a message to a worker.
    case send(WorkerID, Message)
    /// Stream a token to the client.
    case emitToken(TokenEvent)
    /// The generation ended: send `done` to the client.
    case finish(Done)
    /// The generation failed: send `error` to the client (`session` is the client's request id).
    case fail(ErrorReply)
}

/// A worker's misbehaviour seen by a session, for the coordinator to count against it.
public struct WorkerStrike: Sendable, Equatable {
    /// The worker.
    public var worker: WorkerID
    /// What it did (for the log).
    public var reason: String
    /// True when it let a deadline pass (it is then avoided until it answers).
    public var missedDeadline: Bool

    /// A strike.
    public init(worker: WorkerID, reason: String, missedDeadline: Bool = false) {
        self.worker = worker
        self.reason = reason
        self.missedDeadline = missedDeadline
    }
}

/// Picks a worker of an expert for a session, not one of `excluding`; nil when none is available.
/// The coordinator passes `Membership.chooseReplica`.
public typealias ReplicaChooser = (_ expert: String, _ excluding: Set<WorkerID>) -> WorkerID?

// MARK: - Session

/// One generation request on the coordinator, as a pure state machine.
///
/// States: `opening` (waiting for every expert's step-0 `dist`) → `running` (one step at a time) → `finishing`
/// (the outcome is sent; late replies are swallowed until a grace deadline) → `closed`.
///
/// At each step the session waits for a `dist` from every expert still present, each with a deadline. When all
/// are in, it asks the controller for weights, merges, samples and checks the end conditions
/// (`TokenDecoder`, the decode step every loop shares) and sends `step n+1` with the chosen token to every worker.
///
/// Failures:
/// - `error desync` / `error unknownSession`: `replay` (request + every chosen token) to the same worker; a second
///   one within the same step counts as a failure of that worker.
/// - a missed deadline, `error capacity` / `draining` / `internal`, a malformed `dist`, or the worker declared dead:
///   the worker is abandoned for this session (sent `close` unless dead) and the expert moves to a replica by
///   `replay`; with no replica left, the expert is dropped, recorded in `lostExperts`, and the weights are
///   renormalised over the experts left.
/// - `error badRequest`, or `error contextFull` on `open`/`replay`: the expert is dropped (its replicas share the
///   model). `error contextFull` on a `step` ends the generation with `FinishReason.contextFull`.
/// - every expert lost: the request fails (`contextFull` / `badRequest` when every expert said so, else
///   `unavailable`).
///
/// End conditions, after each chosen token: an EOS id (the union over experts; the EOS token is neither
/// counted nor shown), a stop string (`StopMatcher`; excluded from the text), `maxNewTokens`. On the end every
/// worker holding the session is sent `close`.
///
/// Streaming: every generated token is sent as a `TokenEvent` whose text is what the `StopMatcher` releases; text
/// held back as a possible stop string is added to the last event when the end is known at that token (max
/// tokens); after an EOS it only appears in `Done.text`, which is always the whole text.
public struct CoordinatorSession: Sendable {
    /// The session's lifecycle.
    public enum State: Sendable, Equatable {
        /// Waiting for the step-0 distributions.
        case opening
        /// Generating.
        case running
        /// The outcome was sent; late replies are ignored until the grace deadline.
        case finishing
        /// Nothing left to do; the shell may forget the session.
        case closed
    }

    private enum SlotStatus: Sendable, Equatable {
        case waiting(Deadline, isStep: Bool)
        case ready
        case lost
    }

    private struct Slot: Sendable {
        var expert: SessionExpert
        var worker: WorkerID?
        var status: SlotStatus
        var candidates: TopKCandidates?
        var abandoned: Set<WorkerID> = []
        var replaysThisStep = 0
        var lostBecause: ErrorCode?
    }

    /// The session id used with the workers.
    public let id: SessionID
    /// The client's request.
    public let request: Generate
    /// The preference the controller weighs the experts with now (the request's, until a scheduled or posted
    /// change).
    public private(set) var preference: PreferenceSpec
    /// The settings.
    public let settings: SessionSettings
    /// The most tokens this session generates.
    public let maxNewTokens: UInt32
    /// The current state.
    public private(set) var state: State = .opening
    /// The step whose distributions are being gathered.
    public private(set) var step: UInt32 = 0
    /// The tokens chosen so far (without an ending EOS).
    public private(set) var tokens: [UInt32] = []
    /// The text released so far.
    public private(set) var text = ""
    /// Experts dropped from the mixture, in the order they were lost.
    public private(set) var lostExperts: [String] = []
    /// How many times an expert moved to a replica.
    public private(set) var failovers: UInt32 = 0
    /// How long the request waited in the admission queue, in microseconds (reported in `Done`).
    public var queuedMicros: UInt64 = 0

    private var slots: [Slot]
    private let descriptors: [ExpertDescriptor]
    private let promptTokens: [UInt32]
    private let inputTokenCount: UInt32
    /// Each expert's weights summed over the steps merged, and how many steps were.
    private var weightSums: [Double]
    private var stepsMerged = 0
    /// Each expert's decoding-step compute time summed (microseconds), and how many of its replies were summed.
    private var stepMicrosSums: [UInt64]
    private var stepReplies: [UInt64]
    /// The system turn sent to the experts before the user's prompt (the preference, for experts that see it).
    private let expertSystemTurn: String?
    private let startedAt: UInt64
    private var controller: any PreferenceController
    /// The per-token decision (merge, sample, end conditions), shared with `mope run` and training.
    private var decoder: TokenDecoder
    private var lingerUntil: Deadline?
    private var deadWorkers: Set<WorkerID> = []
    /// Misbehaviours seen since the last `takeStrikes()`.
    private var strikes: [WorkerStrike] = []
    /// Preference changes still to come, ascending by token index.
    private var schedule: [ScheduledPreference]

    /// Creates a session; `start` sends the `open`s.
    ///
    /// - Parameters:
    ///   - promptTokens: the user prompt's token ids for the controller (may be empty).
    ///   - inputTokenCount: the input's length in tokens, reported in `Done.promptTokens`.
    ///   - expertSystemTurn: a system turn the experts get before the prompt (`ClusterConfig.expertSystemTurn`).
    ///   - now: the request's arrival (nanoseconds), for `Done.elapsedMicros`.
    public init(
        id: SessionID, request: Generate, preference: PreferenceSpec, experts: [SessionExpert],
        settings: SessionSettings, controller: any PreferenceController, decoder: any TokenTextDecoder,
        promptTokens: [UInt32] = [], inputTokenCount: UInt32 = 0, expertSystemTurn: String? = nil,
        schedule: [ScheduledPreference] = [], now: UInt64
    ) {
        self.schedule = schedule
        self.inputTokenCount = inputTokenCount
        weightSums = Array(repeating: 0, count: experts.count)
        stepMicrosSums = Array(repeating: 0, count: experts.count)
        stepReplies = Array(repeating: 0, count: experts.count)
        self.expertSystemTurn = expertSystemTurn
        self.id = id
        self.request = request
        self.preference = preference
        self.settings = settings
        maxNewTokens = request.maxNewTokens > 0 ? request.maxNewTokens : settings.defaultMaxNewTokens
        slots = experts.map { Slot(expert: $0, worker: nil, status: .lost) }
        descriptors = experts.map { ExpertDescriptor(name: $0.name, dimension: $0.dimension) }
        self.promptTokens = promptTokens
        startedAt = now
        self.controller = controller
        self.decoder = TokenDecoder(
            vocabSize: settings.vocabSize,
            sampling: request.sampling.resolved(defaults: settings.defaultSampling),
            mode: request.merge ?? settings.defaultMerge, maxTokens: Int(maxNewTokens),
            endOfSequence: settings.eosTokenIDs, stops: request.stop, text: decoder
        )
        if !request.resume.isEmpty {
            // Another coordinator produced these and the user has them: take them as decided.
            tokens = request.resume
            text = self.decoder.resume(request.resume)
            step = UInt32(clamping: request.resume.count)
        }
    }

    // MARK: Queries

    /// The misbehaviours seen since the last call: a missed deadline, a malformed or out-of-vocabulary `dist`,
    /// an answer after the worker was abandoned for missing its deadline.
    public mutating func takeStrikes() -> [WorkerStrike] {
        defer { strikes.removeAll() }
        return strikes
    }

    /// Whether `worker` held this session once and was abandoned (its answers now are late ones).
    public func abandoned(_ worker: WorkerID) -> Bool {
        slots.contains { $0.abandoned.contains(worker) }
    }

    /// Whether `worker` was ever given this session.
    public func involves(_ worker: WorkerID) -> Bool {
        slots.contains { $0.worker == worker || $0.abandoned.contains(worker) }
    }

    /// The sampling this session uses: the request's fields, the cluster's defaults for the others.
    public var sampling: SamplingParameters { decoder.sampling }

    /// How the experts are combined: the request's mode, else the cluster's.
    public var mergeMode: MergeMode { decoder.mode }

    /// The workers currently holding this session (the coordinator counts them as load).
    public var assignedWorkers: [WorkerID] {
        guard state == .opening || state == .running else { return [] }
        return slots.compactMap { $0.status == .lost ? nil : $0.worker }
    }

    /// The worker currently serving each expert (nil when lost), aligned with the experts.
    public var expertWorkers: [WorkerID?] { slots.map { $0.status == .lost ? nil : $0.worker } }

    /// The earliest deadline the shell must call `onTick` at; nil only when closed.
    public var nextDeadline: Deadline? {
        if state == .finishing { return lingerUntil }
        var earliest: Deadline?
        for slot in slots {
            if case let .waiting(deadline, _) = slot.status, deadline < (earliest ?? Deadline(nanoseconds: .max)) {
                earliest = deadline
            }
        }
        return earliest
    }

    // MARK: Events

    /// Places every expert on a worker and sends the `open`s (a `replay` of the tokens so far, for a resumed
    /// request).
    public mutating func start(now: UInt64, chooseReplica: ReplicaChooser) -> [SessionDirective] {
        var directives: [SessionDirective] = []
        let open = tokens.isEmpty
            ? Message.open(Open(session: id, request: expertRequest, topK: settings.topK, maxNewTokens: maxNewTokens))
            : replayMessage()
        for index in slots.indices {
            if let worker = chooseReplica(slots[index].expert.name, []) {
                slots[index].worker = worker
                slots[index].status = .waiting(.after(milliseconds: settings.openDeadlineMs, from: now), isStep: false)
                directives.append(.send(worker, open))
            } else {
                markLost(index, because: .unavailable)
            }
        }
        directives += advanceIfComplete(now: now)
        return directives
    }

    /// A `dist` arrived from a worker. Stale, duplicate or foreign ones are ignored.
    public mutating func onDist(
        _ dist: Dist, from worker: WorkerID, now: UInt64, chooseReplica: ReplicaChooser
    ) -> [SessionDirective] {
        guard state == .opening || state == .running, dist.session == id, dist.step == step,
            let index = slotIndex(of: worker), case .waiting = slots[index].status
        else { return [] }
        guard dist.ids.count == dist.logProbs.count, !dist.ids.isEmpty,
            dist.ids.allSatisfy({ Int($0) < settings.vocabSize })
        else {
            strikes.append(WorkerStrike(worker: worker, reason: "sent a malformed or out-of-vocabulary distribution"))
            var directives = failover(index, now: now, chooseReplica: chooseReplica, because: .internal)
            directives += advanceIfComplete(now: now)
            return directives
        }
        slots[index].candidates = TopKCandidates(ids: dist.ids, logProbs: dist.logProbs, tailMass: dist.tailMass)
        if case .waiting(_, isStep: true) = slots[index].status {
            stepMicrosSums[index] += UInt64(dist.timing.computeMicros)
            stepReplies[index] += 1
        }
        slots[index].status = .ready
        return advanceIfComplete(now: now)
    }

    /// An `error` arrived from a worker for this session.
    public mutating func onError(
        _ error: ErrorReply, from worker: WorkerID, now: UInt64, chooseReplica: ReplicaChooser
    ) -> [SessionDirective] {
        guard state == .opening || state == .running, error.session == id,
            let index = slotIndex(of: worker), case let .waiting(_, isStep) = slots[index].status
        else { return [] }
        var directives: [SessionDirective] = []
        switch error.code {
        case .desync, .unknownSession:
            if slots[index].replaysThisStep < 2 {
                slots[index].replaysThisStep += 1
                directives.append(.send(worker, replayMessage()))
                slots[index].status = .waiting(.after(milliseconds: settings.openDeadlineMs, from: now), isStep: false)
                return directives
            }
            directives += failover(index, now: now, chooseReplica: chooseReplica, because: error.code)
        case .contextFull where isStep:
            return finish(.contextFull, now: now)
        case .contextFull, .badRequest:
            markLost(index, because: error.code)
        case .capacity, .draining, .internal, .unavailable, .timeout, .overloaded:
            directives += failover(index, now: now, chooseReplica: chooseReplica, because: error.code)
        }
        directives += advanceIfComplete(now: now)
        return directives
    }

    /// Time passed: experts whose deadline passed move to a replica (or are dropped); a finishing session closes
    /// after its grace deadline.
    public mutating func onTick(now: UInt64, chooseReplica: ReplicaChooser) -> [SessionDirective] {
        if state == .finishing {
            if let lingerUntil, lingerUntil.hasPassed(now: now) { state = .closed }
            return []
        }
        guard state == .opening || state == .running else { return [] }
        var directives: [SessionDirective] = []
        for index in slots.indices {
            if case let .waiting(deadline, _) = slots[index].status, deadline.hasPassed(now: now) {
                if let worker = slots[index].worker {
                    strikes.append(WorkerStrike(worker: worker, reason: "missed a deadline", missedDeadline: true))
                }
                directives += failover(index, now: now, chooseReplica: chooseReplica, because: .timeout)
            }
        }
        directives += advanceIfComplete(now: now)
        return directives
    }

    /// Membership declared a worker dead: its part of the session moves to a replica (or is dropped).
    public mutating func onWorkerDead(
        _ worker: WorkerID, now: UInt64, chooseReplica: ReplicaChooser
    ) -> [SessionDirective] {
        deadWorkers.insert(worker)
        guard state == .opening || state == .running, let index = slotIndex(of: worker) else { return [] }
        var directives = failover(index, now: now, chooseReplica: chooseReplica, because: .unavailable)
        directives += advanceIfComplete(now: now)
        return directives
    }

    /// A worker registered afresh under `worker`'s id (a restarted process, or one that lost the coordinator and
    /// dropped its sessions): it holds nothing of this session, so it may serve it again as a replica.
    public mutating func onWorkerRegistered(_ worker: WorkerID) {
        deadWorkers.remove(worker)
        for index in slots.indices { slots[index].abandoned.remove(worker) }
    }

    /// The client changes the preference: it decides the next token on (and replaces any scheduled change).
    /// Returns the index of the first token it decides.
    public mutating func setPreference(_ spec: PreferenceSpec) -> UInt32 {
        preference = spec
        schedule.removeAll()
        return UInt32(clamping: tokens.count)
    }

    /// The client went away or the coordinator shuts down: close every worker's part without a reply.
    public mutating func cancel(now: UInt64) -> [SessionDirective] {
        guard state == .opening || state == .running else { return [] }
        let directives = closeAll()
        state = .closed
        return directives
    }

    // MARK: Steps

    /// What every expert is sent: raw text as is; chat turns with the preference's system turn first — merged
    /// into the request's own leading system turn (the preference first, a blank line, the request's text), as the
    /// worker merges its own system prompt, so that the template sees one system turn.
    private var expertRequest: Request {
        guard case var .chat(turns) = request.input else { return request.input }
        guard let expertSystemTurn else { return .chat(turns) }
        if let first = turns.first, first.role == "system" {
            turns[0].content = first.content.isEmpty ? expertSystemTurn : expertSystemTurn + "\n\n" + first.content
        } else {
            turns.insert(ChatTurn(role: "system", content: expertSystemTurn), at: 0)
        }
        return .chat(turns)
    }

    private func replayMessage() -> Message {
        .replay(Replay(session: id, request: expertRequest, topK: settings.topK, maxNewTokens: maxNewTokens,
                       tokens: tokens))
    }

    private func slotIndex(of worker: WorkerID) -> Int? {
        slots.firstIndex { $0.worker == worker && $0.status != .lost }
    }

    private mutating func markLost(_ index: Int, because code: ErrorCode) {
        slots[index].status = .lost
        slots[index].candidates = nil
        slots[index].lostBecause = code
        slots[index].worker = nil
        if !lostExperts.contains(slots[index].expert.name) { lostExperts.append(slots[index].expert.name) }
    }

    /// Abandons the slot's worker and moves the expert to a replica by replay, or drops it.
    private mutating func failover(
        _ index: Int, now: UInt64, chooseReplica: ReplicaChooser, because code: ErrorCode
    ) -> [SessionDirective] {
        var directives: [SessionDirective] = []
        if let old = slots[index].worker {
            slots[index].abandoned.insert(old)
            if !deadWorkers.contains(old) { directives.append(.send(old, .close(Close(session: id)))) }
        }
        let excluded = slots[index].abandoned.union(deadWorkers)
        if let replica = chooseReplica(slots[index].expert.name, excluded) {
            slots[index].worker = replica
            slots[index].replaysThisStep = 0
            slots[index].status = .waiting(.after(milliseconds: settings.openDeadlineMs, from: now), isStep: false)
            failovers += 1
            directives.append(.send(replica, replayMessage()))
        } else {
            markLost(index, because: code)
        }
        return directives
    }

    /// When every present expert's distribution of this step is in: merge, sample, emit, and go on or end.
    private mutating func advanceIfComplete(now: UInt64) -> [SessionDirective] {
        guard state == .opening || state == .running else { return [] }
        var present = 0
        for slot in slots {
            switch slot.status {
            case .waiting: return []
            case .ready: present += 1
            case .lost: break
            }
        }
        guard present > 0 else { return failAll(now: now) }
        state = .running

        while let change = schedule.first, Int(change.fromToken) <= tokens.count {
            preference = change.preference
            schedule.removeFirst()
        }
        let candidates = slots.map(\.candidates)
        let context = ControllerContext(
            promptTokens: promptTokens, generatedTokens: tokens, step: Int(step), candidates: candidates
        )
        let requested = controller.weights(preference: preference, experts: descriptors, context: context)
        let token: UInt32
        let released: String
        let ending: FinishReason?
        let decision = decoder.next(candidates: candidates, weights: requested)
        let weights = decoder.merged.weights
        for index in weightSums.indices where index < weights.count { weightSums[index] += Double(weights[index]) }
        stepsMerged += 1
        switch decision {
        case .empty: return failAll(now: now)
        case .endOfSequence: return finish(.endOfSequence, now: now)
        case let .token(chosen, releasedText, reason):
            (token, released, ending) = (chosen, releasedText, reason)
        }
        tokens.append(token)
        text += released
        let event = SessionDirective.emitToken(tokenEvent(token, text: released, merged: decoder.merged))
        if let ending { return [event] + finish(ending, now: now) }

        step += 1
        let message = Message.step(Step(session: id, step: step, token: token))
        var directives: [SessionDirective] = []
        for index in slots.indices where slots[index].status == .ready {
            slots[index].status = .waiting(.after(milliseconds: settings.stepDeadlineMs, from: now), isStep: true)
            slots[index].replaysThisStep = 0
            if let worker = slots[index].worker { directives.append(.send(worker, message)) }
        }
        // The workers' next step is the critical path: they are sent it before the client is woken.
        directives.append(event)
        return directives
    }

    private func tokenEvent(_ token: UInt32, text: String, merged: MergedDistribution) -> TokenEvent {
        var experts: [ExpertTrace] = []
        if request.trace {
            for (index, slot) in slots.enumerated() {
                experts.append(ExpertTrace(
                    expert: slot.expert.name,
                    weight: index < merged.weights.count ? merged.weights[index] : 0,
                    ids: slot.candidates?.ids ?? [],
                    logProbs: slot.candidates?.logProbs ?? [],
                    tailMass: min(max(slot.candidates?.tailMass ?? 0, 0), 1)
                ))
            }
        }
        return TokenEvent(request: request.request, step: step, token: token, text: text, experts: experts)
    }

    private mutating func closeAll() -> [SessionDirective] {
        var directives: [SessionDirective] = []
        for slot in slots where slot.status != .lost {
            if let worker = slot.worker, !deadWorkers.contains(worker) {
                directives.append(.send(worker, .close(Close(session: id))))
            }
        }
        return directives
    }

    private mutating func enterFinishing(now: UInt64) -> [SessionDirective] {
        let directives = closeAll()
        state = .finishing
        lingerUntil = .after(milliseconds: settings.stepDeadlineMs, from: now)
        return directives
    }

    private mutating func finish(_ reason: FinishReason, now: UInt64) -> [SessionDirective] {
        if reason != .stopString && reason != .maxTokens { text += decoder.finishText() }
        let done = Done(
            request: request.request, finish: reason, tokens: UInt32(tokens.count), text: text,
            lostExperts: lostExperts, failovers: failovers, elapsedMicros: (now &- startedAt) / 1000,
            promptTokens: inputTokenCount,
            experts: slots.indices.map { index in
                ExpertUsage(expert: slots[index].expert.name,
                            meanWeight: stepsMerged > 0 ? Float(weightSums[index] / Double(stepsMerged)) : 0,
                            meanStepMicros: stepReplies[index] > 0
                                ? UInt32(clamping: stepMicrosSums[index] / stepReplies[index]) : 0)
            },
            queuedMicros: queuedMicros
        )
        return enterFinishing(now: now) + [.finish(done)]
    }

    private mutating func failAll(now: UInt64) -> [SessionDirective] {
        let codes = Set(slots.compactMap(\.lostBecause))
        let code: ErrorCode
        let reason: String
        if codes == [.contextFull] {
            code = .contextFull
            reason = "the prompt plus \(maxNewTokens) new tokens does not fit any expert's context; "
                + "shorten the prompt or ask for fewer tokens"
        } else if codes == [.badRequest] {
            code = .badRequest
            reason = "every expert refused the request as malformed"
        } else {
            code = .unavailable
            let names = slots.map(\.expert.name).joined(separator: ", ")
            reason = slots.isEmpty
                ? "the cluster has no experts"
                : "no worker could serve the experts (\(names)); check that workers are running"
        }
        let directives = enterFinishing(now: now)
        return directives + [.fail(ErrorReply(session: request.request, code: code, text: reason))]
    }
}
