import ClusterCore
import Foundation
import Preference
import Testing

@testable import Coordinator

@Suite struct ControllerFactoryTests {
    static let configs = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Configs")

    @Test("the shipped PCM loads as the coordinator's controller; a file that is not a PCM is a typed error")
    func shippedPCM() throws {
        var config = ClusterConfig(experts: [ExpertConfig(name: "concise", model: "/nonexistent.gguf")])
        config.pcm = Self.configs.appendingPathComponent("pcm/pcm.json").path
        let factory = try CoordinatorServer.controllerFactory(config: config)
        #expect(factory.description.contains("learned PCM"))
        #expect(factory.make() is PCMController)
        config.pcm = Self.configs.appendingPathComponent("tiny-test.json").path
        #expect {
            _ = try CoordinatorServer.controllerFactory(config: config)
        } throws: { error in
            guard case .pcm(.malformed)? = error as? CoordinatorError else { return false }
            return true
        }
    }
}
