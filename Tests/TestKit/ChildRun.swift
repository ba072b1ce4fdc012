import Foundation
import ProcessSupport

/// The result of one finished child process.
public struct ChildRun: Sendable {
    /// Its exit code (128 + the signal's number when a signal ended it).
    public var status: Int32
    /// What it wrote to standard output.
    public var output: String
    /// What it wrote to standard error.
    public var errorOutput: String
}

/// A child did not finish before its deadline and was killed.
public struct ChildTimedOut: Error, CustomStringConvertible {
    public let command: String
    public let deadline: Duration
    public var description: String { "\(command) ran past \(deadline) and was killed" }
}

/// Child processes of the tests, always killed and reaped.
public enum ChildProcess {
    /// Runs `executable` with `arguments` until it exits (standard input empty), killing it and throwing
    /// `ChildTimedOut` after `deadline`.
    public static func run(
        _ executable: String, _ arguments: [String], environment: [String: String] = [:],
        deadline: Duration = .seconds(300)
    ) throws -> ChildRun {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("mope-child-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let out = directory.appendingPathComponent("stdout").path
        let err = directory.appendingPathComponent("stderr").path
        let group = ProcessGroup()
        defer { group.killAll() }
        let pid = try group.spawn(
            executable, arguments, environment: environment, standardOutput: .file(out), standardError: .file(err)
        )
        guard let status = group.wait(pid, timeout: deadline) else {
            throw ChildTimedOut(command: ([executable] + arguments).joined(separator: " "), deadline: deadline)
        }
        return ChildRun(
            status: status.code,
            output: (try? String(contentsOfFile: out, encoding: .utf8)) ?? "",
            errorOutput: (try? String(contentsOfFile: err, encoding: .utf8)) ?? ""
        )
    }

    /// The process ids of running processes whose executable is `binary` and whose arguments contain `words`
    /// in order, one argument each.
    public static func processes(of binary: URL, withArguments words: [String]) -> [Int32] {
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

/// The `mope` executable run as a child process.
public enum MopeProcess {
    /// The mope binary (`$MOPE_BINARY`, else where `swift test` built it).
    public static func binary() throws -> URL {
        try BuiltProduct.executable(named: "mope", environmentVariable: "MOPE_BINARY")
    }

    /// Runs `mope` with `arguments` until it exits, killing it (and throwing) after `deadline`.
    public static func run(_ arguments: [String], deadline: Duration = .seconds(300)) throws -> ChildRun {
        try ChildProcess.run(try binary().path, arguments, deadline: deadline)
    }

    /// The running `mope` processes whose arguments contain `words` in order.
    public static func processes(of binary: URL, withArguments words: [String]) -> [Int32] {
        ChildProcess.processes(of: binary, withArguments: words)
    }
}

extension ProcessGroup {
    /// Starts `executable` with `arguments`, standard output and error appended to the file `log`.
    @discardableResult
    public func spawn(_ executable: String, _ arguments: [String], log: String) throws(SpawnError) -> pid_t {
        try spawn(executable, arguments, standardOutput: .file(log), standardError: .file(log))
    }
}
