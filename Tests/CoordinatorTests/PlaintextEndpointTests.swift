import ClusterCore
@testable import Coordinator
import Testing

@Suite("Plain connections only on local endpoints")
struct PlaintextEndpointTests {
    @Test("loopback tcp, localhost and ipc are local; wildcards, other addresses and names are not",
          arguments: [
              ("tcp://127.0.0.1:5555", true), ("tcp://127.1.2.3:1", true), ("tcp://localhost:5555", true),
              ("tcp://[::1]:5555", true), ("ipc:///tmp/c.sock", true), ("tcp://0.0.0.0:5555", false),
              ("tcp://*:5555", false), ("tcp://10.0.0.1:5555", false), ("tcp://[::]:5555", false),
              ("tcp://eth0:5555", false), ("tcp://127.0.0.1.evil:5555", false), ("tcp://128.0.0.1:5", false),
          ])
    func local(endpoint: String, expected: Bool) {
        #expect(CoordinatorSettings.isLocal(endpoint) == expected)
    }

    @Test("a coordinator without CURVE refuses a non-loopback endpoint unless told it is insecure")
    func refusesPlaintext() throws {
        var settings = CoordinatorSettings(config: ClusterConfig(experts: [ExpertConfig(name: "a", model: "m")]))
        settings.endpoint = "tcp://0.0.0.0:5555"
        #expect(throws: CoordinatorError.self) { try settings.validate() }
        settings.insecure = true
        try settings.validate()
    }
}
