import Decoding
import Foundation
import Preference
import Testing
import Wire

@testable import ClusterCore

/// Decodes tokens from a table (a token not in the table decodes to "<id>").
struct TableDecoder: TokenTextDecoder {
    var table: [UInt32: String]
    mutating func decode(_ token: UInt32) -> String { table[token] ?? "<\(token)>" }
}

/// A cluster for one session: workers per expert, chosen in order, skipping excluded ones.
struct FakeCluster {
    var replicas: [String: [WorkerID]]
    func choose(_ expert: String, _ excluding: Set<WorkerID>) -> WorkerID? {
        replicas[expert]?.first { !excluding.contains($0) }
    }
}

let ms: UInt64 = 1_000_000

/// Builds a session over two experts, concise and friendly.
func makeSession(
    prompt: String = "Hi", preference: String = "concise, friendly", maxNewTokens: UInt32 = 3, stop: [String] = [],
    trace: Bool = false, table: [UInt32: String] = [5: "A", 6: "B", 7: "C", 8: "D"]
) throws -> CoordinatorSession {
    let request = Generate(
        request: 77, prompt: prompt, preference: preference, maxNewTokens: maxNewTokens, stop: stop, trace: trace
    )
    return CoordinatorSession(
        id: 9, request: request, preference: try PreferenceSpec.parse(preference),
        experts: [SessionExpert(name: "concise", dimension: .concise),
                  SessionExpert(name: "friendly", dimension: .friendly)],
        settings: SessionSettings(topK: 4, stepDeadlineMs: 100, openDeadlineMs: 1000, vocabSize: 100, eosTokenIDs: [0]),
        controller: UniformController(), decoder: TableDecoder(table: table), now: 0
    )
}

/// A dist putting almost all mass on one token.
func peaked(_ step: UInt32, on token: UInt32) -> Dist {
    Dist(session: 9, step: step, ids: [token, 99], logProbs: [log(0.9), log(0.05)], tailMass: 0.05)
}

func sends(_ directives: [SessionDirective]) -> [(WorkerID, Message)] {
    directives.compactMap { if case let .send(worker, message) = $0 { (worker, message) } else { nil } }
}

func emitted(_ directives: [SessionDirective]) -> [TokenEvent] {
    directives.compactMap { if case let .emitToken(event) = $0 { event } else { nil } }
}

func done(_ directives: [SessionDirective]) -> Done? {
    directives.lazy.compactMap { if case let .finish(done) = $0 { done } else { nil } }.first
}

func closes(_ directives: [SessionDirective]) -> Set<WorkerID> {
    Set(sends(directives).compactMap { if case .close = $0.1 { $0.0 } else { nil } })
}

@Suite struct CoordinatorSessionTests {
    let cluster = FakeCluster(replicas: ["concise": ["c1", "c2"], "friendly": ["f1"]])

    /// Feeds both experts the same peaked dist for `step`; returns the directives of the second one.
    func both(_ session: inout CoordinatorSession, step: UInt32, token: UInt32, now: UInt64) -> [SessionDirective] {
        let first = session.onDist(peaked(step, on: token), from: session.expertWorkers[0] ?? "-", now: now,
                                   chooseReplica: cluster.choose)
        #expect(first.isEmpty)
        return session.onDist(peaked(step, on: token), from: session.expertWorkers[1] ?? "-", now: now,
                              chooseReplica: cluster.choose)
    }

    @Test("a request runs from open to done: one token per step, steps to every worker, close at the end")
    func happyPath() throws {
        var session = try makeSession()
        let start = session.start(now: 0, chooseReplica: cluster.choose)
        #expect(sends(start).map(\.0) == ["c1", "f1"])
        let expectedOpen = Open(
            session: 9, request: .chat([ChatTurn(role: "user", content: "Hi")]), topK: 4, maxNewTokens: 3
        )
        #expect(sends(start).map(\.1) == [.open(expectedOpen), .open(expectedOpen)])
        #expect(session.state == .opening)

        var out = both(&session, step: 0, token: 5, now: 10 * ms)
        #expect(session.state == .running)
        #expect(emitted(out) == [TokenEvent(request: 77, step: 0, token: 5, text: "A")])
        #expect(sends(out).map(\.0) == ["c1", "f1"])
        #expect(sends(out).allSatisfy { $0.1 == .step(Step(session: 9, step: 1, token: 5)) })

        out = both(&session, step: 1, token: 6, now: 20 * ms)
        #expect(emitted(out).map(\.token) == [6])
        out = both(&session, step: 2, token: 7, now: 30 * ms)
        #expect(emitted(out).map(\.text) == ["C"])
        let finished = try #require(done(out))
        #expect(finished == Done(request: 77, finish: .maxTokens, tokens: 3, text: "ABC", elapsedMicros: 30_000))
        #expect(closes(out) == ["c1", "f1"])
        #expect(session.state == .finishing)
        #expect(session.assignedWorkers.isEmpty)
        _ = session.onTick(now: 31 * ms, chooseReplica: cluster.choose)
        #expect(session.state == .finishing)
        _ = session.onTick(now: 200 * ms, chooseReplica: cluster.choose)
        #expect(session.state == .closed)
    }

    @Test("a request's sampling fields and merge mode override the cluster's defaults; unset ones take them")
    func samplingDefaults() throws {
        let settings = SessionSettings(
            topK: 4, defaultSampling: SamplingParameters(temperature: 0.7, topP: 0.9, topK: 20, seed: 5),
            defaultMerge: .logit, vocabSize: 100, eosTokenIDs: [0]
        )
        func session(_ sampling: SamplingRequest, _ merge: MergeMode?) throws -> CoordinatorSession {
            CoordinatorSession(
                id: 1, request: Generate(request: 1, prompt: "Hi", preference: "", maxNewTokens: 1,
                                         sampling: sampling, merge: merge),
                preference: try PreferenceSpec.parse(""), experts: [SessionExpert(name: "concise", dimension: nil)],
                settings: settings, controller: UniformController(), decoder: TableDecoder(table: [:]), now: 0
            )
        }
        let defaults = try session(SamplingRequest(), nil)
        #expect(defaults.sampling == SamplingParameters(temperature: 0.7, topP: 0.9, topK: 20, seed: 5))
        #expect(defaults.mergeMode == .logit)
        let mixed = try session(SamplingRequest(temperature: 0, seed: 11), .probability)
        #expect(mixed.sampling == SamplingParameters(temperature: 0, topP: 0.9, topK: 20, seed: 11))
        #expect(mixed.mergeMode == .probability)
        let config = try ClusterConfig.decode(Data("""
            {"experts": [{"name": "concise", "model": "m.gguf"}], "merge": "logit",
             "sampling": {"temperature": 0.5, "seed": 3}}
            """.utf8))
        let fromConfig = SessionSettings(config: config, vocabSize: 100, eosTokenIDs: [])
        #expect(fromConfig.defaultSampling == SamplingParameters(temperature: 0.5, topP: 1, topK: 0, seed: 3))
        #expect(fromConfig.defaultMerge == .logit)
    }

    @Test("desync and unknown session are answered with a replay of every chosen token",
          arguments: [ErrorCode.desync, .unknownSession])
    func desyncReplays(code: ErrorCode) throws {
        var session = try makeSession(maxNewTokens: 5)
        _ = session.start(now: 0, chooseReplica: cluster.choose)
        _ = both(&session, step: 0, token: 5, now: 1 * ms)
        _ = both(&session, step: 1, token: 6, now: 2 * ms)
        let out = session.onError(ErrorReply(session: 9, code: code, text: ""), from: "c1", now: 3 * ms,
                                  chooseReplica: cluster.choose)
        let expected = Replay(
            session: 9, request: .chat([ChatTurn(role: "user", content: "Hi")]), topK: 4, maxNewTokens: 5,
            tokens: [5, 6]
        )
        #expect(sends(out).map(\.0) == ["c1"])
        #expect(sends(out).map(\.1) == [.replay(expected)])
        #expect(session.failovers == 0)
        // The replayed worker's dist for step 2 completes the step.
        _ = session.onDist(peaked(2, on: 7), from: "f1", now: 4 * ms, chooseReplica: cluster.choose)
        let next = session.onDist(peaked(2, on: 7), from: "c1", now: 5 * ms, chooseReplica: cluster.choose)
        #expect(emitted(next).map(\.token) == [7])
    }

    @Test("a missed deadline moves the expert to a replica by replaying the request and all tokens")
    func deadlineFailover() throws {
        var session = try makeSession(maxNewTokens: 5)
        _ = session.start(now: 0, chooseReplica: cluster.choose)
        _ = both(&session, step: 0, token: 5, now: 1 * ms)
        _ = both(&session, step: 1, token: 6, now: 2 * ms)
        _ = session.onDist(peaked(2, on: 7), from: "f1", now: 3 * ms, chooseReplica: cluster.choose)
        #expect(session.nextDeadline == Deadline(nanoseconds: 102 * ms))
        #expect(session.onTick(now: 50 * ms, chooseReplica: cluster.choose).isEmpty)
        let out = session.onTick(now: 102 * ms, chooseReplica: cluster.choose)
        #expect(sends(out).map(\.0) == ["c1", "c2"])
        #expect(sends(out)[0].1 == .close(Close(session: 9)))
        guard case let .replay(replay) = sends(out)[1].1 else {
            Issue.record("expected a replay, got \(sends(out))")
            return
        }
        #expect(replay.tokens == [5, 6])
        #expect(session.failovers == 1)
        #expect(session.expertWorkers == ["c2", "f1"])
        // A late dist from the abandoned worker is ignored; the replica's completes the step.
        #expect(session.onDist(peaked(2, on: 7), from: "c1", now: 103 * ms, chooseReplica: cluster.choose).isEmpty)
        let next = session.onDist(peaked(2, on: 7), from: "c2", now: 104 * ms, chooseReplica: cluster.choose)
        #expect(emitted(next).map(\.token) == [7])
        #expect(Set(sends(next).map(\.0)) == ["c2", "f1"])
    }

    @Test("with no replica left the expert is dropped, recorded and the weights renormalised")
    func noReplicaDropsExpert() throws {
        var session = try makeSession(maxNewTokens: 2, trace: true)
        _ = session.start(now: 0, chooseReplica: cluster.choose)
        _ = session.onDist(peaked(0, on: 5), from: "c1", now: 1 * ms, chooseReplica: cluster.choose)
        // f1 (friendly, no replica) never answers the open.
        let out = session.onTick(now: 1000 * ms, chooseReplica: cluster.choose)
        #expect(session.lostExperts == ["friendly"])
        let event = try #require(emitted(out).first)
        #expect(event.token == 5)
        #expect(event.experts.map(\.expert) == ["concise", "friendly"])
        #expect(event.experts.map(\.weight) == [1, 0])
        #expect(sends(out).map(\.0) == ["f1", "c1"])  // close to the silent worker, step to the one left
        let end = session.onDist(peaked(1, on: 6), from: "c1", now: 1001 * ms, chooseReplica: cluster.choose)
        #expect(done(end)?.lostExperts == ["friendly"])
        #expect(done(end)?.text == "AB")
    }

    @Test("a worker declared dead moves to a replica without being sent close")
    func workerDead() throws {
        var session = try makeSession()
        _ = session.start(now: 0, chooseReplica: cluster.choose)
        let out = session.onWorkerDead("c1", now: 5 * ms, chooseReplica: cluster.choose)
        #expect(sends(out).map(\.0) == ["c2"])
        #expect(session.failovers == 1)
    }

    @Test("capacity on open moves to a replica; bad request drops the expert")
    func errorsOnOpen() throws {
        var session = try makeSession()
        _ = session.start(now: 0, chooseReplica: cluster.choose)
        let moved = session.onError(ErrorReply(session: 9, code: .capacity, text: ""), from: "c1", now: 1,
                                    chooseReplica: cluster.choose)
        #expect(sends(moved).map(\.0) == ["c1", "c2"])
        let dropped = session.onError(ErrorReply(session: 9, code: .badRequest, text: ""), from: "f1", now: 2,
                                      chooseReplica: cluster.choose)
        #expect(dropped.isEmpty)
        #expect(session.lostExperts == ["friendly"])
    }

    @Test("when every expert is lost the request fails, with contextFull when every expert said so")
    func allLost() throws {
        var session = try makeSession()
        _ = session.start(now: 0, chooseReplica: cluster.choose)
        _ = session.onError(ErrorReply(session: 9, code: .contextFull, text: ""), from: "c1", now: 1,
                            chooseReplica: cluster.choose)
        let out = session.onError(ErrorReply(session: 9, code: .contextFull, text: ""), from: "f1", now: 2,
                                  chooseReplica: cluster.choose)
        guard case let .fail(reply)? = out.last else {
            Issue.record("expected a failure, got \(out)")
            return
        }
        #expect(reply.session == 77)
        #expect(reply.code == .contextFull)

        var empty = try makeSession()
        let none = empty.start(now: 0, chooseReplica: { _, _ in nil })
        guard case let .fail(unavailable)? = none.last else {
            Issue.record("expected a failure, got \(none)")
            return
        }
        #expect(unavailable.code == .unavailable)
    }

    @Test("stale, duplicate and foreign dists are ignored")
    func staleIgnored() throws {
        var session = try makeSession(maxNewTokens: 5)
        _ = session.start(now: 0, chooseReplica: cluster.choose)
        _ = both(&session, step: 0, token: 5, now: 1 * ms)
        let c = cluster.choose
        #expect(session.onDist(peaked(0, on: 5), from: "c1", now: 2, chooseReplica: c).isEmpty)  // older step
        #expect(session.onDist(peaked(1, on: 5), from: "c2", now: 2, chooseReplica: c).isEmpty)  // not its worker
        #expect(session.onDist(peaked(1, on: 5), from: "zz", now: 2, chooseReplica: c).isEmpty)  // unknown worker
        var foreign = peaked(1, on: 5)
        foreign.session = 10
        #expect(session.onDist(foreign, from: "c1", now: 2, chooseReplica: c).isEmpty)  // another session
        #expect(session.onDist(peaked(1, on: 5), from: "c1", now: 2, chooseReplica: c).isEmpty)  // waits for f1
        #expect(session.onDist(peaked(1, on: 5), from: "c1", now: 2, chooseReplica: c).isEmpty)  // duplicate
        #expect(emitted(session.onDist(peaked(1, on: 6), from: "f1", now: 3, chooseReplica: c)).count == 1)
    }

    @Test("an EOS token ends the generation without being counted or shown")
    func endOfSequence() throws {
        var session = try makeSession(maxNewTokens: 10)
        _ = session.start(now: 0, chooseReplica: cluster.choose)
        _ = both(&session, step: 0, token: 5, now: 1)
        let out = both(&session, step: 1, token: 0, now: 2)
        #expect(emitted(out).isEmpty)
        #expect(done(out)?.finish == .endOfSequence)
        #expect(done(out)?.tokens == 1)
        #expect(done(out)?.text == "A")
        #expect(closes(out) == ["c1", "f1"])
    }

    @Test("a stop string ends the generation and is left out of the text")
    func stopString() throws {
        var session = try makeSession(maxNewTokens: 10, stop: ["</s>"], table: [5: "Hi", 6: "</", 7: "s>"])
        _ = session.start(now: 0, chooseReplica: cluster.choose)
        _ = both(&session, step: 0, token: 5, now: 1)
        let held = both(&session, step: 1, token: 6, now: 2)
        #expect(emitted(held).map(\.text) == [""])
        let out = both(&session, step: 2, token: 7, now: 3)
        #expect(done(out)?.finish == .stopString)
        #expect(done(out)?.text == "Hi")
        #expect(closes(out) == ["c1", "f1"])
    }

    @Test("context full on a step ends the generation with that reason")
    func contextFullOnStep() throws {
        var session = try makeSession(maxNewTokens: 10)
        _ = session.start(now: 0, chooseReplica: cluster.choose)
        _ = both(&session, step: 0, token: 5, now: 1)
        let out = session.onError(ErrorReply(session: 9, code: .contextFull, text: ""), from: "f1", now: 2,
                                  chooseReplica: cluster.choose)
        #expect(done(out)?.finish == .contextFull)
        #expect(done(out)?.tokens == 1)
    }

    @Test("every waiting expert has a deadline until the session closes")
    func alwaysADeadline() throws {
        var session = try makeSession()
        _ = session.start(now: 0, chooseReplica: cluster.choose)
        #expect(session.nextDeadline == Deadline(nanoseconds: 1000 * ms))
        _ = both(&session, step: 0, token: 5, now: 1 * ms)
        #expect(session.nextDeadline == Deadline(nanoseconds: 101 * ms))
    }
}
