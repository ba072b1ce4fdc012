import Foundation

/// Finds the package's executables from inside a test process, for tests that run them as child processes.
public enum BuiltProduct {
    /// The package's root folder.
    public static let packageRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The executable `name`: the path in `$environmentVariable` when set, else next to the running test
    /// executable (where `swift test` builds products; on macOS up to three folders above it, outside the
    /// `.xctest` bundle), else in the package's `.build/debug`.
    /// - Throws: `BuiltProductNotFound` listing every place searched.
    public static func executable(named name: String, environmentVariable: String) throws -> URL {
        var candidates: [URL] = []
        if let path = ProcessInfo.processInfo.environment[environmentVariable] {
            candidates.append(URL(fileURLWithPath: path))
        }
        let executables = [
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")),
            Bundle.main.executablePath,
            CommandLine.arguments.first,
        ]
        for case let executable? in executables {
            var directory = URL(fileURLWithPath: executable).deletingLastPathComponent()
            for _ in 0..<4 {
                candidates.append(directory.appendingPathComponent(name))
                directory.deleteLastPathComponent()
            }
        }
        candidates.append(packageRoot.appendingPathComponent(".build/debug/\(name)"))
        let found = candidates.first { url in
            var isDirectory: ObjCBool = false
            return FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) && !isDirectory.boolValue
                && FileManager.default.isExecutableFile(atPath: url.path)
        }
        guard let found else {
            throw BuiltProductNotFound(name: name, environmentVariable: environmentVariable,
                                       searched: candidates.map(\.path))
        }
        return found
    }
}

/// An executable the tests run was not found: build it (`swift build --product NAME`) or name it in the
/// environment variable.
public struct BuiltProductNotFound: Error, CustomStringConvertible {
    /// The executable's name.
    public let name: String
    /// The environment variable that may name it.
    public let environmentVariable: String
    /// Every path searched.
    public let searched: [String]

    /// The message.
    public var description: String {
        "\(name) not found (build it with swift build --product \(name), or set \(environmentVariable)); "
            + "looked in: \(searched.joined(separator: ", "))"
    }
}
