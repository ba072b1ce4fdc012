// Writes the GGUF fuzzer's seed corpus into the directory given as the first argument, from the tiny models
// in Tests/Fixtures (the second argument) and tokenizer-chat.json there: whole files, each file's metadata alone
// (versions 1, 2 and 3), files cut short at structure boundaries, deterministic byte mutations, and small
// synthetic files for what the fixtures lack (a SentencePiece vocabulary, Llama 3 markup, every tensor type).
// Compiled together with the Inference sources by Scripts/fuzz-gguf.sh.
import Foundation
#if canImport(CPUKernels)
import CPUKernels
#endif

let arguments = CommandLine.arguments
guard arguments.count == 3 else {
    FileHandle.standardError.write(Data("usage: gguf-seeds <out-directory> <fixtures-directory>\n".utf8))
    exit(2)
}
let out = URL(fileURLWithPath: arguments[1], isDirectory: true)
let fixtures = URL(fileURLWithPath: arguments[2], isDirectory: true)
try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)

var written = 0
func write(_ name: String, _ bytes: [UInt8]) throws {
    try Data(bytes).write(to: out.appendingPathComponent(name))
    written += 1
}

// MARK: - A GGUF writer

struct Tensor {
    var name: String
    var shape: [Int]
    var type: GGMLType
}

struct Writer {
    var version: UInt32
    var bytes: [UInt8] = []
    /// Offsets where each structure starts, for cutting files short there.
    var boundaries: [Int] = []

    var wide: Bool { version >= 2 }

    mutating func int<T: FixedWidthInteger>(_ v: T) {
        withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) }
    }

    mutating func count(_ n: Int) {
        if wide { int(UInt64(n)) } else { int(UInt32(n)) }
    }

    mutating func string(_ s: String) {
        count(s.utf8.count)
        bytes.append(contentsOf: s.utf8)
    }

    mutating func value(_ v: GGUFValue) {
        switch v {
        case .uint8(let x): int(x)
        case .int8(let x): int(x)
        case .uint16(let x): int(x)
        case .int16(let x): int(x)
        case .uint32(let x): int(x)
        case .int32(let x): int(x)
        case .float32(let x): int(x.bitPattern)
        case .bool(let x): int(UInt8(x ? 1 : 0))
        case .string(let x): string(x)
        case .uint64(let x): int(x)
        case .int64(let x): int(x)
        case .float64(let x): int(x.bitPattern)
        case .array(let element, let values):
            int(element.rawValue)
            count(values.count)
            for e in values { value(e) }
        }
    }

    /// A whole file: header, metadata, tensor table, padding, then zeroed tensor data.
    static func file(version: UInt32 = 3, metadata: [(String, GGUFValue)], tensors: [Tensor] = [],
                     alignment: Int = 32) -> Writer
    {
        var w = Writer(version: version)
        w.int(UInt32(0x4655_4747))
        w.int(version)
        w.count(tensors.count)
        w.count(metadata.count)
        for (key, v) in metadata {
            w.boundaries.append(w.bytes.count)
            w.string(key)
            w.int(v.type.rawValue)
            w.value(v)
        }
        var offset = 0
        var extents: [Int] = []
        for t in tensors {
            w.boundaries.append(w.bytes.count)
            w.string(t.name)
            w.int(UInt32(t.shape.count))
            for d in t.shape { if w.wide { w.int(UInt64(d)) } else { w.int(UInt32(d)) } }
            w.int(t.type.rawValue)
            w.int(UInt64(offset))
            let size = t.type.byteCount(values: t.shape.reduce(1, *)) ?? 0
            extents.append(size)
            offset += (size + alignment - 1) / alignment * alignment
        }
        w.boundaries.append(w.bytes.count)
        while w.bytes.count % alignment != 0 { w.bytes.append(0) }
        w.bytes += [UInt8](repeating: 0, count: offset)
        return w
    }
}

/// A deterministic generator (SplitMix64), so the corpus is the same every run.
struct Seeded {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(max(n, 1))) }
}

func mutations(of bytes: [UInt8], name: String, count: Int, rng: inout Seeded) throws {
    guard !bytes.isEmpty else { return }
    let interesting: [UInt8] = [0x00, 0xFF, 0x7F, 0x80, 0x01]
    for i in 0..<count {
        var copy = bytes
        for _ in 0..<(1 + rng.below(4)) {
            let at = rng.below(copy.count)
            copy[at] = rng.below(2) == 0
                ? interesting[rng.below(interesting.count)] : UInt8(truncatingIfNeeded: rng.next())
        }
        try write("\(name)-mutated-\(i).gguf", copy)
    }
}

func truncations(of w: Writer, name: String) throws {
    let cuts = Set([4, 8, 16, 24] + w.boundaries.map { $0 + 1 } + w.boundaries.map { max(0, $0 - 1) }.prefix(8))
    for cut in cuts.sorted() where cut < w.bytes.count {
        try write("\(name)-cut-\(cut).gguf", Array(w.bytes.prefix(cut)))
    }
}

// MARK: - Seeds from the fixtures

let tinyModels = ["tiny-a.gguf", "tiny-b.gguf", "tiny-c.gguf", "tiny-f32.gguf", "tiny-q4_0.gguf", "tiny-qwen2.gguf"]
var rng = Seeded(state: 0x6D6F_7065)
for model in tinyModels {
    let url = fixtures.appendingPathComponent(model)
    let bytes = [UInt8](try Data(contentsOf: url))
    let stem = String(model.dropLast(".gguf".count))
    try write("\(stem).gguf", bytes)
    let file = try GGUFFile(bytes: bytes)
    let metadata = file.metadataKeys.map { ($0, file.metadata[$0]!) }
    // The metadata alone (no tensors): small inputs that still reach the tokenizer loader.
    for version: UInt32 in [1, 2, 3] {
        let w = Writer.file(version: version, metadata: metadata)
        try write("\(stem)-metadata-v\(version).gguf", w.bytes)
    }
    // The header with the tensor table but tensors shrunk to one block each: every table entry, little data.
    let shrunk = file.tensors.map { Tensor(name: $0.name, shape: [$0.type.blockSize], type: $0.type) }
    let small = Writer.file(metadata: metadata, tensors: shrunk)
    try write("\(stem)-small-tensors.gguf", small.bytes)
    try truncations(of: small, name: stem)
    try mutations(of: Writer.file(metadata: metadata).bytes, name: "\(stem)-metadata", count: 6, rng: &rng)
}

// MARK: - Synthetic seeds

let chat = try JSONSerialization.jsonObject(with: Data(contentsOf: fixtures.appendingPathComponent(
    "tokenizer-chat.json"))) as? [String: Any]
let templates = (chat?["templates"] as? [[String: Any]] ?? []).reduce(into: [String: String]()) {
    if let name = $1["name"] as? String, let source = $1["source"] as? String { $0[name] = source }
}

func strings(_ values: [String]) -> GGUFValue { .array(elementType: .string, values: values.map { .string($0) }) }
func int32s(_ values: [Int32]) -> GGUFValue { .array(elementType: .int32, values: values.map { .int32($0) }) }
func floats(_ values: [Float]) -> GGUFValue { .array(elementType: .float32, values: values.map { .float32($0) }) }

// SentencePiece: <unk>, <s>, </s>, the 256 byte tokens, then a few pieces with scores.
do {
    var tokens = ["<unk>", "<s>", "</s>"]
    var types: [Int32] = [2, 3, 3]
    for b in 0..<256 {
        tokens.append(String(format: "<0x%02X>", b))
        types.append(6)
    }
    let pieces = ["\u{2581}", "a", "b", "c", "\u{2581}a", "ab", "bc", "\u{2581}ab", "abc", "é", "<tool>"]
    tokens += pieces
    types += pieces.map { $0 == "<tool>" ? 4 : 1 }
    let scores = tokens.indices.map { -Float($0) / 10 }
    var metadata: [(String, GGUFValue)] = [
        ("general.architecture", .string("llama")),
        ("tokenizer.ggml.model", .string("llama")),
        ("tokenizer.ggml.tokens", strings(tokens)),
        ("tokenizer.ggml.token_type", int32s(types)),
        ("tokenizer.ggml.scores", floats(scores)),
        ("tokenizer.ggml.bos_token_id", .uint32(1)),
        ("tokenizer.ggml.eos_token_id", .uint32(2)),
        ("tokenizer.ggml.unknown_token_id", .uint32(0)),
        ("tokenizer.ggml.add_bos_token", .bool(true)),
        ("tokenizer.ggml.add_space_prefix", .bool(true)),
    ]
    try write("sentencepiece.gguf", Writer.file(metadata: metadata).bytes)
    metadata.append(("tokenizer.chat_template", .string(templates["chatml-plain"] ?? "")))
    let w = Writer.file(metadata: metadata)
    try write("sentencepiece-chatml.gguf", w.bytes)
    try truncations(of: w, name: "sentencepiece")
    try mutations(of: w.bytes, name: "sentencepiece", count: 6, rng: &rng)
}

// Byte-level BPE with Llama 3's control tokens, pre-tokenizer and template.
do {
    let controls = ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    var tokens = controls
    var types = [Int32](repeating: 3, count: controls.count)
    // GPT-2's byte-to-character table (the seed writer is compiled into the Inference module).
    let byteScalars = (0..<256).map { String(ByteLevel.scalarOfByte[$0]) }
    tokens += byteScalars
    types += [Int32](repeating: 1, count: 256)
    tokens += ["he", "ll", "hell", "hello", "\u{120}w", "\u{120}world"]
    types += [1, 1, 1, 1, 1, 1]
    let merges = ["h e", "l l", "he ll", "hell o", "\u{120} w", "\u{120}w orld"]
    var metadata: [(String, GGUFValue)] = [
        ("tokenizer.ggml.model", .string("gpt2")),
        ("tokenizer.ggml.pre", .string("llama-bpe")),
        ("tokenizer.ggml.tokens", strings(tokens)),
        ("tokenizer.ggml.token_type", int32s(types)),
        ("tokenizer.ggml.merges", strings(merges)),
        ("tokenizer.ggml.bos_token_id", .int32(0)),
        ("tokenizer.ggml.eos_token_id", .int32(3)),
        ("tokenizer.chat_template", .string(templates["llama3"] ?? "")),
    ]
    try write("llama3-bpe.gguf", Writer.file(metadata: metadata).bytes)
    metadata[1] = ("tokenizer.ggml.pre", .string("qwen2"))
    let w = Writer.file(metadata: metadata)
    try write("qwen2-bpe.gguf", w.bytes)
    try mutations(of: w.bytes, name: "bpe", count: 6, rng: &rng)
}

// Every tensor type, one or two blocks each, with odd shapes and a custom alignment.
do {
    let tensors = GGMLType.allCases.enumerated().map { i, type in
        Tensor(name: "t.\(type.name)", shape: i % 2 == 0 ? [type.blockSize, 2] : [type.blockSize, 1, 1, 1], type: type)
    }
    let metadata: [(String, GGUFValue)] = [
        ("general.alignment", .uint32(64)),
        ("nested", .array(elementType: .array, values: [.array(elementType: .uint8, values: [.uint8(1)])])),
        ("mixed.u64", .uint64(UInt64.max)), ("mixed.i64", .int64(Int64.min)), ("mixed.f64", .float64(.nan)),
        ("mixed.u16", .uint16(7)), ("mixed.i16", .int16(-7)), ("mixed.i8", .int8(-1)),
    ]
    let w = Writer.file(metadata: metadata, tensors: tensors, alignment: 64)
    try write("tensor-types.gguf", w.bytes)
    try truncations(of: w, name: "tensor-types")
    try mutations(of: w.bytes, name: "tensor-types", count: 6, rng: &rng)
}

try write("empty.gguf", [])
try write("magic-only.gguf", Array("GGUF".utf8))
print("gguf-seeds: wrote \(written) seeds to \(out.path)")
