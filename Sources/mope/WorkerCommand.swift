import CLI
import ClusterCore
import Coordinator
import Decoding
import Expert
import Foundation
import Logging
import ProcessSupport
import Synchronization
import WorkerCore
import ZeroMQ

#if canImport(Glibc)
import Glibc
#endif

/// `mope worker`: one expert worker process (or one process for several experts of the same model).
enum WorkerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        name: "worker",
        abstract: "Serve one expert's next-token distributions to a coordinator.",
        discussion: """
            Loads a GGUF model, connects to the coordinator, registers as an expert and serves sessions:
            each request is rendered through the model's chat template with the expert's system prompt,
            and every step replies with the top-k next-token log-probabilities. Sessions are batched into
            one forward pass per loop iteration.

            The expert comes either from --model and --system-prompt, or from a cluster config:
            --config FILE --expert NAME takes the expert's model and system prompt from the config
            (--model and --system-prompt still override them).

            With a config, --expert may list several experts that use the same model file
            (--expert concise,friendly): the process loads the weights once and registers each expert on
            its own connection under its own id (--id takes one id per expert, in the same order), and
            every forward pass batches the sessions of all of them. The coordinator sees one worker per
            expert; a crash of the process loses all of them at once.

            SIGTERM or SIGINT drains the worker: it says goodbye, refuses new sessions, finishes the open
            ones and exits 0 once they are closed or the grace period ends; a second signal exits at once.
            Exit codes: 0 drained, 1 failure or rejected by the coordinator, 2 usage.
            """,
        options: [
            .value("model", "file", help: "The GGUF model file."),
            .value("expert", "name[,name...]", help: "The expert this worker serves (replicas share a name); "
                + "several, comma-separated, with --config."),
            .value("system-prompt", "text", help: "The expert's system prompt (replaces the template's default)."),
            .value("bias", "file", help: "A logit-bias file made by mope tune, added to the expert's logits "
                + "(default: the config's \"bias\", if any)."),
            .value("lora", "file", help: "A LoRA adapter (GGUF, as llama.cpp's --lora reads) applied unmerged to the "
                + "expert's sessions (default: the config's \"lora\", if any)."),
            .value("lora-scale", "number", help: "The adapter's strength (default: the config's \"loraScale\", else 1)."),
            .value("config", "file", help: "A cluster config JSON to take the expert's model and prompt from."),
            .value("coordinator", "endpoint", help: "The coordinator's endpoint (default: tcp://127.0.0.1:5555, "
                + "or the config's)."),
            .value("id", "id[,id...]", help: "The worker id, one per expert (default: <expert>-<hostname>-<pid>)."),
            .value("threads", "n", help: "Threads for the forward pass (default: every core)."),
            .value("capacity", "n", default: "32", help: "The most sessions held at once."),
            .value("kv-capacity", "n", help: "Positions per session's KV cache (default: min(2048, context))."),
            .value("prefill-chunk", "n", default: "128", help: "The most prompt tokens per forward pass."),
            .value("drain-grace", "seconds", default: "30", help: "How long a drain waits for open sessions."),
        ] + CurveOptions.clientOptions(role: "worker") + LogOptions.options
    )

    static func run(_ arguments: ParsedArguments) async throws -> Int32 {
        // Caught before the model loads: a signal during loading drains the worker as soon as it exists.
        ShutdownSignals.install()
        defer { ShutdownSignals.uninstall() }
        let logger = try LogOptions.logger(label: "worker", arguments)
        let settings = try settings(arguments)
        let worker: Worker
        do {
            worker = try Worker(settings: settings, logger: logger)
        } catch {
            CLI.writeErr("error: \(error.description)\n")
            return CLI.failure
        }
        if SystemdNotify.isEnabled {
            // Ready for systemd (Type=notify) once every expert of the process is registered with the coordinator.
            let registered = ReadinessLatch(needed: settings.experts.count)
            let ids = settings.experts.map(\.resolvedWorkerID).joined(separator: ", ")
            let coordinator = settings.coordinator
            worker.onConnectionEvent { event in
                switch event {
                case .registered(let expert):
                    let status = "registered with \(coordinator) as \(ids)"
                    if registered.mark("\(expert)") {
                        SystemdNotify.ready(status: status)
                    } else if registered.isOpen {
                        SystemdNotify.status(status)
                    }
                case .coordinatorLost:
                    SystemdNotify.status("lost the coordinator \(coordinator); registering again")
                }
            }
        }
        ShutdownSignals.onSignal { count in
            SystemdNotify.stopping(status: count == 1 ? "draining: open sessions finish, new ones are refused"
                : "stopping")
            count == 1 ? worker.drain() : worker.stop()
        }
        let exit: WorkerExit
        do {
            exit = try await worker.runOnThread()
        } catch {
            CLI.writeErr("error: \(error.description)\n")
            return CLI.failure
        }
        switch exit {
        case .drained, .stopped: return CLI.success
        case .rejected: return CLI.failure
        }
    }

    /// The worker's settings from the command line (and the cluster config, if given).
    static func settings(_ arguments: ParsedArguments) throws -> WorkerSettings {
        let expertList = try arguments.require("expert")
        let names = expertList.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        guard !names.contains(where: \.isEmpty) else {
            throw UsageError.invalidValue(option: "expert", value: expertList, expected: "names separated by commas")
        }
        var ids: [String?] = Array(repeating: nil, count: names.count)
        if let idList = arguments.value("id") {
            let given = idList.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            guard given.count == names.count, !given.contains(where: \.isEmpty) else {
                throw UsageError.invalidValue(
                    option: "id", value: idList, expected: "\(names.count) id(s) separated by commas, one per expert"
                )
            }
            ids = given
        }
        var modelPath = arguments.value("model")
        var systemPrompts: [String?] = Array(repeating: arguments.value("system-prompt"), count: names.count)
        var biasPaths: [String?] = Array(repeating: arguments.value("bias"), count: names.count)
        var loraPaths: [String?] = Array(repeating: arguments.value("lora"), count: names.count)
        let loraScaleOption = try arguments.value("lora-scale", as: Float.self)
        if let scale = loraScaleOption, !scale.isFinite {
            throw UsageError.invalidValue(option: "lora-scale", value: "\(scale)", expected: "a finite number")
        }
        var loraScales: [Float] = Array(repeating: loraScaleOption ?? 1, count: names.count)
        var coordinator = try arguments.endpoint("coordinator", binding: false)
        if let configPath = arguments.value("config") {
            let config = try ClusterConfig.load(contentsOf: configPath)
            var models: Set<String> = []
            for (i, name) in names.enumerated() {
                guard let entry = config.experts.first(where: { $0.name == name }) else {
                    let known = config.experts.map(\.name).joined(separator: ", ")
                    throw UsageError.invalidValue(
                        option: "expert", value: name, expected: "an expert of \(configPath) (\(known))"
                    )
                }
                models.insert(entry.model)
                modelPath = modelPath ?? ConfigPaths.resolve(entry.model, relativeTo: configPath)
                systemPrompts[i] = systemPrompts[i] ?? entry.systemPrompt
                biasPaths[i] = biasPaths[i] ?? entry.bias.map { ConfigPaths.resolve($0, relativeTo: configPath) }
                if loraPaths[i] == nil, let lora = entry.lora {
                    loraPaths[i] = ConfigPaths.resolve(lora, relativeTo: configPath)
                    loraScales[i] = loraScaleOption ?? entry.loraScale
                }
            }
            guard models.count == 1 || arguments.value("model") != nil else {
                throw UsageError.invalidValue(
                    option: "expert", value: expertList, expected: "experts of one model file (they use "
                        + models.sorted().joined(separator: ", ") + ")"
                )
            }
            coordinator = coordinator ?? config.coordinator
        } else if names.count > 1 {
            throw UsageError.invalidValue(
                option: "expert", value: expertList, expected: "one expert, or several with --config"
            )
        }
        for option in ["system-prompt", "bias", "lora"] where names.count > 1 && arguments.value(option) != nil {
            throw UsageError.invalidValue(
                option: option, value: "…", expected: "no --\(option) with several experts (the config "
                    + "gives each its own)"
            )
        }
        guard let modelPath else {
            throw UsageError.missingOption("model")
        }
        var settings = WorkerSettings(modelPath: modelPath, experts: names.indices.map {
            HostedExpert(name: names[$0], systemPrompt: systemPrompts[$0], workerID: ids[$0], biasPath: biasPaths[$0],
                         loraPath: loraPaths[$0], loraScale: loraScales[$0])
        })
        if let coordinator { settings.coordinator = coordinator }
        settings.threads = try arguments.threads()
        settings.sessionCapacity = try arguments.count("capacity")
        // The model's context bounds it from above; that is checked once the model is loaded.
        settings.kvCapacity = try arguments.value("kv-capacity", as: Int.self, in: 2...Int.max,
                                                  expected: "a whole number ≥ 2")
        settings.prefillChunk = try arguments.count("prefill-chunk")
        let grace = try arguments.nonNegative("drain-grace", as: Double.self)
        settings.drainGrace = .milliseconds(Int64(grace * 1000))
        settings.curve = try CurveOptions.clientKeys(arguments)
        return settings
    }
}
