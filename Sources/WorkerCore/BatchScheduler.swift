import Wire

/// The worker's batching decisions, without sockets, a model or a clock: which pending forward passes form the
/// next batched pass, how long a pass waits for the steps of a session's other experts, which KV caches are kept
/// for reuse, and when every served expert has drained.
///
/// The shell (the worker's loop) owns the sockets, the model and the clock. It reports what the session machines
/// asked for (`onPrefill`, `onDecode`, `onFreeCache`, `onExpertLost`, `onExpertDrained`), asks for the next pass
/// (`nextPass(now:)`), runs it and reports it done (`onPassDone`). Times are nanoseconds on the shell's monotonic
/// clock. `Cache` is the shell's KV cache type; the scheduler only holds and hands out caches, so tests can use
/// any value.
///
/// The rules:
/// - every pending decode (a job of one token) joins the next pass;
/// - prefills are cut into chunks that together take at most `prefillChunk` prompt tokens per pass, handed out
///   oldest job first, so a long prompt delays other sessions' decodes by at most one chunk;
/// - with several experts in one process the coordinator sends a session's step to each of them back to back,
///   on separate connections; a pass started when only some have been read would compute the others in a pass
///   of their own right after. So while a pending decode's step is still awaited by another live expert of the
///   session, the shell keeps reading, for at most `gatherWindow` (`gatherDeadline(now:)`, `shouldGather`);
/// - a freed cache is kept for the next session while fewer than `spareLimit` are kept.
public struct BatchScheduler<Cache: Sendable>: Sendable {
    /// A session of one served expert (session ids are the coordinator's, the same on every expert).
    public struct Key: Hashable, Sendable {
        /// The expert's index among the experts of the process.
        public let expert: Int
        /// The coordinator's session id.
        public let session: SessionID

        /// Creates a key.
        public init(expert: Int, session: SessionID) {
            self.expert = expert
            self.session = session
        }
    }

    /// A forward pass a session machine asked for that has not finished: a prefill (possibly in chunks) or a
    /// decode of one token.
    public struct Job: Sendable, Equatable {
        /// The tokens to run.
        public var tokens: [Int32]
        /// Tokens already run.
        public var done = 0
        /// When the request arrived.
        public var received: UInt64
        /// When its first forward pass started.
        public var started: UInt64?
        /// Time of its forward passes so far.
        public var compute: UInt64 = 0

        /// Tokens still to run.
        public var remaining: Int { tokens.count - done }
    }

    /// One row group of a pass: a job's next tokens and its cache.
    public struct Entry: Sendable {
        /// Whose tokens.
        public let key: Key
        /// The session's cache.
        public let cache: Cache
        /// The tokens this pass runs for the job.
        public let tokens: [Int32]
    }

    /// A job that completed in a pass: its logits row becomes the session's reply.
    public struct Finished: Sendable, Equatable {
        /// The entry's index in the pass (its logits row).
        public let row: Int
        /// Whose job.
        public let key: Key
        /// From the request's arrival to its first pass.
        public let queueNanos: UInt64
        /// The time of all its passes.
        public let computeNanos: UInt64
    }

    /// The most prompt tokens of one pass.
    public let prefillChunk: Int
    /// The longest a pass waits for the steps of other experts of the process.
    public let gatherWindow: UInt64
    /// The most freed caches kept for reuse.
    public let spareLimit: Int
    /// How many experts the process serves.
    public let expertCount: Int

    private(set) var jobs: [Key: Job] = [:]
    /// Sessions with a job, in the order the jobs arrived (prefill chunks are handed out in this order).
    private(set) var order: [Key] = []
    private var caches: [Key: Cache] = [:]
    /// Freed caches for the next sessions (oldest first), their positions kept for a prompt that starts the same
    /// way.
    public private(set) var spare: [Cache] = []
    /// Per expert: nil while it serves; once drained, the sessions it gave up.
    private var drained: [Int?]

    /// A scheduler for `expertCount` experts.
    public init(prefillChunk: Int, gatherWindow: UInt64, spareLimit: Int, expertCount: Int) {
        self.prefillChunk = prefillChunk
        self.gatherWindow = gatherWindow
        self.spareLimit = spareLimit
        self.expertCount = expertCount
        drained = Array(repeating: nil, count: expertCount)
    }

    // MARK: Jobs

    /// Whether any forward pass is pending.
    public var hasJobs: Bool { !jobs.isEmpty }

    /// The pending job of `key`.
    public func job(_ key: Key) -> Job? { jobs[key] }

    /// The cache a prefill of `key` runs in: the session's own or a spare one (now the session's), which the shell
    /// truncates to what it can keep; nil when the shell must make one and `attach` it.
    /// - Parameter reuse: how many positions of a cache the prefill could keep (the length of its common prefix
    ///   with the new prompt): the spare with the most is taken, the most recently freed among equals.
    /// - Returns: the cache and its `reuse` count, computed once per cache.
    public mutating func takeCache(for key: Key, reuse: (Cache) -> Int = { _ in 0 }) -> (cache: Cache, keep: Int)? {
        if let existing = caches[key] { return (existing, reuse(existing)) }
        guard !spare.isEmpty else { return nil }
        var best = spare.count - 1
        var most = reuse(spare[best])
        for index in stride(from: spare.count - 2, through: 0, by: -1) {
            let n = reuse(spare[index])
            if n > most { (best, most) = (index, n) }
        }
        let cache = spare.remove(at: best)
        caches[key] = cache
        return (cache, most)
    }

    /// Makes `cache` the cache of `key`.
    public mutating func attach(_ cache: Cache, to key: Key) { caches[key] = cache }

    /// The cache of `key`, if it has one.
    public func cache(_ key: Key) -> Cache? { caches[key] }

    /// A prefill of `tokens` asked for at `now` (replacing any job of the session).
    public mutating func onPrefill(_ key: Key, tokens: [Int32], now: UInt64) {
        enqueue(key, Job(tokens: tokens, received: now))
    }

    /// A decode of `token` asked for at `now`.
    public mutating func onDecode(_ key: Key, token: Int32, now: UInt64) {
        enqueue(key, Job(tokens: [token], received: now))
    }

    private mutating func enqueue(_ key: Key, _ job: Job) {
        if jobs[key] == nil { order.append(key) }
        jobs[key] = job
    }

    /// The session of `key` ended: its job (if any) is cancelled and its cache freed.
    /// - Returns: whether a job was cancelled (its machine must hear that the pass failed), and the freed cache (it
    ///   is kept for reuse while fewer than `spareLimit` are, its positions intact for a prompt that starts the
    ///   same way).
    public mutating func onFreeCache(_ key: Key) -> (cancelled: Bool, freed: Cache?) {
        let cancelled = removeJob(key)
        guard let cache = caches.removeValue(forKey: key) else { return (cancelled, nil) }
        recycle(cache)
        return (cancelled, cache)
    }

    /// Expert `expert` lost its coordinator: its jobs are dropped and its caches freed.
    /// - Returns: the freed caches, for the shell to reset.
    public mutating func onExpertLost(_ expert: Int) -> [Cache] {
        jobs = jobs.filter { $0.key.expert != expert }
        order.removeAll { $0.expert == expert }
        var freed: [Cache] = []
        for (key, cache) in caches where key.expert == expert {
            freed.append(cache)
            recycle(cache)
        }
        caches = caches.filter { $0.key.expert != expert }
        return freed
    }

    private mutating func recycle(_ cache: Cache) {
        // Past the limit the oldest goes: the newest caches hold the likeliest prefixes of the next prompts.
        if spareLimit > 0 && spare.count >= spareLimit { spare.removeFirst() }
        if spareLimit > 0 { spare.append(cache) }
    }

    @discardableResult
    private mutating func removeJob(_ key: Key) -> Bool {
        guard jobs.removeValue(forKey: key) != nil else { return false }
        order.removeAll { $0 == key }
        return true
    }

    // MARK: The pass

    /// The next pass, started at `now`: every pending decode and the next prefill chunks (at most `prefillChunk`
    /// prompt tokens in all, the oldest prefill first), each with its cache; empty when nothing can run.
    public mutating func nextPass(now: UInt64) -> [Entry] {
        var budget = prefillChunk
        var pass: [Entry] = []
        for key in order {
            guard let job = jobs[key], let cache = caches[key] else { continue }
            let count: Int
            if job.tokens.count == 1 {
                count = 1
            } else if budget > 0 {
                count = min(job.remaining, budget)
                budget -= count
            } else {
                continue
            }
            pass.append(Entry(key: key, cache: cache, tokens: Array(job.tokens[job.done..<job.done + count])))
            if job.started == nil { jobs[key]!.started = now }
        }
        return pass
    }

    /// The pass `pass` took `elapsed` nanoseconds; the entries of `failed` failed and their jobs are dropped.
    /// - Returns: the jobs that completed, in the pass's order.
    public mutating func onPassDone(_ pass: [Entry], failed: Set<Key>, elapsed: UInt64) -> [Finished] {
        var finished: [Finished] = []
        for (row, entry) in pass.enumerated() {
            let key = entry.key
            if failed.contains(key) {
                removeJob(key)
                continue
            }
            guard var job = jobs[key] else { continue }
            job.done += entry.tokens.count
            job.compute += elapsed
            if job.remaining == 0 {
                removeJob(key)
                let started = job.started ?? job.received
                finished.append(Finished(
                    row: row, key: key, queueNanos: started >= job.received ? started - job.received : 0,
                    computeNanos: job.compute
                ))
            } else {
                jobs[key] = job
            }
        }
        return finished
    }

    // MARK: Gathering the steps of a session's experts

    /// Until when a pass about to start at `now` may wait for other experts' steps; nil with one expert.
    public func gatherDeadline(now: UInt64) -> UInt64? {
        expertCount > 1 ? now &+ gatherWindow : nil
    }

    /// Whether, at `now`, the shell should keep reading before the pass: the deadline has not passed and a
    /// pending decode's step is still on its way to another live expert of the same session.
    /// - Parameter sessions: the session machines of the experts, by index.
    public func shouldGather(now: UInt64, deadline: UInt64, sessions: [ExpertSessions]) -> Bool {
        now < deadline && expectsSteps(sessions)
    }

    /// Whether a pending decode's step is still on its way to another live expert of the same session.
    public func expectsSteps(_ sessions: [ExpertSessions]) -> Bool {
        for key in order {
            guard let job = jobs[key], job.tokens.count == 1, key.expert < sessions.count,
                let step = sessions[key.expert].session(key.session)?.pendingStep
            else { continue }
            for f in sessions.indices where f != key.expert && !isDrained(f) {
                if sessions[f].awaits(key.session, step: step) { return true }
            }
        }
        return false
    }

    // MARK: Drain

    /// Whether expert `expert` has drained.
    public func isDrained(_ expert: Int) -> Bool { drained.indices.contains(expert) && drained[expert] != nil }

    /// Expert `expert` has finished draining, giving up `abandoned` sessions.
    /// - Returns: the sessions given up by all the experts once every expert has drained (the worker exits);
    ///   nil while some still serve or when this expert had drained already.
    public mutating func onExpertDrained(_ expert: Int, abandoning abandoned: Int) -> Int? {
        guard drained.indices.contains(expert), drained[expert] == nil else { return nil }
        drained[expert] = abandoned
        let done = drained.compactMap { $0 }
        return done.count == expertCount ? done.reduce(0, +) : nil
    }
}
