import Decoding
import Foundation
import Preference
import TestKit
import Testing
import Wire

@testable import ClusterCore

@Suite struct ClusterConfigTests {
    static let configs = Fixtures.configs

    func decode(_ json: String) throws(ConfigError) -> ClusterConfig {
        try ClusterConfig.decode(Data(json.utf8))
    }

    @Test("the clients' endpoint defaults to the workers' next tcp port or a sibling ipc path, and may be set")
    func clientEndpoint() throws {
        #expect(try decode(#"{"experts": [{"name": "a", "model": "m"}]}"#).clientEndpoint == "tcp://127.0.0.1:5556")
        #expect(ClusterConfig.clientEndpoint(for: "tcp://*:7000") == "tcp://*:7001")
        #expect(ClusterConfig.clientEndpoint(for: "ipc:///run/c.sock") == "ipc:///run/c.sock.clients")
        let set = try decode(#"{"clientEndpoint": "ipc:///run/x", "experts": [{"name": "a", "model": "m"}]}"#)
        #expect(set.clientEndpoint == "ipc:///run/x")
        #expect(try ClusterConfig.decode(set.encoded()).clientEndpoint == "ipc:///run/x")
        var same = set
        same.clientEndpointOverride = same.coordinator
        #expect(throws: ConfigError.self) { try same.validate() }
    }

    @Test("a config with only its experts takes every default")
    func defaults() throws {
        let config = try decode(#"{"experts": [{"name": "concise", "model": "m.gguf"}]}"#)
        #expect(config.coordinator == "tcp://127.0.0.1:5555")
        #expect(config.heartbeatIntervalMs == 1000)
        #expect(config.stepDeadlineMs == 5000)
        #expect(config.openDeadlineMs == 30000)
        #expect(config.topK == 64)
        #expect(config.merge == .probability)
        #expect(config.sampling == SamplingConfig())
        #expect(config.sharedWorkers == nil)
        #expect(config.experts == [ExpertConfig(
            name: "concise", dimension: .concise, systemPrompt: PreferenceDimension.concise.defaultPrompt,
            model: "m.gguf", replicas: 1
        )])
        try config.validate()
    }

    @Test(
        "decoding errors name the field",
        arguments: [
            (#"{}"#, "experts"),
            (#"{"experts": [{"name": "a"}]}"#, "experts[0].model"),
            (#"{"experts": [{"name": "a", "model": "m"}, {"model": "m"}]}"#, "experts[1].name"),
            (#"{"experts": [], "heartbeatIntervalMs": "fast"}"#, "heartbeatIntervalMs"),
            (#"{"experts": [], "topK": 70000}"#, "topK"),
            (#"{"experts": [{"name": "a", "model": "m", "dimension": "concize"}]}"#, "experts[0].dimension"),
            (#"{"experts": [{"name": "a", "model": "m", "replicas": -1.5}]}"#, "experts[0].replicas"),
            (#"{"experts": [], "merge": "sum"}"#, "merge"),
            (#"{"experts": [], "sampling": {"temperature": "hot"}}"#, "sampling.temperature"),
            (#"{"experts": [], "stepDeadlinMs": 5}"#, "stepDeadlinMs"),
            (#"{"experts": [{"name": "a", "modle": "m"}]}"#, "experts[0].modle"),
            (#"{"experts": [], "sharedWorkers": "yes"}"#, "sharedWorkers"),
            (#"{"experts": [], "expertContext": "all"}"#, "expertContext"),
            (#"{"experts": [], "preferencePrompts": {"kind": "Be kind."}}"#, "preferencePrompts"),
        ]
    )
    func errorsNameTheField(json: String, field: String) {
        do {
            _ = try decode(json)
            Issue.record("decoded \(json)")
        } catch {
            #expect(error.field == field)
            #expect(error.description.contains(field))
        }
    }

    @Test("an unknown field suggests the closest known one")
    func unknownFieldSuggestion() {
        #expect(throws: ConfigError.unknownField("stepDeadlinMs", suggestion: "stepDeadlineMs")) {
            try decode(#"{"experts": [], "stepDeadlinMs": 5}"#)
        }
    }

    @Test("text that is not JSON is reported as such")
    func notJSON() {
        #expect(throws: ConfigError.self) { try decode("{experts") }
        do { _ = try decode("{experts") } catch { #expect(error.field == nil) }
    }

    @Test(
        "validation refuses values that cannot work, naming the field",
        arguments: [
            (#"{"experts": []}"#, "experts"),
            (#"{"coordinator": "localhost:5555", "experts": [{"name": "a", "model": "m"}]}"#, "coordinator"),
            (#"{"topK": 0, "experts": [{"name": "a", "model": "m"}]}"#, "topK"),
            (#"{"stepDeadlineMs": 0, "experts": [{"name": "a", "model": "m"}]}"#, "stepDeadlineMs"),
            (#"{"experts": [{"name": "a", "model": "m"}, {"name": "a", "model": "m"}]}"#, "experts[1].name"),
            (#"{"experts": [{"name": "a", "model": ""}]}"#, "experts[0].model"),
            (#"{"experts": [{"name": "a", "model": "m", "replicas": 0}]}"#, "experts[0].replicas"),
            (#"{"sampling": {"topP": 1.5}, "experts": [{"name": "a", "model": "m"}]}"#, "sampling.topP"),
            (#"{"sampling": {"temperature": -1}, "experts": [{"name": "a", "model": "m"}]}"#, "sampling.temperature"),
            (#"{"pcm": "", "experts": [{"name": "a", "model": "m"}]}"#, "pcm"),
        ]
    )
    func validation(json: String, field: String) throws {
        let config = try decode(json)
        do {
            try config.validate()
            Issue.record("validated \(json)")
        } catch {
            #expect(error.field == field)
        }
    }

    @Test("a config encodes and decodes back to itself")
    func roundTrip() throws {
        var config = ClusterConfig(experts: [ExpertConfig(name: "x", dimension: .friendly, model: "m", replicas: 2,
                                                          bias: "pcm/friendly.bias.json")])
        config.merge = .logit
        config.sampling = SamplingConfig(temperature: 0.7, topP: 0.9, topK: 40, seed: 3)
        config.pcm = "pcm/pcm.json"
        config.sharedWorkers = true
        config.strikeLimit = 5
        config.evictionCooldownMs = 1000
        config.maxWorkerSessions = 16
        #expect(try ClusterConfig.decode(config.encoded()) == config)
        config.expertContext = .ownAndPreference
        for d in PreferenceDimension.allCases { config.preferencePrompts[d] = "Be \(d.rawValue)." }
        #expect(try ClusterConfig.decode(config.encoded()) == config)
    }

    @Test("experts that see the preference need a prompt per dimension, and with \"preference\" no prompt of their own")
    func expertContextValidation() throws {
        var config = ClusterConfig(experts: [ExpertConfig(name: "concise", model: "m")])
        config.expertContext = .ownAndPreference
        for d in PreferenceDimension.allCases where d != .friendly { config.preferencePrompts[d] = "Be \(d.rawValue)." }
        #expect { try config.validate() } throws: { ($0 as? ConfigError)?.field == "preferencePrompts.friendly" }
        config.preferencePrompts[.friendly] = "Be friendly."
        try config.validate()
        #expect(config.expertSystemTurn(for: try PreferenceSpec.parse("unfriendly, elementary"))
                == "Be elementary. Be unfriendly.")
        #expect(config.expertSystemTurn(for: .none) == nil)
        config.expertContext = .preference
        #expect { try config.validate() } throws: { ($0 as? ConfigError)?.field == "experts[0].systemPrompt" }
        config.experts[0].systemPrompt = ""
        try config.validate()
        config.expertContext = .own
        #expect(config.expertSystemTurn(for: try PreferenceSpec.parse("concise")) == nil)
    }

    @Test("worker processes: one per expert replica, or one per replica and model file when shared")
    func workerProcesses() throws {
        var config = ClusterConfig(experts: [
            ExpertConfig(name: "a", model: "m1", replicas: 2),
            ExpertConfig(name: "b", model: "m1"),
            ExpertConfig(name: "c", model: "m2"),
            ExpertConfig(name: "d", model: "m1", replicas: 2),
        ])
        #expect(config.workerProcesses() == [
            WorkerProcessPlan(model: "m1", experts: ["a"], ids: ["a-1"]),
            WorkerProcessPlan(model: "m1", experts: ["b"], ids: ["b"]),
            WorkerProcessPlan(model: "m2", experts: ["c"], ids: ["c"]),
            WorkerProcessPlan(model: "m1", experts: ["d"], ids: ["d-1"]),
            WorkerProcessPlan(model: "m1", experts: ["a"], ids: ["a-2"]),
            WorkerProcessPlan(model: "m1", experts: ["d"], ids: ["d-2"]),
        ])
        let shared = [
            WorkerProcessPlan(model: "m1", experts: ["a", "b", "d"], ids: ["a-1", "b", "d-1"]),
            WorkerProcessPlan(model: "m2", experts: ["c"], ids: ["c"]),
            WorkerProcessPlan(model: "m1", experts: ["a", "d"], ids: ["a-2", "d-2"]),
        ]
        #expect(config.workerProcesses(shared: true) == shared)
        config.sharedWorkers = true
        #expect(config.workerProcesses() == shared)
        #expect(config.workerProcesses(shared: false).count == 6)
        // Every expert replica is served exactly once either way.
        for plans in [config.workerProcesses(shared: false), shared] {
            #expect(plans.flatMap(\.ids).sorted() == ["a-1", "a-2", "b", "c", "d-1", "d-2"])
        }
    }

    @Test("the default topology shares a process when a model file serves more experts than there are cores")
    func topologyByCores() throws {
        var config = try decode(#"{"experts": [{"name": "concise", "model": "m.gguf"}, {"name": "verbose", "model": "m.gguf"}, {"name": "friendly", "model": "m.gguf"}, {"name": "unfriendly", "model": "n.gguf"}]}"#)
        #expect(config.workerTopology(cores: 2) == WorkerTopology(
            shared: true, reason: "shared workers (chosen; 3 experts of one model file, 2 cores)"))
        #expect(config.workerTopology(cores: 3).shared == false)
        #expect(config.workerTopology(cores: 8).reason == "one process per expert (chosen; 3 experts of one model file, 8 cores)")
        #expect(config.workerTopology(cores: 8, override: true) == WorkerTopology(
            shared: true, reason: "shared workers (set on the command line; 3 experts of one model file, 8 cores)"))
        config.sharedWorkers = false
        #expect(config.workerTopology(cores: 1) == WorkerTopology(
            shared: false, reason: "one process per expert (set by the config; 3 experts of one model file, 1 core)"))
        config.sharedWorkers = true
        #expect(config.workerTopology(cores: 64).shared == true)
        #expect(config.workerTopology(cores: 64, override: false).shared == false)
        // The setting survives a round trip through JSON, and so does its absence.
        let encoded = try JSONEncoder().encode(config)
        #expect(try JSONDecoder().decode(ClusterConfig.self, from: encoded).sharedWorkers == true)
        config.sharedWorkers = nil
        let unset = try JSONDecoder().decode(ClusterConfig.self, from: try JSONEncoder().encode(config))
        #expect(unset.sharedWorkers == nil)
    }

    @Test("the demo config has the six dimensions on the real model, prompted and tuned as the shipped PCM was trained")
    func psoupsLocal() throws {
        let config = try ClusterConfig.load(contentsOf: Self.configs.appendingPathComponent("psoups-local.json").path)
        #expect(config.experts.compactMap(\.dimension) == PreferenceDimension.allCases)
        // The PCM's weights are only meaningful for the experts it was trained with (Configs/pcm/experts.json).
        let expertsPath = Self.configs.appendingPathComponent("pcm/experts.json")
        let file = try PreferenceDimensionsFile.load(contentsOf: expertsPath)
        let trained = try file.prompts()
        let context = try file.expertContext()
        #expect(config.expertContext == context)
        let biases = file.biasPaths(relativeTo: expertsPath.path)
        for expert in config.experts {
            let dimension = try #require(expert.dimension)
            // Each expert is prompted as in training: its own prompt, the preference's, or both.
            #expect(expert.systemPrompt == (context == .preference ? "" : trained[dimension]))
            if context != .own { #expect(config.preferencePrompts[dimension] == trained[dimension]) }
            #expect(expert.model == "models/SmolLM2-135M-Instruct.Q4_1.gguf")
            // The same tuned bias file, named relative to each file's folder.
            let bias = try #require(expert.bias)
            #expect(Self.configs.appendingPathComponent(bias).standardizedFileURL.path
                    == biases[dimension].map { URL(fileURLWithPath: $0).standardizedFileURL.path })
            #expect(FileManager.default.fileExists(atPath: Self.configs.appendingPathComponent(bias).path))
        }
        #expect(config.pcm == "pcm/pcm.json")
    }

    @Test("the tiny test config has three experts on the tiny fixtures")
    func tinyTest() throws {
        let config = try ClusterConfig.load(contentsOf: Self.configs.appendingPathComponent("tiny-test.json").path)
        #expect(config.experts.map(\.name) == ["concise", "friendly", "knowledgeable"])
        #expect(config.experts.map(\.model) == ["a", "b", "c"].map { "Tests/Fixtures/tiny-\($0).gguf" })
    }

    @Test("a missing file is reported with its path")
    func missingFile() {
        #expect(throws: ConfigError.self) { try ClusterConfig.load(contentsOf: "/nonexistent/cluster.json") }
    }
}
