import Foundation
import TestKit
import Testing

@testable import Inference

/// Builds GGUF bytes by hand, with 32-bit (version 1) or 64-bit (versions 2, 3) counts.
struct GGUFBuilder {
    var version: UInt32 = 3
    var metadata: [(String, UInt32, [UInt8])] = []
    var tensors: [(name: String, shape: [UInt64], type: UInt32, data: [UInt8])] = []

    func count(_ n: Int) -> [UInt8] {
        version == 1 ? le(UInt32(n)) : le(UInt64(n))
    }

    func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }

    func string(_ s: String) -> [UInt8] { count(s.utf8.count) + Array(s.utf8) }

    mutating func add(_ key: String, type: UInt32, _ payload: [UInt8]) { metadata.append((key, type, payload)) }

    func build(alignment: Int = 32) -> [UInt8] {
        var out: [UInt8] = Array("GGUF".utf8) + le(version) + count(tensors.count) + count(metadata.count)
        for (key, type, payload) in metadata { out += string(key) + le(type) + payload }
        var offset = 0
        var offsets: [Int] = []
        for t in tensors {
            offsets.append(offset)
            offset += (t.data.count + alignment - 1) / alignment * alignment
        }
        for (t, o) in zip(tensors, offsets) {
            out += string(t.name) + le(UInt32(t.shape.count))
            for d in t.shape { out += version == 1 ? le(UInt32(d)) : le(d) }
            out += le(t.type) + le(UInt64(o))
        }
        while out.count % alignment != 0 { out.append(0) }
        for t in tensors {
            out += t.data
            while out.count % alignment != 0 { out.append(0) }
        }
        return out
    }
}

@Suite struct GGUFReaderTests {
    // MARK: Well-formed files

    @Test("metadata of every value type reads back, with 32-bit counts in v1 and 64-bit counts in v2 and v3",
          arguments: [UInt32(1), 2, 3])
    func allValueTypes(version: UInt32) throws {
        var b = GGUFBuilder(version: version)
        b.add("u8", type: 0, [200])
        b.add("i8", type: 1, b.le(Int8(-5)))
        b.add("u16", type: 2, b.le(UInt16(60000)))
        b.add("i16", type: 3, b.le(Int16(-300)))
        b.add("u32", type: 4, b.le(UInt32(4_000_000_000)))
        b.add("i32", type: 5, b.le(Int32(-70000)))
        b.add("f32", type: 6, b.le(Float(1.5).bitPattern))
        b.add("bool", type: 7, [1])
        b.add("str", type: 8, b.string("héllo"))
        b.add("u64", type: 10, b.le(UInt64(1) << 40))
        b.add("i64", type: 11, b.le(Int64(-1) << 40))
        b.add("f64", type: 12, b.le(Double(0.25).bitPattern))
        b.add("arr", type: 9, b.le(UInt32(8)) + b.count(2) + b.string("a b") + b.string(""))
        b.add("ints", type: 9, b.le(UInt32(5)) + b.count(3) + b.le(Int32(1)) + b.le(Int32(-2)) + b.le(Int32(3)))
        b.tensors = [(name: "w", shape: [32, 2], type: 0, data: Array(repeating: 0, count: 256))]
        let file = try GGUFFile(bytes: b.build())

        #expect(file.version == version)
        #expect(file.metadataKeys.count == 14)
        #expect(file.value("u8") == .uint8(200))
        #expect(file.value("i8") == .int8(-5))
        #expect(try file.int("u16") == 60000)
        #expect(try file.int("i16") == -300)
        #expect(try file.int("u32") == 4_000_000_000)
        #expect(try file.int("i32") == -70000)
        #expect(try file.float("f32") == 1.5)
        #expect(try file.bool("bool"))
        #expect(try file.string("str") == "héllo")
        #expect(try file.int("u64") == 1 << 40)
        #expect(try file.int("i64") == -(1 << 40))
        #expect(try file.float("f64") == 0.25)
        #expect(try file.strings("arr") == ["a b", ""])
        #expect(try file.int32s("ints") == [1, -2, 3])
        #expect(file.alignment == 32)
        #expect(file.dataOffset % 32 == 0)
        let w = try file.matrix("w")
        #expect(w.rows == 2 && w.columns == 32 && w.type == .f32)
    }

    @Test("general.alignment moves the data section and tensor offsets")
    func customAlignment() throws {
        var b = GGUFBuilder()
        b.add("general.alignment", type: 4, b.le(UInt32(64)))
        let values: [Float] = (0..<32).map(Float.init)
        let data = values.flatMap { b.le($0.bitPattern) }
        b.tensors = [(name: "a", shape: [32], type: 0, data: data), (name: "b", shape: [32], type: 0, data: data)]
        let file = try GGUFFile(bytes: b.build(alignment: 64))
        #expect(file.alignment == 64)
        #expect(file.dataOffset % 64 == 0)
        #expect(file.tensorInfo("b")?.offset == 128)
        #expect(try file.floats("b") == values)
    }

    @Test("the tiny model's metadata, tensor table and vocabulary read as written")
    func tinyModel() throws {
        let file = try GGUFFile(path: Fixtures.path("tiny-a.gguf"))
        #expect(try file.string("general.architecture") == "llama")
        #expect(try file.int("llama.block_count") == 2)
        #expect(try file.int("llama.embedding_length") == 64)
        let embedding = try #require(file.tensorInfo("token_embd.weight"))
        #expect(embedding.type == .q8_0)
        #expect(file.tensorInfo("blk.0.attn_q.weight")?.type == .q4_1)
        #expect(file.tensorInfo("blk.1.ffn_norm.weight")?.type == .f32)
        #expect(file.tensorInfo("output.weight") == nil)
        #expect(try file.floats("output_norm.weight").count == 64)

        let vocab = try TokenizerVocabulary(gguf: file)
        #expect(vocab.model == "gpt2")
        #expect(vocab.pre == "smollm")
        #expect(vocab.tokens.count == embedding.shape[1])
        #expect(Array(vocab.tokens.prefix(3)) == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
        #expect(Array(vocab.tokenTypes.prefix(4)) == [3, 3, 3, 1])
        #expect(!vocab.merges.isEmpty)
        #expect(vocab.bosTokenID == 1 && vocab.eosTokenID == 2)
        #expect(vocab.addBOS == false)
        #expect(vocab.chatTemplate?.contains("<|im_start|>assistant") == true)
    }

    @Test("experts with different weights but one tokenizer have different fingerprints and equal vocabulary hashes")
    func fingerprints() throws {
        let a = try GGUFFile(path: Fixtures.path("tiny-a.gguf"))
        let a2 = try GGUFFile(bytes: Fixtures.bytes("tiny-a.gguf"))
        let b = try GGUFFile(path: Fixtures.path("tiny-b.gguf"))
        let c = try GGUFFile(path: Fixtures.path("tiny-c.gguf"))
        #expect(a.fingerprint == a2.fingerprint)
        #expect(a.fingerprint.count == 16)
        #expect(Set([a.fingerprint, b.fingerprint, c.fingerprint]).count == 3)
        let hashes = try [a, b, c].map { try TokenizerVocabulary(gguf: $0).vocabularyHash }
        #expect(Set(hashes).count == 1)
        var other = try TokenizerVocabulary(gguf: a)
        other.tokens[5] += "x"
        #expect(other.vocabularyHash != hashes[0])
    }

    // MARK: Bad files

    @Test("a file cut short anywhere is reported as truncated or as a tensor past the end, never a crash")
    func truncatedEverywhere() throws {
        let bytes = try Fixtures.bytes("tiny-a.gguf")
        let header = try GGUFFile(bytes: bytes).headerSize
        var cuts = Array(stride(from: 0, to: header, by: 7)) + [header - 1, header]
        cuts += Array(stride(from: header, to: bytes.count, by: 4099)) + [bytes.count - 1]
        for cut in cuts {
            do {
                _ = try GGUFFile(bytes: Array(bytes.prefix(cut)))
                Issue.record("a file cut at \(cut) of \(bytes.count) bytes was accepted")
            } catch {
                switch error {
                case .truncated:
                    #expect(cut < header, "cut at \(cut): header is whole, expected tensorOutOfBounds")
                case .tensorOutOfBounds:
                    #expect(cut >= header, "cut at \(cut) inside the header, expected truncated")
                default:
                    Issue.record("cut at \(cut): unexpected \(error)")
                }
            }
        }
    }

    @Test("a file that does not start with GGUF is rejected as bad magic")
    func badMagic() throws {
        var bytes = try Fixtures.bytes("tiny-a.gguf")
        bytes[0] = UInt8(ascii: "X")
        #expect(throws: GGUFError.badMagic(found: 0x4655_4758)) { try GGUFFile(bytes: bytes) }
        #expect(throws: GGUFError.badMagic(found: 0x6c6c_6548)) { try GGUFFile(bytes: Array("Hello, world!!!!".utf8)) }
    }

    @Test("an unknown format version is rejected")
    func badVersion() throws {
        var bytes = try Fixtures.bytes("tiny-a.gguf")
        bytes[4] = 4
        #expect(throws: GGUFError.unsupportedVersion(4)) { try GGUFFile(bytes: bytes) }
    }

    @Test("a tensor whose offset lies past the end of the file is rejected")
    func offsetPastEnd() throws {
        var bytes = try Fixtures.bytes("tiny-a.gguf")
        let file = try GGUFFile(bytes: bytes)
        let last = try #require(file.tensors.last)
        // The last tensor entry ends with its type (4 bytes) and offset (8 bytes).
        let at = file.headerSize - 8
        let bad = UInt64(bytes.count) * 32
        withUnsafeBytes(of: bad.littleEndian) { for i in 0..<8 { bytes[at + i] = $0[i] } }
        #expect(throws: GGUFError.tensorOutOfBounds(tensor: last.name, offset: bad, size: UInt64(last.byteCount),
                                                    fileSize: bytes.count)) {
            try GGUFFile(bytes: bytes)
        }
    }

    @Test("a tensor of an unknown type id is rejected, naming the tensor")
    func unknownTensorType() throws {
        var bytes = try Fixtures.bytes("tiny-a.gguf")
        let file = try GGUFFile(bytes: bytes)
        let last = try #require(file.tensors.last)
        let at = file.headerSize - 12
        bytes[at] = 99
        #expect(throws: GGUFError.unknownTensorType(tensor: last.name, type: 99)) { try GGUFFile(bytes: bytes) }
    }

    @Test("a model file without a tensor the architecture needs fails to load, naming the tensor")
    func missingTensor() throws {
        let bytes = try Fixtures.bytes("tiny-a.gguf")
        let renamed = try Self.replacing("output_norm.weight", with: "output_norx.weight", in: bytes)
        let file = try GGUFFile(bytes: renamed)
        #expect(throws: GGUFError.missingTensor("output_norm.weight")) { try LanguageModel(file: file) }
        #expect(throws: GGUFError.missingTensor("nope")) { try file.matrix("nope") }
    }

    @Test("a model file without a required metadata key fails to load, naming the key")
    func missingMetadata() throws {
        let bytes = try Fixtures.bytes("tiny-a.gguf")
        let renamed = try Self.replacing("llama.block_count", with: "llama.block_cuont", in: bytes)
        #expect(throws: GGUFError.missingMetadata(key: "llama.block_count")) {
            try LanguageModel(file: try GGUFFile(bytes: renamed))
        }
    }

    @Test("reading metadata as the wrong type is a typed error")
    func wrongType() throws {
        let file = try GGUFFile(path: Fixtures.path("tiny-a.gguf"))
        #expect(throws: GGUFError.wrongMetadataType(key: "llama.block_count", expected: "string", found: "uint32")) {
            try file.string("llama.block_count")
        }
        #expect(throws: GGUFError.self) { try file.int("general.architecture") }
    }

    @Test("an unsupported architecture is reported by name")
    func unsupportedArchitecture() throws {
        let bytes = try Fixtures.bytes("tiny-a.gguf")
        // Same length keeps the file well-formed: "llama" → "llamb".
        let renamed = try Self.replacing("\u{05}\0\0\0\0\0\0\0llama", with: "\u{05}\0\0\0\0\0\0\0llamb", in: bytes)
        #expect(throws: InferenceError.unsupportedArchitecture("llamb")) {
            try LanguageModel(file: try GGUFFile(bytes: renamed))
        }
    }

    @Test("a missing file is unreadable, with the system's reason")
    func missingFile() {
        do {
            _ = try GGUFFile(path: "/nonexistent/model.gguf")
            Issue.record("opened a missing file")
        } catch {
            guard case .unreadable(let path, let reason) = error else {
                Issue.record("unexpected \(error)")
                return
            }
            #expect(path == "/nonexistent/model.gguf")
            #expect(reason.contains("No such file"))
        }
        #expect(throws: GGUFError.truncated(offset: 0, needed: 4, fileSize: 0)) { try GGUFFile(bytes: []) }
    }

    @Test("huge counts and lengths in a damaged header are errors, not allocations or crashes")
    func hugeCounts() throws {
        var b = GGUFBuilder()
        b.add("s", type: 8, b.le(UInt64.max) + [1, 2, 3])
        #expect(throws: GGUFError.self) { try GGUFFile(bytes: b.build()) }
        var c = GGUFBuilder()
        c.add("a", type: 9, c.le(UInt32(10)) + c.le(UInt64(1) << 60))
        #expect(throws: GGUFError.self) { try GGUFFile(bytes: c.build()) }
        var d = GGUFBuilder()
        d.tensors = [(name: "w", shape: [UInt64(1) << 40, 1 << 40], type: 0, data: [])]
        #expect(throws: GGUFError.self) { try GGUFFile(bytes: d.build()) }
    }

    @Test("random damage to the header never crashes the reader")
    func randomDamage() throws {
        let original = try Fixtures.bytes("tiny-a.gguf")
        let header = try GGUFFile(bytes: original).headerSize
        var state: UInt64 = 12345
        func next() -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int(state >> 33)
        }
        var rejected = 0
        for _ in 0..<300 {
            var bytes = original
            for _ in 0..<4 { bytes[next() % header] = UInt8(truncatingIfNeeded: next()) }
            do {
                let file = try GGUFFile(bytes: bytes)
                _ = try? LanguageModel(file: file)
            } catch {
                rejected += 1
            }
        }
        #expect(rejected > 0)
    }

    static func replacing(_ old: String, with new: String, in bytes: [UInt8]) throws -> [UInt8] {
        let o = Array(old.utf8), n = Array(new.utf8)
        precondition(o.count == n.count)
        var out = bytes
        let index = try #require((0...(bytes.count - o.count)).first { Array(bytes[$0..<$0 + o.count]) == o })
        out.replaceSubrange(index..<index + o.count, with: n)
        return out
    }
}
