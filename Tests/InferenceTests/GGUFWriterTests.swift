import CPUKernels
import Foundation
@testable import Inference
import Preference
import TestKit
import Testing

@Suite struct GGUFWriterTests {
    @Test("every metadata type and a tensor survive a write and a read")
    func roundTrip() throws {
        var writer = GGUFWriter()
        let values: [(String, GGUFValue)] = [
            ("a.u8", .uint8(200)), ("a.i8", .int8(-3)), ("a.u16", .uint16(60000)), ("a.i16", .int16(-30000)),
            ("a.u32", .uint32(4_000_000_000)), ("a.i32", .int32(-2_000_000_000)), ("a.f32", .float32(1.5)),
            ("a.bool", .bool(true)), ("a.str", .string("héllo")), ("a.u64", .uint64(1 << 60)),
            ("a.i64", .int64(-(1 << 60))), ("a.f64", .float64(-2.25)),
            ("a.arr", .array(elementType: .string, values: [.string("x"), .string("")])),
            ("a.nested", .array(elementType: .array, values: [.array(elementType: .int32, values: [.int32(7)])])),
        ]
        for (key, value) in values { writer.set(key, value) }
        writer.set("a.u8", .uint8(201))  // replaces in place
        let data = (0..<64).map { Float($0) * 0.5 }
        try writer.add(.init(name: "t", shape: [16, 4], type: .f32,
                             data: data.withUnsafeBytes { [UInt8]($0) }))
        try writer.add(.init(name: "u", shape: [3], type: .f32, data: [UInt8](repeating: 0, count: 12)))
        #expect(throws: GGUFError.self) {
            try writer.add(.init(name: "bad", shape: [3], type: .f32, data: [1, 2]))
        }
        #expect(throws: GGUFError.self) {
            try writer.add(.init(name: "t", shape: [3], type: .f32, data: [UInt8](repeating: 0, count: 12)))
        }
        let file = try GGUFFile(bytes: writer.bytes())
        #expect(file.version == 3)
        #expect(file.metadataKeys == values.map(\.0))
        #expect(file.metadata["a.u8"] == .uint8(201))
        for (key, value) in values.dropFirst() { #expect(file.metadata[key] == value, "\(key)") }
        let info = try #require(file.tensorInfo("t"))
        #expect(info.shape == [16, 4] && info.type == .f32)
        #expect(file.tensorBytes(info) == data.withUnsafeBytes { [UInt8]($0) })
        let offset = try #require(file.tensorInfo("u")?.offset)
        #expect(offset == 256 && offset % file.alignment == 0)
    }

    @Test("a tokenizer file carries the model's vocabulary (same hash) and embedding table, and no other tensor")
    func tokenizerFile() throws {
        let model = try GGUFFile(path: Fixtures.tinyA)
        let small = try GGUFFile(bytes: model.tokenizerFile(embeddings: true))
        #expect(try TokenizerVocabulary(gguf: small).vocabularyHash == TokenizerVocabulary(gguf: model).vocabularyHash)
        #expect(small.tensors.map(\.name) == ["token_embd.weight"])
        let embeddings = try TokenEmbeddings(file: small)
        let original = try TokenEmbeddings(file: model)
        #expect(embeddings.mean([1, 5, 9]) == original.mean([1, 5, 9]))
        let text = "Hello there, cats!"
        #expect(try makeTokenizer(TokenizerVocabulary(gguf: small)).encode(text, parseSpecial: false)
                == makeTokenizer(TokenizerVocabulary(gguf: model)).encode(text, parseSpecial: false))
        let bare = try GGUFFile(bytes: model.tokenizerFile(embeddings: false))
        #expect(bare.tensors.isEmpty)
        #expect(throws: GGUFError.self) { try LanguageModel(file: bare) }
        #expect(throws: GGUFError.self) { try GGUFFile(bytes: GGUFWriter().bytes()).tokenizerFile(embeddings: false) }
    }
}
