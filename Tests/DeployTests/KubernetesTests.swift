import Foundation
import ProcessSupport
import TestKit
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The Kubernetes target (Deploy/kubernetes/): the kustomize base and the example overlay rendered with
/// `kubectl kustomize` (each manifest file on its own without kubectl) and validated offline against the
/// Kubernetes schemas by `kubernetes-validate --strict`; the manifests' structure checked; and the pods' own
/// commands (the key-copying init container, the coordinator, a worker and the front with their arguments and
/// environment, the probes) run here as processes, with the cluster's addresses mapped to local ones. No
/// Kubernetes cluster runs here: scheduling, Services, volumes and the probes' timing are not exercised.
@Suite(.serialized)
struct KubernetesTests {
    static let folder = Deploy.directory.appendingPathComponent("kubernetes")

    @Test("the scripts answer --help, and usage errors exit 2")
    func scriptUsage() throws {
        for script in ["make-secrets.sh", "experts.sh"] {
            let path = Self.folder.appendingPathComponent(script).path
            let help = try Deploy.runScript(path, ["--help"], deadline: .seconds(30))
            #expect(help.status == 0 && help.output.contains("Deploy/kubernetes/\(script)"), "\(help.output)")
            let bare = try Deploy.runScript(path, [], deadline: .seconds(30))
            #expect(bare.status == 2, "\(script) without arguments: \(bare.status)")
            let bad = try Deploy.runScript(path, ["--bogus", "x"], deadline: .seconds(30))
            #expect(bad.status == 2 && bad.errorOutput.contains("--bogus"), "\(bad.errorOutput)")
        }
        let missing = try Deploy.runScript(Self.folder.appendingPathComponent("make-secrets.sh").path,
                                           ["/nonexistent-key-folder"], deadline: .seconds(30))
        #expect(missing.status == 1 && missing.errorOutput.contains("mope keygen --cluster"), "\(missing.errorOutput)")
    }

    @Test("base/cluster.json is Configs/psoups-local.json with pod paths, Service addresses and two replicas; experts.yaml is experts.sh's output for it")
    func configAndExpertsInStep() throws {
        let base = try JSONSerialization.jsonObject(
            with: Data(contentsOf: Self.folder.appendingPathComponent("base/cluster.json"))) as? [String: Any] ?? [:]
        let local = try JSONSerialization.jsonObject(
            with: Data(contentsOf: Fixtures.configs.appendingPathComponent("psoups-local.json"))) as? [String: Any] ?? [:]
        #expect(base["coordinator"] as? String == "tcp://mope-coordinator-workers:5555")
        #expect(base["clientEndpoint"] as? String == "tcp://mope-coordinator-clients:5556")
        #expect(base["pcm"] as? String == "/models/" + (local["pcm"] as? String ?? "?"))
        // The coordinator pod reads the tokenizer from a tokenizer file, never from a model file.
        #expect(base["tokenizer"] as? String == "/models/tokenizer.gguf")
        for key in Set(local.keys).subtracting(["coordinator", "experts", "pcm", "tokenizer"]) {
            #expect(NSDictionary(dictionary: [key: base[key] as Any]).isEqual(to: [key: local[key] as Any]),
                    "\(key) differs from psoups-local.json")
        }
        let baseExperts = base["experts"] as? [[String: Any]] ?? []
        let localExperts = local["experts"] as? [[String: Any]] ?? []
        #expect(baseExperts.map { $0["name"] as? String } == localExperts.map { $0["name"] as? String })
        for (b, l) in zip(baseExperts, localExperts) {
            #expect(b["model"] as? String == "/models/" + URL(fileURLWithPath: l["model"] as? String ?? "").lastPathComponent)
            #expect(b["bias"] as? String == "/models/" + (l["bias"] as? String ?? "?"))
            #expect(b["replicas"] as? Int == 2)
            #expect(b["systemPrompt"] as? String == l["systemPrompt"] as? String)
            #expect(b["dimension"] as? String == l["dimension"] as? String)
        }
        let run = try Deploy.runScript(Self.folder.appendingPathComponent("experts.sh").path,
                                       [Self.folder.appendingPathComponent("base/cluster.json").path],
                                       deadline: .seconds(60))
        #expect(run.status == 0, "\(run.errorOutput)")
        let shipped = try String(contentsOf: Self.folder.appendingPathComponent("base/experts.yaml"), encoding: .utf8)
        #expect(run.output == shipped, "base/experts.yaml is out of date: run experts.sh base/cluster.json > base/experts.yaml")
    }

    @Test("base and overlay render and pass kubernetes-validate --strict; the objects are the cluster's, pods meet the restricted profile")
    func renderAndValidate() throws {
        let work = try Deploy.temporaryDirectory("k8s")
        defer { try? FileManager.default.removeItem(at: work) }
        let tree = try KubernetesTree(copyingInto: work)
        let objects = try tree.renderedOverlay()
        guard let validate = Deploy.which("kubernetes-validate") else {
            Issue.record("kubernetes-validate is missing: pip install kubernetes-validate")
            return
        }
        for file in tree.filesToValidate {
            let run = try ChildProcess.run(validate, ["--strict", "--quiet", file], deadline: .seconds(120))
            #expect(run.status == 0, "\(file):\n\(run.output)\(run.errorOutput)")
        }
        // The validator does reject what the schemas forbid here.
        let broken = work.appendingPathComponent("broken.yaml")
        try "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {portz: []}\n".write(to: broken, atomically: true,
                                                                                             encoding: .utf8)
        let caught = try ChildProcess.run(validate, ["--strict", "--quiet", broken.path], deadline: .seconds(120))
        #expect(caught.status != 0 && (caught.output + caught.errorOutput).contains("portz"))

        // What the cluster needs.
        func named(_ kind: String, _ name: String) -> [String: Any]? {
            objects.first { $0["kind"] as? String == kind && ($0["metadata"] as? [String: Any])?["name"] as? String == name }
        }
        let config = try JSONSerialization.jsonObject(
            with: Data(contentsOf: Self.folder.appendingPathComponent("base/cluster.json"))) as? [String: Any] ?? [:]
        let experts = (config["experts"] as? [[String: Any]] ?? []).map { ($0["name"] as? String ?? "", $0["replicas"] as? Int ?? 1) }
        #expect(experts.count == 6)
        for (expert, replicas) in experts {
            let deployment = try #require(named("Deployment", "mope-worker-\(expert)"), "no worker Deployment for \(expert)")
            #expect(K8s.int(deployment, "spec", "replicas") == replicas)
            let container = try #require(K8s.containers(deployment).first)
            #expect(K8s.strings(container["args"]).contains(expert))
            #expect(container["readinessProbe"] != nil)
            let budget = try #require(named("PodDisruptionBudget", "mope-worker-\(expert)"))
            #expect(K8s.int(budget, "spec", "maxUnavailable") == 1)
        }
        let workersService = try #require(named("Service", "mope-coordinator-workers"))
        let clientsService = try #require(named("Service", "mope-coordinator-clients"))
        #expect(K8s.ports(workersService) == [5555] && K8s.ports(clientsService) == [5556])
        let serve = try #require(named("Deployment", "mope-serve"))
        let front = try #require(K8s.containers(serve).first)
        #expect(K8s.string(front, "readinessProbe", "httpGet", "path") == "/health")
        #expect(K8s.string(front, "livenessProbe", "httpGet", "path") == "/v1/models")
        let coordinator = try #require(named("Deployment", "mope-coordinator"))
        #expect(K8s.int(coordinator, "spec", "replicas") == 1)
        #expect(K8s.string(coordinator, "spec", "strategy", "type") == "Recreate")
        if tree.rendered {
            // kustomize's configMapGenerator made the config's ConfigMap; the overlay put everything in its namespace.
            let map = try #require(objects.first { $0["kind"] as? String == "ConfigMap" })
            let shippedConfig = try String(contentsOf: Self.folder.appendingPathComponent("base/cluster.json"),
                                           encoding: .utf8)
            #expect((map["data"] as? [String: Any])?["cluster.json"] as? String == shippedConfig)
            for object in objects where !["Namespace", "PersistentVolume"].contains(object["kind"] as? String ?? "") {
                #expect(K8s.string(object, "metadata", "namespace") == "mope", "\(K8s.string(object, "metadata", "name") ?? "?")")
            }
        }
        // The Secrets carry the key files' bytes, each only where it is needed.
        for (secret, files) in [("mope-coordinator-keys", ["coordinator.key", "worker-keys", "authorized-keys"]),
                                ("mope-worker-keys", ["worker.key", "coordinator.pub"]),
                                ("mope-client-keys", ["client.key", "coordinator.pub"])] {
            let object = try #require(named("Secret", secret))
            let data = object["data"] as? [String: String] ?? [:]
            #expect(Set(data.keys) == Set(files))
            for file in files {
                let bytes = try Data(contentsOf: tree.keys.appendingPathComponent(file))
                #expect(data[file].flatMap { Data(base64Encoded: $0) } == bytes, "\(secret)/\(file)")
            }
        }
        // The "restricted" Pod Security Standard's requirements, field by field, for every pod.
        for deployment in objects where deployment["kind"] as? String == "Deployment" {
            let name = K8s.string(deployment, "metadata", "name") ?? "?"
            let pod = K8s.dictionary(deployment, "spec", "template", "spec")
            #expect(K8s.value(pod, "securityContext", "runAsNonRoot") as? Bool == true, "\(name)")
            #expect(K8s.string(pod, "securityContext", "seccompProfile", "type") == "RuntimeDefault", "\(name)")
            #expect(pod["automountServiceAccountToken"] as? Bool == false, "\(name)")
            let volumes = pod["volumes"] as? [[String: Any]] ?? []
            #expect(!volumes.contains { $0["hostPath"] != nil }, "\(name) mounts a host path")
            for container in K8s.containers(deployment) + (pod["initContainers"] as? [[String: Any]] ?? []) {
                let context = container["securityContext"] as? [String: Any] ?? [:]
                #expect(context["allowPrivilegeEscalation"] as? Bool == false, "\(name)")
                #expect(K8s.strings(K8s.value(context, "capabilities", "drop")) == ["ALL"], "\(name)")
                #expect(container["resources"] != nil, "\(name): no resources")
                // Secret key text never in a pod spec: only paths.
                let env = container["env"] as? [[String: Any]] ?? []
                for variable in env where (variable["name"] as? String ?? "").hasPrefix("MOPE_CURVE_") {
                    #expect((variable["value"] as? String ?? "").hasPrefix("/keys/"), "\(name): \(variable)")
                }
            }
        }
    }

    @Test("the pods' commands run: keys copied from Secret files, coordinator, worker and front start from the manifests' arguments, and every probe tells up from down")
    func podCommandsAndProbes() throws {
        let work = try Deploy.temporaryDirectory("k8s-pods")
        defer { try? FileManager.default.removeItem(at: work) }
        let tree = try KubernetesTree(copyingInto: work)
        let objects = try tree.renderedOverlay()
        let mope = try MopeProcess.binary()
        func pod(_ name: String) throws -> [String: Any] {
            let deployment = try #require(objects.first {
                $0["kind"] as? String == "Deployment" && K8s.string($0, "metadata", "name") == name
            })
            return K8s.dictionary(deployment, "spec", "template", "spec")
        }

        // The cluster's addresses and the pod's folders, here.
        let socket = work.appendingPathComponent("c.sock").path
        let config = work.appendingPathComponent("cluster.json").path
        try SystemdUnits.writeConfig(to: config, endpoint: "ipc://" + socket)
        let secrets = work.appendingPathComponent("secrets")
        let keys = work.appendingPathComponent("keys")
        let mapping: [(String, String)] = [
            ("tcp://0.0.0.0:5555", "ipc://" + socket), ("tcp://mope-coordinator-workers:5555", "ipc://" + socket),
            ("tcp://0.0.0.0:5556", "ipc://\(socket).clients"),
            ("tcp://mope-coordinator-clients:5556", "ipc://\(socket).clients"),
            ("tcp://127.0.0.1:5556", "ipc://\(socket).clients"),
            ("0.0.0.0:8000", "127.0.0.1:0"), ("/etc/mope/cluster.json", config),
            ("/secrets/", secrets.path + "/"), ("/keys/", keys.path + "/"),
        ]
        func local(_ text: String) -> String {
            mapping.reduce(text) { $0.replacingOccurrences(of: $1.0, with: $1.1) }
        }
        let environment = ["PATH": mope.deletingLastPathComponent().path + ":/usr/bin:/bin"]

        let group = ProcessGroup()
        defer { group.killAll() }
        func logs() -> String {
            ["coordinator", "worker", "serve"].map { name in
                "== \(name)\n" + String(((try? String(contentsOfFile: work.appendingPathComponent("\(name).log").path,
                                                      encoding: .utf8)) ?? "").suffix(3000))
            }.joined(separator: "\n")
        }
        /// Runs a pod's init container (the key copy) with the Secret files as a Secret volume with an fsGroup
        /// shows them (mode 0440), then starts its container from the manifest's arguments and environment.
        func start(_ name: String, extraEnvironment: [String: String] = [:]) throws -> pid_t {
            let spec = try pod(name)
            try? FileManager.default.removeItem(at: keys)
            try FileManager.default.createDirectory(at: keys, withIntermediateDirectories: true)
            for volume in spec["volumes"] as? [[String: Any]] ?? [] {
                guard let secret = K8s.string(volume, "secret", "secretName") else { continue }
                #expect(K8s.int(volume, "secret", "defaultMode") == 0o440)
                let object = try #require(objects.first {
                    $0["kind"] as? String == "Secret" && K8s.string($0, "metadata", "name") == secret
                })
                let init0 = try #require((spec["initContainers"] as? [[String: Any]])?.first)
                let mount = try #require((init0["volumeMounts"] as? [[String: Any]] ?? []).first {
                    $0["name"] as? String == volume["name"] as? String
                })
                let folder = URL(fileURLWithPath: local(mount["mountPath"] as? String ?? ""))
                try? FileManager.default.removeItem(at: folder)
                try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
                for (file, text) in object["data"] as? [String: String] ?? [:] {
                    let path = folder.appendingPathComponent(file)
                    try #require(Data(base64Encoded: text)).write(to: path)
                    chmod(path.path, 0o440)
                }
            }
            let initContainer = try #require((spec["initContainers"] as? [[String: Any]])?.first)
            let copy = K8s.strings(initContainer["command"]).map(local)
            let copied = try ChildProcess.run(copy[0], Array(copy.dropFirst()), environment: environment,
                                              deadline: .seconds(30))
            #expect(copied.status == 0, "\(name)'s init container: \(copied.errorOutput)")
            let container = try #require((spec["containers"] as? [[String: Any]])?.first)
            var variables = environment
            for variable in container["env"] as? [[String: Any]] ?? [] {
                guard let key = variable["name"] as? String else { continue }
                if let value = variable["value"] as? String {
                    variables[key] = local(K8s.expand(value, variables))
                } else if K8s.string(variable, "valueFrom", "fieldRef", "fieldPath") == "metadata.name" {
                    variables[key] = "\(name)-test-pod"
                }
            }
            variables.merge(extraEnvironment) { $1 }
            let arguments = K8s.strings(container["args"]).map { local(K8s.expand($0, variables)) }
            // Keys copied for this pod stay its own: the next pod's copy goes to a fresh folder.
            let own = work.appendingPathComponent("keys-\(name)")
            try? FileManager.default.removeItem(at: own)
            try FileManager.default.moveItem(at: keys, to: own)
            let moved = arguments.map { $0.replacingOccurrences(of: keys.path + "/", with: own.path + "/") }
            for (key, value) in variables { variables[key] = value.replacingOccurrences(of: keys.path + "/", with: own.path + "/") }
            let log = work.appendingPathComponent("\(name.hasPrefix("mope-worker") ? "worker" : String(name.dropFirst(5))).log").path
            return try group.spawn(mope.path, moved, environment: variables, standardOutput: .file(log),
                                   standardError: .file(log))
        }
        /// Runs a probe's exec command as the pod would (its environment, `sh`), with the pod's key folder.
        func probe(_ name: String, _ kind: String, environment extra: [String: String] = [:]) throws -> Int32 {
            let container = try #require((try pod(name)["containers"] as? [[String: Any]])?.first)
            let command = K8s.strings(K8s.value(container, kind, "exec", "command"))
            try #require(!command.isEmpty, "\(name) has no exec \(kind)")
            let own = work.appendingPathComponent("keys-\(name)").path + "/"
            let mapped = command.map { local($0).replacingOccurrences(of: keys.path + "/", with: own) }
            return try ChildProcess.run(mapped[0], Array(mapped.dropFirst()), environment: environment.merging(extra) { $1 },
                                        deadline: .seconds(30)).status
        }

        let coordinator = try start("mope-coordinator")
        // Liveness: the loop answers (no worker needed).
        var alive: Int32 = 1
        for _ in 0..<100 where alive != 0 {
            alive = try probe("mope-coordinator", "livenessProbe")
            if alive != 0 { usleep(200_000) }
        }
        #expect(alive == 0, "the coordinator's liveness probe failed\n\(logs())")

        // The worker: the config's expert "concise" stands for the manifest's expert.
        let workerSpec = try pod("mope-worker-concise")
        let workerArguments = K8s.strings((workerSpec["containers"] as? [[String: Any]])?.first?["args"])
        #expect(workerArguments.contains("concise"))
        let workerID = "concise-mope-worker-concise-test-pod"
        #expect(try probe("mope-worker-concise", "readinessProbe", environment: ["MOPE_WORKER_ID": workerID]) == 1,
                "ready before the worker runs")
        let worker = try start("mope-worker-concise")
        var ready: Int32 = 1
        for _ in 0..<150 where ready != 0 {
            ready = try probe("mope-worker-concise", "readinessProbe", environment: ["MOPE_WORKER_ID": workerID])
            if ready != 0 { usleep(200_000) }
        }
        #expect(ready == 0, "the worker never became ready\n\(logs())")
        #expect(try probe("mope-worker-concise", "readinessProbe", environment: ["MOPE_WORKER_ID": workerID + "x"]) == 1,
                "another worker's id passed the probe")

        // The front: /health (readiness) and /v1/models (liveness) answer 200 with the cluster up.
        let serve = try start("mope-serve")
        var port: Int?
        for _ in 0..<200 where port == nil {
            let text = (try? String(contentsOfFile: work.appendingPathComponent("serve.log").path, encoding: .utf8)) ?? ""
            if let range = text.range(of: "listening on http://127.0.0.1:") {
                port = Int(text[range.upperBound...].prefix { $0.isNumber })
            } else {
                usleep(50_000)
            }
        }
        let listening = try #require(port, "mope serve did not listen\n\(logs())")
        let frontContainer = try #require((try pod("mope-serve")["containers"] as? [[String: Any]])?.first)
        let readinessPath = K8s.string(frontContainer, "readinessProbe", "httpGet", "path") ?? "?"
        let livenessPath = K8s.string(frontContainer, "livenessProbe", "httpGet", "path") ?? "?"
        func get(_ path: String) throws -> String {
            try ChildProcess.run("/usr/bin/curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "20",
                                                   "http://127.0.0.1:\(listening)\(path)"], deadline: .seconds(30)).output
        }
        #expect(try get(readinessPath) == "200", "\(logs())")
        #expect(try get(livenessPath) == "200")

        // The worker drains: not ready any more. The coordinator stops: its liveness fails, the front turns
        // unready but stays alive.
        group.signal(worker, SIGTERM)
        #expect(group.wait(worker, timeout: .seconds(30)) == .exited(0), "\(logs())")
        #expect(try probe("mope-worker-concise", "readinessProbe", environment: ["MOPE_WORKER_ID": workerID]) == 1)
        group.signal(coordinator, SIGTERM)
        #expect(group.wait(coordinator, timeout: .seconds(30)) == .exited(0), "\(logs())")
        #expect(try probe("mope-coordinator", "livenessProbe") == 1)
        #expect(try get(readinessPath) == "503")
        #expect(try get(livenessPath) == "200")
        group.signal(serve, SIGTERM)
        #expect(group.wait(serve, timeout: .seconds(30)) == .exited(0), "\(logs())")
    }
}

// MARK: - Support

/// A copy of Deploy/kubernetes in a temporary folder, with the example overlay's secrets.yaml made by
/// make-secrets.sh from a fresh `mope keygen --cluster`.
struct KubernetesTree {
    let root: URL
    let keys: URL
    /// The rendered overlay and base (with kubectl), or every manifest file (without).
    private(set) var filesToValidate: [String] = []
    private let kubectl: String?
    /// Whether kustomize rendered the overlay (else the files are read as they are).
    var rendered: Bool { kubectl != nil }

    init(copyingInto work: URL) throws {
        root = work.appendingPathComponent("kubernetes")
        try FileManager.default.copyItem(at: KubernetesTests.folder, to: root)
        keys = work.appendingPathComponent("cluster-keys")
        let keygen = try MopeProcess.run(["keygen", "--cluster", keys.path], deadline: .seconds(30))
        guard keygen.status == 0 else { throw DeployTestError("mope keygen --cluster: \(keygen.errorOutput)") }
        let secrets = try Deploy.runScript(root.appendingPathComponent("make-secrets.sh").path, [keys.path],
                                           deadline: .seconds(30))
        guard secrets.status == 0 else { throw DeployTestError("make-secrets.sh: \(secrets.errorOutput)") }
        try secrets.output.write(to: root.appendingPathComponent("overlays/example/secrets.yaml"), atomically: true,
                                 encoding: .utf8)
        kubectl = Deploy.which("kubectl")
        if let kubectl {
            for (label, folder) in [("overlay", "overlays/example"), ("base", "base")] {
                let run = try ChildProcess.run(kubectl, ["kustomize", root.appendingPathComponent(folder).path],
                                               deadline: .seconds(120))
                guard run.status == 0 else { throw DeployTestError("kubectl kustomize \(folder): \(run.errorOutput)") }
                let file = work.appendingPathComponent("rendered-\(label).yaml")
                try run.output.write(to: file, atomically: true, encoding: .utf8)
                filesToValidate.append(file.path)
            }
        } else {
            print("kubectl is missing: validating each manifest file on its own (kustomize's generators, the "
                + "overlay's patches and its namespace are not applied)")
            for folder in ["base", "overlays/example"] {
                let directory = root.appendingPathComponent(folder)
                for name in try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
                where name.hasSuffix(".yaml") && name != "kustomization.yaml" {
                    filesToValidate.append(directory.appendingPathComponent(name).path)
                }
            }
        }
    }

    /// The overlay's objects (from `kubectl kustomize`, else the manifest files as they are), as JSON values.
    func renderedOverlay() throws -> [[String: Any]] {
        let files = kubectl == nil ? filesToValidate : [filesToValidate[0]]
        var objects: [[String: Any]] = []
        for file in files { objects += try K8s.load(file) }
        return objects
    }
}

/// Reading Kubernetes objects (YAML through PyYAML, which kubernetes-validate brings) as JSON values.
enum K8s {
    static func load(_ path: String) throws -> [[String: Any]] {
        let script = "import sys, json, yaml; json.dump([d for d in yaml.safe_load_all(open(sys.argv[1])) if d], sys.stdout)"
        let run = try ChildProcess.run(Deploy.which("python3") ?? "/usr/bin/python3", ["-c", script, path],
                                       deadline: .seconds(60))
        guard run.status == 0 else {
            throw DeployTestError("reading \(path) (python3 with PyYAML: pip install kubernetes-validate): \(run.errorOutput)")
        }
        return try JSONSerialization.jsonObject(with: Data(run.output.utf8)) as? [[String: Any]] ?? []
    }

    static func value(_ object: [String: Any], _ keys: String...) -> Any? { value(object, keys) }

    static func value(_ object: [String: Any], _ keys: [String]) -> Any? {
        var current: Any? = object
        for key in keys { current = (current as? [String: Any])?[key] }
        return current
    }

    static func dictionary(_ object: [String: Any], _ keys: String...) -> [String: Any] {
        value(object, keys) as? [String: Any] ?? [:]
    }

    static func string(_ object: [String: Any], _ keys: String...) -> String? { value(object, keys) as? String }

    static func int(_ object: [String: Any], _ keys: String...) -> Int? { value(object, keys) as? Int }

    static func strings(_ value: Any?) -> [String] { value as? [String] ?? [] }

    static func containers(_ deployment: [String: Any]) -> [[String: Any]] {
        value(deployment, ["spec", "template", "spec", "containers"]) as? [[String: Any]] ?? []
    }

    static func ports(_ service: [String: Any]) -> [Int] {
        (value(service, ["spec", "ports"]) as? [[String: Any]] ?? []).compactMap { $0["port"] as? Int }
    }

    /// Kubernetes' `$(NAME)` expansion of `args` and `env` values from the variables defined so far.
    static func expand(_ text: String, _ variables: [String: String]) -> String {
        var out = text
        for (key, value) in variables { out = out.replacingOccurrences(of: "$(\(key))", with: value) }
        return out
    }
}
