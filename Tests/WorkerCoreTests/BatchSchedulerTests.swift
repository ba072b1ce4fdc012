import Testing
import Wire

@testable import WorkerCore

/// Caches are plain numbers here: the scheduler only holds and hands them out.
typealias Scheduler = BatchScheduler<Int>

func key(_ session: SessionID, expert: Int = 0) -> Scheduler.Key { Scheduler.Key(expert: expert, session: session) }

/// A scheduler whose sessions each already have a cache (cache n for session n of expert 0).
func scheduler(
    prefillChunk: Int = 4, experts: Int = 1, spareLimit: Int = 8, sessions: [SessionID] = []
) -> Scheduler {
    var s = Scheduler(prefillChunk: prefillChunk, gatherWindow: 2_000_000, spareLimit: spareLimit, expertCount: experts)
    for session in sessions { s.attach(Int(session), to: key(session)) }
    return s
}

/// What a pass runs: (session, token count) per entry.
func shape(_ pass: [Scheduler.Entry]) -> [[UInt64]] { pass.map { [$0.key.session, UInt64($0.tokens.count)] } }

@Suite struct BatchSchedulerTests {
    @Test("prefill chunks share the pass's budget, the oldest prefill first")
    func prefillBudgetOldestFirst() {
        var s = scheduler(prefillChunk: 4, sessions: [1, 2])
        s.onPrefill(key(1), tokens: [1, 2, 3, 4, 5, 6], now: 0)
        s.onPrefill(key(2), tokens: [7, 8, 9], now: 1)
        let first = s.nextPass(now: 10)
        #expect(shape(first) == [[1, 4]])
        #expect(first[0].tokens == [1, 2, 3, 4])
        #expect(s.onPassDone(first, failed: [], elapsed: 5).isEmpty)
        let second = s.nextPass(now: 20)
        #expect(shape(second) == [[1, 2], [2, 2]])
        #expect(second.map(\.tokens) == [[5, 6], [7, 8]])
        #expect(s.onPassDone(second, failed: [], elapsed: 5).map(\.key) == [key(1)])
        let third = s.nextPass(now: 30)
        #expect(shape(third) == [[2, 1]])
        #expect(s.onPassDone(third, failed: [], elapsed: 5).map(\.key) == [key(2)])
        #expect(!s.hasJobs)
        #expect(s.nextPass(now: 40).isEmpty)
    }

    @Test("sessions opened together are prefilled in one pass, and their decodes then share passes")
    func sessionsShareAPass() {
        var s = scheduler(prefillChunk: 128, sessions: [10, 11])
        s.onPrefill(key(10), tokens: [1, 2, 3, 4, 5], now: 0)
        s.onPrefill(key(11), tokens: [6, 7, 8, 9], now: 0)
        let prefill = s.nextPass(now: 1)
        #expect(shape(prefill) == [[10, 5], [11, 4]])
        #expect(s.onPassDone(prefill, failed: [], elapsed: 1).map(\.row) == [0, 1])
        s.onDecode(key(10), token: 3, now: 2)
        s.onDecode(key(11), token: 4, now: 2)
        #expect(shape(s.nextPass(now: 3)) == [[10, 1], [11, 1]])
    }

    @Test("every pending decode joins the pass, even when prefills use the whole budget")
    func decodesAlwaysJoin() {
        var s = scheduler(prefillChunk: 4, sessions: [1, 2, 3])
        s.onPrefill(key(1), tokens: Array(0..<10), now: 0)
        s.onDecode(key(2), token: 5, now: 1)
        s.onDecode(key(3), token: 6, now: 2)
        let pass = s.nextPass(now: 3)
        #expect(shape(pass) == [[1, 4], [2, 1], [3, 1]])
        #expect(pass.map(\.cache) == [1, 2, 3])
        let finished = s.onPassDone(pass, failed: [], elapsed: 1)
        #expect(finished.map(\.key) == [key(2), key(3)])
        #expect(finished.map(\.row) == [1, 2])
    }

    @Test("a job without a cache waits; a failed entry's job is dropped")
    func cachelessAndFailed() {
        var s = scheduler(sessions: [1])
        s.onDecode(key(1), token: 1, now: 0)
        s.onDecode(key(2), token: 2, now: 0)
        let pass = s.nextPass(now: 1)
        #expect(shape(pass) == [[1, 1]])
        #expect(s.onPassDone(pass, failed: [key(1)], elapsed: 1).isEmpty)
        #expect(s.job(key(1)) == nil)
        #expect(s.job(key(2)) != nil)
    }

    @Test("a finished job reports its queueing and the time of all its passes")
    func timing() {
        var s = scheduler(prefillChunk: 2, sessions: [1])
        s.onPrefill(key(1), tokens: [1, 2, 3], now: 100)
        let first = s.nextPass(now: 150)
        _ = s.onPassDone(first, failed: [], elapsed: 30)
        let second = s.nextPass(now: 200)
        let done = s.onPassDone(second, failed: [], elapsed: 20)
        #expect(done == [Scheduler.Finished(row: 0, key: key(1), queueNanos: 50, computeNanos: 50)])
    }

    @Test("a freed session's job is cancelled and its cache kept for the next session, the newest up to the capacity")
    func cacheReuse() {
        var s = scheduler(spareLimit: 2, sessions: [10, 11, 12])
        s.onDecode(key(10), token: 1, now: 0)
        let freed = s.onFreeCache(key(10))
        #expect(freed.cancelled && freed.freed == 10)
        #expect(s.onFreeCache(key(11)) == (false, 11))
        #expect(s.onFreeCache(key(12)) == (false, 12))
        #expect(s.onFreeCache(key(13)) == (false, nil))
        // Past the limit the oldest goes: the newest caches hold the likeliest prefixes of the next prompts.
        #expect(s.spare == [11, 12])
        #expect(!s.hasJobs)
        #expect(s.takeCache(for: key(20))?.cache == 12)
        #expect(s.takeCache(for: key(21))?.cache == 11)
        #expect(s.takeCache(for: key(22))?.cache == nil)
        // A session's own cache comes back to it (the shell truncates it for a new prefill).
        #expect(s.takeCache(for: key(20))?.cache == 12)
        #expect(s.cache(key(21)) == 11)
    }

    @Test("a prefill takes the spare cache with the longest reusable prefix, the newest among equals")
    func cacheReuseByPrefix() {
        var s = scheduler(spareLimit: 4, sessions: [10, 11, 12, 13])
        for session: SessionID in [10, 11, 12, 13] { _ = s.onFreeCache(key(session)) }
        #expect(s.spare == [10, 11, 12, 13])
        // Cache 11 and 13 share 5 positions with the next prompt, 10 shares 2, 12 none.
        let shared: [Int: Int] = [10: 2, 11: 5, 12: 0, 13: 5]
        #expect(s.takeCache(for: key(20)) { shared[$0] ?? 0 }.map { [$0.cache, $0.keep] } == [13, 5])
        #expect(s.takeCache(for: key(21)) { shared[$0] ?? 0 }.map { [$0.cache, $0.keep] } == [11, 5])
        #expect(s.takeCache(for: key(22)) { shared[$0] ?? 0 }.map { [$0.cache, $0.keep] } == [10, 2])
        #expect(s.takeCache(for: key(23)) { shared[$0] ?? 0 }.map { [$0.cache, $0.keep] } == [12, 0])
        #expect(s.spare.isEmpty)
    }

    @Test("an expert that lost its coordinator gives up its jobs and caches; the others keep theirs")
    func expertLost() {
        var s = scheduler(experts: 2, spareLimit: 4)
        s.attach(1, to: key(1, expert: 0))
        s.attach(2, to: key(1, expert: 1))
        s.onDecode(key(1, expert: 0), token: 1, now: 0)
        s.onDecode(key(1, expert: 1), token: 1, now: 0)
        #expect(s.onExpertLost(0) == [1])
        #expect(shape(s.nextPass(now: 1)) == [[1, 1]])
        #expect(s.nextPass(now: 2).map(\.key) == [key(1, expert: 1)])
        #expect(s.spare == [1])
    }

    /// Two experts' machines with session 1 open and step 0 answered; `stepped` of them have step 1.
    func machines(stepped: [Int]) -> [ExpertSessions] {
        (0..<2).map { e in
            var m = ExpertSessions(contextLimit: 32, sessionCapacity: 4, vocabSize: 50)
            _ = m.onOpen(Open(session: 1, request: chat, topK: 4, maxNewTokens: 8), promptTokens: [1, 2])
            _ = m.onForwardDone(session: 1, ids: [7], logProbs: [-0.1], tailMass: 0.1)
            if stepped.contains(e) { _ = m.onStep(Step(session: 1, step: 1, token: 7)) }
            return m
        }
    }

    @Test("a pass waits for the step of the session's other expert, at most the gather window")
    func gatherWindow() throws {
        var s = scheduler(experts: 2)
        s.attach(1, to: key(1))
        s.onDecode(key(1), token: 7, now: 0)
        let deadline = try #require(s.gatherDeadline(now: 1000))
        #expect(deadline == 1000 + s.gatherWindow)
        let waiting = machines(stepped: [0])
        #expect(s.shouldGather(now: 1000, deadline: deadline, sessions: waiting))
        #expect(s.shouldGather(now: deadline - 1, deadline: deadline, sessions: waiting))
        #expect(!s.shouldGather(now: deadline, deadline: deadline, sessions: waiting))
        // Once the other expert has read its step, the pass goes at once.
        #expect(!s.shouldGather(now: 1000, deadline: deadline, sessions: machines(stepped: [0, 1])))
        // A drained expert is not waited for.
        _ = s.onExpertDrained(1, abandoning: 0)
        #expect(!s.shouldGather(now: 1000, deadline: deadline, sessions: waiting))
    }

    @Test("a prefill, or a process of one expert, never waits to gather")
    func noGather() {
        #expect(scheduler(experts: 1).gatherDeadline(now: 5) == nil)
        var s = scheduler(experts: 2)
        s.attach(1, to: key(1))
        s.onPrefill(key(1), tokens: [1, 2], now: 0)
        #expect(!s.expectsSteps(machines(stepped: [0])))
    }

    @Test("the worker has drained once every expert has, with the sessions all of them gave up")
    func drainAcrossExperts() {
        var s = scheduler(experts: 3)
        #expect(s.onExpertDrained(0, abandoning: 1) == nil)
        #expect(s.onExpertDrained(0, abandoning: 5) == nil)  // already drained: ignored
        #expect(s.isDrained(0) && !s.isDrained(1))
        #expect(s.onExpertDrained(2, abandoning: 0) == nil)
        #expect(s.onExpertDrained(1, abandoning: 2) == 3)
        #expect(s.onExpertDrained(1, abandoning: 2) == nil)
    }
}
