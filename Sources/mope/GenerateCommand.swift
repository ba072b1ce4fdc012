import CLI
import ClusterCore
import Coordinator
import Decoding
import Foundation
import ProcessSupport
import Wire
import ZeroMQ

/// `mope generate`: one request to a coordinator, its text streamed to standard output.
enum GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        name: "generate",
        abstract: "Ask a mope cluster for an answer personalised by a preference.",
        discussion: """
            Sends the prompt and the preference to the coordinator, which merges its experts' next-token
            distributions with the preference's weights at every token. The text streams to standard
            output as tokens arrive; at the end standard error shows the finish reason, the token count,
            tokens per second and, when the cluster lost experts or failed over, "degraded: lost expert X"
            and the failover count.

            The preference names dimensions of Personalized Soups, optionally weighted:
            "concise, friendly", "informative:2 unfriendly", "elementary". Only the experts it names take
            part; an empty preference weighs every expert equally.

            --system TEXT adds a system turn before the prompt; --raw sends the prompt as raw text that
            every expert continues as is (no chat template, no system prompt).

            --trace FILE writes one JSON line per token: step, token id, text, alpha (the weight of each
            expert), and each expert's top-k ids, log-probabilities and tail (the probability mass outside
            its list).

            With several coordinators (--coordinator A,B), a coordinator that goes silent mid-answer (two
            --heartbeat intervals) is left and the answer resumes on the next one from the tokens already
            shown, with the same seed, so the text is the same; with none left the error says how many
            tokens were sent. Ctrl-C (SIGINT) or SIGTERM cancels the request: the coordinator closes its
            session on every worker at the next token.

            --concurrency N sends N copies of the request at once over N connections (a load test, also
            with N = 1): the text is not shown; standard error shows the aggregate tokens per second.
            Exit codes: 0 done, 1 refused or failed (the coordinator's reason is shown), 2 usage, 130
            cancelled by a signal.
            """,
        options: [
            .value("coordinator", "endpoint", default: "tcp://127.0.0.1:5556", help: "The coordinator's clients' "
                + "endpoint (its config's \"clientEndpoint\": by default the port after the workers'), or several "
                + "separated by commas: a request lost with its coordinator resumes on the next."),
            .value("heartbeat", "seconds", default: "1", help: "Ping a silent coordinator after this long; two "
                + "intervals without an answer mean it is lost."),
            .value("preference", "text", default: "", help: "The preference, e.g. \"concise, friendly\"."),
            .value("max-tokens", "n", default: "0", help: "The most new tokens (0: the cluster's default)."),
            .value("temperature", "t", help: "Sampling temperature; 0 is greedy (default: the cluster's, 0 unless "
                + "its config says)."),
            .value("top-p", "p", help: "Nucleus threshold in (0, 1] (default: the cluster's, 1 unless its config "
                + "says)."),
            .value("top-k", "n", help: "Sample among this many merged tokens, 0 for all (default: the cluster's)."),
            .value("seed", "n", help: "Seed of the sampler; the same seed gives the same text (default: the "
                + "cluster's)."),
            .value("merge", "mode", help: "probability (the paper's mixture) or logit (default: the cluster's, "
                + "probability unless its config says)."),
            .repeating("stop", "text", help: "End the answer at this text (not included); may be repeated."),
            .value("system", "text", help: "A system turn before the prompt (each expert's own system prompt "
                + "comes first)."),
            .flag("raw", help: "Send the prompt as raw text: no chat template, no system prompts (a completion)."),
            .value("trace", "file", help: "Write one JSON line per token with the weights and each expert's top-k."),
            .value("timeout", "seconds", default: "300", help: "The deadline of the whole request."),
            .value("concurrency", "n", default: "1", help: "Send this many copies at once (load test)."),
        ] + CurveOptions.clientOptions(role: "client"),
        positionals: [Positional("prompt", help: "The user's message.")]
    )

    static func run(_ arguments: ParsedArguments) async throws -> Int32 {
        let endpoints = try arguments.require("coordinator").split(separator: ",")
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard let endpoint = endpoints.first else { throw UsageError.missingOption("coordinator") }
        for candidate in endpoints {
            if let problem = Endpoint.problem(candidate, binding: false) {
                throw UsageError.invalidValue(option: "coordinator", value: candidate, expected: problem)
            }
        }
        let heartbeat = try arguments.require("heartbeat", as: Double.self)
        guard heartbeat.isFinite, heartbeat > 0 else {
            throw UsageError.invalidValue(option: "heartbeat", value: "\(heartbeat)", expected: "seconds > 0")
        }
        let request = try makeRequest(arguments)
        let timeout = try arguments.require("timeout", as: Double.self)
        guard timeout.isFinite, timeout > 0 else {
            throw UsageError.invalidValue(option: "timeout", value: "\(timeout)", expected: "seconds > 0")
        }
        let concurrency = try arguments.require("concurrency", as: Int.self)
        guard (1...4096).contains(concurrency) else {
            throw UsageError.invalidValue(option: "concurrency", value: "\(concurrency)", expected: "1 to 4096")
        }
        let deadline = Duration.milliseconds(Int64(timeout * 1000))
        let curve = try CurveOptions.clientKeys(arguments)
        if arguments.options["concurrency"] != nil {
            return await runLoad(
                request, endpoint: endpoint, curve: curve, timeout: deadline, count: concurrency
            )
        }
        var trace: TraceWriter?
        if let path = arguments.value("trace") {
            guard let writer = TraceWriter(path: path) else {
                CLI.writeErr("error: cannot write the trace file \(path)\n")
                return CLI.failure
            }
            trace = writer
        }
        let start = ContinuousClock.now
        var firstToken: ContinuousClock.Instant?
        // Ctrl-C or SIGTERM cancels the request; the coordinator then closes its session on every worker.
        let control = GenerationControl()
        ShutdownSignals.onSignal { _ in control.cancel() }
        defer { ShutdownSignals.uninstall() }
        let pool = CoordinatorPool(
            endpoints: endpoints, curve: curve, connectTimeout: .seconds(2),
            heartbeatInterval: .milliseconds(Int64(heartbeat * 1000))
        )
        do {
            let (done, _) = try pool.generate(request, timeout: deadline, control: control, onFailover: { from, tokens in
                CLI.writeErr("\n[generate] coordinator \(from) lost after \(tokens) tokens; resuming on the next\n")
            }) { event in
                if firstToken == nil { firstToken = .now }
                if !event.text.isEmpty { writeStandardOutput(event.text) }
                trace?.write(event)
            }
            // Text held back as a possible stop string and released only at the end.
            writeStandardOutput("\n")
            trace?.close()
            report(done, start: start, firstToken: firstToken)
            return CLI.success
        } catch {
            trace?.close()
            if case .cancelled = error {
                CLI.writeErr("\ncancelled\n")
                return 130
            }
            CLI.writeErr("\nerror: \(error.description)\n")
            return CLI.failure
        }
    }

    /// The request the arguments describe.
    static func makeRequest(_ arguments: ParsedArguments) throws -> Generate {
        guard let prompt = arguments.positional("prompt"), !prompt.isEmpty else {
            throw UsageError.invalidValue(option: "prompt", value: "", expected: "a non-empty message")
        }
        let maxTokens = try arguments.require("max-tokens", as: UInt32.self)
        let temperature = try arguments.value("temperature", as: Float.self)
        if let temperature, !(temperature.isFinite && temperature >= 0) {
            throw UsageError.invalidValue(option: "temperature", value: "\(temperature)", expected: "a number ≥ 0")
        }
        let topP = try arguments.value("top-p", as: Float.self)
        if let topP, !(topP > 0 && topP <= 1) {
            throw UsageError.invalidValue(option: "top-p", value: "\(topP)", expected: "a number in (0, 1]")
        }
        let topK = try arguments.value("top-k", as: UInt32.self)
        let seed = try arguments.value("seed", as: UInt64.self)
        var merge: MergeMode?
        if let name = arguments.value("merge") {
            guard let mode = MergeMode(name: name) else {
                throw UsageError.invalidValue(option: "merge", value: name, expected: "probability or logit")
            }
            merge = mode
        }
        let input: Request
        if arguments.flag("raw") {
            guard arguments.value("system") == nil else {
                throw UsageError.invalidValue(option: "system", value: arguments.value("system") ?? "",
                                              expected: "no system turn with --raw (raw text has no turns)")
            }
            input = .raw(prompt)
        } else if let system = arguments.value("system") {
            input = .chat([ChatTurn(role: "system", content: system), ChatTurn(role: "user", content: prompt)])
        } else {
            input = .chat([ChatTurn(role: "user", content: prompt)])
        }
        return Generate(
            request: 0, input: input, preference: arguments.value("preference") ?? "", maxNewTokens: maxTokens,
            sampling: SamplingRequest(temperature: temperature, topP: topP, topK: topK, seed: seed),
            merge: merge, stop: arguments.values("stop"), trace: arguments.value("trace") != nil
        )
    }

    /// The closing summary on standard error.
    static func report(_ done: Done, start: ContinuousClock.Instant, firstToken: ContinuousClock.Instant?) {
        let seconds = seconds(start.duration(to: .now))
        let rate = seconds > 0 ? Double(done.tokens) / seconds : 0
        var lines = "finish: \(done.finish), \(done.tokens) tokens in \(format(seconds)) s, \(format(rate)) tokens/s"
        if let firstToken { lines += ", first token after \(format(self.seconds(start.duration(to: firstToken)))) s" }
        lines += "\n"
        for expert in done.lostExperts { lines += "degraded: lost expert \(expert)\n" }
        if done.failovers > 0 { lines += "failovers: \(done.failovers) (moved to a replica by replay)\n" }
        CLI.writeErr(lines)
    }

    /// `count` copies of the request at once, one connection each; prints the aggregate throughput.
    static func runLoad(
        _ request: Generate, endpoint: String, curve: CurveClientKeys?, timeout: Duration, count: Int
    ) async -> Int32 {
        let start = ContinuousClock.now
        let all = await withTaskGroup(of: Result<Done, ClientError>.self) { group in
            for _ in 0..<count {
                group.addTask {
                    await Threads.run(name: "mope-generate") { () -> Result<Done, ClientError> in
                        do throws(ClientError) {
                            let client = try CoordinatorClient(endpoint: endpoint, curve: curve)
                            return .success(try client.generate(request, timeout: timeout))
                        } catch {
                            return .failure(error)
                        }
                    }
                }
            }
            var results: [Result<Done, ClientError>] = []
            for await result in group { results.append(result) }
            return results
        }
        let elapsed = seconds(start.duration(to: .now))
        var tokens = 0
        var failures: [String] = []
        var latencies: [Double] = []
        for result in all {
            switch result {
            case let .success(done):
                tokens += Int(done.tokens)
                if done.tokens > 0 { latencies.append(Double(done.elapsedMicros) / 1000 / Double(done.tokens)) }
            case let .failure(error):
                failures.append(error.description)
            }
        }
        let mean = latencies.isEmpty ? 0 : latencies.reduce(0, +) / Double(latencies.count)
        CLI.writeErr(
            "\(count) concurrent requests: \(all.count - failures.count) done, \(failures.count) failed; "
                + "\(tokens) tokens in \(format(elapsed)) s: \(format(elapsed > 0 ? Double(tokens) / elapsed : 0)) "
                + "tokens/s aggregate; mean \(format(mean)) ms per token per request\n"
        )
        for failure in Set(failures).sorted() { CLI.writeErr("error: \(failure)\n") }
        return failures.isEmpty ? CLI.success : CLI.failure
    }

    static func seconds(_ duration: Duration) -> Double {
        let (s, atto) = duration.components
        return Double(s) + Double(atto) * 1e-18
    }

    static func format(_ value: Double) -> String { String(format: "%.2f", value) }
}

/// Writes text to standard output at once (unbuffered streaming).
func writeStandardOutput(_ text: String) {
    CLI.writeOut(text)
}

/// Writes the `--trace` JSON lines.
struct TraceWriter {
    private struct ExpertLine: Encodable {
        var expert: String
        var weight: Float
        var ids: [UInt32]
        var logprobs: [Float]
        var tail: Float
    }

    private struct Line: Encodable {
        var step: UInt32
        var token: UInt32
        var text: String
        var alpha: [String: Float]
        var experts: [ExpertLine]
    }

    private let handle: FileHandle
    private let encoder: JSONEncoder

    init?(path: String) {
        guard FileManager.default.createFile(atPath: path, contents: nil),
            let handle = FileHandle(forWritingAtPath: path)
        else { return nil }
        self.handle = handle
        encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
    }

    func write(_ event: TokenEvent) {
        var alpha: [String: Float] = [:]
        for expert in event.experts { alpha[expert.expert] = expert.weight }
        let line = Line(
            step: event.step, token: event.token, text: event.text, alpha: alpha,
            experts: event.experts.map {
                ExpertLine(expert: $0.expert, weight: $0.weight, ids: $0.ids, logprobs: $0.logProbs, tail: $0.tailMass)
            }
        )
        guard var data = try? encoder.encode(line) else { return }
        data.append(0x0A)
        handle.write(data)
    }

    func close() { try? handle.close() }
}
