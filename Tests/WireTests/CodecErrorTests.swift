import Testing
import Wire

@Suite struct CodecErrorTests {
    @Test("every proper prefix of a valid frame is reported as empty or truncated", arguments: Message.Kind.allCases)
    func truncation(kind: Message.Kind) {
        for message in Samples.small.filter({ $0.kind == kind }) {
            let bytes = message.encoded()
            #expect(decodeError([]) == .empty)
            for length in 1..<bytes.count {
                let error = decodeError(Array(bytes.prefix(length)))
                guard case .truncated = error else {
                    Issue.record("prefix of \(length) of \(bytes.count) bytes of \(kind): \(String(describing: error))")
                    continue
                }
            }
        }
    }

    @Test("prefixes of the largest frames are reported as truncated")
    func truncationOfLargeFrames() {
        for message in Samples.extreme {
            let bytes = message.encoded()
            let lengths = Array(stride(from: 1, to: bytes.count, by: max(1, bytes.count / 300)))
                + Array(max(1, bytes.count - 40)..<bytes.count)
            for length in lengths {
                let error = bytes.withUnsafeBytes { buffer in
                    decodeError(Array(UnsafeRawBufferPointer(rebasing: buffer[0..<length])))
                }
                guard case .truncated = error else {
                    Issue.record("prefix of \(length) bytes of \(message.kind): \(String(describing: error))")
                    return
                }
            }
        }
    }

    @Test("a frame with any byte changed decodes to a message that re-encodes to it, or throws",
          arguments: Message.Kind.allCases)
    func byteFlips(kind: Message.Kind) {
        var decodedCount = 0
        for message in Samples.small.filter({ $0.kind == kind }) {
            let bytes = message.encoded()
            for index in bytes.indices {
                for mask: UInt8 in [0x01, 0x02, 0x10, 0x80, 0xFF] {
                    var mutated = bytes
                    mutated[index] ^= mask
                    do throws(WireError) {
                        let decoded = try WireCodec.decode(mutated)
                        decodedCount += 1
                        #expect(decoded.encoded() == mutated, "byte \(index) ^ \(mask) of \(kind)")
                    } catch {
                        #expect(!error.description.isEmpty)
                    }
                }
            }
        }
        // Flipping an integer field's bits must still decode: the check above ran on real messages.
        if kind != .heartbeat { #expect(decodedCount > 0) }
    }

    @Test("an unknown version byte is rejected before anything else")
    func unknownVersion() {
        var bytes = Message.step(Step(session: 1, step: 1, token: 1)).encoded()
        bytes[0] = WireProtocol.version &+ 1
        #expect(decodeError(bytes) == .unknownVersion(WireProtocol.version &+ 1))
        #expect(decodeError([0]) == .unknownVersion(0))
    }

    @Test("an unknown kind byte is rejected", arguments: [UInt8(0), 6, 9, 16, 23, 255])
    func unknownKind(kind: UInt8) {
        #expect(decodeError([WireProtocol.version, kind]) == .unknownKind(kind))
        #expect(decodeError([WireProtocol.version, kind, 1, 2, 3]) == .unknownKind(kind))
    }

    @Test("a version byte alone is truncated at the kind")
    func versionOnly() {
        #expect(decodeError([WireProtocol.version]) == .truncated(field: "kind", offset: 1))
    }

    @Test("bytes after the last field are rejected, with their count")
    func trailingBytes() {
        #expect(decodeError(Message.heartbeat.encoded() + [0]) == .trailingBytes(count: 1))
        for message in Samples.small {
            #expect(decodeError(message.encoded() + [0, 0, 0]) == .trailingBytes(count: 3))
        }
    }

    @Test("a string that is not UTF-8 is rejected with its field")
    func invalidUTF8() {
        for bad: [UInt8] in [[0xC3, 0x28], [0xFF], [0xE2, 0x82], [0xED, 0xA0, 0x80], [0xC0, 0xAF]] {
            let frame = header(.reject) + le(UInt32(bad.count)) + bad
            #expect(decodeError(frame) == .invalidUTF8(field: "reject.reason"))
        }
        let chat = header(.open) + le(UInt64(1)) + [0] + le(UInt32(1)) + le(UInt32(1)) + [0x75]
            + le(UInt32(1)) + [0x80] + le(UInt16(1)) + le(UInt32(1))
        #expect(decodeError(chat) == .invalidUTF8(field: "request.chat.content"))
    }

    @Test("forged huge counts are rejected by the limit, without allocating")
    func forgedCounts() {
        let tokens = header(.replay) + le(UInt64(1)) + [1] + le(UInt32(0)) + le(UInt16(1)) + le(UInt32(1))
            + le(UInt32.max)
        #expect(decodeError(tokens)
            == .countOverLimit(field: "replay.tokens", count: Int(UInt32.max), limit: WireLimits.maxReplayTokens))

        let ids = header(.dist) + le(UInt64(1)) + le(UInt32(0)) + le(UInt32(WireLimits.maxTopK + 1))
        #expect(decodeError(ids)
            == .countOverLimit(field: "dist.ids", count: WireLimits.maxTopK + 1, limit: WireLimits.maxTopK))

        let string = header(.goodbye) + le(UInt32(0x7FFF_FFFF)) + [0x61]
        #expect(decodeError(string)
            == .countOverLimit(field: "goodbye.reason", count: 0x7FFF_FFFF, limit: WireLimits.maxStringBytes))

        let turns = header(.open) + le(UInt64(1)) + [0] + le(UInt32(UInt32.max))
        #expect(decodeError(turns)
            == .countOverLimit(field: "request.chat", count: Int(UInt32.max), limit: WireLimits.maxChatTurns))

        let experts = header(.token) + le(UInt64(1)) + le(UInt32(1)) + le(UInt32(1)) + le(UInt32(0))
            + le(UInt32(1000))
        #expect(decodeError(experts)
            == .countOverLimit(field: "token.experts", count: 1000, limit: WireLimits.maxExperts))
    }

    @Test("counts within the limit but beyond the bytes left are truncated at the count")
    func countsBeyondFrame() {
        // 4096 chat turns need at least 32 KiB; the frame has 8 bytes after the count.
        let turns = header(.open) + le(UInt64(1)) + [0] + le(UInt32(4096)) + [UInt8](repeating: 0, count: 8)
        #expect(decodeError(turns) == .truncated(field: "request.chat", offset: 11))
        let tokens = header(.replay) + le(UInt64(1)) + [1] + le(UInt32(0)) + le(UInt16(1)) + le(UInt32(1))
            + le(UInt32(1000)) + [UInt8](repeating: 0, count: 3996)
        #expect(decodeError(tokens) == .truncated(field: "replay.tokens", offset: 21))
        let string = header(.reject) + le(UInt32(10)) + [0x61, 0x62]
        #expect(decodeError(string) == .truncated(field: "reject.reason", offset: 2))
    }

    @Test("a frame over the size limit is rejected before it is read")
    func oversized() {
        let bytes = [UInt8](repeating: 0, count: WireLimits.maxFrameBytes + 1)
        #expect(decodeError(bytes) == .oversized(bytes: WireLimits.maxFrameBytes + 1, limit: WireLimits.maxFrameBytes))
    }

    @Test("enum tags that name no case are rejected with the field and the tag")
    func unknownTags() {
        let error0 = header(.error) + le(UInt64(1)) + [0] + le(UInt32(0))
        #expect(decodeError(error0) == .unknownTag(field: "error.code", tag: 0))
        let error11 = header(.error) + le(UInt64(1)) + [11] + le(UInt32(0))
        #expect(decodeError(error11) == .unknownTag(field: "error.code", tag: 11))
        let done = header(.done) + le(UInt64(1)) + [5]
        #expect(decodeError(done) == .unknownTag(field: "done.finish", tag: 5))
        let request = header(.open) + le(UInt64(1)) + [2]
        #expect(decodeError(request) == .unknownTag(field: "open.request", tag: 2))
        let replay = header(.replay) + le(UInt64(1)) + [7]
        #expect(decodeError(replay) == .unknownTag(field: "replay.request", tag: 7))

        var generate = Message.generate(Generate(request: 1, prompt: "", preference: "", maxNewTokens: 1,
                                                 merge: .probability)).encoded()
        let mergeAt = generate.count - 14  // merge, stop count (4 bytes), trace, schedule and resume counts (8)
        generate[mergeAt] = 2
        #expect(decodeError(generate) == .unknownTag(field: "generate.merge", tag: 2))
    }

    @Test("a bool byte other than 0 or 1 is invalid")
    func invalidBool() {
        var generate = Message.generate(Generate(request: 1, prompt: "", preference: "", maxNewTokens: 1)).encoded()
        generate[generate.count - 9] = 2  // trace, before the schedule and resume counts
        guard case .invalidValue(let field, _) = decodeError(generate) else {
            Issue.record("a bool byte of 2 decoded")
            return
        }
        #expect(field == "generate.trace")

        var absent = Message.generate(Generate(request: 1, prompt: "", preference: "", maxNewTokens: 1)).encoded()
        absent[absent.count - 18] = 2  // the temperature's presence byte: 3 presence bytes, merge's, 4 + 1 + 8 follow
        guard case .invalidValue(let presence, _) = decodeError(absent) else {
            Issue.record("a presence byte of 2 decoded")
            return
        }
        #expect(presence == "generate.sampling.temperature")
    }

    @Test("structurally invalid top-k lists and tail masses are rejected")
    func invalidDist() {
        func distError(ids: [UInt32], logProbs: [Float], tailMass: Float) -> String? {
            let bytes = Message.dist(Dist(session: 1, step: 1, ids: ids, logProbs: logProbs, tailMass: tailMass))
                .encoded()
            guard case .invalidValue(let field, _) = decodeError(bytes) else { return nil }
            return field
        }
        #expect(distError(ids: [1, 2], logProbs: [-1], tailMass: 0) == "dist.logProbs")
        #expect(distError(ids: [], logProbs: [-1], tailMass: 0) == "dist.logProbs")
        #expect(distError(ids: [1, 2], logProbs: [-1, .nan], tailMass: 0) == "dist.logProbs")
        #expect(distError(ids: [1], logProbs: [.infinity], tailMass: 0) == "dist.logProbs")
        #expect(distError(ids: [1], logProbs: [-1], tailMass: 1.0001) == "dist.tailMass")
        #expect(distError(ids: [1], logProbs: [-1], tailMass: -0.0001) == "dist.tailMass")
        #expect(distError(ids: [1], logProbs: [-1], tailMass: .nan) == "dist.tailMass")
        #expect(distError(ids: [1], logProbs: [-.infinity], tailMass: 1) == nil)

        let token = Message.token(TokenEvent(request: 1, step: 1, token: 1, text: "", experts: [
            ExpertTrace(expert: "a", weight: 1, ids: [1], logProbs: [.nan]),
        ])).encoded()
        guard case .invalidValue(let field, _) = decodeError(token) else {
            Issue.record("a NaN log-prob in a trace decoded")
            return
        }
        #expect(field == "token.experts.logProbs")

        let tail = Message.token(TokenEvent(request: 1, step: 1, token: 1, text: "", experts: [
            ExpertTrace(expert: "a", weight: 1, ids: [1], logProbs: [-1], tailMass: 1.5),
        ])).encoded()
        guard case .invalidValue(let tailField, _) = decodeError(tail) else {
            Issue.record("a trace tail mass above 1 decoded")
            return
        }
        #expect(tailField == "token.experts.tailMass")
    }

    @Test("every error's description names the field or value at fault")
    func descriptions() {
        let cases: [(WireError, String)] = [
            (.empty, "empty"),
            (.truncated(field: "dist.ids", offset: 14), "dist.ids"),
            (.trailingBytes(count: 3), "3"),
            (.unknownVersion(7), "7"),
            (.unknownKind(99), "99"),
            (.unknownTag(field: "done.finish", tag: 9), "done.finish"),
            (.invalidUTF8(field: "reject.reason"), "reject.reason"),
            (.oversized(bytes: 20_000_000, limit: WireLimits.maxFrameBytes), "20000000"),
            (.countOverLimit(field: "replay.tokens", count: 5, limit: 4), "replay.tokens"),
            (.invalidValue(field: "dist.tailMass", reason: "1.5 is not a probability"), "1.5 is not a probability"),
        ]
        for (error, fragment) in cases {
            #expect(error.description.contains(fragment), "\(error)")
        }
    }
}
