import Testing
import Wire

@Suite struct StatusCodecTests {
    static let reply = StatusReply(request: 7, status: ClusterStatus(
        draining: false, sessionsRunning: 2, sessionsQueued: 0,
        experts: [ExpertStatus(name: "c", replicas: 1, workers: [
            WorkerStatus(id: "w", sessions: 2, capacity: 8, draining: true, registrations: 3),
        ])]
    ))

    @Test("a status frame is the request id; a reply lays out its fields in declaration order")
    func layout() {
        #expect(Message.status(StatusRequest(request: 9)).encoded() == header(.status) + le(UInt64(9)))
        var expected = header(.statusReply) + le(UInt64(7)) + [WireProtocol.version, 0] + le(UInt32(2)) + le(UInt32(0))
            + le(UInt64(0))
        expected += le(UInt32(1)) + le(UInt32(1)) + [0x63] + le(UInt32(1))
        expected += le(UInt32(1)) + le(UInt32(1)) + [0x77] + le(UInt32(2)) + le(UInt32(8)) + [1] + le(UInt32(3))
        #expect(Message.statusReply(Self.reply).encoded() == expected)
    }

    @Test("forged expert and worker counts are rejected by their limits")
    func forgedCounts() {
        let experts = header(.statusReply) + le(UInt64(1)) + [WireProtocol.version, 0] + le(UInt32(0)) + le(UInt32(0))
            + le(UInt64(0)) + le(UInt32(WireLimits.maxExperts + 1))
        #expect(decodeError(experts) == .countOverLimit(
            field: "statusReply.experts", count: WireLimits.maxExperts + 1, limit: WireLimits.maxExperts
        ))
        let workers = header(.statusReply) + le(UInt64(1)) + [WireProtocol.version, 0] + le(UInt32(0)) + le(UInt32(0))
            + le(UInt64(0)) + le(UInt32(1)) + le(UInt32(0)) + le(UInt32(1)) + le(UInt32.max)
        #expect(decodeError(workers) == .countOverLimit(
            field: "statusReply.experts.workers", count: Int(UInt32.max), limit: WireLimits.maxStatusWorkers
        ))
        // 100 experts need at least 1200 bytes; the frame has 4 after the count.
        let short = header(.statusReply) + le(UInt64(1)) + [WireProtocol.version, 0] + le(UInt32(0)) + le(UInt32(0))
            + le(UInt64(0)) + le(UInt32(100)) + [0, 0, 0, 0]
        #expect(decodeError(short) == .truncated(field: "statusReply.experts", offset: 28))
    }

    @Test("a draining byte other than 0 or 1 is invalid, for the coordinator and for a worker")
    func invalidBools() {
        var coordinator = Message.statusReply(Self.reply).encoded()
        coordinator[11] = 2
        guard case .invalidValue(let field, _) = decodeError(coordinator) else {
            Issue.record("a draining byte of 2 decoded")
            return
        }
        #expect(field == "statusReply.draining")

        var worker = Message.statusReply(Self.reply).encoded()
        worker[worker.count - 5] = 2
        guard case .invalidValue(let workerField, _) = decodeError(worker) else {
            Issue.record("a worker's draining byte of 2 decoded")
            return
        }
        #expect(workerField == "statusReply.experts.workers.draining")
    }

    @Test("a worker id that is not UTF-8 is rejected with its field, and bytes after the reply are trailing")
    func invalidText() {
        var bytes = Message.statusReply(Self.reply).encoded()
        let idOffset = bytes.count - 14  // the one byte of the worker's id
        #expect(bytes[idOffset] == 0x77)
        bytes[idOffset] = 0xFF
        #expect(decodeError(bytes) == .invalidUTF8(field: "statusReply.experts.workers.id"))
        #expect(decodeError(Message.status(StatusRequest(request: 1)).encoded() + [0]) == .trailingBytes(count: 1))
    }

    @Test("readiness: every expert has its wanted replicas live, and the coordinator does not drain")
    func readiness() {
        var status = Self.reply.status
        #expect(status.missing == [MissingReplicas(expert: "c", wanted: 1, live: 0)])
        #expect(!status.ready)
        #expect(status.notReadyReason?.contains("c (0 of 1 live)") == true)
        status.experts[0].workers[0].draining = false
        #expect(status.ready)
        #expect(status.notReadyReason == nil)
        status.draining = true
        #expect(!status.ready)
        #expect(status.notReadyReason == "the coordinator is draining")
    }
}
