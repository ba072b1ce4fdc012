import Testing
import Wire

@Suite struct CodecRoundTripTests {
    @Test("every message of each kind decodes to itself, through every encode and decode entry point",
          arguments: Message.Kind.allCases)
    func roundTrip(kind: Message.Kind) throws {
        let messages = (Samples.small + Samples.extreme).filter { $0.kind == kind }
        #expect(!messages.isEmpty)
        var reused: [UInt8] = Array(repeating: 0xAA, count: 3)
        for message in messages {
            let bytes = WireCodec.encode(message)
            #expect(bytes.count == WireCodec.encodedSize(of: message))
            #expect(bytes.count <= WireLimits.maxFrameBytes)
            #expect(Array(bytes.prefix(2)) == [WireProtocol.version, kind.rawValue])
            #expect(try WireCodec.decode(bytes) == message)
            #expect(try Message(decoding: bytes) == message)
            #expect(message.encoded() == bytes)

            WireCodec.encode(message, into: &reused)
            #expect(reused == bytes)

            var raw = [UInt8](repeating: 0xEE, count: bytes.count + 5)
            let written = raw.withUnsafeMutableBytes { WireCodec.encode(message, into: $0) }
            #expect(written == bytes.count)
            #expect(Array(raw.prefix(written)) == bytes)

            let inPlace = bytes.withUnsafeBytes { buffer in
                (
                    Result { () throws(WireError) in try WireCodec.decode(buffer) },
                    Result { () throws(WireError) in try Message(decoding: buffer) },
                    Result { () throws(WireError) in try WireCodec.kind(of: buffer) }
                )
            }
            #expect(try inPlace.0.get() == message)
            #expect(try inPlace.1.get() == message)
            #expect(try inPlace.2.get() == kind)
        }
    }

    @Test("a reused buffer shrinks and grows to exactly each frame")
    func reusedBuffer() throws {
        var buffer: [UInt8] = []
        for message in Samples.small + Samples.small.reversed() {
            WireCodec.encode(message, into: &buffer)
            #expect(buffer == WireCodec.encode(message))
            #expect(try WireCodec.decode(buffer) == message)
        }
    }

    @Test("a step frame is version, kind, then session, step and token little-endian")
    func stepLayout() {
        let message = Message.step(Step(session: 0x0102_0304_0506_0708, step: 9, token: 0xA0B0_C0D0))
        let expected = header(.step) + le(UInt64(0x0102_0304_0506_0708)) + le(UInt32(9)) + le(UInt32(0xA0B0_C0D0))
        #expect(message.encoded() == expected)
    }

    @Test("a dist frame lays out counts, ids, log-prob bits, tail mass and timing in declaration order")
    func distLayout() {
        let dist = Dist(
            session: 5, step: 2, ids: [7, 8], logProbs: [-0.5, -.infinity], tailMass: 0.25,
            timing: WorkerTiming(queueMicros: 3, computeMicros: 4, batchSize: 6)
        )
        var expected = header(.dist) + le(UInt64(5)) + le(UInt32(2))
        expected += le(UInt32(2)) + le(UInt32(7)) + le(UInt32(8))
        expected += le(UInt32(2)) + le((-0.5 as Float).bitPattern) + le((-Float.infinity).bitPattern)
        expected += le((0.25 as Float).bitPattern) + le(UInt32(3)) + le(UInt32(4)) + le(UInt16(6))
        #expect(Message.dist(dist).encoded() == expected)
    }

    @Test("strings are a byte length then UTF-8; requests, enums and bools are one byte")
    func variableLayout() {
        let open = Message.open(Open(session: 1, request: .raw("é"), topK: 3, maxNewTokens: 4))
        #expect(open.encoded() == header(.open) + le(UInt64(1)) + [1] + le(UInt32(2)) + [0xC3, 0xA9]
            + le(UInt16(3)) + le(UInt32(4)))
        let chat = Message.open(Open(session: 1, request: .chat([ChatTurn(role: "u", content: "")]), topK: 3,
                                     maxNewTokens: 4))
        #expect(chat.encoded() == header(.open) + le(UInt64(1)) + [0] + le(UInt32(1)) + le(UInt32(1)) + [0x75]
            + le(UInt32(0)) + le(UInt16(3)) + le(UInt32(4)))
        let error = Message.error(ErrorReply(session: 2, code: .capacity, text: ""))
        #expect(error.encoded() == header(.error) + le(UInt64(2)) + [3] + le(UInt32(0)))
        let generate = Message.generate(Generate(request: 1, prompt: "", preference: "", maxNewTokens: 0,
                                                 merge: .logit, stop: ["a"], trace: true))
        // Version 5's schedule and resume tokens: an empty list each.
        let noScheduleNoResume = le(UInt32(0)) + le(UInt32(0))
        // The input: a chat (tag 0) of one turn, role "user", content "".
        let userTurn: [UInt8] = [0] + le(UInt32(1)) + le(UInt32(4)) + Array("user".utf8) + le(UInt32(0))
        // Sampling fields absent (four presence bytes of 0), merge present (1, then the logit tag 1).
        #expect(generate.encoded() == header(.generate) + le(UInt64(1)) + userTurn + le(UInt32(0))
            + le(UInt32(0)) + [0, 0, 0, 0] + [1, 1] + le(UInt32(1)) + le(UInt32(1)) + [0x61, 1] + noScheduleNoResume)
        let seeded = Message.generate(Generate(request: 1, prompt: "", preference: "", maxNewTokens: 0,
                                               sampling: SamplingRequest(seed: 7)))
        #expect(seeded.encoded() == header(.generate) + le(UInt64(1)) + userTurn + le(UInt32(0))
            + le(UInt32(0)) + [0, 0, 0, 1] + le(UInt64(7)) + [0] + le(UInt32(0)) + [0] + noScheduleNoResume)
        let raw = Message.generate(Generate(request: 1, input: .raw("a"), preference: "", maxNewTokens: 0))
        #expect(raw.encoded() == header(.generate) + le(UInt64(1)) + [1] + le(UInt32(1)) + [0x61] + le(UInt32(0))
            + le(UInt32(0)) + [0, 0, 0, 0] + [0] + le(UInt32(0)) + [0] + noScheduleNoResume)
        let resumed = Message.generate(Generate(
            request: 1, input: .raw("a"), preference: "", maxNewTokens: 0,
            schedule: [PreferenceChange(fromToken: 3, preference: "b")], resume: [9]
        ))
        #expect(resumed.encoded() == header(.generate) + le(UInt64(1)) + [1] + le(UInt32(1)) + [0x61] + le(UInt32(0))
            + le(UInt32(0)) + [0, 0, 0, 0] + [0] + le(UInt32(0)) + [0]
            + le(UInt32(1)) + le(UInt32(3)) + le(UInt32(1)) + [0x62] + le(UInt32(1)) + le(UInt32(9)))
        #expect(Message.heartbeat.encoded() == [WireProtocol.version, Message.Kind.heartbeat.rawValue])
    }

    @Test("floats travel as their exact bits: NaN payloads, −0 and infinities survive a round trip")
    func floatBits() throws {
        let nan = Float(bitPattern: 0x7FC0_1234)
        let message = Message.generate(Generate(
            request: 1, prompt: "p", preference: "", maxNewTokens: 1,
            sampling: SamplingRequest(temperature: nan, topP: -0.0, topK: 0, seed: 0)
        ))
        let bytes = message.encoded()
        guard case .generate(let decoded) = try WireCodec.decode(bytes) else {
            Issue.record("decoded another kind")
            return
        }
        #expect(decoded.sampling.temperature?.bitPattern == 0x7FC0_1234)
        #expect(decoded.sampling.topP?.bitPattern == (-0.0 as Float).bitPattern)
        #expect(Message.generate(decoded).encoded() == bytes)
    }

    @Test("every enum case survives a round trip", arguments: ErrorCode.allCases)
    func errorCodes(code: ErrorCode) throws {
        let message = Message.error(ErrorReply(session: 3, code: code, text: "t"))
        #expect(try WireCodec.decode(message.encoded()) == message)
    }

    @Test("every finish reason and merge mode survives a round trip")
    func finishAndMerge() throws {
        for finish in FinishReason.allCases {
            let message = Message.done(Done(request: 1, finish: finish, tokens: 2, text: "t"))
            #expect(try WireCodec.decode(message.encoded()) == message)
        }
        for merge in MergeMode.allCases {
            let message = Message.generate(Generate(request: 1, prompt: "p", preference: "", maxNewTokens: 1,
                                                    merge: merge))
            #expect(try WireCodec.decode(message.encoded()) == message)
        }
    }

    @Test("merge modes go by their names, and only those")
    func mergeModeNames() {
        #expect(MergeMode.allCases.map(\.name) == ["probability", "logit"])
        for mode in MergeMode.allCases { #expect(MergeMode(name: mode.name) == mode) }
        for name in ["", "Probability", "sum", "logits"] { #expect(MergeMode(name: name) == nil) }
    }

    @Test("a generate's input is checked for what a coordinator can serve")
    func inputProblem() {
        func problem(_ input: Request) -> String? {
            Generate(request: 1, input: input, preference: "", maxNewTokens: 1).inputProblem
        }
        #expect(problem(.raw("x")) == nil)
        #expect(problem(.chat([ChatTurn(role: "system", content: "s"), ChatTurn(role: "user", content: "u")])) == nil)
        #expect(problem(.raw("")) != nil)
        #expect(problem(.chat([])) != nil)
        #expect(problem(.chat([ChatTurn(role: "tool", content: "u")]))?.contains("tool") == true)
        #expect(problem(.chat([ChatTurn(role: "system", content: "s")])) != nil)
        #expect(Generate(request: 1, input: .chat([ChatTurn(role: "user", content: "a"),
                                                   ChatTurn(role: "assistant", content: "b")]),
                         preference: "", maxNewTokens: 1).prompt == "a")
    }
}
