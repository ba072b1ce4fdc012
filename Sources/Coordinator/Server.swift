import ClusterCore
import Decoding
import Foundation
import Inference
import Logging
import Preference
import ProcessSupport
import Synchronization
import Wire
import ZeroMQ

#if canImport(Glibc)
import Glibc
#endif

/// The coordinator process: the ZeroMQ shell around `Membership` and `CoordinatorSession`.
///
/// Two ROUTER sockets are bound: expert workers (DEALER, routing id = worker id) connect to the workers'
/// endpoint (the config's `coordinator`), clients (DEALER, any routing id) to the clients' endpoint
/// (`clientEndpoint`). Roles never mix: only the workers' endpoint takes `hello`, `heartbeat`, `goodbye`, `dist`
/// and `error`, only the clients' endpoint `generate`; with CURVE each has its own allow-list. Each socket has
/// `ROUTER_MANDATORY` on (a send to a peer that is gone fails with `EHOSTUNREACH`, which for a worker means it
/// is dead and for a client that its request is cancelled), explicit high-water marks and a short linger.
///
/// One loop on one thread: poll with a timeout equal to the nearest deadline (session step deadlines, heartbeats
/// due, membership expiry, the drain's end), decode every queued frame with `WireCodec` (a malformed one is
/// logged and dropped; a client gets `error badRequest`), feed the pure state machines, and carry out their
/// directives. Every request gets an answer: `error unavailable` at once when no live worker serves any of its
/// experts, and every step has a deadline after which the expert fails over to a replica or is dropped.
///
/// `drain()` (SIGTERM/SIGINT in `mope coordinator`) refuses new `generate`s with `error draining`, lets the
/// running sessions finish within `drainGrace` (then fails them), and returns from `run()`. `stop()` ends the loop
/// at once. Both are safe from any thread.
///
/// A client's `status` request is answered with the cluster's state (`ClusterStatus`): launchers, scripts and
/// tests decide readiness from it, never from the log.
public final class CoordinatorServer: Sendable {
    /// The settings.
    public let settings: CoordinatorSettings
    /// The cluster's tokenizer.
    public let tokenizer: ClusterTokenizer

    private let controllerFactory: @Sendable () -> any PreferenceController
    private let control: LoopControl
    private let listeningHandler = Mutex<(@Sendable () -> Void)?>(nil)

    /// Sets what runs once both endpoints are bound, on the loop's thread before its first poll (a service
    /// manager's readiness, e.g. `SystemdNotify.ready`). Set it before `run()`; a later call replaces it.
    public func onListening(_ handler: @escaping @Sendable () -> Void) { listeningHandler.withLock { $0 = handler } }

    /// Runs the `onListening` handler, if any.
    func reportListening() { listeningHandler.withLock { $0 }?() }

    /// Prepares a coordinator: validates the config and loads the tokenizer (`config.tokenizerSource`: the config's
    /// tokenizer file, else its first expert's model; metadata only).
    ///
    /// - Parameter controller: makes the preference controller of each session; nil for the one the config asks
    ///   for (`controllerFactory(config:)`: the learned PCM when `pcm` names a file, else uniform).
    public convenience init(
        settings: CoordinatorSettings,
        controller: (@Sendable () -> any PreferenceController)? = nil
    ) throws(CoordinatorError) {
        do {
            try settings.config.validate()
        } catch {
            throw .config(error)
        }
        guard let source = settings.config.tokenizerSource else {
            throw .config(.invalidValue(field: "experts", reason: "list at least one expert"))
        }
        let tokenizer = try ClusterTokenizer(modelPath: source)
        let factory: @Sendable () -> any PreferenceController
        if let controller {
            factory = controller
        } else {
            factory = try Self.controllerFactory(config: settings.config).make
        }
        try self.init(settings: settings, tokenizer: tokenizer, controller: factory)
    }

    /// The preference controller a config asks for: the learned PCM read from `config.pcm` (its embedding
    /// features from the config's tokenizer file, else the first expert's model file), or `UniformController` when the config names none.
    /// - Returns: the factory of per-session controllers and a line describing it for the log.
    /// - Throws: `CoordinatorError.pcm` when the file cannot be read or is not a valid PCM.
    public static func controllerFactory(config: ClusterConfig) throws(CoordinatorError)
        -> (make: @Sendable () -> any PreferenceController, description: String)
    {
        guard let path = config.pcm else {
            return ({ UniformController() }, "uniform over the experts the preference names")
        }
        let network: PCMNetwork
        do {
            network = try PCMFile.load(path)
        } catch {
            throw .pcm(error)
        }
        // Without embeddings the PCM still sees the preference, the step and the experts' lists.
        let embeddings = config.tokenizerSource.flatMap { try? TokenEmbeddings(file: GGUFFile(path: $0)) }
        let description = "learned PCM \(path) (\(network.configuration.parameterCount) parameters"
            + (embeddings == nil ? ", no token embeddings" : "") + ")"
        return ({ PCMController(network: network, embeddings: embeddings) }, description)
    }

    /// Prepares a coordinator with an already loaded tokenizer.
    public init(
        settings: CoordinatorSettings, tokenizer: ClusterTokenizer,
        controller: @escaping @Sendable () -> any PreferenceController = { UniformController() }
    ) throws(CoordinatorError) {
        try settings.validate()
        self.settings = settings
        self.tokenizer = tokenizer
        controllerFactory = controller
        guard let control = LoopControl() else {
            let reason = "cannot create a pipe: \(String(cString: strerror(errno)))"
            throw .invalidSetting(name: "wake pipe", reason: reason)
        }
        self.control = control
    }

    /// Starts a drain: no new sessions, running ones finish (within `drainGrace`), then `run()` returns.
    /// Calling it again while draining stops at once.
    public func drain() { control.request(.drain) }

    /// Ends `run()` at the next iteration; sessions in flight are cancelled without a reply.
    public func stop() { control.request(.stop) }

    /// Binds the endpoint and serves on the calling thread until drained or stopped.
    /// - Throws: `CoordinatorError.socket` when the socket cannot be set up or bound.
    public func run() throws(CoordinatorError) {
        var loop = try ServerLoop(server: self, control: control, controller: controllerFactory)
        try loop.run()
    }

    /// Runs the loop on a thread of its own (it blocks) and returns when it ends.
    public func runOnThread() async throws(CoordinatorError) {
        let result: Result<Void, CoordinatorError> = await withCheckedContinuation { continuation in
            let started = Threads.start(name: "mope-coordinator") { [self] in
                do throws(CoordinatorError) {
                    try run()
                    continuation.resume(returning: .success(()))
                } catch {
                    continuation.resume(returning: .failure(error))
                }
            }
            if !started {
                continuation.resume(returning: .failure(.invalidSetting(name: "thread", reason: "cannot start one")))
            }
        }
        try result.get()
    }

    /// The caller's logger.
    var logger: Logger { settings.logger }
}
