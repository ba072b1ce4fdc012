import Wire

/// Messages of every kind with edge values: empty and maximal strings and arrays, extreme integers,
/// non-ASCII text, the largest top-k, log-probabilities of −∞ and −0.
enum Samples {
    static let unicode = "héllo, 世界 🌍\u{0}\u{FFFD}\u{10FFFF}"

    /// A top-k list of `count` entries, descending, with −∞ in the tail when `count` > 2.
    static func topK(_ count: Int) -> (ids: [UInt32], logProbs: [Float]) {
        let ids = (0..<count).map { UInt32(truncatingIfNeeded: $0 &* 7919) }
        var logProbs = (0..<count).map { -Float($0) * 0.25 }
        if count > 2 { logProbs[count - 1] = -.infinity }
        return (ids, logProbs)
    }

    /// Small messages of every kind (a few of each); cheap to encode, good seeds for mutation.
    static let small: [Message] = {
        let (ids8, lp8) = topK(8)
        return [
            .hello(Hello(
                workerID: "w-1", expert: "concise", modelFingerprint: "sha256:ab12", vocabSize: 49_152,
                vocabHash: 0xDEAD_BEEF_0123_4567, eosTokenIDs: [2, 0], contextLimit: 2048, sessionCapacity: 16
            )),
            .hello(Hello(
                protocolVersion: 0, workerID: "", expert: "", modelFingerprint: "", vocabSize: 0, vocabHash: 0,
                eosTokenIDs: [], contextLimit: 0, sessionCapacity: 0
            )),
            .welcome(Welcome(heartbeatIntervalMs: 1000)),
            .reject(Reject(reason: "vocabulary hash differs")),
            .reject(Reject(reason: "")),
            .heartbeat,
            .goodbye(Goodbye(reason: "SIGTERM")),
            .open(Open(
                session: 42, request: .chat([ChatTurn(role: "user", content: "Hi " + unicode)]), topK: 64,
                maxNewTokens: 128
            )),
            .open(Open(session: 0, request: .chat([]), topK: 0, maxNewTokens: 0)),
            .open(Open(session: 7, request: .raw("The capital of France is"), topK: 8, maxNewTokens: 4)),
            .step(Step(session: 42, step: 1, token: 1234)),
            .replay(Replay(
                session: 42,
                request: .chat([ChatTurn(role: "system", content: ""), ChatTurn(role: "user", content: "x")]),
                topK: 64, maxNewTokens: 128, tokens: [1, 2, 3, 4, 5]
            )),
            .replay(Replay(session: 1, request: .raw(""), topK: 1, maxNewTokens: 1, tokens: [])),
            .dist(Dist(
                session: 42, step: 3, ids: ids8, logProbs: lp8, tailMass: 0.125,
                timing: WorkerTiming(queueMicros: 12, computeMicros: 3456, batchSize: 4)
            )),
            .dist(Dist(session: 0, step: 0, ids: [], logProbs: [], tailMass: 1)),
            .close(Close(session: 42)),
            .error(ErrorReply(session: 42, code: .desync, text: "expected step 4, got 6")),
            .generate(Generate(
                request: 9, prompt: "Tell me about " + unicode, preference: "concise, friendly", maxNewTokens: 64,
                sampling: SamplingRequest(temperature: 0.7, topP: 0.9, topK: 40, seed: 1),
                merge: .logit, stop: ["\n\n", "</s>"], trace: true
            )),
            .generate(Generate(
                request: 10, prompt: "p", preference: "", maxNewTokens: 0, sampling: SamplingRequest(temperature: 1)
            )),
            .generate(Generate(
                request: 11, prompt: "p", preference: "", maxNewTokens: 0, sampling: SamplingRequest(topK: 5, seed: 3),
                merge: .probability
            )),
            .generate(Generate(request: 0, prompt: "", preference: "", maxNewTokens: 0)),
            .generate(Generate(
                request: 12,
                input: .chat([
                    ChatTurn(role: "system", content: "Be brief."), ChatTurn(role: "user", content: "Hi " + unicode),
                    ChatTurn(role: "assistant", content: "Hello."), ChatTurn(role: "user", content: "Why?"),
                ]),
                preference: "concise", maxNewTokens: 8, stop: ["."]
            )),
            .generate(Generate(request: 13, input: .raw("Once upon a time"), preference: "", maxNewTokens: 4)),
            .token(TokenEvent(
                request: 9, step: 2, token: 77, text: "wor",
                experts: [
                    ExpertTrace(expert: "concise", weight: 0.75, ids: [1, 2], logProbs: [-0.1, -2.5], tailMass: 0.2),
                    ExpertTrace(expert: "friendly", weight: 0.25, ids: [], logProbs: []),
                ]
            )),
            .token(TokenEvent(request: 9, step: 3, token: 78, text: "")),
            .done(Done(
                request: 9, finish: .stopString, tokens: 12, text: "Paris " + unicode, lostExperts: ["humor"],
                failovers: 2, elapsedMicros: 987_654, promptTokens: 31,
                experts: [ExpertUsage(expert: "concise", meanWeight: 0.625, meanStepMicros: 1234), ExpertUsage(expert: "humor", meanWeight: 0)]
            )),
            .done(Done(request: 0, finish: .endOfSequence, tokens: 0, text: "")),
            .status(StatusRequest(request: 5)),
            .setPreference(SetPreference(request: 3, preference: "concise")),
            .setPreference(SetPreference(request: 0, preference: "")),
            .preferenceSet(PreferenceSet(request: 3, fromToken: 12)),
            .generate(Generate(
                request: 11, input: .raw("x"), preference: "friendly", maxNewTokens: 9,
                schedule: [PreferenceChange(fromToken: 0, preference: "concise"),
                           PreferenceChange(fromToken: 4, preference: unicode)],
                resume: [1, 2, 3]
            )),
            .error(ErrorReply(session: 5, code: .overloaded, text: "queue full")),
            .statusReply(StatusReply(request: 5, status: ClusterStatus(
                draining: false, sessionsRunning: 3, sessionsQueued: 1,
                experts: [
                    ExpertStatus(name: "concise", replicas: 2, workers: [
                        WorkerStatus(id: "concise-1", sessions: 2, capacity: 8, draining: false, registrations: 1),
                        WorkerStatus(id: "concise-2", sessions: 1, capacity: 8, draining: true, registrations: 3),
                    ]),
                    ExpertStatus(name: "friendly " + unicode, replicas: 1, workers: []),
                ]
            ))),
            .statusReply(StatusReply(request: 0, status: ClusterStatus(
                protocolVersion: 0, draining: true, sessionsRunning: 0, experts: []
            ))),
        ]
    }()

    /// Messages at the edges of the limits and of the integer ranges.
    static let extreme: [Message] = {
        let (ids, logProbs) = topK(WireLimits.maxTopK)
        let longText = String(repeating: "é", count: WireLimits.maxStringBytes / 2)
        return [
            .hello(Hello(
                protocolVersion: .max, workerID: longText, expert: unicode, modelFingerprint: "f", vocabSize: .max,
                vocabHash: .max, eosTokenIDs: Array(repeating: .max, count: WireLimits.maxEOSTokens),
                contextLimit: .max, sessionCapacity: .max
            )),
            .welcome(Welcome(heartbeatIntervalMs: .max)),
            .open(Open(
                session: .max,
                request: .chat((0..<WireLimits.maxChatTurns).map { ChatTurn(role: "user", content: "\($0)") }),
                topK: .max, maxNewTokens: .max
            )),
            .step(Step(session: .max, step: .max, token: .max)),
            .replay(Replay(
                session: .max, request: .raw(longText), topK: .max, maxNewTokens: .max,
                tokens: (0..<WireLimits.maxReplayTokens).map { UInt32(truncatingIfNeeded: $0) }
            )),
            .dist(Dist(
                session: .max, step: .max, ids: ids, logProbs: logProbs, tailMass: 0,
                timing: WorkerTiming(queueMicros: .max, computeMicros: .max, batchSize: .max)
            )),
            .dist(Dist(session: 1, step: 1, ids: [5], logProbs: [-0.0], tailMass: -0.0)),
            .dist(Dist(
                session: 1, step: 1, ids: [5, 6], logProbs: [.greatestFiniteMagnitude, -.infinity], tailMass: 1
            )),
            .error(ErrorReply(session: .max, code: .timeout, text: unicode)),
            .generate(Generate(
                request: .max, prompt: longText, preference: unicode, maxNewTokens: .max,
                sampling: SamplingRequest(
                    temperature: .infinity, topP: -.leastNonzeroMagnitude, topK: .max, seed: .max
                ),
                merge: .probability, stop: Array(repeating: unicode, count: WireLimits.maxStopStrings), trace: false
            )),
            .token(TokenEvent(
                request: .max, step: .max, token: .max, text: unicode,
                experts: (0..<WireLimits.maxExperts).map {
                    ExpertTrace(expert: "e\($0)", weight: 1 / Float($0 + 1), ids: [UInt32($0)], logProbs: [-1])
                }
            )),
            .done(Done(
                request: .max, finish: .contextFull, tokens: .max, text: longText,
                lostExperts: Array(repeating: "x", count: WireLimits.maxExperts), failovers: .max,
                elapsedMicros: .max
            )),
            .status(StatusRequest(request: .max)),
            .setPreference(SetPreference(request: .max, preference: longText)),
            .preferenceSet(PreferenceSet(request: .max, fromToken: .max)),
            .statusReply(StatusReply(request: .max, status: ClusterStatus(
                protocolVersion: .max, draining: true, sessionsRunning: .max, sessionsQueued: .max,
                experts: (0..<WireLimits.maxExperts).map { index in
                    ExpertStatus(
                        name: "e\(index)", replicas: .max,
                        workers: index == 0
                            ? (0..<WireLimits.maxStatusWorkers).map {
                                WorkerStatus(id: "w\($0)", sessions: .max, capacity: .max, draining: $0 % 2 == 0,
                                             registrations: .max)
                            }
                            : []
                    )
                }
            ))),
        ]
    }()
}

/// SplitMix64: a small deterministic generator, so a failing random input can be reproduced.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// The error decoding `bytes` throws, or nil if it decodes.
func decodeError(_ bytes: [UInt8]) -> WireError? {
    do throws(WireError) {
        _ = try WireCodec.decode(bytes)
        return nil
    } catch {
        return error
    }
}

/// Little-endian bytes of an integer, for hand-built frames.
func le<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
    withUnsafeBytes(of: value.littleEndian) { Array($0) }
}

/// A frame header: version and kind.
func header(_ kind: Message.Kind) -> [UInt8] { [WireProtocol.version, kind.rawValue] }
