import Foundation
import Preference
import Testing

@Suite struct PCMTests {
    static let configuration = PCMConfiguration(hidden: 5, projection: 2, projectionSeed: 3, embeddingWidth: 4,
                                                recentTokens: 2, horizon: 8)

    static func trained() -> PCMNetwork {
        var network = PCMNetwork(configuration: configuration, seed: 9)
        for i in network.parameters.indices { network.parameters[i] += Float(i % 7) * 0.01 - 0.03 }
        return network
    }

    @Test("a saved PCM loads back with the same configuration and parameters")
    func roundTrip() throws {
        let network = Self.trained()
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("pcm-\(UUID()).json").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try PCMFile.save(network, to: path)
        let loaded = try PCMFile.load(path)
        #expect(loaded == network)
    }

    @Test("bad PCM files are typed errors", arguments: [
        ("not json", "malformed"),
        (#"{"format": "other", "version": 1}"#, "malformed"),
        (#"{"format": "mope-pcm", "version": 7}"#, "version"),
        (#"{"format": "mope-pcm", "version": 1, "configuration": {}, "parameters": []}"#, "malformed"),
    ])
    func badFiles(text: String, kind: String) {
        do {
            _ = try PCMFile.decode(Data(text.utf8), path: "x.json")
            Issue.record("decoded a bad file")
        } catch {
            switch (error, kind) {
            case (.malformed, "malformed"), (.unsupportedVersion(_, 7), "version"): break
            default: Issue.record("unexpected error \(error)")
            }
        }
    }

    @Test("a PCM file whose parameter count does not fit its configuration is a shape error")
    func wrongCount() throws {
        var text = String(decoding: try PCMFile.encode(Self.trained()), as: UTF8.self)
        text = text.replacingOccurrences(of: "\"parameters\":[", with: "\"parameters\":[0.5,")
        #expect(throws: PCMError.self) { try PCMFile.decode(Data(text.utf8)) }
        do {
            _ = try PCMFile.decode(Data(text.utf8))
        } catch {
            guard case .badShape = error else { Issue.record("expected badShape, got \(error)"); return }
        }
        #expect(throws: PCMError.self) { try PCMFile.load("/nonexistent/pcm.json") }
    }

    @Test("an untrained PCM is the uniform mixture of the preference's experts")
    func untrainedIsUniform() throws {
        let network = PCMNetwork(configuration: Self.configuration, seed: 1)
        var controller = PCMController(network: network, embeddings: nil)
        let experts = PreferenceDimension.allCases.map { ExpertDescriptor(name: $0.rawValue, dimension: $0) }
            + [ExpertDescriptor(name: "base", dimension: nil)]
        let spec = try PreferenceSpec(.elementary, .concise, .unfriendly)
        let weights = controller.weights(preference: spec, experts: experts,
                                         context: ControllerContext(promptTokens: [1, 2], generatedTokens: [3],
                                                                    step: 1))
        #expect(weights.count == 7)
        for (i, w) in weights.enumerated() {
            let expected: Float = [0, 2, 5].contains(i) ? 1.0 / 3 : 0
            #expect(abs(w - expected) < 1e-6)
        }
    }

    @Test("the PCM's weights follow its logits over the active experts only")
    func maskedSoftmax() {
        let w = PCMNetwork.maskedSoftmax([0, 5, log(3), 9, 0, 0], mask: [true, false, true, false, false, false])
        #expect(abs(w[0] - 0.25) < 1e-6)
        #expect(abs(w[2] - 0.75) < 1e-6)
        #expect(w[1] == 0 && w[3] == 0)
    }
}
