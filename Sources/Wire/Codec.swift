/// The binary codec of the mope protocol: one `Message` ↔ one frame of bytes. Pure; no I/O.
///
/// ## Frame layout
///
/// | bytes | content |
/// |---|---|
/// | 0 | `WireProtocol.version` |
/// | 1 | `Message.Kind` raw value |
/// | 2… | the message's fields in declaration order (see `Messages.swift`); nested structs inline |
///
/// Field encodings, all little-endian:
/// - `UInt8`/`UInt16`/`UInt32`/`UInt64`: fixed width as declared.
/// - `Float`: the 4 bytes of its IEEE-754 bit pattern (NaN payloads and −0 travel unchanged).
/// - `Bool`: one byte, 0 or 1; any other byte is `WireError.invalidValue`.
/// - `Optional<T>` (the sampling and merge fields of `generate`): a `Bool` presence byte, then `T` when it is 1.
/// - `String`: `UInt32` byte length, then that many bytes of UTF-8 (no terminator, no normalisation).
/// - arrays: `UInt32` element count, then the elements.
/// - enums: a tag byte. `ErrorCode`, `MergeMode` and `FinishReason` use their raw values;
///   `Request` uses 0 = `.chat` (followed by `[ChatTurn]`, each turn `role` then `content`) and
///   1 = `.raw` (followed by the string).
/// - `heartbeat` has no fields: its frame is exactly the two header bytes.
/// - `status` is the request id; `statusReply` the request id, then `ClusterStatus`'s fields (`experts` an array
///   of `ExpertStatus`, each with an array of `WorkerStatus`), in declaration order.
///
/// Nothing may follow the last field (`WireError.trailingBytes`). A frame is at most
/// `WireLimits.maxFrameBytes`, and each string and array stays within its `WireLimits` entry.
///
/// ## Validity
///
/// Decoding checks structure, not meaning. Besides the layout above it rejects
/// (`WireError.invalidValue`):
/// - in `dist` and in each `ExpertTrace`: `ids` and `logProbs` of different lengths, and a log-probability
///   that is NaN or +∞ (−∞, a token of probability 0, is allowed; so is any finite value);
/// - in `dist` and in each `ExpertTrace`: a `tailMass` outside [0, 1] or NaN (senders clamp rounding error into
///   the range).
///
/// A `statusReply` lists at most `WireLimits.maxExperts` experts of at most `WireLimits.maxStatusWorkers` workers.
///
/// Everything else is left to the receiver (it can answer with a typed `ErrorReply`): a `topK` larger
/// than `WireLimits.maxTopK`, a token id outside the vocabulary, NaN sampling parameters or weights, an
/// unsorted top-k, an unknown chat role.
///
/// The encoding is canonical: every message has exactly one frame, so any frame that decodes re-encodes
/// to the same bytes. `encode` never fails and does not validate; a message that breaks a rule above or
/// a limit encodes to a frame that `decode` rejects.
///
/// ## Hot path
///
/// `step` and `dist` go out at every token of every session: `encode(_:into:)` reuses one buffer,
/// `encode(_:into:)` with a raw buffer writes straight into a transport's message (size it with
/// `encodedSize(of:)`), and `decode` of a raw buffer reads a received message in place.
public enum WireCodec {
    /// The bytes of `message`'s frame.
    public static func encode(_ message: Message) -> [UInt8] {
        let size = encodedSize(of: message)
        return [UInt8](unsafeUninitializedCapacity: size) { buffer, initialized in
            initialized = write(message, to: UnsafeMutableRawBufferPointer(buffer))
        }
    }

    /// Replaces the contents of `buffer` with `message`'s frame, reusing its storage when large enough.
    public static func encode(_ message: Message, into buffer: inout [UInt8]) {
        let size = encodedSize(of: message)
        if buffer.count > size {
            buffer.removeLast(buffer.count - size)
        } else if buffer.count < size {
            buffer.append(contentsOf: repeatElement(0, count: size - buffer.count))
        }
        let written = buffer.withUnsafeMutableBytes { write(message, to: $0) }
        assert(written == size, "encodedSize(of:) and the writer disagree")
    }

    /// Writes `message`'s frame at the start of `buffer` and returns the number of bytes written.
    ///
    /// - Precondition: `buffer.count >= encodedSize(of: message)` (a programming error otherwise).
    public static func encode(_ message: Message, into buffer: UnsafeMutableRawBufferPointer) -> Int {
        precondition(buffer.count >= encodedSize(of: message), "buffer too small for the frame")
        return write(message, to: buffer)
    }

    /// The number of bytes `encode` produces for `message`.
    public static func encodedSize(of message: Message) -> Int {
        var counter = SizeCounter()
        serialize(message, to: &counter)
        return counter.count
    }

    /// Decodes one frame.
    public static func decode(_ bytes: [UInt8]) throws(WireError) -> Message {
        let result: Result<Message, WireError> = bytes.withUnsafeBytes { raw in
            do throws(WireError) { return .success(try decode(raw)) } catch { return .failure(error) }
        }
        return try result.get()
    }

    /// Decodes one frame read in place (e.g. a received transport message).
    public static func decode(_ bytes: UnsafeRawBufferPointer) throws(WireError) -> Message {
        var reader = try frameReader(bytes)
        let kindByte = try reader.u8("kind")
        guard let kind = Message.Kind(rawValue: kindByte) else { throw .unknownKind(kindByte) }
        let message = try decodeBody(kind, &reader)
        guard reader.remaining == 0 else { throw .trailingBytes(count: reader.remaining) }
        return message
    }

    /// The kind of the message a frame holds, read from its header alone (the body is not checked).
    public static func kind(of bytes: UnsafeRawBufferPointer) throws(WireError) -> Message.Kind {
        var reader = try frameReader(bytes)
        let kindByte = try reader.u8("kind")
        guard let kind = Message.Kind(rawValue: kindByte) else { throw .unknownKind(kindByte) }
        return kind
    }

    /// A reader positioned after a checked version byte.
    private static func frameReader(_ bytes: UnsafeRawBufferPointer) throws(WireError) -> WireReader {
        guard !bytes.isEmpty else { throw .empty }
        guard bytes.count <= WireLimits.maxFrameBytes else {
            throw .oversized(bytes: bytes.count, limit: WireLimits.maxFrameBytes)
        }
        var reader = WireReader(bytes)
        let version = try reader.u8("version")
        guard version == WireProtocol.version else { throw .unknownVersion(version) }
        return reader
    }

    private static func write(_ message: Message, to buffer: UnsafeMutableRawBufferPointer) -> Int {
        guard let base = buffer.baseAddress else { return 0 }
        var writer = WireWriter(base: base)
        serialize(message, to: &writer)
        return writer.offset
    }
}

extension Message {
    /// This message's frame (see `WireCodec`).
    public func encoded() -> [UInt8] { WireCodec.encode(self) }

    /// Decodes a frame (see `WireCodec.decode(_:)`).
    public init(decoding bytes: [UInt8]) throws(WireError) {
        self = try WireCodec.decode(bytes)
    }

    /// Decodes a frame read in place (see `WireCodec.decode(_:)`).
    public init(decoding bytes: UnsafeRawBufferPointer) throws(WireError) {
        self = try WireCodec.decode(bytes)
    }
}

// MARK: - Encoding

extension WireCodec {
    /// The one description of each message's field order; run once to count bytes and once to write them.
    @inline(__always)
    static func serialize<S: WireSink>(_ message: Message, to sink: inout S) {
        sink.u8(WireProtocol.version)
        sink.u8(message.kind.rawValue)
        switch message {
        case .hello(let m):
            sink.u8(m.protocolVersion)
            sink.string(m.workerID)
            sink.string(m.expert)
            sink.string(m.modelFingerprint)
            sink.u32(m.vocabSize)
            sink.u64(m.vocabHash)
            sink.u32Array(m.eosTokenIDs)
            sink.u32(m.contextLimit)
            sink.u32(m.sessionCapacity)
        case .welcome(let m):
            sink.u32(m.heartbeatIntervalMs)
        case .reject(let m):
            sink.string(m.reason)
        case .heartbeat:
            break
        case .goodbye(let m):
            sink.string(m.reason)
        case .open(let m):
            sink.u64(m.session)
            serialize(m.request, to: &sink)
            sink.u16(m.topK)
            sink.u32(m.maxNewTokens)
        case .step(let m):
            sink.u64(m.session)
            sink.u32(m.step)
            sink.u32(m.token)
        case .replay(let m):
            sink.u64(m.session)
            serialize(m.request, to: &sink)
            sink.u16(m.topK)
            sink.u32(m.maxNewTokens)
            sink.u32Array(m.tokens)
        case .dist(let m):
            sink.u64(m.session)
            sink.u32(m.step)
            sink.u32Array(m.ids)
            sink.f32Array(m.logProbs)
            sink.f32(m.tailMass)
            sink.u32(m.timing.queueMicros)
            sink.u32(m.timing.computeMicros)
            sink.u16(m.timing.batchSize)
        case .close(let m):
            sink.u64(m.session)
        case .error(let m):
            sink.u64(m.session)
            sink.u8(m.code.rawValue)
            sink.string(m.text)
        case .generate(let m):
            sink.u64(m.request)
            serialize(m.input, to: &sink)
            sink.string(m.preference)
            sink.u32(m.maxNewTokens)
            sink.optional(m.sampling.temperature) { $0.f32($1) }
            sink.optional(m.sampling.topP) { $0.f32($1) }
            sink.optional(m.sampling.topK) { $0.u32($1) }
            sink.optional(m.sampling.seed) { $0.u64($1) }
            sink.optional(m.merge) { $0.u8($1.rawValue) }
            sink.u32(UInt32(truncatingIfNeeded: m.stop.count))
            for stop in m.stop { sink.string(stop) }
            sink.u8(m.trace ? 1 : 0)
            sink.u32(UInt32(truncatingIfNeeded: m.schedule.count))
            for change in m.schedule {
                sink.u32(change.fromToken)
                sink.string(change.preference)
            }
            sink.u32Array(m.resume)
        case .token(let m):
            sink.u64(m.request)
            sink.u32(m.step)
            sink.u32(m.token)
            sink.string(m.text)
            sink.u32(UInt32(truncatingIfNeeded: m.experts.count))
            for expert in m.experts {
                sink.string(expert.expert)
                sink.f32(expert.weight)
                sink.u32Array(expert.ids)
                sink.f32Array(expert.logProbs)
                sink.f32(expert.tailMass)
            }
        case .done(let m):
            sink.u64(m.request)
            sink.u8(m.finish.rawValue)
            sink.u32(m.tokens)
            sink.string(m.text)
            sink.u32(UInt32(truncatingIfNeeded: m.lostExperts.count))
            for lost in m.lostExperts { sink.string(lost) }
            sink.u32(m.failovers)
            sink.u64(m.elapsedMicros)
            sink.u32(m.promptTokens)
            sink.u32(UInt32(truncatingIfNeeded: m.experts.count))
            for expert in m.experts {
                sink.string(expert.expert)
                sink.f32(expert.meanWeight)
                sink.u32(expert.meanStepMicros)
            }
            sink.u64(m.queuedMicros)
        case .setPreference(let m):
            sink.u64(m.request)
            sink.string(m.preference)
        case .preferenceSet(let m):
            sink.u64(m.request)
            sink.u32(m.fromToken)
        case .status(let m):
            sink.u64(m.request)
        case .statusReply(let m):
            sink.u64(m.request)
            sink.u8(m.status.protocolVersion)
            sink.u8(m.status.draining ? 1 : 0)
            sink.u32(m.status.sessionsRunning)
            sink.u32(m.status.sessionsQueued)
            sink.u64(m.status.oldestQueuedMicros)
            sink.u32(UInt32(truncatingIfNeeded: m.status.experts.count))
            for expert in m.status.experts {
                sink.string(expert.name)
                sink.u32(expert.replicas)
                sink.u32(UInt32(truncatingIfNeeded: expert.workers.count))
                for worker in expert.workers {
                    sink.string(worker.id)
                    sink.u32(worker.sessions)
                    sink.u32(worker.capacity)
                    sink.u8(worker.draining ? 1 : 0)
                    sink.u32(worker.registrations)
                }
            }
        }
    }

    @inline(__always)
    static func serialize<S: WireSink>(_ request: Request, to sink: inout S) {
        switch request {
        case .chat(let turns):
            sink.u8(RequestTag.chat)
            sink.u32(UInt32(truncatingIfNeeded: turns.count))
            for turn in turns {
                sink.string(turn.role)
                sink.string(turn.content)
            }
        case .raw(let text):
            sink.u8(RequestTag.raw)
            sink.string(text)
        }
    }
}

/// The tag bytes of `Request`.
enum RequestTag {
    static let chat: UInt8 = 0
    static let raw: UInt8 = 1
}

// MARK: - Decoding

extension WireCodec {
    static func decodeBody(_ kind: Message.Kind, _ r: inout WireReader) throws(WireError) -> Message {
        switch kind {
        case .hello:
            let protocolVersion = try r.u8("hello.protocolVersion")
            let workerID = try r.string("hello.workerID")
            let expert = try r.string("hello.expert")
            let fingerprint = try r.string("hello.modelFingerprint")
            let vocabSize = try r.u32("hello.vocabSize")
            let vocabHash = try r.u64("hello.vocabHash")
            let eos = try r.u32Array("hello.eosTokenIDs", limit: WireLimits.maxEOSTokens)
            let contextLimit = try r.u32("hello.contextLimit")
            let capacity = try r.u32("hello.sessionCapacity")
            return .hello(Hello(
                protocolVersion: protocolVersion, workerID: workerID, expert: expert, modelFingerprint: fingerprint,
                vocabSize: vocabSize, vocabHash: vocabHash, eosTokenIDs: eos, contextLimit: contextLimit,
                sessionCapacity: capacity
            ))
        case .welcome:
            return .welcome(Welcome(heartbeatIntervalMs: try r.u32("welcome.heartbeatIntervalMs")))
        case .reject:
            return .reject(Reject(reason: try r.string("reject.reason")))
        case .heartbeat:
            return .heartbeat
        case .goodbye:
            return .goodbye(Goodbye(reason: try r.string("goodbye.reason")))
        case .open:
            let session = try r.u64("open.session")
            let request = try decodeRequest(&r, "open.request")
            let topK = try r.u16("open.topK")
            let maxNewTokens = try r.u32("open.maxNewTokens")
            return .open(Open(session: session, request: request, topK: topK, maxNewTokens: maxNewTokens))
        case .step:
            let session = try r.u64("step.session")
            let step = try r.u32("step.step")
            let token = try r.u32("step.token")
            return .step(Step(session: session, step: step, token: token))
        case .replay:
            let session = try r.u64("replay.session")
            let request = try decodeRequest(&r, "replay.request")
            let topK = try r.u16("replay.topK")
            let maxNewTokens = try r.u32("replay.maxNewTokens")
            let tokens = try r.u32Array("replay.tokens", limit: WireLimits.maxReplayTokens)
            return .replay(Replay(
                session: session, request: request, topK: topK, maxNewTokens: maxNewTokens, tokens: tokens
            ))
        case .dist:
            let session = try r.u64("dist.session")
            let step = try r.u32("dist.step")
            let (ids, logProbs) = try decodeTopK(&r, ids: "dist.ids", logProbs: "dist.logProbs")
            let tailMass = try r.f32("dist.tailMass")
            guard tailMass >= 0 && tailMass <= 1 else {
                throw .invalidValue(field: "dist.tailMass", reason: "\(tailMass) is not a probability in [0, 1]")
            }
            let queue = try r.u32("dist.timing.queueMicros")
            let compute = try r.u32("dist.timing.computeMicros")
            let batch = try r.u16("dist.timing.batchSize")
            return .dist(Dist(
                session: session, step: step, ids: ids, logProbs: logProbs, tailMass: tailMass,
                timing: WorkerTiming(queueMicros: queue, computeMicros: compute, batchSize: batch)
            ))
        case .close:
            return .close(Close(session: try r.u64("close.session")))
        case .error:
            let session = try r.u64("error.session")
            let tag = try r.u8("error.code")
            guard let code = ErrorCode(rawValue: tag) else { throw .unknownTag(field: "error.code", tag: tag) }
            let text = try r.string("error.text")
            return .error(ErrorReply(session: session, code: code, text: text))
        case .generate:
            let request = try r.u64("generate.request")
            let input = try decodeRequest(&r, "generate.input")
            let preference = try r.string("generate.preference")
            let maxNewTokens = try r.u32("generate.maxNewTokens")
            let temperature = try r.bool("generate.sampling.temperature") ? r.f32("generate.sampling.temperature") : nil
            let topP = try r.bool("generate.sampling.topP") ? r.f32("generate.sampling.topP") : nil
            let topK = try r.bool("generate.sampling.topK") ? r.u32("generate.sampling.topK") : nil
            let seed = try r.bool("generate.sampling.seed") ? r.u64("generate.sampling.seed") : nil
            var merge: MergeMode?
            if try r.bool("generate.merge") {
                let mergeTag = try r.u8("generate.merge")
                guard let mode = MergeMode(rawValue: mergeTag) else {
                    throw .unknownTag(field: "generate.merge", tag: mergeTag)
                }
                merge = mode
            }
            let stopCount = try r.count("generate.stop", limit: WireLimits.maxStopStrings, minElementBytes: 4)
            var stop: [String] = []
            stop.reserveCapacity(stopCount)
            for _ in 0..<stopCount { stop.append(try r.string("generate.stop")) }
            let trace = try r.bool("generate.trace")
            // Each entry holds at least a token index and a string length.
            let changeCount = try r.count(
                "generate.schedule", limit: WireLimits.maxScheduleEntries, minElementBytes: 8
            )
            var schedule: [PreferenceChange] = []
            schedule.reserveCapacity(changeCount)
            for _ in 0..<changeCount {
                let from = try r.u32("generate.schedule.fromToken")
                schedule.append(PreferenceChange(fromToken: from, preference: try r.string("generate.schedule.preference")))
            }
            let resume = try r.u32Array("generate.resume", limit: WireLimits.maxReplayTokens)
            return .generate(Generate(
                request: request, input: input, preference: preference, maxNewTokens: maxNewTokens,
                sampling: SamplingRequest(temperature: temperature, topP: topP, topK: topK, seed: seed),
                merge: merge, stop: stop, trace: trace, schedule: schedule, resume: resume
            ))
        case .token:
            let request = try r.u64("token.request")
            let step = try r.u32("token.step")
            let token = try r.u32("token.token")
            let text = try r.string("token.text")
            // Each trace holds at least a string length, a weight, two array counts and a tail mass.
            let count = try r.count("token.experts", limit: WireLimits.maxExperts, minElementBytes: 20)
            var experts: [ExpertTrace] = []
            experts.reserveCapacity(count)
            for _ in 0..<count {
                let name = try r.string("token.experts.expert")
                let weight = try r.f32("token.experts.weight")
                let (ids, logProbs) = try decodeTopK(
                    &r, ids: "token.experts.ids", logProbs: "token.experts.logProbs"
                )
                let tailMass = try r.f32("token.experts.tailMass")
                guard tailMass >= 0 && tailMass <= 1 else {
                    throw .invalidValue(
                        field: "token.experts.tailMass", reason: "\(tailMass) is not a probability in [0, 1]"
                    )
                }
                experts.append(ExpertTrace(
                    expert: name, weight: weight, ids: ids, logProbs: logProbs, tailMass: tailMass
                ))
            }
            return .token(TokenEvent(request: request, step: step, token: token, text: text, experts: experts))
        case .done:
            let request = try r.u64("done.request")
            let finishTag = try r.u8("done.finish")
            guard let finish = FinishReason(rawValue: finishTag) else {
                throw .unknownTag(field: "done.finish", tag: finishTag)
            }
            let tokens = try r.u32("done.tokens")
            let text = try r.string("done.text")
            let lostCount = try r.count("done.lostExperts", limit: WireLimits.maxExperts, minElementBytes: 4)
            var lost: [String] = []
            lost.reserveCapacity(lostCount)
            for _ in 0..<lostCount { lost.append(try r.string("done.lostExperts")) }
            let failovers = try r.u32("done.failovers")
            let elapsed = try r.u64("done.elapsedMicros")
            let promptTokens = try r.u32("done.promptTokens")
            // Each entry holds at least a string length and a weight.
            let expertCount = try r.count("done.experts", limit: WireLimits.maxExperts, minElementBytes: 12)
            var experts: [ExpertUsage] = []
            experts.reserveCapacity(expertCount)
            for _ in 0..<expertCount {
                let name = try r.string("done.experts.expert")
                let weight = try r.f32("done.experts.meanWeight")
                let step = try r.u32("done.experts.meanStepMicros")
                experts.append(ExpertUsage(expert: name, meanWeight: weight, meanStepMicros: step))
            }
            let queued = try r.u64("done.queuedMicros")
            return .done(Done(
                request: request, finish: finish, tokens: tokens, text: text, lostExperts: lost,
                failovers: failovers, elapsedMicros: elapsed, promptTokens: promptTokens, experts: experts,
                queuedMicros: queued
            ))
        case .setPreference:
            let request = try r.u64("setPreference.request")
            return .setPreference(SetPreference(request: request, preference: try r.string("setPreference.preference")))
        case .preferenceSet:
            let request = try r.u64("preferenceSet.request")
            return .preferenceSet(PreferenceSet(request: request, fromToken: try r.u32("preferenceSet.fromToken")))
        case .status:
            return .status(StatusRequest(request: try r.u64("status.request")))
        case .statusReply:
            return .statusReply(try decodeStatusReply(&r))
        }
    }

    static func decodeStatusReply(_ r: inout WireReader) throws(WireError) -> StatusReply {
        let request = try r.u64("statusReply.request")
        let version = try r.u8("statusReply.protocolVersion")
        let draining = try r.bool("statusReply.draining")
        let running = try r.u32("statusReply.sessionsRunning")
        let queued = try r.u32("statusReply.sessionsQueued")
        let oldest = try r.u64("statusReply.oldestQueuedMicros")
        // Each expert holds at least a name length, a replica count and a worker count.
        let expertCount = try r.count("statusReply.experts", limit: WireLimits.maxExperts, minElementBytes: 12)
        var experts: [ExpertStatus] = []
        experts.reserveCapacity(expertCount)
        for _ in 0..<expertCount {
            let name = try r.string("statusReply.experts.name")
            let replicas = try r.u32("statusReply.experts.replicas")
            // Each worker holds at least an id length, two counts, a bool and a registration count.
            let workerCount = try r.count(
                "statusReply.experts.workers", limit: WireLimits.maxStatusWorkers, minElementBytes: 17
            )
            var workers: [WorkerStatus] = []
            workers.reserveCapacity(workerCount)
            for _ in 0..<workerCount {
                let id = try r.string("statusReply.experts.workers.id")
                let sessions = try r.u32("statusReply.experts.workers.sessions")
                let capacity = try r.u32("statusReply.experts.workers.capacity")
                let workerDraining = try r.bool("statusReply.experts.workers.draining")
                let registrations = try r.u32("statusReply.experts.workers.registrations")
                workers.append(WorkerStatus(
                    id: id, sessions: sessions, capacity: capacity, draining: workerDraining,
                    registrations: registrations
                ))
            }
            experts.append(ExpertStatus(name: name, replicas: replicas, workers: workers))
        }
        return StatusReply(request: request, status: ClusterStatus(
            protocolVersion: version, draining: draining, sessionsRunning: running, sessionsQueued: queued,
            oldestQueuedMicros: oldest,
            experts: experts
        ))
    }

    static func decodeRequest(_ r: inout WireReader, _ field: StaticString) throws(WireError) -> Request {
        let tag = try r.u8(field)
        switch tag {
        case RequestTag.chat:
            // Each turn holds at least two string lengths.
            let count = try r.count("request.chat", limit: WireLimits.maxChatTurns, minElementBytes: 8)
            var turns: [ChatTurn] = []
            turns.reserveCapacity(count)
            for _ in 0..<count {
                let role = try r.string("request.chat.role")
                let content = try r.string("request.chat.content")
                turns.append(ChatTurn(role: role, content: content))
            }
            return .chat(turns)
        case RequestTag.raw:
            return .raw(try r.string("request.raw"))
        default:
            throw .unknownTag(field: "\(field)", tag: tag)
        }
    }

    /// A top-k list: ids, then log-probabilities of the same length, none NaN or +∞.
    @inline(__always)
    static func decodeTopK(
        _ r: inout WireReader, ids idsField: StaticString, logProbs logProbsField: StaticString
    ) throws(WireError) -> ([UInt32], [Float]) {
        let ids = try r.u32Array(idsField, limit: WireLimits.maxTopK)
        let logProbs = try r.f32Array(logProbsField, limit: WireLimits.maxTopK)
        guard ids.count == logProbs.count else {
            throw .invalidValue(
                field: "\(logProbsField)",
                reason: "\(logProbs.count) log-probabilities for \(ids.count) token ids; the counts must match"
            )
        }
        for (index, logProb) in logProbs.enumerated() where logProb.isNaN || logProb == .infinity {
            throw .invalidValue(
                field: "\(logProbsField)",
                reason: "entry \(index) is \(logProb); a log-probability must be below +∞ (−∞ is allowed)"
            )
        }
        return (ids, logProbs)
    }
}
