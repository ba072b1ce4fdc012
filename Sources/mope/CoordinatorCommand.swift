import CLI
import ClusterCore
import Coordinator
import Decoding
import Foundation
import Logging
import ProcessSupport
import ZeroMQ

#if canImport(Glibc)
import Glibc
#endif

/// `mope coordinator`: the coordinator process.
enum CoordinatorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        name: "coordinator",
        abstract: "Run the coordinator: membership, sessions, merge, sampling and failover.",
        discussion: """
            Binds two ROUTER sockets: the workers' endpoint, the config's "coordinator" (or --endpoint), where
            expert workers register (`mope worker --coordinator ADDR`), and the clients' endpoint, the config's
            "clientEndpoint" (or --client-endpoint; default the next tcp port, or the ipc path + ".clients"),
            where requests arrive (`mope generate --coordinator CLIENT-ADDR`). Roles never mix: a hello on the
            clients' endpoint is refused, a generate on the workers' endpoint is dropped, and with CURVE each
            endpoint has its own allow-list (--curve-worker-keys, --curve-authorized-keys). At every token the coordinator gathers the top-k of each expert the request's preference
            names, merges them with the preference controller's weights, samples, and sends the token on.
            A worker that misses 3 heartbeats or a step deadline is failed over to a replica by replay, or
            dropped from the mixture (the answer says so).

            The tokenizer (for the streamed text and stop strings) is read from the config's "tokenizer" file
            (or --tokenizer): a small file `mope tokenizer-file MODEL OUT` writes, so that the coordinator's
            machine needs no weights; without one, from the first expert's model file in the config (its
            metadata only). Workers whose vocabulary differs from it are rejected.

            The expert weights come from the learned Preference Control Model named by the config's "pcm"
            field (or --pcm), recomputed at every token; with --uniform, or when no PCM is named, every expert
            the preference names gets an equal share.

            Events are logged to standard error, one line each, as "LEVEL [coordinator] text" (--log-level
            chooses how much).
            `mope status --coordinator ADDR` shows the registered workers and whether every expert is up.
            SIGTERM or SIGINT drains: new requests get "error draining", running ones may finish within
            --drain-grace seconds, then the process exits 0; a second signal exits at once.
            Use tcp://0.0.0.0:PORT to accept workers from other machines.
            """,
        options: [
            .value("config", "file", help: "The cluster config JSON."),
            .value("endpoint", "endpoint", help: "The workers' endpoint to bind (default: the config's "
                + "\"coordinator\")."),
            .value("client-endpoint", "endpoint", help: "The clients' endpoint to bind (default: the config's "
                + "\"clientEndpoint\", else the workers' endpoint's next tcp port or its ipc path + \".clients\")."),
            .value("drain-grace", "seconds", default: "30", help: "How long a drain lets running requests finish."),
            .value("curve-secret-key-file", "file", help: "Encrypt with CURVE using the secret key in this file "
                + "(mode 0600, as mope keygen writes it; or MOPE_CURVE_SECRET_KEY_FILE). Workers and clients need "
                + "the public key, which is logged at start."),
            .value("pcm", "file", help: "The learned PCM file (default: the config's \"pcm\")."),
            .value("tokenizer", "file", help: "The tokenizer file (mope tokenizer-file) or a model file to read "
                + "the tokenizer from (default: the config's \"tokenizer\", else its first expert's model)."),
            .flag("uniform", help: "Weigh the named experts equally, even when the config names a PCM."),
            .value("curve-authorized-keys", "file", help: "With --curve-secret-key-file: admit only clients whose "
                + "CURVE public key is listed in this file (one per line, # comments; or MOPE_CURVE_AUTHORIZED_KEYS)."),
            .value("curve-worker-keys", "file", help: "With --curve-secret-key-file: admit only workers whose CURVE "
                + "public key is listed in this file (or MOPE_CURVE_WORKER_KEYS). A client's key never opens the "
                + "workers' endpoint."),
            .flag("insecure", help: "Allow plain connections on an endpoint other machines can reach (without "
                + "CURVE the coordinator binds only loopback tcp and ipc endpoints)."),
        ] + LogOptions.options
    )

    static func run(_ arguments: ParsedArguments) async throws -> Int32 {
        // Caught from the start: a signal while the tokenizer and the PCM load drains as soon as the loop runs.
        ShutdownSignals.install()
        defer { ShutdownSignals.uninstall() }
        let logger = try LogOptions.logger(label: "coordinator", arguments)
        let configPath = try arguments.require("config")
        var config = try ClusterConfig.load(contentsOf: configPath)
        for index in config.experts.indices {
            config.experts[index].model = ConfigPaths.resolve(config.experts[index].model, relativeTo: configPath)
        }
        if let tokenizer = arguments.value("tokenizer") {
            config.tokenizer = tokenizer
        } else if let tokenizer = config.tokenizer {
            config.tokenizer = ConfigPaths.resolve(tokenizer, relativeTo: configPath)
        }
        if let pcm = arguments.value("pcm") {
            config.pcm = pcm
        } else if let pcm = config.pcm {
            config.pcm = ConfigPaths.resolve(pcm, relativeTo: configPath)
        }
        if arguments.flag("uniform") { config.pcm = nil }
        var settings = CoordinatorSettings(config: config)
        if let endpoint = try arguments.endpoint("endpoint", binding: true) { settings.endpoint = endpoint }
        settings.clientEndpoint = try arguments.endpoint("client-endpoint", binding: true)
            ?? config.clientEndpointOverride ?? ClusterConfig.clientEndpoint(for: settings.endpoint)
        let grace = try arguments.require("drain-grace", as: Double.self)
        guard grace.isFinite, grace >= 0 else {
            throw UsageError.invalidValue(option: "drain-grace", value: "\(grace)", expected: "seconds ≥ 0")
        }
        settings.drainGrace = .milliseconds(Int64(grace * 1000))
        settings.logger = logger
        if let pair = try CurveOptions.serverKeys(arguments) {
            settings.curve = pair
            logger.info("CURVE public key \(pair.publicKey)")
        }
        for option in [CurveOptions.authorizedKeys, CurveOptions.workerKeys] {
            guard let path = CurveOptions.path(arguments, option), settings.curve == nil else { continue }
            throw UsageError.invalidValue(
                option: option, value: path, expected: "to be used with --\(CurveOptions.secretKeyFile)"
            )
        }
        if let (list, path) = try CurveOptions.allowList(arguments) {
            settings.curveAllowList = list
            logger.info("admitting the \(list.keys.count) client CURVE keys listed in \(path)")
        }
        if let (list, path) = try CurveOptions.allowList(arguments, CurveOptions.workerKeys) {
            settings.curveWorkerAllowList = list
            logger.info("admitting the \(list.keys.count) worker CURVE keys listed in \(path)")
        }
        settings.insecure = arguments.flag("insecure")
        for endpoint in [settings.endpoint, settings.clientEndpoint]
        where settings.insecure && settings.curve == nil && !CoordinatorSettings.isLocal(endpoint) {
            logger.warn("\(endpoint) accepts plain connections from other machines (--insecure): anyone who "
                + "reaches it can register a worker or read prompts")
        }
        let server: CoordinatorServer
        do {
            let controller = try CoordinatorServer.controllerFactory(config: config)
            logger.info("preference controller: \(controller.description)")
            let told = switch config.expertContext {
            case .own: "its own system prompt only"
            case .ownAndPreference: "its own system prompt, then the preference's prompts"
            case .preference: "the preference's prompts as its system prompt"
            }
            logger.info("each expert is told \(told) (expertContext \(config.expertContext))")
            server = try CoordinatorServer(settings: settings, controller: controller.make)
        } catch {
            CLI.writeErr("error: \(error.description)\n")
            return CLI.failure
        }
        if SystemdNotify.isEnabled {
            // Ready for systemd (Type=notify) once both endpoints are bound, before the loop's first poll.
            let status = "listening on \(settings.endpoint) for workers and \(settings.clientEndpoint) for clients"
            server.onListening { SystemdNotify.ready(status: status) }
        }
        ShutdownSignals.onSignal { count in
            SystemdNotify.stopping(status: count == 1 ? "draining: running requests finish, new ones are refused"
                : "stopping")
            server.drain()
        }
        do {
            try await server.runOnThread()
        } catch {
            CLI.writeErr("error: \(error.description)\n")
            return CLI.failure
        }
        return CLI.success
    }
}

/// Paths in a cluster config.
enum ConfigPaths {
    /// A relative path (a model, a bias or PCM file) as given when it exists from the working directory, else
    /// from the config's folder.
    static func resolve(_ path: String, relativeTo configPath: String) -> String {
        guard !path.hasPrefix("/"), !FileManager.default.fileExists(atPath: path) else { return path }
        let folder = URL(fileURLWithPath: configPath).deletingLastPathComponent()
        let besideConfig = folder.appendingPathComponent(path).path
        return FileManager.default.fileExists(atPath: besideConfig) ? besideConfig : path
    }
}
