import Foundation
import Inference
import Logging
import ProcessSupport
import Synchronization
import Wire
import WorkerCore
import ZeroMQ

#if canImport(Glibc)
import Glibc
#endif

/// The expert worker process: the ZeroMQ shell around `ExpertSessions`.
///
/// For each expert it serves, a DEALER socket (routing id = that expert's worker id) connects to the coordinator's
/// ROUTER and registers with `hello` (sent again every `helloInterval` until `welcome`; `reject` ends the worker).
/// A process usually serves one expert; experts that are the same model under different system prompts may share
/// one process, which loads the weights once and batches the sessions of all of them into each forward pass, while
/// the coordinator still sees one worker per expert. Then one loop on one thread: poll (no wait while forward
/// passes are pending), drain every queued message, tokenize requests through the model's chat template and the
/// expert's system prompt, feed that expert's session state machine, and carry out its directives; every pending
/// prefill chunk and decode of every session of every expert runs in ONE batched forward pass per iteration, whose
/// per-session top-k becomes the `dist` replies.
///
/// Heartbeats follow the Paranoid Pirate pattern, per connection: an expert's connection sends `heartbeat` when
/// it sent nothing for an interval; when the coordinator is silent on it for 3 intervals, that expert drops its
/// sessions (freeing the caches) and registers again, since the coordinator may have restarted. `drain()`
/// (SIGTERM/SIGINT in `mope worker`) sends `goodbye` for every expert, refuses new sessions and ends the loop when
/// the last session is closed or after `drainGrace`. A malformed frame is logged and dropped; typed errors go back
/// to the coordinator as `error` replies; neither stops the worker.
///
/// `Worker` itself is immutable and `Sendable`: `run()` keeps the loop's state on the calling thread, and
/// `drain()` / `stop()` may be called from any thread (they wake the loop through a pipe).
public final class Worker: Sendable {
    /// One expert of the process: how its requests become prompt tokens and how it registers.
    public struct Served: Sendable {
        /// How requests become prompt tokens.
        public let prompt: WorkerPrompt
        /// The expert's registration message.
        public let hello: Hello
        /// The tuned expert's logit bias, one value per token, added to every row before its top-k (nil: none).
        public let bias: [Float]?
        /// The expert's LoRA adapter, run with every session of it (nil: the base model).
        public let adapter: LoRAAdapter?
    }

    /// The validated settings (every default filled in).
    public let settings: WorkerSettings
    /// The model served.
    public let model: LanguageModel
    /// The experts served, in the order of `settings.experts`.
    public let served: [Served]

    /// Where the worker's events go: the caller's logger, labelled with the worker's id.
    public let logger: Logger
    /// One logger per served expert, labelled with that expert's worker id.
    private let expertLoggers: [Logger]

    private let control: LoopControl
    private let connectionHandler = Mutex<(@Sendable (ConnectionEvent) -> Void)?>(nil)

    /// A change of one expert's registration, for a service manager's readiness and status.
    public enum ConnectionEvent: Sendable, Equatable {
        /// Expert `expert` (an index of `served`) was welcomed by the coordinator (first time or again).
        case registered(expert: Int)
        /// Expert `expert` heard nothing from its coordinator for 3 heartbeat intervals and registers again.
        case coordinatorLost(expert: Int)
    }

    /// Sets what runs on each `ConnectionEvent`, on the loop's thread. Set it before `run()`; a later call
    /// replaces it.
    public func onConnectionEvent(_ handler: @escaping @Sendable (ConnectionEvent) -> Void) {
        connectionHandler.withLock { $0 = handler }
    }

    /// Runs the `onConnectionEvent` handler, if any.
    func report(_ event: ConnectionEvent) { connectionHandler.withLock { $0 }?(event) }

    /// Loads the model of `settings` and prepares the worker.
    /// - Throws: `WorkerError.model` naming the file and the GGUF or inference error, `.tokenizer`,
    ///   `.invalidSetting`.
    /// - Parameter logger: where events go; its label (`worker` by default) is followed by the worker's id.
    public convenience init(
        settings: WorkerSettings, logger: Logger = Logger(label: "worker")
    ) throws(WorkerError) {
        let model: LanguageModel
        do {
            model = try LanguageModel(path: settings.modelPath, threads: settings.resolvedThreads)
        } catch {
            throw .model(path: settings.modelPath, reason: String(describing: error))
        }
        try self.init(settings: settings, model: model, logger: logger)
    }

    /// Prepares a worker serving an already loaded `model` (its thread count is the model's own).
    /// - Throws: `WorkerError.tokenizer`, `.invalidSetting` (also for an unreadable logit-bias file or one made
    ///   for another vocabulary).
    /// - Parameter logger: where events go; its label (`worker` by default) is followed by the worker's id.
    public init(
        settings: WorkerSettings, model: LanguageModel, logger: Logger = Logger(label: "worker")
    ) throws(WorkerError) {
        let settings = try settings.validated(contextLength: model.configuration.contextLength)
        self.settings = settings
        self.model = model
        var served: [Served] = []
        for expert in settings.experts {
            let prompt: WorkerPrompt
            do {
                prompt = try WorkerPrompt(model: model, systemPrompt: expert.systemPrompt)
            } catch {
                throw .tokenizer(path: settings.modelPath, reason: error.description)
            }
            var hello = Hello(
                workerID: expert.resolvedWorkerID, expert: expert.name, modelFingerprint: model.fingerprint,
                vocabSize: UInt32(clamping: model.vocabularySize),
                vocabHash: UInt64(model.vocabularyHash, radix: 16) ?? 0,
                eosTokenIDs: prompt.tokenizer.eosTokenIDs.map { UInt32(bitPattern: $0) },
                contextLimit: UInt32(clamping: settings.resolvedKVCapacity(
                    contextLength: model.configuration.contextLength)),
                sessionCapacity: UInt32(clamping: settings.sessionCapacity)
            )
            var bias: [Float]?
            if let path = expert.biasPath {
                do {
                    bias = try LogitBias.load(path: path, model: model)
                } catch {
                    throw .invalidSetting(name: "logit bias of \(expert.name)", reason: error.description)
                }
            }
            var adapter: LoRAAdapter?
            if let path = expert.loraPath {
                do {
                    adapter = try LoRAAdapter(path: path, model: model, scale: expert.loraScale)
                } catch {
                    throw .invalidSetting(name: "LoRA adapter of \(expert.name) (\(path))", reason: "\(error)")
                }
                hello.modelFingerprint += "+lora:" + (adapter?.fingerprint ?? "")
                if let adapter {
                    logger.info("expert \(LogText.escaped(expert.name)) runs the LoRA adapter \(path) (\(adapter.adaptedCount) "
                        + "weights, rank \(adapter.maxRank))")
                }
            }
            served.append(Served(prompt: prompt, hello: hello, bias: bias, adapter: adapter))
        }
        self.served = served
        let ids = served.map { LogText.escaped($0.hello.workerID) }
        self.logger = logger.labelled("\(logger.label) \(ids.joined(separator: "+"))")
        expertLoggers = ids.map { logger.labelled("\(logger.label) \($0)") }
        guard let control = LoopControl() else {
            throw .invalidSetting(name: "wake pipe", reason: "cannot create a pipe: \(String(cString: strerror(errno)))")
        }
        self.control = control
    }

    /// The worker's id: its expert's worker id, or the ids of all its experts joined by "+".
    public var id: String { served.map(\.hello.workerID).joined(separator: "+") }

    /// Starts draining, as SIGTERM does: `goodbye`, no new sessions, exit once the sessions are closed or the
    /// grace period ends. Safe from any thread; calling it again does nothing.
    public func drain() { control.request(.drain) }

    /// Ends the loop at the next iteration without draining. Safe from any thread.
    public func stop() { control.request(.stop) }

    /// Whether a drain was requested.
    public var isDrainRequested: Bool { control.isDrainRequested }

    /// Runs the worker on the calling thread until it drains, is rejected or stopped.
    /// - Throws: `WorkerError.socket` when the socket cannot be set up or ZeroMQ fails.
    public func run() throws(WorkerError) -> WorkerExit {
        do {
            var loop = try WorkerLoop(worker: self, control: control)
            return try loop.run()
        } catch let error as ZMQError {
            throw .socket(error)
        } catch {
            throw .socket(ZMQError(errno: EINVAL, function: "worker", detail: String(describing: error)))
        }
    }

    /// Runs the worker on a new thread of its own (the loop blocks; it must not occupy the cooperative pool) and
    /// returns how it ended.
    public func runOnThread() async throws(WorkerError) -> WorkerExit {
        let result = await Threads.run(name: "mope-worker") { [self] () -> Result<WorkerExit, WorkerError> in
            do throws(WorkerError) {
                return .success(try run())
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    /// The logger of the expert at `index`, labelled with its worker id.
    func logger(expert index: Int) -> Logger { expertLoggers[index] }
}

