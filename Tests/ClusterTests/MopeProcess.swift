import Foundation
import TestKit

/// The result of one finished `mope` run.
struct MopeRun {
    var status: Int32
    var output: String
    var errorOutput: String
}

/// Runs the `mope` executable as a child process.
enum MopeProcess {
    /// Runs `mope` with `arguments` until it exits, killing it (and failing) after `deadline`.
    static func run(_ arguments: [String], deadline: Duration = .seconds(300)) throws -> MopeRun {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("mope-cluster-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let outURL = directory.appendingPathComponent("stdout")
        let errURL = directory.appendingPathComponent("stderr")
        _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
        let out = try FileHandle(forWritingTo: outURL)
        let err = try FileHandle(forWritingTo: errURL)
        defer {
            try? out.close()
            try? err.close()
        }

        let process = Process()
        process.executableURL = try binary()
        process.arguments = arguments
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let clock = ContinuousClock()
        let end = clock.now.advanced(by: deadline)
        while process.isRunning && clock.now < end { usleep(20_000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            throw MopeTimedOut(arguments: arguments, deadline: deadline)
        }
        process.waitUntilExit()
        return MopeRun(
            status: process.terminationStatus,
            output: (try? String(contentsOf: outURL, encoding: .utf8)) ?? "",
            errorOutput: (try? String(contentsOf: errURL, encoding: .utf8)) ?? "")
    }

    /// The mope binary (`$MOPE_BINARY`, else where `swift test` built it).
    static func binary() throws -> URL {
        try BuiltProduct.executable(named: "mope", environmentVariable: "MOPE_BINARY")
    }

    /// The process ids of running processes whose executable is `binary` and whose arguments contain `words`
    /// in order, one argument each.
    static func processes(of binary: URL, withArguments words: [String]) -> [Int32] {
        let target = binary.resolvingSymlinksInPath().path
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { entry -> Int32? in
            guard let pid = Int32(entry), pid != getpid() else { return nil }
            guard let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(entry)/exe"),
                exe == target,
                let data = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline")
            else { return nil }
            let arguments = data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            guard arguments.count >= words.count else { return nil }
            let starts = 0...(arguments.count - words.count)
            return starts.contains { Array(arguments[$0..<$0 + words.count]) == words } ? pid : nil
        }
    }
}

/// A `mope` run did not finish before its deadline and was killed.
struct MopeTimedOut: Error, CustomStringConvertible {
    let arguments: [String]
    let deadline: Duration
    var description: String { "mope \(arguments.joined(separator: " ")) ran past \(deadline) and was killed" }
}
