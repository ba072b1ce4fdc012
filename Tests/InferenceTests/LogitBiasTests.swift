import Foundation
import Inference
import TestKit
import Testing

@Suite struct LogitBiasTests {
    @Test("a bias keeps its non-zero entries, round-trips through its file, and adds itself to a row")
    func roundTrip() throws {
        let bias = try LogitBias(vocabularySize: 6, entries: [(4, 1.5), (1, -2), (3, 0), (1, -0.25)])
        #expect(bias.ids == [1, 4])
        #expect(bias.values == [-0.25, 1.5])
        #expect(bias.dense == [0, -0.25, 0, 0, 1.5, 0])
        let decoded = try LogitBias.decode(bias.encoded(note: "test"))
        #expect(decoded == bias)
        var row: [Float] = [1, 1, 1, 1, 1, 1]
        row.withUnsafeMutableBufferPointer { LogitBias.apply(bias.dense, to: $0) }
        #expect(row == [1, 0.75, 1, 1, 2.5, 1])
        var short: [Float] = [1, 1]
        short.withUnsafeMutableBufferPointer { LogitBias.apply(bias.dense, to: $0) }
        #expect(short == [1, 1], "a row of another vocabulary is left alone")
        let withHidden = try LogitBias(vocabularySize: 6, entries: [(2, 1)], hidden: [0.5, -0.25, 1e-3])
        #expect(try LogitBias.decode(withHidden.encoded()) == withHidden)
    }

    @Test("a hidden offset becomes the output layer's logits of it, plus the entries; its width is checked")
    func hiddenOffset() throws {
        let model = try LanguageModel(path: Fixtures.path("tiny-a.gguf"))
        let width = model.hiddenWidth
        let hidden = (0..<width).map { 0.1 * sin(Float($0)) }
        let bias = try LogitBias(vocabularySize: model.vocabularySize, entries: [(3, 2)], hidden: hidden)
        let logits = try bias.logits(model: model)
        #expect(logits.count == model.vocabularySize)
        // Each value is the output row's dot product with the offset (the kernel rounds its input to 8 bits).
        for id in [0, 3, 17, model.vocabularySize - 1] {
            let row = try #require(model.outputRow(id))
            let exact = zip(row, hidden).reduce(Float(0)) { $0 + $1.0 * $1.1 } + (id == 3 ? 2 : 0)
            let scale = zip(row, hidden).reduce(Float(0)) { $0 + abs($1.0 * $1.1) }
            #expect(abs(logits[id] - exact) <= 0.02 * scale + 1e-5, "token \(id): \(logits[id]) vs \(exact)")
        }
        #expect(model.outputRow(-1) == nil && model.outputRow(model.vocabularySize) == nil)
        let narrow = try LogitBias(vocabularySize: model.vocabularySize, entries: [], hidden: [1, 2])
        #expect(throws: LogitBiasError.widthMismatch(path: "<data>", file: 2, model: width)) {
            try narrow.logits(model: model)
        }
        let foreign = try LogitBias(vocabularySize: 5, entries: [])
        #expect(throws: LogitBiasError.vocabularyMismatch(path: "<data>", file: 5, model: model.vocabularySize)) {
            try foreign.logits(model: model)
        }
        #expect(throws: LogitBiasError.self) {
            try LogitBias(vocabularySize: 5, entries: [], hidden: [.infinity])
        }
    }

    @Test("malformed bias files are refused with a reason", arguments: [
        ("{}", "not a logit-bias file"),
        (#"{"format":"other","version":1,"vocabularySize":4,"entries":[]}"#, "format"),
        (#"{"format":"mope-logit-bias","version":2,"vocabularySize":4,"entries":[]}"#, "version 2"),
        (#"{"format":"mope-logit-bias","version":1,"vocabularySize":0,"entries":[]}"#, "positive"),
        (#"{"format":"mope-logit-bias","version":1,"vocabularySize":4,"entries":[[4,1]]}"#, "token id < 4"),
        (#"{"format":"mope-logit-bias","version":1,"vocabularySize":4,"entries":[[1.5,1]]}"#, "token id < 4"),
        (#"{"format":"mope-logit-bias","version":1,"vocabularySize":4,"entries":[[1]]}"#, "token id < 4"),
    ])
    func malformed(text: String, reason: String) {
        do {
            _ = try LogitBias.decode(Data(text.utf8), path: "b.json")
            Issue.record("accepted \(text)")
        } catch {
            #expect(error.description.contains("b.json"))
            #expect(error.description.contains(reason), "\(error.description)")
        }
    }

    @Test("a non-finite bias, a missing file and another vocabulary are refused")
    func refused() throws {
        #expect(throws: LogitBiasError.self) { try LogitBias(vocabularySize: 3, entries: [(0, .nan)]) }
        #expect(throws: LogitBiasError.self) { try LogitBias(vocabularySize: 3, entries: [(-1, 1)]) }
        #expect(throws: LogitBiasError.self) { try LogitBias.load(path: "/nonexistent/bias.json") }
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("bias-\(UUID()).json").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try LogitBias(vocabularySize: 3, entries: [(2, 1)]).encoded().write(to: URL(fileURLWithPath: path))
        #expect(try LogitBias.load(path: path, vocabularySize: 3).ids == [2])
        #expect(throws: LogitBiasError.vocabularyMismatch(path: path, file: 3, model: 5)) {
            try LogitBias.load(path: path, vocabularySize: 5)
        }
    }
}
