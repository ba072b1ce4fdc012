import Foundation
import ProcessSupport
import TestKit
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Runs a program to its end: exit status and standard output + error.
private func run(_ arguments: [String], timeout: Duration = .seconds(600)) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    process.standardInput = FileHandle.nullDevice
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// The status code and body of one HTTP request, by curl.
private func curl(_ url: String, _ extra: [String] = []) throws -> (code: Int, body: String) {
    let result = try run(["curl", "-sS", "-w", "\n%{http_code}", "--max-time", "60"] + extra + [url])
    let lines = result.output.split(separator: "\n", omittingEmptySubsequences: false)
    let code = Int(lines.last ?? "") ?? 0
    return (code, lines.dropLast().joined(separator: "\n"))
}

/// `mope serve` in front of a test cluster.
final class ServeProcess {
    let pid: pid_t
    let port: Int
    let log: String
    private let group: ProcessGroup

    init(group: ProcessGroup, mope: String, directory: URL, coordinator: String, extra: [String] = []) throws {
        self.group = group
        log = directory.appendingPathComponent("serve-\(UInt32.random(in: 0...UInt32.max)).log").path
        pid = try group.spawn(mope, ["serve", "--coordinator", coordinator, "--listen", "127.0.0.1:0",
                                     "--drain-grace", "10"] + extra, log: log)
        let deadline = ContinuousClock.now.advanced(by: .seconds(60))
        while ContinuousClock.now < deadline {
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            if let range = text.range(of: "listening on http://127.0.0.1:") {
                let digits = text[range.upperBound...].prefix { $0.isNumber }
                if let port = Int(digits) {
                    self.port = port
                    return
                }
            }
            if group.wait(pid, timeout: .zero) != nil { throw HarnessError("mope serve exited:\n\(text)") }
            usleep(20_000)
        }
        throw HarnessError("mope serve did not start listening")
    }

    var base: String { "http://127.0.0.1:\(port)" }
    var logText: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
}

@Suite(.serialized)
struct ServeTests {
    @Test("the openai client, curl and prometheus_client's parser all work against mope serve on a real cluster")
    func realClients() throws {
        let cluster = try TestCluster(experts: [TinyExperts.concise, TinyExperts.friendly], maxNewTokens: 24)
        try cluster.start()
        let serve = try ServeProcess(group: cluster.group, mope: cluster.mope, directory: cluster.directory,
                                     coordinator: cluster.clientEndpoint)
        let script = Fixtures.packageRoot.appendingPathComponent("Scripts/serve-check.py").path
        let check = try run(["python3", script, "--base", serve.base, "--streams", "16"])
        #expect(check.status == 0, "\(check.output)\n\(serve.logText)\n\(cluster.logs())")
        #expect(check.output.contains("every check passed"))

        // SIGTERM drains and exits 0; the port then refuses connections.
        cluster.group.signal(serve.pid, SIGTERM)
        #expect(cluster.group.wait(serve.pid, timeout: .seconds(60)) == .exited(0), "\(serve.logText)")
        #expect(serve.logText.contains("[serve] drained"))
        #expect(try curl(serve.base + "/health").code == 0)
    }

    @Test("health is 503 naming the expert without a live worker; requests that need it get 503")
    func health() throws {
        let cluster = try TestCluster(experts: [TinyExperts.concise, TinyExperts.friendly], maxNewTokens: 8)
        try cluster.start()
        let serve = try ServeProcess(group: cluster.group, mope: cluster.mope, directory: cluster.directory,
                                     coordinator: cluster.clientEndpoint)
        #expect(try curl(serve.base + "/health").code == 200)
        let friendly = try #require(cluster.workerPIDs["friendly"])
        cluster.group.signal(friendly, SIGKILL)
        _ = cluster.group.wait(friendly, timeout: .seconds(10))
        var answer = try curl(serve.base + "/health")
        let deadline = ContinuousClock.now.advanced(by: .seconds(30))
        while answer.code != 503 && ContinuousClock.now < deadline {
            usleep(100_000)
            answer = try curl(serve.base + "/health")
        }
        #expect(answer.code == 503)
        #expect(answer.body.contains("friendly"), "\(answer.body)")
        #expect(try curl(serve.base + "/ready").code == 503)
        let body = #"{"messages":[{"role":"user","content":"Hi"}],"preference":"friendly","max_tokens":4}"#
        let refused = try curl(serve.base + "/v1/chat/completions", ["-H", "Content-Type: application/json",
                                                                     "-d", body])
        #expect(refused.code == 503, "\(refused.body)")
        #expect(refused.body.contains("\"error\""))
        // The other expert still answers.
        let concise = body.replacingOccurrences(of: "friendly", with: "concise")
        #expect(try curl(serve.base + "/v1/chat/completions", ["-H", "Content-Type: application/json",
                                                               "-d", concise]).code == 200)
    }

    @Test("without a reachable coordinator requests get 503 and health says why; a second coordinator is used")
    func unreachable() throws {
        let cluster = try TestCluster(experts: [TinyExperts.concise], maxNewTokens: 4)
        try cluster.start()
        let nowhere = "ipc://" + cluster.directory.appendingPathComponent("nobody.sock").path
        let lonely = try ServeProcess(group: cluster.group, mope: cluster.mope, directory: cluster.directory,
                                      coordinator: nowhere, extra: ["--connect-timeout", "0.5"])
        let body = #"{"messages":[{"role":"user","content":"Hi"}],"max_tokens":2}"#
        let refused = try curl(lonely.base + "/v1/chat/completions", ["-H", "Content-Type: application/json",
                                                                      "-d", body])
        #expect(refused.code == 503)
        #expect(refused.body.contains("coordinator_unavailable"), "\(refused.body)")
        #expect(try curl(lonely.base + "/health").code == 503)

        let second = try ServeProcess(group: cluster.group, mope: cluster.mope, directory: cluster.directory,
                                      coordinator: "\(nowhere),\(cluster.clientEndpoint)",
                                      extra: ["--connect-timeout", "0.5"])
        #expect(try curl(second.base + "/v1/chat/completions", ["-H", "Content-Type: application/json",
                                                                "-d", body]).code == 200)
        #expect(try curl(second.base + "/health").code == 200)
    }
}
