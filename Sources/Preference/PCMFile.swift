import Foundation

/// The PCM file: a JSON object `{"format": "mope-pcm", "version": 1, "configuration": {…}, "parameters": […]}`.
public enum PCMFile {
    /// The format version this build writes and reads.
    public static let version = 1
    /// The value of the `format` field.
    public static let format = "mope-pcm"

    private struct Contents: Codable {
        var format: String
        var version: Int
        var configuration: PCMConfiguration
        var parameters: [Float]
    }

    private struct Header: Codable {
        var format: String?
        var version: Int?
    }

    /// The file's bytes for a network.
    public static func encode(_ network: PCMNetwork) throws(PCMError) -> Data {
        let contents = Contents(format: format, version: version, configuration: network.configuration,
                                parameters: network.parameters)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        do {
            return try encoder.encode(contents)
        } catch {
            throw .malformed(path: "<memory>", reason: "cannot encode: \(error)")
        }
    }

    /// Writes a network to `path` (atomically).
    public static func save(_ network: PCMNetwork, to path: String) throws(PCMError) {
        let data = try encode(network)
        do {
            try data.write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw .unreadable(path: path, reason: error.localizedDescription)
        }
    }

    /// Reads and checks a network from `path`.
    public static func load(_ path: String) throws(PCMError) -> PCMNetwork {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw .unreadable(path: path, reason: error.localizedDescription)
        }
        return try decode(data, path: path)
    }

    /// Decodes and checks a network.
    public static func decode(_ data: Data, path: String = "<data>") throws(PCMError) -> PCMNetwork {
        let header: Header
        do {
            header = try JSONDecoder().decode(Header.self, from: data)
        } catch {
            throw .malformed(path: path, reason: "not a JSON object")
        }
        guard header.format == format else {
            throw .malformed(path: path, reason: "the \"format\" field must be \"\(format)\"")
        }
        guard let v = header.version else { throw .malformed(path: path, reason: "no \"version\" field") }
        guard v == version else { throw .unsupportedVersion(path: path, version: v) }
        let contents: Contents
        do {
            contents = try JSONDecoder().decode(Contents.self, from: data)
        } catch {
            throw .malformed(path: path, reason: "\(error)")
        }
        try contents.configuration.check(path: path)
        guard contents.parameters.count == contents.configuration.parameterCount else {
            throw .badShape(path: path, reason: "\(contents.parameters.count) parameters, the configuration needs "
                            + "\(contents.configuration.parameterCount)")
        }
        if let bad = contents.parameters.firstIndex(where: { !$0.isFinite }) {
            throw .nonFiniteParameter(path: path, index: bad)
        }
        return PCMNetwork(configuration: contents.configuration, parameters: contents.parameters)
    }
}
