import Synchronization
import Testing

@testable import Logging

/// A sink that keeps every line it is given.
final class CapturingSink: LogSink {
    private let lines = Mutex<[String]>([])

    func write(_ event: LogEvent) { lines.withLock { $0.append(event.line) } }

    var captured: [String] { lines.withLock { $0 } }
}

@Suite struct LoggerTests {
    @Test("each event is one line: LEVEL [label] text")
    func lineShape() {
        let sink = CapturingSink()
        let logger = Logger(label: "worker concise", level: .debug, sink: sink)
        logger.error("e")
        logger.warn("w")
        logger.info("i")
        logger.debug("d")
        #expect(sink.captured == [
            "ERROR [worker concise] e", "WARN [worker concise] w", "INFO [worker concise] i",
            "DEBUG [worker concise] d",
        ])
    }

    @Test("a line break in the text stays inside the one line of its event")
    func lineBreaks() {
        let sink = CapturingSink()
        Logger(label: "x", sink: sink).info("two\nlines\r")
        #expect(sink.captured == ["INFO [x] two\\nlines\\r"])
    }

    @Test(
        "a logger writes the events of its level and the more severe ones only",
        arguments: [
            (LogLevel.error, ["E"]), (.warn, ["E", "W"]), (.info, ["E", "W", "I"]), (.debug, ["E", "W", "I", "D"]),
        ]
    )
    func levelFiltering(level: LogLevel, expected: [String]) {
        let sink = CapturingSink()
        let logger = Logger(label: "l", level: level, sink: sink)
        logger.error("E")
        logger.warn("W")
        logger.info("I")
        logger.debug("D")
        #expect(sink.captured.map { String($0.split(separator: " ").last!) } == expected)
    }

    @Test("a filtered event's text is never built")
    func filteredTextNotBuilt() {
        let built = Mutex(false)
        func text() -> String {
            built.withLock { $0 = true }
            return "expensive"
        }
        Logger(label: "l", level: .warn, sink: CapturingSink()).debug(text())
        #expect(!built.withLock { $0 })
    }

    @Test("levels are named as --log-level takes them")
    func levelNames() {
        for level in LogLevel.allCases { #expect(LogLevel(name: level.description) == level) }
        #expect(LogLevel(name: "warning") == nil)
        #expect(LogLevel(name: "INFO") == nil)
        #expect(LogLevel.error < .debug)
    }

    @Test("labelled keeps the level and the sink")
    func labelled() {
        let sink = CapturingSink()
        Logger(label: "worker", level: .warn, sink: sink).labelled("worker a").warn("x")
        #expect(sink.captured == ["WARN [worker a] x"])
    }

    @Test("peer text is escaped: printable ASCII as is, other bytes and the backslash as \\xNN")
    func escaping() {
        #expect(LogText.escaped("concise-1 ok~") == "concise-1 ok~")
        #expect(LogText.escaped([0x00, 0x41, 0x0A, 0xFF, 0x7F]) == "\\x00A\\x0a\\xff\\x7f")
        #expect(LogText.escaped("a\\b") == "a\\x5cb")
        #expect(LogText.escaped("é") == "\\xc3\\xa9")
        // A forged second event stays on the first line.
        let sink = CapturingSink()
        Logger(label: "coordinator", sink: sink).warn("from " + LogText.escaped("w\nERROR [coordinator] forged"))
        #expect(sink.captured == ["WARN [coordinator] from w\\x0aERROR [coordinator] forged"])
    }
}
