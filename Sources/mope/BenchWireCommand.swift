import CLI
import ProcessSupport
import Wire
import ZeroMQ

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - mope bench

/// `mope bench`: measurements of the cluster's parts.
enum Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        name: "bench",
        abstract: "Measure parts of the cluster.",
        subcommands: [BenchWire.self, BenchEngine.self, BenchPCM.self, BenchWirePeer.self]
    )
}

// MARK: - mope bench wire

/// `mope bench wire`: the round trip of one decoding step between a coordinator and its workers, with the
/// real codec over the real ZeroMQ binding, next to a raw ZeroMQ echo measured in the same run.
///
/// This process is the coordinator: a ROUTER (`ROUTER_MANDATORY`) bound on each transport in turn. The
/// workers are child processes running `mope bench wire-peer`, started in their own process group and
/// killed at the end whatever happens. Each measured step encodes one `step` per worker, sends them all,
/// and waits for every worker's `dist` (decoded and checked for its session and step). Interleaved with
/// the codec steps, a raw step sends `--raw-bytes` bytes to each worker, which echoes them unchanged: the
/// ratio of the two medians shows what the codec and the message shape add to the bare round trip.
///
/// The command blocks its thread on ZeroMQ calls: it is the only work of the process.
enum BenchWire: ParsableCommand {
    static let configuration = CommandConfiguration(
        name: "wire",
        abstract: "Time step→dist round trips through the codec and ZeroMQ with worker processes.",
        discussion: """
            Starts worker processes (`mope bench wire-peer`) for each transport, then times steps: the
            coordinator encodes a `step` per worker, sends them all and waits for every `dist` (a top-k
            distribution, decoded and checked). A raw ZeroMQ echo of --raw-bytes bytes, with no codec, is
            timed in the same run, step for step in between, for reference.
            Prints one row per transport and worker count: median and 99th percentile round trip in
            microseconds, steps per second (1 / mean round trip), the raw echo's median and p99, and the
            ratio of the codec median to the raw median. Absolute times depend on the machine's load;
            compare the figures of one run.
            """,
        options: [
            .value("workers", "LIST", default: "1,4", help: "Comma-separated worker counts to measure."),
            .value("transports", "LIST", default: "tcp,ipc", help: "Comma-separated transports: tcp, ipc."),
            .value("steps", "N", default: "20000", help: "Measured steps per configuration."),
            .value("warmup", "N", default: "1000", help: "Unmeasured steps before the measured ones."),
            .value("top-k", "K", default: "64", help: "Entries in each worker's `dist`."),
            .value("raw-bytes", "B", default: "1024", help: "Size of the raw echo message."),
            .value("timeout", "SECONDS", default: "30", help: "Deadline for one step and for worker start-up."),
        ]
    )

    static func run(_ arguments: ParsedArguments) async throws -> Int32 {
        let settings = try BenchWireSettings(arguments)
        guard let executable = CurrentExecutable.path else { throw BenchWireError.executableNotFound }
        CLI.writeOut(BenchWireReport.header(settings))
        for transport in settings.transports {
            try BenchWireRun(transport: transport, settings: settings, executable: executable).run()
        }
        return CLI.success
    }
}

/// The settings of `mope bench wire`, validated once from the command line.
struct BenchWireSettings: Sendable, Equatable {
    /// A transport the benchmark can run on.
    enum Transport: String, Sendable, CaseIterable {
        case tcp, ipc
    }

    var workerCounts: [Int] = [1, 4]
    var transports: [Transport] = [.tcp, .ipc]
    var steps = 20_000
    var warmup = 1_000
    var topK = 64
    var rawBytes = 1024
    var timeout: Duration = .seconds(30)

    /// The most workers one configuration may start.
    static let maxWorkers = 64

    init() {}

    /// Reads and checks the options of `mope bench wire`.
    init(_ arguments: ParsedArguments) throws(UsageError) {
        workerCounts = try Self.list("workers", arguments) { (text: String) -> Int? in
            guard let n = Int(text), (1...Self.maxWorkers).contains(n) else { return nil }
            return n
        }
        transports = try Self.list("transports", arguments) { Transport(rawValue: $0) }
        steps = try Self.number("steps", arguments, in: 1...100_000_000)
        warmup = try Self.number("warmup", arguments, in: 0...100_000_000)
        topK = try Self.number("top-k", arguments, in: 1...WireLimits.maxTopK)
        rawBytes = try Self.number("raw-bytes", arguments, in: 1...(1 << 20))
        timeout = .seconds(try Self.number("timeout", arguments, in: 1...3600))
    }

    private static func number(_ name: String, _ arguments: ParsedArguments, in range: ClosedRange<Int>)
        throws(UsageError) -> Int
    {
        let value = try arguments.require(name, as: Int.self)
        guard range.contains(value) else {
            throw .invalidValue(
                option: name, value: String(value),
                expected: "an integer from \(range.lowerBound) to \(range.upperBound)")
        }
        return value
    }

    private static func list<T>(_ name: String, _ arguments: ParsedArguments, _ element: (String) -> T?)
        throws(UsageError) -> [T]
    {
        let text = try arguments.require(name)
        let items = text.split(separator: ",", omittingEmptySubsequences: false)
            .map { $0.trimmingCharacters(in: " ") }
        var values: [T] = []
        for item in items {
            guard let value = element(item) else {
                let expected = name == "workers"
                    ? "a comma-separated list of worker counts from 1 to \(maxWorkers)"
                    : "a comma-separated list of \(Transport.allCases.map(\.rawValue).joined(separator: ", "))"
                throw .invalidValue(option: name, value: text, expected: expected)
            }
            values.append(value)
        }
        return values
    }
}

extension Substring {
    /// The text without leading and trailing `characters`.
    fileprivate func trimmingCharacters(in characters: Character) -> String {
        String(drop(while: { $0 == characters }).reversed().drop(while: { $0 == characters }).reversed())
    }
}

/// Why `mope bench wire` stopped.
enum BenchWireError: Error, CustomStringConvertible {
    /// The path of this executable could not be found, so no worker could be started.
    case executableNotFound
    /// A worker process could not be started.
    case spawnFailed(SpawnError)
    /// A worker process ended before the benchmark finished with it.
    case workerExited(id: String, status: ExitStatus)
    /// Not every worker said `hello` before the deadline.
    case workersNotReady(transport: String, missing: [String])
    /// A step went unanswered by some workers until the deadline.
    case noReply(transport: String, workers: Int, step: Int, missing: [String])
    /// A reply came from no worker of the configuration, or did not have the expected frames.
    case strayReply(frames: Int)
    /// A worker's reply is not a frame of the protocol.
    case undecodable(worker: String, error: WireError)
    /// A worker's reply decoded but is not the `dist` (or echo) asked for.
    case wrongReply(worker: String, expected: String, got: String)
    /// ZeroMQ failed.
    case zeroMQ(ZMQError)

    var description: String {
        switch self {
        case .executableNotFound:
            "cannot find the mope executable to start workers from (/proc/self/exe and argv[0] failed)"
        case .spawnFailed(let error):
            "cannot start a worker process: \(error)"
        case .workerExited(let id, let status):
            "worker \(id) exited early (\(status)); see its messages above"
        case .workersNotReady(let transport, let missing):
            "workers \(missing.joined(separator: ", ")) did not say hello over \(transport) before the deadline; "
                + "raise --timeout if the machine is busy"
        case .noReply(let transport, let workers, let step, let missing):
            "step \(step) with \(workers) worker(s) over \(transport): no reply from "
                + "\(missing.joined(separator: ", ")) before the deadline; raise --timeout if the machine is busy"
        case .strayReply(let frames):
            "a reply of \(frames) frame(s) came from no worker of this run"
        case .undecodable(let worker, let error):
            "worker \(worker) sent a frame that does not decode: \(error)"
        case .wrongReply(let worker, let expected, let got):
            "worker \(worker) answered \(got) where \(expected) was expected"
        case .zeroMQ(let error):
            "ZeroMQ: \(error)"
        }
    }
}

/// Round-trip times of one configuration, in nanoseconds, and their summary.
struct LatencySummary: Sendable, Equatable {
    /// The median round trip in microseconds.
    var medianMicros: Double
    /// The 99th percentile (nearest rank) in microseconds.
    var p99Micros: Double
    /// Round trips per second at the mean round trip.
    var perSecond: Double

    /// Summarises `nanoseconds` (at least one).
    init(nanoseconds: [Int64]) {
        let sorted = nanoseconds.sorted()
        func rank(_ p: Double) -> Double {
            guard !sorted.isEmpty else { return 0 }
            let index = min(sorted.count - 1, max(0, Int((p * Double(sorted.count)).rounded(.up)) - 1))
            return Double(sorted[index]) / 1000
        }
        medianMicros = rank(0.5)
        p99Micros = rank(0.99)
        let total = sorted.reduce(0.0) { $0 + Double($1) }
        perSecond = total > 0 ? Double(sorted.count) * 1e9 / total : 0
    }
}

/// The printed table of `mope bench wire`.
enum BenchWireReport {
    static let columns: [(title: String, width: Int)] = [
        ("transport", 9), ("workers", 7), ("median µs", 9), ("p99 µs", 9), ("steps/s", 9),
        ("raw med µs", 10), ("raw p99 µs", 10), ("codec/raw", 9),
    ]

    /// What the run measures, the machine's load, and the column titles.
    static func header(_ settings: BenchWireSettings) -> String {
        var text = "mope bench wire: step → dist (top-\(settings.topK)) through the codec and ZeroMQ; "
        text += "raw: \(settings.rawBytes) B ZeroMQ echo, no codec\n"
        text += "\(settings.steps) measured steps after \(settings.warmup) warm-up steps per configuration"
        if let load = loadAverage() { text += "; load average \(load)" }
        text += "\n"
        text += columns.map { pad($0.title, $0.width) }.joined(separator: "  ") + "\n"
        return text
    }

    /// One row of the table.
    static func row(transport: String, workers: Int, codec: LatencySummary, raw: LatencySummary) -> String {
        let ratio = raw.medianMicros > 0 ? codec.medianMicros / raw.medianMicros : 0
        let cells = [
            transport, String(workers), fixed(codec.medianMicros, 1), fixed(codec.p99Micros, 1),
            fixed(codec.perSecond, 0), fixed(raw.medianMicros, 1), fixed(raw.p99Micros, 1), fixed(ratio, 2),
        ]
        return zip(cells, columns).map { pad($0, $1.width) }.joined(separator: "  ") + "\n"
    }

    /// `value` with `digits` decimals (no Foundation formatting here).
    static func fixed(_ value: Double, _ digits: Int) -> String {
        guard value.isFinite else { return "-" }
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let scaled = (value * scale).rounded()
        let whole = Int(scaled / scale)
        guard digits > 0 else { return String(whole) }
        let fraction = Int(abs(scaled) - abs(Double(whole)) * scale)
        let digitsText = String(fraction)
        return String(whole) + "." + String(repeating: "0", count: max(0, digits - digitsText.count)) + digitsText
    }

    private static func pad(_ text: String, _ width: Int) -> String {
        text.count >= width ? text : String(repeating: " ", count: width - text.count) + text
    }

    /// The first three fields of /proc/loadavg, when there is one.
    private static func loadAverage() -> String? {
        guard let file = fopen("/proc/loadavg", "r") else { return nil }
        defer { fclose(file) }
        var buffer = [CChar](repeating: 0, count: 128)
        guard fgets(&buffer, Int32(buffer.count), file) != nil else { return nil }
        let text = String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return text.split(separator: " ").prefix(3).joined(separator: " ")
    }
}

/// One transport's part of the benchmark: bind, start the workers, measure every worker count, stop.
struct BenchWireRun {
    let transport: BenchWireSettings.Transport
    let settings: BenchWireSettings
    let executable: String

    /// The token ids the steps carry stay within a small model's vocabulary.
    static let vocabularySize: UInt32 = 49_152

    func run() throws {
        do {
            try measureAll()
        } catch let error as ZMQError {
            throw BenchWireError.zeroMQ(error)
        }
    }

    private func measureAll() throws {
        let context = try ZMQContext()
        let router = try ZMQSocket(.router, context: context)
        defer { router.close() }
        try router.set(.routerMandatory, true)
        try router.set(.sendTimeout, settings.timeout)
        try router.set(.linger, .zero)
        try router.set(.maxMessageSize, Int64(WireLimits.maxFrameBytes))
        let endpoint: String
        var ipcPath: String?
        switch transport {
        case .tcp:
            try router.bind("tcp://127.0.0.1:*")
            endpoint = try router.lastEndpoint
        case .ipc:
            let path = "/tmp/mope-bench-wire-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
            ipcPath = path
            endpoint = "ipc://" + path
            try router.bind(endpoint)
        }
        defer { if let ipcPath { unlink(ipcPath) } }

        let ids = (0..<(settings.workerCounts.max() ?? 1)).map { "worker-\($0)" }
        // One process group, killed and reaped however the run ends (also on SIGINT or SIGTERM).
        let children = ProcessGroup()
        ShutdownSignals.onSignal { _ in
            children.killAll()
            _exit(128 + SIGINT)
        }
        defer {
            children.killAll()
            ShutdownSignals.uninstall()
        }
        for id in ids {
            do throws(SpawnError) {
                try children.spawn(
                    executable, ["bench", "wire-peer", "--connect", endpoint, "--id", id, "--top-k", String(settings.topK)],
                    name: id
                )
            } catch {
                throw BenchWireError.spawnFailed(error)
            }
        }
        try awaitHellos(router, ids: ids, children: children)

        for count in settings.workerCounts {
            let (codec, raw) = try measure(router, ids: Array(ids.prefix(count)), children: children)
            CLI.writeOut(
                BenchWireReport.row(
                    transport: transport.rawValue, workers: count, codec: LatencySummary(nanoseconds: codec),
                    raw: LatencySummary(nanoseconds: raw)))
        }
        // A clean goodbye; whatever is still running afterwards is killed by `stop`.
        for (index, id) in ids.enumerated() {
            try router.send([Array(id.utf8), WireCodec.encode(.close(Close(session: Self.session(index))))])
        }
        children.waitAll(timeout: .seconds(5))
    }

    /// The session each worker serves (one per worker, so a misrouted reply shows).
    static func session(_ index: Int) -> SessionID { SessionID(1000 + index) }

    /// Waits until every worker has registered with a `hello` carrying its id.
    private func awaitHellos(_ router: ZMQSocket, ids: [String], children: ProcessGroup) throws {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: settings.timeout)
        var missing = Set(ids)
        while !missing.isEmpty {
            try Self.checkRunning(children)
            let left = clock.now.duration(to: deadline)
            guard left > .zero else {
                throw BenchWireError.workersNotReady(transport: transport.rawValue, missing: missing.sorted())
            }
            guard let frames = try router.receiveMultipart(timeout: min(left, .milliseconds(200))) else { continue }
            guard frames.count == 2 else { throw BenchWireError.strayReply(frames: frames.count) }
            let id = String(decoding: frames[0], as: UTF8.self)
            let message: Message
            do {
                message = try WireCodec.decode(frames[1])
            } catch {
                throw BenchWireError.undecodable(worker: id, error: error)
            }
            guard case .hello(let hello) = message, hello.workerID == id else {
                throw BenchWireError.wrongReply(worker: id, expected: "hello", got: "\(message.kind)")
            }
            missing.remove(id)
        }
    }

    /// Runs the warm-up and measured steps with the workers `ids`; returns the codec and raw round trips.
    private func measure(
        _ router: ZMQSocket, ids: [String], children: ProcessGroup
    ) throws -> (codec: [Int64], raw: [Int64]) {
        let routingIDs = ids.map { Array($0.utf8) }
        var indexByRoutingID: [[UInt8]: Int] = [:]
        for (index, id) in routingIDs.enumerated() { indexByRoutingID[id] = index }
        var codec: [Int64] = []
        var raw: [Int64] = []
        codec.reserveCapacity(settings.steps)
        raw.reserveCapacity(settings.steps)
        // A raw frame starts with byte 0, which no protocol frame does: the peer echoes it unchanged.
        var rawFrame = [UInt8](repeating: 0xA5, count: settings.rawBytes)
        rawFrame[0] = 0
        var stepFrame: [UInt8] = []
        var replied = [Bool](repeating: false, count: ids.count)
        let clock = ContinuousClock()

        for index in 0..<(settings.warmup + settings.steps) {
            let step = UInt32(truncatingIfNeeded: index + 1)
            let measured = index >= settings.warmup

            // The codec round trip: encode a step per worker, send all, decode and check every dist.
            let codecStart = clock.now
            for (worker, routingID) in routingIDs.enumerated() {
                let message = Message.step(
                    Step(session: Self.session(worker), step: step, token: step % Self.vocabularySize))
                WireCodec.encode(message, into: &stepFrame)
                try routingID.withUnsafeBytes { id in
                    try stepFrame.withUnsafeBytes { frame in try router.send(buffers: [id, frame]) }
                }
            }
            try collect(router, ids: ids, index: indexByRoutingID, replied: &replied, step: index + 1, clock: clock) {
                worker, frame in
                let message: Message
                do throws(WireError) {
                    message = try WireCodec.decode(frame)
                } catch {
                    throw BenchWireError.undecodable(worker: ids[worker], error: error)
                }
                guard case .dist(let dist) = message, dist.session == Self.session(worker), dist.step == step,
                    dist.ids.count == settings.topK
                else {
                    throw BenchWireError.wrongReply(
                        worker: ids[worker], expected: "dist for session \(Self.session(worker)) step \(step)",
                        got: Self.summary(message))
                }
            }
            let codecEnd = clock.now
            if measured { codec.append(Self.nanoseconds(codecStart.duration(to: codecEnd))) }

            // The raw round trip: the same fan-out with an opaque frame echoed back.
            let rawStart = clock.now
            for routingID in routingIDs {
                try routingID.withUnsafeBytes { id in
                    try rawFrame.withUnsafeBytes { frame in try router.send(buffers: [id, frame]) }
                }
            }
            try collect(router, ids: ids, index: indexByRoutingID, replied: &replied, step: index + 1, clock: clock) {
                worker, frame in
                guard frame == rawFrame else {
                    throw BenchWireError.wrongReply(
                        worker: ids[worker], expected: "an echo of \(rawFrame.count) bytes",
                        got: "\(frame.count) other bytes")
                }
            }
            if measured { raw.append(Self.nanoseconds(rawStart.duration(to: clock.now))) }
            if index % 1024 == 1023 { try Self.checkRunning(children) }
        }
        return (codec, raw)
    }

    /// Receives one reply from each worker of `ids` and hands it to `check`, within the step deadline.
    private func collect(
        _ router: ZMQSocket, ids: [String], index: [[UInt8]: Int], replied: inout [Bool], step: Int,
        clock: ContinuousClock, check: (Int, [UInt8]) throws -> Void
    ) throws {
        for i in replied.indices { replied[i] = false }
        var pending = ids.count
        let deadline = clock.now.advanced(by: settings.timeout)
        while pending > 0 {
            let left = clock.now.duration(to: deadline)
            guard left > .zero, let frames = try router.receiveMultipart(timeout: left) else {
                let missing = ids.indices.filter { !replied[$0] }.map { ids[$0] }
                throw BenchWireError.noReply(
                    transport: transport.rawValue, workers: ids.count, step: step, missing: missing)
            }
            guard frames.count == 2, let worker = index[frames[0]] else {
                throw BenchWireError.strayReply(frames: frames.count)
            }
            guard !replied[worker] else {
                throw BenchWireError.wrongReply(worker: ids[worker], expected: "one reply per step", got: "two")
            }
            try check(worker, frames[1])
            replied[worker] = true
            pending -= 1
        }
    }

    static func nanoseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }

    static func summary(_ message: Message) -> String {
        switch message {
        case .dist(let dist): "dist for session \(dist.session) step \(dist.step) with \(dist.ids.count) entries"
        case .error(let reply): "error \(reply.code) for session \(reply.session): \(reply.text)"
        default: "\(message.kind)"
        }
    }
}

// MARK: - mope bench wire-peer

/// `mope bench wire-peer`: the worker side of `mope bench wire`, started by it.
///
/// A DEALER connects to the coordinator, sends `hello`, then answers every `step` with a `dist` of a fixed
/// top-k (encoded with the codec), echoes every frame that starts with byte 0 (the raw reference) unchanged,
/// and exits on `close`, or after --idle-seconds without a message (so an orphan never lingers).
enum BenchWirePeer: ParsableCommand {
    static let configuration = CommandConfiguration(
        name: "wire-peer",
        abstract: "Worker stand-in for 'mope bench wire' (started by it).",
        options: [
            .value("connect", "ENDPOINT", help: "The coordinator's endpoint."),
            .value("id", "ID", help: "This worker's id and routing id."),
            .value("top-k", "K", default: "64", help: "Entries in each `dist`."),
            .value("idle-seconds", "N", default: "60", help: "Exit after this long without a message."),
        ]
    )

    static func run(_ arguments: ParsedArguments) async throws -> Int32 {
        guard let endpoint = try arguments.endpoint("connect", binding: false) else {
            throw UsageError.missingOption("connect")
        }
        let id = try arguments.require("id")
        let topK = try arguments.require("top-k", as: Int.self)
        let idle = try arguments.require("idle-seconds", as: Int.self)
        guard (1...WireLimits.maxTopK).contains(topK) else {
            throw UsageError.invalidValue(option: "top-k", value: String(topK), expected: "1 to \(WireLimits.maxTopK)")
        }
        guard idle > 0 else {
            throw UsageError.invalidValue(option: "idle-seconds", value: String(idle), expected: "a positive integer")
        }
        guard !id.isEmpty, id.utf8.count <= 255 else {
            throw UsageError.invalidValue(option: "id", value: id, expected: "1 to 255 bytes")
        }
        do {
            return try serve(endpoint: endpoint, id: id, topK: topK, idle: .seconds(idle))
        } catch let error as ZMQError {
            throw BenchWireError.zeroMQ(error)
        }
    }

    /// A fixed top-k: distinct ids, descending natural-log probabilities, and the mass left outside.
    static func distribution(topK: Int) -> (ids: [UInt32], logProbs: [Float], tailMass: Float) {
        var ids: [UInt32] = []
        var logProbs: [Float] = []
        var mass: Float = 0
        var p: Float = 0.5
        for rank in 0..<topK {
            ids.append(UInt32((rank &* 7919) % Int(BenchWireRun.vocabularySize)))
            logProbs.append(log(p))
            mass += p
            p *= 0.8
        }
        return (ids, logProbs, min(1, max(0, 1 - mass)))
    }

    private static func serve(endpoint: String, id: String, topK: Int, idle: Duration) throws -> Int32 {
        let context = try ZMQContext()
        let socket = try ZMQSocket(.dealer, context: context)
        defer { socket.close() }
        try socket.set(.routingID, Array(id.utf8))
        try socket.set(.sendTimeout, idle)
        try socket.connect(endpoint)
        let hello = Hello(
            workerID: id, expert: "bench", modelFingerprint: "bench", vocabSize: BenchWireRun.vocabularySize,
            vocabHash: 0, eosTokenIDs: [], contextLimit: 8192, sessionCapacity: 1)
        try socket.send([WireCodec.encode(.hello(hello))])

        let top = distribution(topK: topK)
        var dist = Dist(session: 0, step: 0, ids: top.ids, logProbs: top.logProbs, tailMass: top.tailMass)
        var reply: [UInt8] = []
        while true {
            guard let frames = try socket.receiveMultipart(timeout: idle) else {
                try socket.set(.linger, .zero)
                try socket.set(.maxMessageSize, Int64(WireLimits.maxFrameBytes))
                CLI.writeErr("mope bench wire-peer \(id): no message for \(idle); the coordinator is gone\n")
                return CLI.failure
            }
            guard frames.count == 1, let frame = frames.first, let first = frame.first else { continue }
            if first == 0 {
                try frame.withUnsafeBytes { try socket.send(buffers: [$0]) }
                continue
            }
            let message: Message
            do {
                message = try WireCodec.decode(frame)
            } catch {
                CLI.writeErr("mope bench wire-peer \(id): undecodable frame: \(error)\n")
                continue
            }
            switch message {
            case .step(let step):
                dist.session = step.session
                dist.step = step.step
                WireCodec.encode(.dist(dist), into: &reply)
                try reply.withUnsafeBytes { try socket.send(buffers: [$0]) }
            case .close:
                return CLI.success
            default:
                continue
            }
        }
    }
}

// MARK: - Child processes

extension BenchWireRun {
    /// Throws if a worker has exited.
    static func checkRunning(_ children: ProcessGroup) throws {
        if let (pid, status) = children.reapExited().first {
            throw BenchWireError.workerExited(id: children.name(of: pid) ?? "\(pid)", status: status)
        }
    }
}
