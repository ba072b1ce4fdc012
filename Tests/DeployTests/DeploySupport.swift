import Foundation
import ProcessSupport
import TestKit

/// What the deploy tests share: where the scripts are, how to run one with a bound on its time, and whether a
/// tool they need is on this machine.
enum Deploy {
    /// The package's `Deploy/` folder.
    static let directory = BuiltProduct.packageRoot.appendingPathComponent("Deploy")

    /// `Deploy/<relative>`.
    static func path(_ relative: String) -> String { directory.appendingPathComponent(relative).path }

    /// The first executable named `tool` on `$PATH` (or in /usr/sbin, /sbin, where root's tools live), or nil.
    static func which(_ tool: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        let folders = path.split(separator: ":").map(String.init) + ["/usr/sbin", "/sbin", "/usr/local/sbin"]
        return folders.map { "\($0)/\(tool)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// Runs `bash script arguments…` with the mope binary the tests built named in `MOPE_BINARY`, killing it
    /// after `deadline`.
    static func runScript(
        _ script: String, _ arguments: [String], environment: [String: String] = [:],
        deadline: Duration = .seconds(300)
    ) throws -> ChildRun {
        var environment = environment
        if environment["MOPE_BINARY"] == nil { environment["MOPE_BINARY"] = try MopeProcess.binary().path }
        return try ChildProcess.run("/bin/bash", [script] + arguments, environment: environment, deadline: deadline)
    }

    /// A fresh private temporary folder (mode 0700), removed by the caller.
    static func temporaryDirectory(_ label: String) throws -> URL {
        let url = FileManager.default.temporaryDirectory
            .appendingPathComponent("mope-deploy-\(label)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        return url
    }
}
