import Testing

@testable import ClusterCore

/// Peer-chosen names in log lines: printable ASCII only, everything else as \xNN.
@Suite struct LogEscapeTests {
    @Test("printable ASCII stays, a backslash doubles, other bytes become \\xNN", arguments: [
        ("concise-host-42", "concise-host-42"),
        ("evil\n[coordinator] registered worker x", "evil\\x0a[coordinator] registered worker x"),
        ("a\\b", "a\\\\b"), ("\u{1B}[2J", "\\x1b[2J"), ("é", "\\xc3\\xa9"), ("", ""),
    ])
    func escapes(text: String, expected: String) {
        #expect(logEscaped(text) == expected)
    }

    @Test("raw identity bytes that are not UTF-8 are escaped byte for byte")
    func rawBytes() {
        #expect(logEscaped(bytes: [0x00, 0x41, 0xFF, 0x7F]) == "\\x00A\\xff\\x7f")
    }

    @Test("worker events print the worker's id escaped, on one line")
    func eventLines() {
        let id = "w\r\nforged"
        for event: CoordinatorEvent in [
            .workerRegistered(id, expert: "concise\n"), .workerRejected(id, reason: "no"),
            .workerDraining(id, reason: "bye\n"), .malformedFrame(from: id, reason: "short"),
            .unexpectedFromWorker(id, kind: "generate"),
        ] {
            #expect(!event.description.contains("\n"), "\(event)")
            #expect(event.description.contains("w\\x0d\\x0aforged"), "\(event)")
        }
    }
}
