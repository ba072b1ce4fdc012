import Foundation
import TestKit
import Testing
import ZeroMQ

/// Serialized: the bench test checks that no worker process outlives it, and the idle-peer test starts one.
@Suite(.serialized) struct BenchWireTests {
    /// The numeric columns of a table row: median, p99, steps/s, raw median, raw p99, codec/raw.
    static let numericColumns = 6

    @Test("bench wire runs with worker processes and prints a row of figures per transport and worker count")
    func benchPrintsOneRowPerConfiguration() throws {
        let binary = try MopeProcess.binary()
        let run = try MopeProcess.run([
            "bench", "wire", "--steps", "200", "--warmup", "50", "--workers", "1,2", "--transports", "tcp,ipc",
            "--timeout", "60",
        ])
        #expect(run.status == 0, "stderr: \(run.errorOutput)")

        let lines = run.output.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
        let rows = lines.filter { ["tcp", "ipc"].contains($0.first) }
        #expect(rows.map { [$0[0], $0[1]] } == [["tcp", "1"], ["tcp", "2"], ["ipc", "1"], ["ipc", "2"]])
        for row in rows {
            #expect(row.count == 2 + Self.numericColumns, "row: \(row)")
            let figures = row.dropFirst(2).compactMap(Double.init)
            #expect(figures.count == Self.numericColumns, "row: \(row)")
            #expect(figures.allSatisfy { $0 > 0 && $0.isFinite }, "row: \(row)")
        }
        #expect(lines.contains { $0.first == "transport" }, "a header names the columns")

        // The worker processes are gone once the command has returned.
        #expect(MopeProcess.processes(of: binary, withArguments: ["bench", "wire-peer"]).isEmpty)
    }

    @Test("bench wire refuses an unknown transport with a usage error naming the option")
    func benchRejectsUnknownTransport() throws {
        let run = try MopeProcess.run(["bench", "wire", "--transports", "tcp,udp"])
        #expect(run.status == 2)
        #expect(run.errorOutput.contains("--transports"))
        #expect(!run.output.contains("tcp "), "nothing is measured")
    }

    @Test("bench wire-peer without a coordinator exits after its idle time")
    func peerExitsWhenIdle() throws {
        let run = try MopeProcess.run(
            ["bench", "wire-peer", "--connect", "tcp://127.0.0.1:1", "--id", "lonely", "--idle-seconds", "1"],
            deadline: .seconds(60))
        #expect(run.status == 1)
        #expect(run.errorOutput.contains("coordinator is gone"))
    }
}

@Suite struct KeygenTests {
    /// The value of the `name: value` line of `output`.
    static func field(_ name: String, in output: String) -> String? {
        output.split(separator: "\n").first { $0.hasPrefix(name + ": ") }.map { String($0.dropFirst(name.count + 2)) }
    }

    @Test("keygen prints a public and a secret 40-character Z85 key that belong together")
    func keygenPrintsAMatchingPair() throws {
        let run = try MopeProcess.run(["keygen"], deadline: .seconds(60))
        #expect(run.status == 0, "stderr: \(run.errorOutput)")
        let publicKey = try #require(Self.field("public-key", in: run.output))
        let secretKey = try #require(Self.field("secret-key", in: run.output))
        #expect(publicKey.utf8.count == 40)
        #expect(secretKey.utf8.count == 40)
        #expect(Z85.decode(publicKey)?.count == 32)
        #expect(Z85.decode(secretKey)?.count == 32)
        #expect(try CurveKeyPair(secretKey: secretKey).publicKey == publicKey)
    }

    @Test("keygen --out writes PREFIX.key (owner-only) and PREFIX.pub, and keeps them unless --force")
    func keygenWritesKeyFiles() throws {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("mope-keygen-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let prefix = directory.appendingPathComponent("coordinator").path

        let run = try MopeProcess.run(["keygen", "--out", prefix], deadline: .seconds(60))
        #expect(run.status == 0, "stderr: \(run.errorOutput)")
        let secretKey = try String(contentsOfFile: prefix + ".key", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let publicKey = try String(contentsOfFile: prefix + ".pub", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try CurveKeyPair(secretKey: secretKey).publicKey == publicKey)
        #expect(!run.output.contains(secretKey), "the secret key is not printed")
        let attributes = try FileManager.default.attributesOfItem(atPath: prefix + ".key")
        #expect((attributes[.posixPermissions] as? Int) == 0o600)

        let again = try MopeProcess.run(["keygen", "--out", prefix], deadline: .seconds(60))
        #expect(again.status == 1)
        #expect(again.errorOutput.contains("--force"))
        #expect(try String(contentsOfFile: prefix + ".key", encoding: .utf8).contains(secretKey))

        let forced = try MopeProcess.run(["keygen", "--out", prefix, "--force"], deadline: .seconds(60))
        #expect(forced.status == 0)
        #expect(try !String(contentsOfFile: prefix + ".key", encoding: .utf8).contains(secretKey))
    }

    @Test("keygen --cluster writes a cluster's three key pairs and two allow-lists, a 0700 folder and 0600 secrets")
    func keygenWritesAClusterKeySet() throws {
        let base = FileManager.default.temporaryDirectory
            .appendingPathComponent("mope-keygen-cluster-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        defer { try? FileManager.default.removeItem(at: base) }
        let directory = base.path
        let run = try MopeProcess.run(["keygen", "--cluster", directory], deadline: .seconds(60))
        #expect(run.status == 0, "stderr: \(run.errorOutput)")
        let folder = try FileManager.default.attributesOfItem(atPath: directory)
        #expect((folder[.posixPermissions] as? Int) == 0o700)
        func read(_ name: String) throws -> String {
            try String(contentsOfFile: directory + "/" + name, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        var publicKeys: [String: String] = [:]
        for role in ["coordinator", "worker", "client"] {
            let secret = try read(role + ".key")
            publicKeys[role] = try read(role + ".pub")
            #expect(try CurveKeyPair(secretKey: secret).publicKey == publicKeys[role], "\(role)")
            let attributes = try FileManager.default.attributesOfItem(atPath: directory + "/\(role).key")
            #expect((attributes[.posixPermissions] as? Int) == 0o600, "\(role)")
            #expect(!run.output.contains(secret))
        }
        #expect(try read("worker-keys").hasPrefix(try #require(publicKeys["worker"])))
        #expect(try read("authorized-keys").hasPrefix(try #require(publicKeys["client"])))
        #expect(Set(publicKeys.values).count == 3)

        let again = try MopeProcess.run(["keygen", "--cluster", directory], deadline: .seconds(60))
        #expect(again.status == 1)
        #expect(again.errorOutput.contains("--force"))
        let both = try MopeProcess.run(["keygen", "--cluster", directory, "--out", directory + "/x"], deadline: .seconds(60))
        #expect(both.status == 2)
    }
}
