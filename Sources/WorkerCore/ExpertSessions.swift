import Wire

// MARK: - Directives

/// What the session state machine asks the worker's shell to do.
///
/// For one session the shell carries out `prefill`, `decode` and `freeCache` in the order given, and reports
/// each forward pass (`prefill` or `decode`) exactly once, in that order, with `onForwardDone` or
/// `onForwardFailed`. Sessions are independent: the shell may batch forward passes across sessions.
public enum ExpertDirective: Sendable, Equatable {
    /// Start a fresh KV cache for the session and run these tokens through the model; report the next-token
    /// distribution after the last one.
    case prefill(SessionID, tokens: [UInt32])
    /// Append one token to the session's KV cache, run one forward step; report the next-token distribution.
    case decode(SessionID, token: UInt32)
    /// Send this message to the coordinator.
    case reply(Message)
    /// Free the session's KV cache.
    case freeCache(SessionID)
    /// The worker is draining and holds no session any more: it may say goodbye and exit.
    case drained
}

// MARK: - One session

/// One session as the worker holds it.
public struct ExpertSessionState: Sendable, Equatable {
    /// The session id.
    public let id: SessionID
    /// What the coordinator asked for.
    public var request: Request
    /// Candidates per reply.
    public var topK: UInt16
    /// The most tokens the session generates.
    public var maxNewTokens: UInt32
    /// The prompt's token ids (template and system prompt applied by the shell).
    public var promptTokens: [UInt32]
    /// The chosen tokens appended so far.
    public var tokens: [UInt32]
    /// The last step whose distribution was computed (and is cached), if any.
    public var lastStep: UInt32?
    /// The distribution of `lastStep`, sent again when that step is asked for again.
    public var cachedDist: Dist?
    /// The step whose forward pass is running, if any.
    public var pendingStep: UInt32?
    /// Forward passes still running that belong to a state since reset (their results are dropped).
    var staleForwards = 0
}

// MARK: - The state machine

/// The worker's sessions as a pure state machine: no model, no sockets, no clock.
///
/// The shell tokenizes each request (its template and system prompt applied) and passes the token ids in;
/// the machine checks limits, keeps every session's step count in sync with the coordinator, and tells the shell
/// which forward passes to run. Rules (DESIGN.md, "Protocol"):
/// - `open`: `error draining` while draining, `error capacity` when full, `error badRequest` for an empty prompt,
///   a token id outside the vocabulary or `topK` 0, `error contextFull` when prompt + maxNewTokens exceeds the
///   context; else prefill and reply `dist` 0. A repeated `open` of a session at step 0 gets the same `dist` 0.
/// - `step n` at step n−1: decode the token, reply `dist n`. A repeated `step n` (same token) gets the cached
///   `dist n` again (idempotent); a repeat while `dist n` is being computed is ignored (the reply is coming).
///   Any other step: `error desync`. Unknown session: `error unknownSession`.
/// - `replay`: reset the cache and prefill prompt + tokens; reply `dist` for step `tokens.count`.
/// - `close` frees the session (silently for an unknown one). After `onDrain`, the last close yields `drained`.
public struct ExpertSessions: Sendable {
    /// The most tokens one session may hold.
    public let contextLimit: Int
    /// The most sessions held at once.
    public let sessionCapacity: Int
    /// The model's vocabulary size.
    public let vocabSize: Int
    /// True after `onDrain`.
    public private(set) var isDraining = false
    private var sessions: [SessionID: ExpertSessionState] = [:]
    /// Forward passes still running for sessions that were closed (their results are dropped).
    private var orphanForwards: [SessionID: Int] = [:]

    /// Creates an empty machine.
    public init(contextLimit: Int, sessionCapacity: Int, vocabSize: Int) {
        self.contextLimit = contextLimit
        self.sessionCapacity = sessionCapacity
        self.vocabSize = vocabSize
    }

    /// How many sessions are held.
    public var count: Int { sessions.count }

    /// A session's state.
    public func session(_ id: SessionID) -> ExpertSessionState? { sessions[id] }

    // MARK: Events

    /// The coordinator opens a session; `promptTokens` is the tokenized request.
    public mutating func onOpen(_ open: Open, promptTokens: [UInt32]) -> [ExpertDirective] {
        if let existing = sessions[open.session], existing.request == open.request, existing.tokens.isEmpty,
            existing.promptTokens == promptTokens
        {
            if existing.pendingStep == 0 { return [] }
            if existing.lastStep == 0, let dist = existing.cachedDist { return [.reply(.dist(dist))] }
        }
        return start(
            session: open.session, request: open.request, topK: open.topK, maxNewTokens: open.maxNewTokens,
            promptTokens: promptTokens, tokens: []
        )
    }

    /// The coordinator rebuilds a session from its request and every chosen token.
    public mutating func onReplay(_ replay: Replay, promptTokens: [UInt32]) -> [ExpertDirective] {
        start(
            session: replay.session, request: replay.request, topK: replay.topK, maxNewTokens: replay.maxNewTokens,
            promptTokens: promptTokens, tokens: replay.tokens
        )
    }

    /// The coordinator asks for the next step.
    public mutating func onStep(_ step: Step) -> [ExpertDirective] {
        guard var state = sessions[step.session] else {
            return [error(step.session, .unknownSession, "no session \(step.session) on this worker")]
        }
        guard step.step >= 1 else {
            return [error(step.session, .badRequest, "step numbers start at 1 (step 0 is the reply to open)")]
        }
        guard Int(step.token) < vocabSize else {
            return [error(step.session, .badRequest, "token \(step.token) is outside the vocabulary of \(vocabSize)")]
        }
        let index = Int(step.step) - 1
        let sameToken = index < state.tokens.count && state.tokens[index] == step.token
        if state.pendingStep == step.step, sameToken { return [] }
        if state.lastStep == step.step, sameToken, let dist = state.cachedDist { return [.reply(.dist(dist))] }
        guard state.pendingStep == nil, let last = state.lastStep, step.step == last + 1 else {
            let position = state.pendingStep.map { "computing step \($0)" }
                ?? state.lastStep.map { "at step \($0)" } ?? "not ready"
            return [error(step.session, .desync, "session \(step.session) is \(position); step \(step.step) asked")]
        }
        guard state.promptTokens.count + state.tokens.count + 1 <= contextLimit else {
            return [error(step.session, .contextFull, "the session's context of \(contextLimit) tokens is full")]
        }
        state.tokens.append(step.token)
        state.pendingStep = step.step
        sessions[step.session] = state
        return [.decode(step.session, token: step.token)]
    }

    /// Whether `session` is open, idle and at step `step` − 1, so that a `step` message for `step` is the next
    /// thing it expects (a worker serving several experts waits briefly for it when another expert of the same
    /// session already has that step, so both go into one forward pass).
    public func awaits(_ session: SessionID, step: UInt32) -> Bool {
        guard let state = sessions[session], state.pendingStep == nil, let last = state.lastStep else { return false }
        return step >= 1 && last == step - 1
    }

    /// The coordinator closes a session.
    public mutating func onClose(_ close: Close) -> [ExpertDirective] {
        guard let state = sessions.removeValue(forKey: close.session) else { return [] }
        let running = state.staleForwards + (state.pendingStep == nil ? 0 : 1)
        if running > 0 { orphanForwards[close.session, default: 0] += running }
        var directives: [ExpertDirective] = [.freeCache(close.session)]
        if isDraining && sessions.isEmpty { directives.append(.drained) }
        return directives
    }

    /// The worker starts draining (SIGTERM): no new sessions; `drained` once the last one closes.
    public mutating func onDrain() -> [ExpertDirective] {
        isDraining = true
        return sessions.isEmpty ? [.drained] : []
    }

    /// A forward pass of a session finished with this next-token distribution.
    public mutating func onForwardDone(
        session: SessionID, ids: [UInt32], logProbs: [Float], tailMass: Float, timing: WorkerTiming = WorkerTiming()
    ) -> [ExpertDirective] {
        guard takeCurrentForward(session), var state = sessions[session], let step = state.pendingStep else {
            return []
        }
        let dist = Dist(session: session, step: step, ids: ids, logProbs: logProbs, tailMass: tailMass, timing: timing)
        state.pendingStep = nil
        state.lastStep = step
        state.cachedDist = dist
        sessions[session] = state
        return [.reply(.dist(dist))]
    }

    /// A forward pass of a session failed: the session is lost on this worker.
    public mutating func onForwardFailed(session: SessionID, reason: String) -> [ExpertDirective] {
        guard takeCurrentForward(session), sessions[session] != nil else { return [] }
        sessions.removeValue(forKey: session)
        var directives: [ExpertDirective] = [
            .freeCache(session), error(session, .internal, "the forward pass failed: \(reason)"),
        ]
        if isDraining && sessions.isEmpty { directives.append(.drained) }
        return directives
    }

    // MARK: Helpers

    /// Consumes one reported forward pass; false when it belongs to a closed or reset state.
    private mutating func takeCurrentForward(_ session: SessionID) -> Bool {
        if let orphans = orphanForwards[session] {
            orphanForwards[session] = orphans > 1 ? orphans - 1 : nil
            return false
        }
        guard var state = sessions[session] else { return false }
        if state.staleForwards > 0 {
            state.staleForwards -= 1
            sessions[session] = state
            return false
        }
        return state.pendingStep != nil
    }

    private mutating func start(
        session: SessionID, request: Request, topK: UInt16, maxNewTokens: UInt32, promptTokens: [UInt32],
        tokens: [UInt32]
    ) -> [ExpertDirective] {
        let existing = sessions[session]
        if existing == nil {
            if isDraining { return [error(session, .draining, "the worker is draining and takes no new sessions")] }
            if sessions.count >= sessionCapacity {
                return [error(session, .capacity, "the worker holds its maximum of \(sessionCapacity) sessions")]
            }
        }
        guard !promptTokens.isEmpty else { return [error(session, .badRequest, "the prompt is empty")] }
        guard topK >= 1 else { return [error(session, .badRequest, "topK must be at least 1")] }
        if let bad = (promptTokens + tokens).first(where: { Int($0) >= vocabSize }) {
            return [error(session, .badRequest, "token \(bad) is outside the vocabulary of \(vocabSize)")]
        }
        guard tokens.count <= Int(maxNewTokens) else {
            return [error(session, .badRequest, "\(tokens.count) tokens replayed but maxNewTokens is \(maxNewTokens)")]
        }
        guard promptTokens.count + Int(maxNewTokens) <= contextLimit else {
            return [error(
                session, .contextFull,
                "the prompt (\(promptTokens.count) tokens) plus \(maxNewTokens) new tokens exceeds the context of "
                    + "\(contextLimit) tokens"
            )]
        }
        var directives: [ExpertDirective] = []
        var state = ExpertSessionState(
            id: session, request: request, topK: topK, maxNewTokens: maxNewTokens, promptTokens: promptTokens,
            tokens: tokens, lastStep: nil, cachedDist: nil, pendingStep: UInt32(tokens.count)
        )
        if let existing {
            state.staleForwards = existing.staleForwards + (existing.pendingStep == nil ? 0 : 1)
            directives.append(.freeCache(session))
        }
        sessions[session] = state
        directives.append(.prefill(session, tokens: promptTokens + tokens))
        return directives
    }

    private func error(_ session: SessionID, _ code: ErrorCode, _ text: String) -> ExpertDirective {
        .reply(.error(ErrorReply(session: session, code: code, text: text)))
    }
}
