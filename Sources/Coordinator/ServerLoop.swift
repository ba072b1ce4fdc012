import ClusterCore
import Decoding
import Dispatch
import Foundation
import Preference
import Logging
import ProcessSupport
import Wire
import ZeroMQ

/// The coordinator's shell: the two ROUTER sockets, the clock and the wake-up pipe around `CoordinatorCore`, which
/// makes every decision. Lives on the one thread that runs `CoordinatorServer.run()`.
struct ServerLoop {
    private let server: CoordinatorServer
    private let control: LoopControl
    private let settings: CoordinatorSettings
    private let context: ZMQContext
    /// The workers' ROUTER (`settings.endpoint`).
    private let socket: ZMQSocket
    /// The clients' ROUTER (`settings.clientEndpoint`).
    private let clientSocket: ZMQSocket
    /// The ZAP handler's REP socket, when CURVE peers are checked against an allow-list.
    private let authenticator: ZMQSocket?
    private var poller = ZMQPoller()
    private var core: CoordinatorCore
    private var drainsSeen = 0
    private var stopped = false
    /// The log lines about a peer's bad frames (undecodable, unexpected, of the wrong shape), per peer.
    private var frameLog = LogRateLimiter(what: "malformed frames")
    /// The log lines about refused handshakes, per peer address.
    private var refusalLog = LogRateLimiter(what: "refused connections")
    /// The log lines about replies dropped because a peer does not read them (a flooding peer that ignores the
    /// errors it is sent), per peer.
    private var dropLog = LogRateLimiter(what: "dropped replies")
    /// The routing identity of the frame being handled, for the events about it that name no worker.
    private var framePeer: [UInt8]?

    init(
        server: CoordinatorServer, control: LoopControl,
        controller: @escaping @Sendable () -> any PreferenceController
    ) throws(CoordinatorError) {
        self.server = server
        self.control = control
        settings = server.settings
        let tokenizer = server.tokenizer
        var policy = CoordinatorPolicy()
        policy.maxSessions = settings.maxSessions
        policy.expertSelection = settings.expertSelection
        policy.vocabHash = tokenizer.vocabHash
        policy.vocabSource = settings.config.experts.first?.model ?? "the first expert's model"
        core = CoordinatorCore(config: settings.config, policy: policy) { generate in
            SessionResources(
                decoder: tokenizer.makeDecoder(), controller: controller(),
                promptTokens: tokenizer.promptTokens(generate.prompt),
                inputTokenCount: tokenizer.inputTokenCount(generate.input)
            )
        }
        do {
            context = try ZMQContext()
            if settings.curve != nil, settings.curveAllowList != nil || settings.curveWorkerAllowList != nil {
                // Bound before the ROUTERs, so that no handshake happens without it.
                let handler = try ZMQSocket(.rep, context: context)
                try handler.set(.linger, .zero)
                try handler.bind(ZAP.endpoint)
                authenticator = handler
            } else {
                authenticator = nil
            }
            socket = try Self.router(settings.endpoint, domain: Self.workerDomain, settings: settings, context: context)
            clientSocket = try Self.router(
                settings.clientEndpoint, domain: Self.clientDomain, settings: settings, context: context
            )
        } catch {
            throw .socket(error)
        }
        poller.register(socket)
        poller.register(clientSocket)
        poller.register(fileDescriptor: control.readDescriptor)
        if let authenticator { poller.register(authenticator) }
    }

    /// A ROUTER bound at `endpoint` with the settings' limits and CURVE, its handshakes checked in ZAP `domain`.
    private static func router(
        _ endpoint: String, domain: String, settings: CoordinatorSettings, context: ZMQContext
    ) throws(ZMQError) -> ZMQSocket {
        let router = try ZMQSocket(.router, context: context)
        try router.set(.routerMandatory, true)
        try router.set(.sendHighWaterMark, settings.highWaterMark)
        try router.set(.receiveHighWaterMark, settings.highWaterMark)
        try router.set(.linger, settings.linger)
        try router.set(.maxMessageSize, Int64(settings.maxMessageBytes))
        if let curve = settings.curve {
            try router.set(.curveServer, true)
            try router.set(.curveSecretKey, curve.secretKey)
            try router.set(.zapDomain, domain)
        }
        try router.bind(endpoint)
        return router
    }

    // MARK: The loop

    mutating func run() throws(CoordinatorError) {
        defer {
            socket.close()
            clientSocket.close()
            authenticator?.close()
            context.shutdown()
        }
        let config = settings.config
        let experts = config.experts.map { "\($0.name)×\($0.replicas)" }.joined(separator: ", ")
        if let path = Timeline.start(role: "coordinator") { server.logger.info("timeline: \(path)") }
        server.logger.info(
            "listening on \(settings.endpoint) for workers and \(settings.clientEndpoint) for clients; experts "
                + "\(experts); heartbeat \(config.heartbeatIntervalMs) ms, "
                + "step deadline \(config.stepDeadlineMs) ms; tokenizer of \(config.tokenizerSource ?? "?")"
        )
        server.reportListening()
        while !stopped && !core.isFinished {
            do {
                _ = try poller.poll(timeout: pollTimeout(now: Self.now()))
            } catch {
                throw .socket(error)
            }
            handleControl(now: Self.now())
            if stopped { break }
            try authenticate()
            try receiveAll()
            perform(core.onTick(now: Self.now()))
            flushLogLimits(now: Self.now())
        }
        server.logger.info("stopped")
    }

    /// Monotonic nanoseconds.
    static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    /// Until the core's nearest deadline (at most one second).
    private func pollTimeout(now: UInt64) -> Duration {
        let next = min(now &+ 1_000_000_000, core.nextDeadline ?? .max)
        return next > now ? .nanoseconds(Int64(next - now)) : .zero
    }

    private mutating func handleControl(now: UInt64) {
        let state = control.take()
        if state.stop {
            stopped = true
            return
        }
        guard state.drains > drainsSeen else { return }
        drainsSeen = state.drains
        if core.isDraining {
            server.logger.warn("second shutdown request: stopping now")
            stopped = true
            return
        }
        let grace = settings.drainGrace.components
        let graceNanos = UInt64(max(0, grace.seconds)) * 1_000_000_000
            + UInt64(max(0, grace.attoseconds)) / 1_000_000_000
        core.beginDrain(now: now, graceNanos: graceNanos)
        writeEvents()
    }

    // MARK: Receiving

    private mutating func receiveAll() throws(CoordinatorError) {
        try receiveAll(from: socket, on: .workers)
        try receiveAll(from: clientSocket, on: .clients)
    }

    private mutating func receiveAll(from router: ZMQSocket, on endpoint: PeerEndpoint) throws(CoordinatorError) {
        for _ in 0..<8192 {
            let frames: [[UInt8]]?
            do {
                frames = try router.tryReceiveMultipart()
            } catch {
                throw .socket(error)
            }
            guard let frames else { return }
            guard frames.count == 2 else {
                let peer = frames.first ?? []
                logFrameProblem(from: peer) {
                    "dropped a message of \(frames.count) frames (expected routing id + one frame) from "
                        + LogRateLimiter.name(of: peer)
                }
                continue
            }
            if Timeline.isOn, endpoint == .workers, case .dist(let dist)? = try? WireCodec.decode(frames[1]) {
                Timeline.record("dist-read", worker: String(decoding: frames[0], as: UTF8.self), session: dist.session,
                                step: dist.step)
            }
            framePeer = frames[0]
            perform(core.onFrame(identity: frames[0], payload: frames[1], on: endpoint, now: Self.now()))
            framePeer = nil
        }
    }

    // MARK: Authentication

    /// Answers the ZAP requests of handshakes in progress from the allow-list.
    private mutating func authenticate() throws(CoordinatorError) {
        guard let authenticator else { return }
        do {
            while let frames = try authenticator.tryReceiveMultipart() {
                guard let request = ZAPRequest(frames: frames) else {
                    // REP must answer before it can read again; libzmq drops a reply it cannot match.
                    try authenticator.send([Array(ZAP.version.utf8), [], Array("500".utf8),
                                            Array("malformed request".utf8), [], []])
                    continue
                }
                // One allow-list per endpoint: a client's key never opens the worker endpoint.
                let allowList = request.domain == Self.workerDomain
                    ? settings.curveWorkerAllowList : settings.curveAllowList
                let reply = allowList?.answer(request)
                    ?? ZAPReply(requestID: request.requestID, accepted: true, text: "OK")
                if !reply.accepted {
                    let admission = refusalLog.admit(peer: Array(request.address.utf8), now: Self.now())
                    for line in admission.summaries { server.logger.warn(line) }
                    if admission.log {
                        server.logger.warn(
                            "refused a connection to the \(request.domain) endpoint from "
                                + "\(LogRateLimiter.name(of: Array(request.address.utf8))): "
                                + LogText.escaped(reply.text)
                        )
                    }
                }
                try authenticator.send(reply.frames)
            }
        } catch {
            throw .socket(error)
        }
    }

    // MARK: Sending

    /// Sends what the core decided; a peer found gone goes back to the core, whose answer is sent in turn.
    private mutating func perform(_ directives: [CoordinatorDirective]) {
        var queue = directives[...]
        var goneClients: Set<ClientID> = []
        while let directive = queue.popFirst() {
            switch directive {
            case let .sendToWorker(worker, message):
                if case .step(let step) = message {
                    Timeline.record("step-sent", worker: worker, session: step.session, step: step.step)
                }
                if trySend(Array(worker.utf8), message, on: socket) == .unreachable {
                    queue += core.onWorkerUnreachable(worker, now: Self.now())
                }
            case let .sendToClient(client, message):
                guard !goneClients.contains(client) else { continue }
                if trySend(client, message, on: clientSocket) == .unreachable {
                    goneClients.insert(client)
                    queue += core.onClientGone(client, now: Self.now())
                }
            }
        }
        writeEvents()
    }

    private mutating func writeEvents() {
        // The core escapes the peer-supplied text it puts in events (worker ids, reasons).
        for event in core.takeEvents() {
            switch event {
            case let .malformedFrame(worker?, _), let .unexpectedFromWorker(worker, _):
                logFrameProblem(from: Array(worker.utf8)) { event.description }
            case .malformedFrame(nil, _):
                let peer = framePeer ?? []
                logFrameProblem(from: peer) { event.description + " (peer \(LogRateLimiter.name(of: peer)))" }
            default:
                server.logger.log(Self.level(of: event), event.description)
            }
        }
    }

    /// A warning about a bad frame from `peer`, within the peer's budget of such lines (`frameLog`).
    private mutating func logFrameProblem(from peer: [UInt8], _ line: () -> String) {
        let admission = frameLog.admit(peer: peer, now: Self.now())
        for summary in admission.summaries { server.logger.warn(summary) }
        if admission.log { server.logger.warn(line()) }
    }

    /// The summaries of the rate limits' intervals that are over.
    private mutating func flushLogLimits(now: UInt64) {
        for line in frameLog.flush(now: now) + refusalLog.flush(now: now) + dropLog.flush(now: now) {
            server.logger.warn(line)
        }
    }

    /// The level each core event is logged at: what was lost or refused warns, the cluster's life is info, and
    /// every finished request is info too (one line per request).
    static func level(of event: CoordinatorEvent) -> LogLevel {
        switch event {
        case .workerRejected, .workerDead, .workerFailedSession, .malformedFrame, .unexpectedFromWorker,
             .workerStrike, .sessionLostExperts, .drainExpired:
            .warn
        case .workerRegistered, .workerDraining, .sessionFailover, .drainStarted, .drained, .sessionFinished:
            .info
        }
    }

    /// The ZAP domains of the two endpoints.
    static let workerDomain = "workers"
    static let clientDomain = "clients"

    private enum SendOutcome: Equatable { case sent, unreachable, dropped }

    private mutating func trySend(_ identity: [UInt8], _ message: Message, on socket: ZMQSocket) -> SendOutcome {
        let line: String
        do {
            if try socket.trySend([identity, WireCodec.encode(message)]) { return .sent }
            line = "dropped a \(message.kind) message to \(LogRateLimiter.name(of: identity)): the peer's queue is full"
        } catch {
            if error.isHostUnreachable { return .unreachable }
            line = "could not send a \(message.kind) message to \(LogRateLimiter.name(of: identity)): \(error)"
        }
        let admission = dropLog.admit(peer: identity, now: Self.now())
        for summary in admission.summaries { server.logger.warn(summary) }
        if admission.log { server.logger.warn(line) }
        return .dropped
    }
}
