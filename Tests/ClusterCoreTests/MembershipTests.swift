import Decoding
import Testing
import Wire

@testable import ClusterCore

func hello(
    _ id: String, expert: String = "concise", version: UInt8 = WireProtocol.version, vocabSize: UInt32 = 100,
    vocabHash: UInt64 = 0xABC, capacity: UInt32 = 4
) -> Hello {
    Hello(
        protocolVersion: version, workerID: id, expert: expert, modelFingerprint: "fp", vocabSize: vocabSize,
        vocabHash: vocabHash, eosTokenIDs: [0], contextLimit: 2048, sessionCapacity: capacity
    )
}

func isWelcome(_ outcome: HelloOutcome) -> Bool {
    if case .welcome = outcome { true } else { false }
}

@Suite struct MembershipTests {
    let second: UInt64 = 1_000_000_000

    @Test("a worker is welcomed with the heartbeat interval")
    func welcome() {
        var members = Membership(heartbeatIntervalMs: 1000)
        #expect(members.onHello(hello("w1"), now: 0) == .welcome(Welcome(heartbeatIntervalMs: 1000), replaced: nil))
        #expect(members.workers["w1"]?.expert == "concise")
    }

    @Test(
        "a worker with another protocol version or vocabulary than the first one is rejected",
        arguments: [hello("w2", version: WireProtocol.version + 1), hello("w2", vocabSize: 101), hello("w2", vocabHash: 0xABD)]
    )
    func rejected(candidate: Hello) {
        var members = Membership(heartbeatIntervalMs: 1000)
        #expect(isWelcome(members.onHello(hello("w1"), now: 0)))
        guard case let .reject(reject) = members.onHello(candidate, now: 1) else {
            Issue.record("expected a rejection")
            return
        }
        #expect(!reject.reason.isEmpty)
        #expect(members.workers["w2"] == nil)
    }

    @Test("an expert the config does not list is rejected")
    func unknownExpert() {
        var members = Membership(heartbeatIntervalMs: 1000, expectedReplicas: ["concise": 1])
        #expect(!isWelcome(members.onHello(hello("w1", expert: "verbose"), now: 0)))
        #expect(isWelcome(members.onHello(hello("w1", expert: "concise"), now: 0)))
    }

    @Test("a hello from a registered id replaces the old registration and reports it")
    func duplicateReplaces() {
        var members = Membership(heartbeatIntervalMs: 1000)
        _ = members.onHello(hello("w1"), now: 0)
        members.assign("w1")
        guard case let .welcome(_, replaced) = members.onHello(hello("w1", capacity: 8), now: 5) else {
            Issue.record("expected a welcome")
            return
        }
        #expect(replaced?.load == 1)
        #expect(members.workers["w1"]?.sessionCapacity == 8)
        #expect(members.workers["w1"]?.load == 0)
    }

    @Test("a worker is dead after 3 missed heartbeat intervals, not before")
    func deadAfterThreeIntervals() {
        var members = Membership(heartbeatIntervalMs: 1000)
        _ = members.onHello(hello("w1"), now: 0)
        members.onMessage(from: "w1", now: 2 * second)
        let early = members.onTick(now: 5 * second - 1)
        #expect(!early.contains { if case .dead = $0 { true } else { false } })
        #expect(members.workers["w1"] != nil)
        let late = members.onTick(now: 5 * second)
        #expect(late.map { if case let .dead(info) = $0 { info.id } else { "" } } == ["w1"])
        #expect(members.workers["w1"] == nil)
        let known = members.onMessage(from: "w1", now: 6 * second)
        #expect(!known)
    }

    @Test("a pause of the coordinator itself is not counted as the workers' silence")
    func ownPauseIsNotSilence() {
        var members = Membership(heartbeatIntervalMs: 1000)
        _ = members.onHello(hello("w1"), now: 0)
        members.onMessage(from: "w1", now: 2 * second)
        _ = members.onTick(now: 2 * second)
        // The coordinator was stopped for 8 s: its next tick comes at 10 s, with the worker's messages unread.
        let resumed = members.onTick(now: 10 * second)
        #expect(!resumed.contains { if case .dead = $0 { true } else { false } })
        #expect(members.workers["w1"] != nil)
        // Silence after the pause still counts: 3 intervals of it, ticking regularly, and the worker is dead.
        var dead = false
        for t in 11...14 {
            dead = dead || members.onTick(now: UInt64(t) * second).contains { if case .dead = $0 { true } else { false } }
        }
        #expect(dead)
    }

    @Test("a heartbeat is due to a worker sent nothing for one interval")
    func heartbeatDue() {
        var members = Membership(heartbeatIntervalMs: 1000)
        _ = members.onHello(hello("w1"), now: 0)
        members.onMessage(from: "w1", now: second)
        let quiet = members.onTick(now: second - 1)
        #expect(quiet.isEmpty)
        let due = members.onTick(now: second)
        #expect(due == [.sendHeartbeat("w1")])
        members.onSent(to: "w1", now: second)
        let after = members.onTick(now: second + 1)
        #expect(after.isEmpty)
        #expect(members.nextTick == 2 * second)
    }

    @Test("the replica chosen is the least loaded live worker of the expert, not excluded, not full")
    func replicaChoice() {
        var members = Membership(heartbeatIntervalMs: 1000)
        _ = members.onHello(hello("a", capacity: 1), now: 0)
        _ = members.onHello(hello("b"), now: 0)
        _ = members.onHello(hello("c"), now: 0)
        _ = members.onHello(hello("f", expert: "friendly"), now: 0)
        #expect(members.chooseReplica(expert: "concise")?.id == "a")
        members.assign("a")
        members.assign("b")
        #expect(members.chooseReplica(expert: "concise")?.id == "c")
        #expect(members.chooseReplica(expert: "concise", excluding: ["c"])?.id == "b")
        #expect(members.chooseReplica(expert: "concise", excluding: ["b", "c"]) == nil)  // a is full
        members.release("a")
        #expect(members.chooseReplica(expert: "concise", excluding: ["b", "c"])?.id == "a")
        #expect(members.chooseReplica(expert: "elementary") == nil)
    }

    @Test("a draining worker keeps its place but gets no new sessions")
    func draining() {
        var members = Membership(heartbeatIntervalMs: 1000, expectedReplicas: ["concise": 2])
        _ = members.onHello(hello("a"), now: 0)
        _ = members.onHello(hello("b"), now: 0)
        members.onGoodbye(from: "a", now: 1)
        #expect(members.workers["a"]?.state == .draining)
        #expect(members.chooseReplica(expert: "concise")?.id == "b")
        #expect(members.missingReplicas.map(\.missing) == [1])
        members.onGoodbye(from: "b", now: 1)
        #expect(members.chooseReplica(expert: "concise") == nil)
        #expect(members.availableExperts.isEmpty)
    }
}
