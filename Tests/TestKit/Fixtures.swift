import Foundation

/// The package's files as the tests find them: the fixtures, the shipped configs and the optional real model.
public enum Fixtures {
    /// The package's root folder.
    public static let packageRoot = BuiltProduct.packageRoot

    /// `Tests/Fixtures`.
    public static let directory = packageRoot.appendingPathComponent("Tests/Fixtures")

    /// `Configs`.
    public static let configs = packageRoot.appendingPathComponent("Configs")

    /// The URL of the fixture `name` (e.g. "tiny-a.gguf").
    public static func url(_ name: String) -> URL { directory.appendingPathComponent(name) }

    /// The path of the fixture `name`.
    public static func path(_ name: String) -> String { url(name).path }

    /// The bytes of the fixture `name`.
    public static func bytes(_ name: String) throws -> [UInt8] { [UInt8](try Data(contentsOf: url(name))) }

    /// The first tiny model (random weights, the vocabulary every tiny model shares).
    public static let tinyA = path("tiny-a.gguf")

    /// Every tiny model fixture.
    public static let tinyModels = ["tiny-a.gguf", "tiny-b.gguf", "tiny-c.gguf", "tiny-f32.gguf", "tiny-q4_0.gguf",
                                    "tiny-qwen2.gguf"]

    /// The real SmolLM2 model's path: `$MOPE_MODEL`, else `models/SmolLM2-135M-Instruct.Q4_1.gguf` in the package
    /// (which may be absent).
    public static let realModel: String = ProcessInfo.processInfo.environment["MOPE_MODEL"]
        ?? packageRoot.appendingPathComponent("models/SmolLM2-135M-Instruct.Q4_1.gguf").path

    /// Whether the real model is there.
    public static var realModelPresent: Bool { FileManager.default.fileExists(atPath: realModel) }
}

/// One expert of a test cluster.
public struct TestExpert: Sendable {
    public var name: String
    public var model: String
    public var systemPrompt: String
    public var replicas: Int
    /// A LoRA adapter file for the config's `lora` (nil: none).
    public var lora: String?

    public init(name: String, model: String, systemPrompt: String, replicas: Int = 1, lora: String? = nil) {
        self.lora = lora
        self.name = name
        self.model = model
        self.systemPrompt = systemPrompt
        self.replicas = replicas
    }
}

/// The tiny test experts (random-weight models sharing one vocabulary).
public enum TinyExperts {
    public static let concise = TestExpert(
        name: "concise", model: Fixtures.path("tiny-a.gguf"),
        systemPrompt: "Generate a response that is concise and to the point, without being verbose."
    )
    public static let friendly = TestExpert(
        name: "friendly", model: Fixtures.path("tiny-b.gguf"),
        systemPrompt: "Generate a response that is friendly, witty, funny, and humorous, like a close friend."
    )
    public static let knowledgeable = TestExpert(
        name: "knowledgeable", model: Fixtures.path("tiny-c.gguf"),
        systemPrompt: "Generate a response that only a PhD Student in that specific field could understand."
    )
}
