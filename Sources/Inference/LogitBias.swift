import Foundation

/// Why a logit-bias file could not be used.
public enum LogitBiasError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The file could not be read or is not a logit-bias file.
    case unreadable(path: String, reason: String)
    /// The file was made for a model with another vocabulary size.
    case vocabularyMismatch(path: String, file: Int, model: Int)
    /// The file's hidden offset has another width than the model's hidden state.
    case widthMismatch(path: String, file: Int, model: Int)

    /// A message a user can act on.
    public var description: String {
        switch self {
        case let .unreadable(path, reason): "cannot use the logit-bias file \(path): \(reason)"
        case let .vocabularyMismatch(path, file, model):
            "the logit-bias file \(path) is for a vocabulary of \(file) tokens, the model has \(model)"
        case let .widthMismatch(path, file, model):
            "the logit-bias file \(path) has a hidden offset of \(file) values, the model's hidden state \(model)"
        }
    }
}

/// A tuned expert's adaptation of its model: a bias b added to every row of logits before the top-k, so the
/// expert's distribution is softmax(ℓ + b) instead of softmax(ℓ).
///
/// b has two parts, either may be absent: a `hidden` offset h, a vector of the final hidden state's width whose
/// logits W_out · h are added (the same as adding h to the hidden state after the final norm: a fine-tuned bias
/// of the output layer's input, `LanguageModel.outputProjection`), and sparse per-token `entries`. `mope tune`
/// learns the hidden offset of each preference dimension's expert by REBEL on that dimension's reward; a worker
/// resolves the bias against its model once (`logits(model:)`) and adds it to every row it serves.
public struct LogitBias: Sendable, Equatable {
    /// The vocabulary size of the model it was made for.
    public let vocabularySize: Int
    /// Biased token ids, ascending.
    public let ids: [Int32]
    /// Their biases (finite), aligned with `ids`.
    public let values: [Float]
    /// The offset of the final hidden state (finite values), nil: none.
    public let hidden: [Float]?

    /// A bias; entries with a zero value are dropped. Ids must lie in 0..<vocabularySize and values be finite;
    /// the last value of a repeated id wins.
    public init(vocabularySize: Int, entries: [(id: Int32, value: Float)], hidden: [Float]? = nil)
        throws(LogitBiasError)
    {
        if let hidden, !hidden.allSatisfy(\.isFinite) {
            throw .unreadable(path: "<data>", reason: "the hidden offset has a value that is not finite")
        }
        self.hidden = hidden
        var table: [Int32: Float] = [:]
        for e in entries {
            guard e.id >= 0, Int(e.id) < vocabularySize else {
                throw .unreadable(path: "<data>", reason: "token id \(e.id) is outside 0..<\(vocabularySize)")
            }
            guard e.value.isFinite else {
                throw .unreadable(path: "<data>", reason: "the bias of token \(e.id) is not finite")
            }
            table[e.id] = e.value
        }
        let kept = table.filter { $0.value != 0 }.sorted { $0.key < $1.key }
        self.vocabularySize = vocabularySize
        ids = kept.map(\.key)
        values = kept.map(\.value)
    }

    /// The per-token entries as one value per token (without the hidden offset).
    public var dense: [Float] {
        var out = [Float](repeating: 0, count: vocabularySize)
        for (id, value) in zip(ids, values) { out[Int(id)] = value }
        return out
    }

    /// The whole bias for `model`, one value per token: the entries plus W_out · hidden.
    /// - Throws: `LogitBiasError` when the model's vocabulary or hidden width differ from the bias's.
    public func logits(model: LanguageModel, path: String = "<data>") throws(LogitBiasError) -> [Float] {
        guard model.vocabularySize == vocabularySize else {
            throw .vocabularyMismatch(path: path, file: vocabularySize, model: model.vocabularySize)
        }
        var out = dense
        if let hidden {
            guard let projected = model.outputProjection(hidden) else {
                throw .widthMismatch(path: path, file: hidden.count, model: model.hiddenWidth)
            }
            for i in out.indices { out[i] += projected[i] }
        }
        return out
    }

    /// Adds a bias of one value per token to a logits row of the same length (rows of another length are left
    /// as they are: loading checks the vocabulary).
    public static func apply(_ bias: [Float], to row: UnsafeMutableBufferPointer<Float>) {
        guard row.count == bias.count else { return }
        bias.withUnsafeBufferPointer { b in
            for i in 0..<row.count { row[i] += b[i] }
        }
    }

    // MARK: File

    private struct FileContents: Codable {
        var format: String
        var version: Int
        var vocabularySize: Int
        var note: String?
        /// [id, bias] pairs.
        var entries: [[Double]]
        /// The hidden offset.
        var hidden: [Double]?
    }

    /// The file's format tag.
    public static let format = "mope-logit-bias"

    /// The JSON file: `{"format": "mope-logit-bias", "version": 1, "vocabularySize": V, "note": …,
    /// "entries": [[id, bias], …], "hidden": [h₁, …]}` ("hidden" optional).
    public func encoded(note: String? = nil) -> Data {
        let contents = FileContents(format: Self.format, version: 1, vocabularySize: vocabularySize, note: note,
                                    entries: zip(ids, values).map { [Double($0), (Double($1) * 1e5).rounded() / 1e5] },
                                    hidden: hidden.map { $0.map(Double.init) })
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return (try? encoder.encode(contents)) ?? Data()
    }

    /// Decodes and checks a file's contents.
    public static func decode(_ data: Data, path: String = "<data>") throws(LogitBiasError) -> LogitBias {
        let contents: FileContents
        do {
            contents = try JSONDecoder().decode(FileContents.self, from: data)
        } catch {
            throw .unreadable(path: path, reason: "not a logit-bias file: \(error)")
        }
        guard contents.format == format else {
            throw .unreadable(path: path, reason: "format \"\(contents.format)\", expected \"\(format)\"")
        }
        guard contents.version == 1 else {
            throw .unreadable(path: path, reason: "version \(contents.version) is not supported (only 1)")
        }
        guard contents.vocabularySize > 0 else {
            throw .unreadable(path: path, reason: "vocabularySize must be positive")
        }
        var entries: [(id: Int32, value: Float)] = []
        for pair in contents.entries {
            guard pair.count == 2, pair[0].isFinite, pair[0] == pair[0].rounded(),
                  pair[0] >= 0, pair[0] < Double(contents.vocabularySize)
            else {
                throw .unreadable(path: path, reason: "an entry must be [token id < \(contents.vocabularySize), bias]")
            }
            entries.append((Int32(pair[0]), Float(pair[1])))
        }
        do {
            return try LogitBias(vocabularySize: contents.vocabularySize, entries: entries,
                                 hidden: contents.hidden.map { $0.map { Float($0) } })
        } catch let LogitBiasError.unreadable(_, reason) {
            throw .unreadable(path: path, reason: reason)
        } catch {
            throw error
        }
    }

    /// Reads a file and resolves it against `model`: one value per token (`logits(model:)`).
    public static func load(path: String, model: LanguageModel) throws(LogitBiasError) -> [Float] {
        try load(path: path, vocabularySize: model.vocabularySize).logits(model: model, path: path)
    }

    /// Reads a file and checks it against the model's vocabulary size (when given).
    public static func load(path: String, vocabularySize: Int? = nil) throws(LogitBiasError) -> LogitBias {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw .unreadable(path: path, reason: error.localizedDescription)
        }
        let bias = try decode(data, path: path)
        if let vocabularySize, vocabularySize != bias.vocabularySize {
            throw .vocabularyMismatch(path: path, file: bias.vocabularySize, model: vocabularySize)
        }
        return bias
    }
}
