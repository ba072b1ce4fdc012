import Testing
import Wire

@testable import WorkerCore

let chat = Request.chat([ChatTurn(role: "user", content: "Hi")])

func open(_ session: SessionID = 1, maxNewTokens: UInt32 = 8, topK: UInt16 = 4) -> Open {
    Open(session: session, request: chat, topK: topK, maxNewTokens: maxNewTokens)
}

func errorCode(_ directives: [ExpertDirective]) -> ErrorCode? {
    guard directives.count == 1, case let .reply(.error(reply)) = directives[0] else { return nil }
    return reply.code
}

/// A machine with session 1 open and its step-0 dist computed.
func opened(contextLimit: Int = 32, capacity: Int = 2) -> ExpertSessions {
    var machine = ExpertSessions(contextLimit: contextLimit, sessionCapacity: capacity, vocabSize: 50)
    _ = machine.onOpen(open(), promptTokens: [1, 2, 3])
    _ = machine.onForwardDone(session: 1, ids: [7], logProbs: [-0.1], tailMass: 0.1)
    return machine
}

func dist(_ step: UInt32, _ id: UInt32, session: SessionID = 1) -> ExpertDirective {
    .reply(.dist(Dist(session: session, step: step, ids: [id], logProbs: [-0.1], tailMass: 0.1)))
}

@Suite struct ExpertSessionsTests {
    @Test("open prefills the prompt and replies dist 0 when the forward pass is done")
    func openPrefills() {
        var machine = ExpertSessions(contextLimit: 32, sessionCapacity: 2, vocabSize: 50)
        #expect(machine.onOpen(open(), promptTokens: [1, 2, 3]) == [.prefill(1, tokens: [1, 2, 3])])
        #expect(machine.onForwardDone(session: 1, ids: [7], logProbs: [-0.1], tailMass: 0.1) == [dist(0, 7)])
        #expect(machine.session(1)?.lastStep == 0)
    }

    @Test("step n at step n−1 decodes the token and replies dist n")
    func stepDecodes() {
        var machine = opened()
        #expect(machine.onStep(Step(session: 1, step: 1, token: 7)) == [.decode(1, token: 7)])
        #expect(machine.onForwardDone(session: 1, ids: [8], logProbs: [-0.1], tailMass: 0.1) == [dist(1, 8)])
        #expect(machine.onStep(Step(session: 1, step: 2, token: 8)) == [.decode(1, token: 8)])
        #expect(machine.session(1)?.tokens == [7, 8])
    }

    @Test("awaits(step:) holds only for an open, idle session whose next step is that one")
    func awaitsNextStep() {
        var machine = ExpertSessions(contextLimit: 32, sessionCapacity: 2, vocabSize: 50)
        _ = machine.onOpen(open(), promptTokens: [1, 2, 3])
        #expect(!machine.awaits(1, step: 1))  // still prefilling
        _ = machine.onForwardDone(session: 1, ids: [7], logProbs: [-0.1], tailMass: 0.1)
        #expect(machine.awaits(1, step: 1))
        #expect(!machine.awaits(1, step: 2))
        #expect(!machine.awaits(1, step: 0))
        #expect(!machine.awaits(2, step: 1))  // unknown session
        _ = machine.onStep(Step(session: 1, step: 1, token: 7))
        #expect(!machine.awaits(1, step: 1))  // computing it
        #expect(!machine.awaits(1, step: 2))
        _ = machine.onForwardDone(session: 1, ids: [8], logProbs: [-0.1], tailMass: 0.1)
        #expect(machine.awaits(1, step: 2))
        _ = machine.onClose(Close(session: 1))
        #expect(!machine.awaits(1, step: 2))
    }

    @Test("a repeated step gets the cached dist again, and a repeat during the forward pass is ignored")
    func idempotentStep() {
        var machine = opened()
        _ = machine.onStep(Step(session: 1, step: 1, token: 7))
        #expect(machine.onStep(Step(session: 1, step: 1, token: 7)).isEmpty)
        _ = machine.onForwardDone(session: 1, ids: [8], logProbs: [-0.1], tailMass: 0.1)
        #expect(machine.onStep(Step(session: 1, step: 1, token: 7)) == [dist(1, 8)])
        #expect(machine.session(1)?.tokens == [7])
        let repeatedOpen = machine.onOpen(open(), promptTokens: [1, 2, 3])
        #expect(repeatedOpen.first == .freeCache(1))  // past step 0: a repeated open starts over
    }

    @Test("a repeated open at step 0 gets dist 0 again")
    func idempotentOpen() {
        var machine = opened()
        #expect(machine.onOpen(open(), promptTokens: [1, 2, 3]) == [dist(0, 7)])
    }

    @Test("a step the session cannot reach is a desync",
          arguments: [Step(session: 1, step: 2, token: 7), Step(session: 1, step: 1, token: 9)])
    func desync(step: Step) {
        var machine = opened()
        if step.token == 9 {
            _ = machine.onStep(Step(session: 1, step: 1, token: 7))
            _ = machine.onForwardDone(session: 1, ids: [8], logProbs: [-0.1], tailMass: 0.1)
        }
        #expect(errorCode(machine.onStep(step)) == .desync)
    }

    @Test("a step for a session the worker does not hold is an unknown session")
    func unknownSession() {
        var machine = opened()
        #expect(errorCode(machine.onStep(Step(session: 2, step: 1, token: 7))) == .unknownSession)
        _ = machine.onClose(Close(session: 1))
        #expect(errorCode(machine.onStep(Step(session: 1, step: 1, token: 7))) == .unknownSession)
    }

    @Test("an open whose prompt plus new tokens exceed the context is refused as context full")
    func contextFull() {
        var machine = ExpertSessions(contextLimit: 10, sessionCapacity: 2, vocabSize: 50)
        #expect(errorCode(machine.onOpen(open(maxNewTokens: 8), promptTokens: [1, 2, 3])) == .contextFull)
        #expect(machine.onOpen(open(maxNewTokens: 7), promptTokens: [1, 2, 3]) == [.prefill(1, tokens: [1, 2, 3])])
        #expect(machine.count == 1)
    }

    @Test("an open beyond the session capacity is refused as capacity; a close makes room")
    func capacity() {
        var machine = opened(capacity: 2)
        _ = machine.onOpen(open(2), promptTokens: [1])
        #expect(errorCode(machine.onOpen(open(3), promptTokens: [1])) == .capacity)
        #expect(machine.onClose(Close(session: 2)) == [.freeCache(2)])
        #expect(machine.onOpen(open(3), promptTokens: [1]) == [.prefill(3, tokens: [1])])
    }

    @Test("malformed requests are bad requests",
          arguments: [(open(), [UInt32]()), (open(), [1, 99]), (open(topK: 0), [1])])
    func badRequest(open: Open, prompt: [UInt32]) {
        var machine = ExpertSessions(contextLimit: 32, sessionCapacity: 2, vocabSize: 50)
        #expect(errorCode(machine.onOpen(open, promptTokens: prompt)) == .badRequest)
    }

    @Test("replay resets the cache, prefills prompt and tokens, and replies the dist for step tokens.count")
    func replay() {
        var machine = opened()
        let replay = Replay(session: 1, request: chat, topK: 4, maxNewTokens: 8, tokens: [7, 8, 9])
        let out = machine.onReplay(replay, promptTokens: [1, 2, 3])
        #expect(out == [.freeCache(1), .prefill(1, tokens: [1, 2, 3, 7, 8, 9])])
        #expect(machine.onForwardDone(session: 1, ids: [4], logProbs: [-0.1], tailMass: 0.1) == [dist(3, 4)])
        #expect(machine.onStep(Step(session: 1, step: 4, token: 4)) == [.decode(1, token: 4)])
    }

    @Test("replay of a session the worker lost (restart) rebuilds it")
    func replayUnknown() {
        var machine = ExpertSessions(contextLimit: 32, sessionCapacity: 2, vocabSize: 50)
        let replay = Replay(session: 5, request: chat, topK: 4, maxNewTokens: 8, tokens: [7])
        #expect(machine.onReplay(replay, promptTokens: [1]) == [.prefill(5, tokens: [1, 7])])
    }

    @Test("a forward pass superseded by a replay or a close is dropped")
    func staleForwardDropped() {
        var machine = opened()
        _ = machine.onStep(Step(session: 1, step: 1, token: 7))
        let replay = Replay(session: 1, request: chat, topK: 4, maxNewTokens: 8, tokens: [7])
        _ = machine.onReplay(replay, promptTokens: [1, 2, 3])
        // The decode of step 1 from before the replay finishes first: dropped; then the replay's prefill.
        #expect(machine.onForwardDone(session: 1, ids: [3], logProbs: [-0.1], tailMass: 0.1).isEmpty)
        #expect(machine.onForwardDone(session: 1, ids: [4], logProbs: [-0.1], tailMass: 0.1) == [dist(1, 4)])

        _ = machine.onStep(Step(session: 1, step: 2, token: 4))
        _ = machine.onClose(Close(session: 1))
        _ = machine.onOpen(open(), promptTokens: [1])
        #expect(machine.onForwardDone(session: 1, ids: [3], logProbs: [-0.1], tailMass: 0.1).isEmpty)
        #expect(machine.onForwardDone(session: 1, ids: [5], logProbs: [-0.1], tailMass: 0.1) == [dist(0, 5)])
    }

    @Test("while draining, opens are refused, sessions go on, and the last close says drained")
    func draining() {
        var machine = opened()
        #expect(machine.onDrain().isEmpty)
        #expect(errorCode(machine.onOpen(open(2), promptTokens: [1])) == .draining)
        #expect(machine.onStep(Step(session: 1, step: 1, token: 7)) == [.decode(1, token: 7)])
        #expect(machine.onClose(Close(session: 1)) == [.freeCache(1), .drained])
        var idle = ExpertSessions(contextLimit: 32, sessionCapacity: 2, vocabSize: 50)
        #expect(idle.onDrain() == [.drained])
    }

    @Test("a failed forward pass loses the session with an internal error")
    func forwardFailed() {
        var machine = opened()
        _ = machine.onStep(Step(session: 1, step: 1, token: 7))
        let out = machine.onForwardFailed(session: 1, reason: "out of memory")
        #expect(out.first == .freeCache(1))
        #expect(errorCode(Array(out.dropFirst())) == .internal)
        #expect(machine.count == 0)
    }

    @Test("closing an unknown session does nothing")
    func closeUnknown() {
        var machine = opened()
        #expect(machine.onClose(Close(session: 42)).isEmpty)
    }
}

@Suite struct CoordinatorLivenessTests {
    let ms: UInt64 = 1_000_000

    @Test("a heartbeat is due after one quiet interval, a reconnection after three silent ones")
    func heartbeatAndReconnect() {
        var liveness = CoordinatorLiveness(heartbeatIntervalMs: 100, now: 0)
        #expect(liveness.onTick(now: 99 * ms).isEmpty)
        #expect(liveness.onTick(now: 100 * ms) == [.sendHeartbeat])
        liveness.onReceived(now: 150 * ms)
        #expect(liveness.onTick(now: 449 * ms) == [.sendHeartbeat])
        #expect(liveness.onTick(now: 450 * ms) == [.reconnect(afterMs: 100)])
    }

    @Test("reconnection back-off doubles up to its maximum and resets when the coordinator answers")
    func backoff() {
        var liveness = CoordinatorLiveness(heartbeatIntervalMs: 100, now: 0, maxReconnectMs: 300)
        var delays: [UInt32] = []
        var now: UInt64 = 0
        while delays.count < 4 {
            now += 10 * ms
            for case let .reconnect(delay) in liveness.onTick(now: now) { delays.append(delay) }
        }
        #expect(delays == [100, 200, 300, 300])
        liveness.onWelcome(Welcome(heartbeatIntervalMs: 100), now: now + 1)
        while true {
            now += 10 * ms
            if case let .reconnect(delay)? = liveness.onTick(now: now).first {
                #expect(delay == 100)
                break
            }
        }
    }
}
