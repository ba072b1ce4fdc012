import Testing

@testable import CLI

private let config = CommandConfiguration(
    name: "serve",
    abstract: "Serve.",
    options: [
        .value("threads", "n", default: "2", help: "Threads."),
        .value("grace", "seconds", help: "Grace."),
        .value("endpoint", "endpoint", help: "Where."),
    ]
)

@Suite struct OptionCheckTests {
    @Test("a value outside its range is a usage error naming the option; NaN is in no range", arguments: [
        (["--threads", "0"], "threads"), (["--threads", "2000"], "threads"), (["--grace", "nan"], "grace"),
        (["--grace", "-1"], "grace"),
    ])
    func outOfRange(arguments: [String], option: String) throws {
        let parsed = try ArgumentParser.parse(arguments, configuration: config)
        #expect {
            _ = try parsed.value("threads", as: Int.self, in: 1...1024)
            _ = try parsed.value("grace", as: Double.self, in: 0...Double.greatestFiniteMagnitude, expected: "≥ 0")
        } throws: { error in
            guard case UsageError.invalidValue(let name, _, _) = error else { return false }
            return name == option
        }
    }

    @Test("values inside the range, and absent options, pass")
    func inRange() throws {
        let parsed = try ArgumentParser.parse(["--grace", "0"], configuration: config)
        #expect(try parsed.value("threads", as: Int.self, in: 1...1024) == 2)
        #expect(try parsed.value("grace", as: Double.self, in: 0...1) == 0)
        #expect(try parsed.endpoint("endpoint", binding: false) == nil)
    }

    @Test("endpoints: tcp with a port from 1 to 65535, ipc and inproc with a name; * and 0 only to bind", arguments: [
        ("tcp://127.0.0.1:5555", false, true), ("tcp://[::1]:1", false, true), ("tcp://host:65535", false, true),
        ("ipc:///tmp/mope.sock", false, true), ("inproc://x", false, true), ("tcp://*:5555", true, true),
        ("tcp://0.0.0.0:0", true, true), ("tcp://127.0.0.1:*", true, true),
        ("tcp://127.0.0.1:0", false, false), ("tcp://127.0.0.1:65536", false, false),
        ("tcp://127.0.0.1:99999", true, false), ("tcp://127.0.0.1:-5", false, false), ("tcp://127.0.0.1", false, false),
        ("tcp://:5555", false, false), ("127.0.0.1:5555", false, false), ("ipc://", false, false),
        ("udp://127.0.0.1:5555", false, false), ("tcp://127.0.0.1:55a5", false, false), ("", false, false),
    ])
    func endpoints(endpoint: String, binding: Bool, valid: Bool) {
        #expect((Endpoint.problem(endpoint, binding: binding) == nil) == valid)
    }
}
