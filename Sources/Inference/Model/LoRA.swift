import CPUKernels

/// A LoRA adapter in the GGUF layout llama.cpp reads (`general.type = adapter`, `adapter.type = lora`), applied
/// unmerged: a weight `W` with an adapter pair computes `W·x + s · B·(A·x)`, where `A` is `lora_a` (rank rows of
/// the input width), `B` is `lora_b` (the output width's rows of rank columns) and `s = alpha / rank`
/// (`adapter.lora.alpha`; 1 when the alpha is 0 or missing) times the user's scale.
///
/// The base model's weights stay untouched, so one process can serve the base model and several adapters at
/// once: an adapter belongs to a session (`KVCache.adapter`), and every row of a batch gets its own session's
/// adapter. Tensors are named after the weight they adapt (`blk.3.attn_q.weight.lora_a`); the attention and
/// feed-forward projections and the output layer may be adapted.
public final class LoRAAdapter: @unchecked Sendable {
    // Safe to share: every stored property is immutable after init; the matrices point into the immutable,
    // memory-mapped file that `file` keeps alive.

    /// One adapted weight: `A` (rank × input width) and `B` (output width × rank).
    struct Pair {
        let a: QuantizedMatrix
        let b: QuantizedMatrix
        var rank: Int { a.rows }
        /// A's rows as floats (rank × input width), for the forward pass.
        let aRows: [Float]
        /// B's columns as floats (rank × output width): `B·t` is a sum of rank scaled columns.
        let bColumns: [Float]

        init(a: QuantizedMatrix, b: QuantizedMatrix) {
            self.a = a
            self.b = b
            var aRows = [Float](repeating: 0, count: a.rows * a.columns)
            aRows.withUnsafeMutableBufferPointer { out in
                for r in 0..<a.rows { Kernels.dequantizeRow(a, row: r, into: out.baseAddress! + r * a.columns) }
            }
            var bColumns = [Float](repeating: 0, count: b.rows * b.columns)
            var row = [Float](repeating: 0, count: b.columns)
            for o in 0..<b.rows {
                row.withUnsafeMutableBufferPointer { Kernels.dequantizeRow(b, row: o, into: $0.baseAddress!) }
                for k in 0..<b.columns { bColumns[k * b.rows + o] = row[k] }
            }
            self.aRows = aRows
            self.bColumns = bColumns
        }
    }

    /// The weights an adapter may change, in the order of the forward pass.
    enum Target: Int, CaseIterable {
        case query, key, value, attentionOutput, gate, up, down

        var suffix: String {
            switch self {
            case .query: "attn_q.weight"
            case .key: "attn_k.weight"
            case .value: "attn_v.weight"
            case .attentionOutput: "attn_output.weight"
            case .gate: "ffn_gate.weight"
            case .up: "ffn_up.weight"
            case .down: "ffn_down.weight"
            }
        }
    }

    /// The adapter file.
    public let file: GGUFFile
    /// Where it was read from (for logs).
    public let path: String
    /// How many weights it adapts.
    public var adaptedCount: Int { blocks.reduce(0) { $0 + $1.compactMap { $0 }.count } + (output == nil ? 0 : 1) }
    /// The largest rank of its pairs.
    public let maxRank: Int
    /// A fingerprint of the adapter file (as `GGUFFile.fingerprint`).
    public var fingerprint: String { file.fingerprint }

    /// Pairs by block, then by `Target.rawValue`.
    let blocks: [[Pair?]]
    /// The factor each pair's `B·(A·x)` is multiplied by: `alpha / rank` (or 1 without an alpha) × the user's scale.
    let blockScales: [[Float]]
    let output: Pair?
    let outputScale: Float

    /// Reads the adapter at `path` for `model`, checking its architecture and every shape against the model.
    /// - Parameter scale: the user's strength (1: as trained).
    /// - Throws: `LoRAError` naming what does not fit, or `GGUFError` for a malformed file.
    public convenience init(path: String, model: LanguageModel, scale: Float = 1) throws {
        try self.init(file: GGUFFile(path: path), path: path, model: model, scale: scale)
    }

    /// Reads an adapter from an opened file.
    public init(file: GGUFFile, path: String = "(memory)", model: LanguageModel, scale: Float = 1) throws {
        guard scale.isFinite else { throw LoRAError.badScale(scale) }
        self.file = file
        self.path = path
        let kind = file.metadata["general.type"].flatMap { if case .string(let s) = $0 { s } else { nil } }
        guard kind == "adapter" else { throw LoRAError.notAnAdapter(path: path, generalType: kind) }
        let adapterType = file.metadata["adapter.type"].flatMap { if case .string(let s) = $0 { s } else { nil } }
        guard adapterType == "lora" else { throw LoRAError.notLoRA(path: path, adapterType: adapterType) }
        let architecture = file.metadata["general.architecture"].flatMap {
            if case .string(let s) = $0 { s } else { nil }
        }
        guard architecture == model.configuration.architecture else {
            throw LoRAError.architectureMismatch(adapter: architecture ?? "none", model: model.configuration.architecture)
        }
        let alpha = file.metadata["adapter.lora.alpha"]?.floatValue ?? 0
        guard alpha.isFinite else { throw LoRAError.badScale(Float(alpha)) }

        let c = model.configuration
        // The base weight each adaptable tensor name stands for: (rows, columns) it must match.
        var shapes: [String: (rows: Int, columns: Int)] = [:]
        for n in 0..<c.blockCount {
            for target in Target.allCases {
                let shape: (Int, Int) = switch target {
                case .query: (c.queryWidth, c.embeddingLength)
                case .key, .value: (c.keyValueWidth, c.embeddingLength)
                case .attentionOutput: (c.embeddingLength, c.queryWidth)
                case .gate, .up: (c.feedForwardLength, c.embeddingLength)
                case .down: (c.embeddingLength, c.feedForwardLength)
                }
                shapes["blk.\(n).\(target.suffix)"] = shape
            }
        }
        shapes["output.weight"] = (c.vocabularySize, c.embeddingLength)

        var halves: [String: (a: GGUFTensorInfo?, b: GGUFTensorInfo?)] = [:]
        for info in file.tensors {
            if info.name.hasSuffix(".lora_a") {
                halves[String(info.name.dropLast(7)), default: (nil, nil)].a = info
            } else if info.name.hasSuffix(".lora_b") {
                halves[String(info.name.dropLast(7)), default: (nil, nil)].b = info
            } else {
                throw LoRAError.unexpectedTensor(info.name)
            }
        }
        guard !halves.isEmpty else { throw LoRAError.empty(path: path) }
        var pairs: [String: Pair] = [:]
        var scales: [String: Float] = [:]
        var maxRank = 0
        for (base, half) in halves.sorted(by: { $0.key < $1.key }) {
            guard let a = half.a, let b = half.b else { throw LoRAError.unpaired(base) }
            guard let shape = shapes[base] else { throw LoRAError.unsupportedTarget(base) }
            let ma = try file.matrix(a.name)
            let mb = try file.matrix(b.name)
            // A: [input width, rank] (columns, rows); B: [rank, output width].
            guard ma.columns == shape.columns, mb.rows == shape.rows, ma.rows == mb.columns else {
                throw LoRAError.shapeMismatch(
                    tensor: base, a: a.shape, b: b.shape,
                    expected: "lora_a [\(shape.columns), r] and lora_b [r, \(shape.rows)]"
                )
            }
            let rank = ma.rows
            maxRank = max(maxRank, rank)
            pairs[base] = Pair(a: ma, b: mb)
            scales[base] = (alpha != 0 ? Float(alpha) / Float(rank) : 1) * scale
        }
        blocks = (0..<c.blockCount).map { n in Target.allCases.map { pairs["blk.\(n).\($0.suffix)"] } }
        blockScales = (0..<c.blockCount).map { n in Target.allCases.map { scales["blk.\(n).\($0.suffix)"] ?? 0 } }
        output = pairs["output.weight"]
        outputScale = scales["output.weight"] ?? 0
        self.maxRank = maxRank
    }
}

/// Why a LoRA adapter cannot be used with a model.
public enum LoRAError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The file's `general.type` is not "adapter" (it is a model, or something else).
    case notAnAdapter(path: String, generalType: String?)
    /// The adapter is not a LoRA adapter (`adapter.type`).
    case notLoRA(path: String, adapterType: String?)
    /// The adapter was made for another architecture.
    case architectureMismatch(adapter: String, model: String)
    /// A tensor whose name ends in neither `.lora_a` nor `.lora_b`.
    case unexpectedTensor(String)
    /// A weight with only one of its two tensors.
    case unpaired(String)
    /// A weight the engine does not adapt (or that the model does not have).
    case unsupportedTarget(String)
    /// The pair's shapes do not fit the weight.
    case shapeMismatch(tensor: String, a: [Int], b: [Int], expected: String)
    /// An adapter file without any pair.
    case empty(path: String)
    /// A scale that is not a finite number.
    case badScale(Float)

    public var description: String {
        switch self {
        case let .notAnAdapter(path, type):
            "\(path) is not an adapter (general.type is \(type.map { "\"\($0)\"" } ?? "missing"), expected \"adapter\")"
        case let .notLoRA(path, type):
            "\(path) is not a LoRA adapter (adapter.type is \(type.map { "\"\($0)\"" } ?? "missing"), expected \"lora\")"
        case let .architectureMismatch(adapter, model):
            "the adapter is for architecture \"\(adapter)\" but the model is \"\(model)\""
        case let .unexpectedTensor(name):
            "adapter tensor \(name) is neither a lora_a nor a lora_b tensor"
        case let .unpaired(name):
            "adapter weight \(name) has only one of lora_a and lora_b"
        case let .unsupportedTarget(name):
            "the adapter changes \(name), which the model does not have or the engine does not adapt (attention and "
                + "feed-forward projections and output.weight are adapted)"
        case let .shapeMismatch(tensor, a, b, expected):
            "adapter weight \(tensor) has lora_a \(a) and lora_b \(b), expected \(expected): made for another model?"
        case let .empty(path):
            "\(path) has no LoRA tensors"
        case let .badScale(scale):
            "a LoRA scale of \(scale) is not a finite number"
        }
    }
}

extension LoRAAdapter {
    /// Personalized Soups' parameter merge of adapters: one adapter whose update of every weight is the mean of
    /// theirs, `ΔW = (1/n) Σ s_i · B_i·A_i`, held exactly as a LoRA of rank Σ r_i (A the stacked A_i, B the
    /// B_i side by side, each scaled by s_i / n). A weight an adapter leaves alone counts as a zero update.
    /// - Throws: `LoRAError.empty` for no adapters; `GGUFError` if the merged file cannot be built.
    public static func average(_ adapters: [LoRAAdapter], model: LanguageModel) throws -> LoRAAdapter {
        guard let first = adapters.first else { throw LoRAError.empty(path: "(soup)") }
        var writer = GGUFWriter()
        writer.set("general.architecture", .string(model.configuration.architecture))
        writer.set("general.type", .string("adapter"))
        writer.set("adapter.type", .string("lora"))
        writer.set("adapter.lora.alpha", .float32(0))  // scale 1: the factors are in B
        let n = Float(adapters.count)
        var names: [String] = []
        for block in first.blocks.indices {
            for target in Target.allCases where adapters.contains(where: { $0.blocks[block][target.rawValue] != nil }) {
                names.append("blk.\(block).\(target.suffix)")
            }
        }
        if adapters.contains(where: { $0.output != nil }) { names.append("output.weight") }
        for name in names {
            var members: [(pair: Pair, scale: Float)] = []
            for adapter in adapters {
                if name == "output.weight" {
                    if let pair = adapter.output { members.append((pair, adapter.outputScale / n)) }
                } else if let (block, target) = Self.locate(name),
                          let pair = adapter.blocks[block][target.rawValue] {
                    members.append((pair, adapter.blockScales[block][target.rawValue] / n))
                }
            }
            let columns = members[0].pair.a.columns
            let rows = members[0].pair.b.rows
            let rank = members.reduce(0) { $0 + $1.pair.rank }
            var a: [Float] = []
            a.reserveCapacity(rank * columns)
            var row = [Float](repeating: 0, count: max(columns, rows))
            for member in members {
                for r in 0..<member.pair.rank {
                    row.withUnsafeMutableBufferPointer { Kernels.dequantizeRow(member.pair.a, row: r, into: $0.baseAddress!) }
                    a.append(contentsOf: row[0..<columns])
                }
            }
            var b = [Float](repeating: 0, count: rows * rank)
            var offset = 0
            var bRow = [Float](repeating: 0, count: rank)
            for member in members {
                let r = member.pair.rank
                for o in 0..<rows {
                    bRow.withUnsafeMutableBufferPointer { Kernels.dequantizeRow(member.pair.b, row: o, into: $0.baseAddress!) }
                    for k in 0..<r { b[o * rank + offset + k] = member.scale * bRow[k] }
                }
                offset += r
            }
            try writer.add(.init(name: name + ".lora_a", shape: [columns, rank], type: .f32,
                                 data: a.withUnsafeBytes { [UInt8]($0) }))
            try writer.add(.init(name: name + ".lora_b", shape: [rank, rows], type: .f32,
                                 data: b.withUnsafeBytes { [UInt8]($0) }))
        }
        let path = "soup of " + adapters.map(\.path).joined(separator: ", ")
        return try LoRAAdapter(file: GGUFFile(bytes: writer.bytes()), path: path, model: model)
    }

    /// (block, target) of a weight name "blk.N.<suffix>".
    private static func locate(_ name: String) -> (Int, Target)? {
        let parts = name.split(separator: ".", maxSplits: 2)
        guard parts.count == 3, parts[0] == "blk", let block = Int(parts[1]),
              let target = Target.allCases.first(where: { $0.suffix == parts[2] }) else { return nil }
        return (block, target)
    }
}
