import Decoding
import Preference
import Testing
import Wire

@testable import ClusterCore

@Suite struct ClusterStatusTests {
    static let client: ClientID = [9, 9]
    static let noText = SessionResources(decoder: TableDecoder(table: [:]), controller: UniformController())

    /// A coordinator for concise ×2 and friendly ×1, with no worker registered.
    func emptyCluster() -> CoordinatorCore {
        CoordinatorCore(config: ClusterConfig(experts: [
            ExpertConfig(name: "concise", model: "m", replicas: 2), ExpertConfig(name: "friendly", model: "m"),
        ]))
    }

    func register(_ core: inout CoordinatorCore, _ id: String, _ expert: String, capacity: UInt32 = 4) {
        _ = core.onWorkerMessage(.hello(hello(id, expert: expert, capacity: capacity)), from: id, now: 0)
    }

    @Test("with no worker every expert of the config is listed with its replicas wanted and none live")
    func empty() {
        let status = emptyCluster().status
        #expect(status.protocolVersion == WireProtocol.version)
        #expect(status.experts.map(\.name) == ["concise", "friendly"])
        #expect(status.experts.map(\.replicas) == [2, 1])
        #expect(status.workers.isEmpty)
        #expect(status.missing == [
            MissingReplicas(expert: "concise", wanted: 2, live: 0),
            MissingReplicas(expert: "friendly", wanted: 1, live: 0),
        ])
        #expect(!status.ready)
        #expect(status.sessionsRunning == 0 && status.sessionsQueued == 0 && !status.draining)
    }

    @Test("the cluster is ready once every expert has its wanted replicas; one replica short names the expert")
    func replicas() {
        var core = emptyCluster()
        register(&core, "c1", "concise")
        register(&core, "f1", "friendly", capacity: 8)
        #expect(core.status.missing == [MissingReplicas(expert: "concise", wanted: 2, live: 1)])
        register(&core, "c2", "concise")
        let status = core.status
        #expect(status.ready)
        #expect(status.experts[0].workers.map(\.id) == ["c1", "c2"])
        #expect(status.experts[1].workers == [
            WorkerStatus(id: "f1", sessions: 0, capacity: 8, draining: false, registrations: 1),
        ])
    }

    @Test("a draining worker is listed but not live; a draining coordinator is not ready")
    func draining() {
        var core = emptyCluster()
        for (id, expert) in [("c1", "concise"), ("c2", "concise"), ("f1", "friendly")] { register(&core, id, expert) }
        _ = core.onWorkerMessage(.goodbye(Goodbye(reason: "SIGTERM")), from: "c2", now: 1)
        var status = core.status
        #expect(status.experts[0].workers.map(\.draining) == [false, true])
        #expect(status.missing == [MissingReplicas(expert: "concise", wanted: 2, live: 1)])
        register(&core, "c3", "concise")
        #expect(core.status.ready)
        core.beginDrain(now: 2, graceNanos: 1_000_000_000)
        status = core.status
        #expect(status.draining)
        #expect(!status.ready)
    }

    @Test("running sessions are counted overall and per worker, and freed when they finish")
    func sessions() {
        var core = emptyCluster()
        for (id, expert) in [("c1", "concise"), ("c2", "concise"), ("f1", "friendly")] { register(&core, id, expert) }
        let request = Generate(request: 1, prompt: "Hi", preference: "concise, friendly", maxNewTokens: 4)
        _ = core.onGenerate(request, from: Self.client, now: 0, resources: Self.noText)
        var second = request
        second.request = 2
        _ = core.onGenerate(second, from: Self.client, now: 0, resources: Self.noText)
        let status = core.status
        #expect(status.sessionsRunning == 2)
        let sessions = Dictionary(uniqueKeysWithValues: status.workers.map { ($0.id, $0.sessions) })
        #expect(sessions == ["c1": 1, "c2": 1, "f1": 2])
        _ = core.onClientGone(Self.client, now: 1)
        #expect(core.status.sessionsRunning == 0)
        #expect(core.status.workers.map(\.sessions) == [0, 0, 0])
    }

    @Test("a worker that registers again, before or after it was taken for dead, counts its registrations")
    func registrations() {
        var core = emptyCluster()
        register(&core, "c1", "concise")
        register(&core, "c1", "concise")
        #expect(core.status.experts[0].workers.map(\.registrations) == [2])
        _ = core.onWorkerUnreachable("c1", now: 1)
        #expect(core.status.experts[0].workers.isEmpty)
        register(&core, "c1", "concise")
        #expect(core.status.experts[0].workers.map(\.registrations) == [3])
    }

    @Test("a status frame on the clients' endpoint is answered with the same request id; the workers' drops it")
    func frame() throws {
        var core = emptyCluster()
        register(&core, "f1", "friendly")
        let out = core.onFrame(
            identity: Self.client, payload: Message.status(StatusRequest(request: 77)).encoded(), on: .clients,
            now: 0
        )
        #expect(out == [.sendToClient(Self.client, .statusReply(StatusReply(request: 77, status: core.status)))])
        let fromWorker = core.onFrame(
            identity: Array("f1".utf8), payload: Message.status(StatusRequest(request: 3)).encoded(), on: .workers,
            now: 0
        )
        #expect(fromWorker.isEmpty)
    }
}
