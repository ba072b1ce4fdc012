import Inference

/// Seeded random LoRA adapters for the tests, in the GGUF adapter layout (F32).
public enum TestAdapters {
    /// An adapter of `model` changing `targets` (suffixes such as "attn_q.weight") of every block, and with
    /// `output` the output layer (the embedding's shape when the model ties them): rank `rank`, `alpha`
    /// (`adapter.lora.alpha`, nil for none), every value uniform in ±`magnitude` from `seed`.
    public static func bytes(
        for model: GGUFFile, targets: [String], rank: Int, alpha: Float? = nil, output: Bool = false, seed: UInt64,
        magnitude: Float = 0.3
    ) throws -> [UInt8] {
        var writer = GGUFWriter()
        if let architecture = model.metadata["general.architecture"] { writer.set("general.architecture", architecture) }
        writer.set("general.type", .string("adapter"))
        writer.set("adapter.type", .string("lora"))
        if let alpha { writer.set("adapter.lora.alpha", .float32(alpha)) }
        var state = seed
        func next() -> Float {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
            return (Float(z >> 40) / Float(1 << 24) * 2 - 1) * magnitude
        }
        let blocks = model.tensors.compactMap { info -> Int? in
            let parts = info.name.split(separator: ".")
            return parts.count > 2 && parts[0] == "blk" ? Int(parts[1]) : nil
        }.max().map { $0 + 1 } ?? 0
        var names = (0..<blocks).flatMap { n in targets.map { "blk.\(n).\($0)" } }
        if output { names.append("output.weight") }
        for name in names {
            guard let info = model.tensorInfo(name) ?? (name == "output.weight" ? model.tensorInfo("token_embd.weight") : nil)
            else { throw GGUFError.missingTensor(name) }
            let columns = info.shape[0], rows = info.shape[1]
            let a = (0..<rank * columns).map { _ in next() }
            let b = (0..<rows * rank).map { _ in next() }
            try writer.add(.init(name: name + ".lora_a", shape: [columns, rank], type: .f32,
                                 data: a.withUnsafeBytes { [UInt8]($0) }))
            try writer.add(.init(name: name + ".lora_b", shape: [rank, rows], type: .f32,
                                 data: b.withUnsafeBytes { [UInt8]($0) }))
        }
        return writer.bytes()
    }
}
