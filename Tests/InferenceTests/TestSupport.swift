import Foundation
import Inference

/// Paths of the test fixtures and of the optional real model.
enum TestFiles {
    /// Tests/Fixtures.
    static let fixtures: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures")

    /// The repository root.
    static let root: URL = fixtures.deletingLastPathComponent().deletingLastPathComponent()

    static func fixture(_ name: String) -> String { fixtures.appendingPathComponent(name).path }

    /// The real SmolLM2 model: $MOPE_MODEL, or models/SmolLM2-135M-Instruct.Q4_1.gguf in the repository.
    static let realModel: String = ProcessInfo.processInfo.environment["MOPE_MODEL"]
        ?? root.appendingPathComponent("models/SmolLM2-135M-Instruct.Q4_1.gguf").path

    static var realModelPresent: Bool { FileManager.default.fileExists(atPath: realModel) }

    static func bytes(_ name: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: fixtures.appendingPathComponent(name)))
    }

    static let tinyModels = ["tiny-a.gguf", "tiny-b.gguf", "tiny-c.gguf", "tiny-f32.gguf", "tiny-q4_0.gguf",
                             "tiny-qwen2.gguf"]
}

/// Largest absolute difference of two equally long rows.
func maxAbsDifference(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count)
    return zip(a, b).map { abs($0 - $1) }.max() ?? 0
}

func argmax(_ a: [Float]) -> Int { a.indices.max { a[$0] < a[$1] } ?? 0 }

/// Largest difference of two rows after subtracting each row's mean: logits that differ by a constant give
/// the same probabilities, so a common offset is not an error.
func maxCenteredDifference(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count && !a.isEmpty)
    let ma = a.reduce(0, +) / Float(a.count)
    let mb = b.reduce(0, +) / Float(b.count)
    return zip(a, b).map { abs(($0 - ma) - ($1 - mb)) }.max() ?? 0
}
