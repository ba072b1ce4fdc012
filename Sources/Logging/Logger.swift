/// How much a log event matters; a logger writes the events at its level and the more severe ones.
public enum LogLevel: Int, Sendable, Comparable, CaseIterable, CustomStringConvertible {
    /// Something failed and needs attention.
    case error = 0
    /// Something went wrong and was recovered from (a dropped frame, a lost peer).
    case warn = 1
    /// The process's life: start-up, registrations, drains, sessions finished.
    case info = 2
    /// Every request and session step worth a line.
    case debug = 3

    /// The level named `name` (`error`, `warn`, `info`, `debug`), or nil.
    public init?(name: String) {
        guard let level = Self.allCases.first(where: { $0.description == name }) else { return nil }
        self = level
    }

    /// The level's name as `--log-level` takes it.
    public var description: String {
        switch self {
        case .error: "error"
        case .warn: "warn"
        case .info: "info"
        case .debug: "debug"
        }
    }

    /// Whether `self` is more severe than `other`.
    public static func < (lhs: LogLevel, rhs: LogLevel) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// One log event: its level, the logger's label and the text.
public struct LogEvent: Sendable, Equatable {
    /// The event's level.
    public var level: LogLevel
    /// The label of the logger that wrote it (`coordinator`, `worker concise`).
    public var label: String
    /// What happened.
    public var text: String

    /// Creates an event.
    public init(level: LogLevel, label: String, text: String) {
        self.level = level
        self.label = label
        self.text = text
    }

    /// The event as one line without the newline: `LEVEL [label] text`, the level in capitals; line breaks in
    /// the text become `\n`, so that an event is always one line.
    public var line: String {
        let text = text.contains("\n") ? text.replacingLineBreaks() : text
        return "\(level.description.uppercased()) [\(label)] \(text)"
    }
}

extension String {
    fileprivate func replacingLineBreaks() -> String {
        var out = ""
        for c in unicodeScalars {
            if c == "\n" { out += "\\n" } else if c == "\r" { out += "\\r" } else { out.unicodeScalars.append(c) }
        }
        return out
    }
}

/// Where log events go. A sink decides how to write them (a line on standard error, a capture in tests, and later
/// a rate limit or a structured format); it is called from whichever thread logs, so it must be safe from any.
public protocol LogSink: Sendable {
    /// Writes one event.
    func write(_ event: LogEvent)
}

/// Writes each event as one line to standard error, unbuffered (one `write` per event).
public struct StandardErrorSink: LogSink {
    /// Creates the sink.
    public init() {}

    /// Writes `event.line` and a newline to standard error.
    public func write(_ event: LogEvent) { StandardStreams.writeError(event.line + "\n") }
}

/// A label, a level and a sink: what a library takes from its caller to log through.
///
/// Events less severe than `level` are dropped before their text is built.
public struct Logger: Sendable {
    /// The label of every event (`coordinator`, `worker concise`).
    public var label: String
    /// The least severe level written.
    public var level: LogLevel
    /// Where events go.
    public var sink: any LogSink

    /// A logger writing to `sink` (standard error unless given) events of `level` and above.
    public init(label: String, level: LogLevel = .info, sink: any LogSink = StandardErrorSink()) {
        self.label = label
        self.level = level
        self.sink = sink
    }

    /// The same logger under another label.
    public func labelled(_ label: String) -> Logger {
        var copy = self
        copy.label = label
        return copy
    }

    /// Whether events of `level` are written.
    public func isEnabled(_ level: LogLevel) -> Bool { level <= self.level }

    /// Writes `text` at `level` when that level is enabled.
    public func log(_ level: LogLevel, _ text: @autoclosure () -> String) {
        guard isEnabled(level) else { return }
        sink.write(LogEvent(level: level, label: label, text: text()))
    }

    /// Writes an `error` event.
    public func error(_ text: @autoclosure () -> String) { log(.error, text()) }
    /// Writes a `warn` event.
    public func warn(_ text: @autoclosure () -> String) { log(.warn, text()) }
    /// Writes an `info` event.
    public func info(_ text: @autoclosure () -> String) { log(.info, text()) }
    /// Writes a `debug` event.
    public func debug(_ text: @autoclosure () -> String) { log(.debug, text()) }
}

/// Text that came from a peer (a routing identity, a reason in a message), made safe to log: printable ASCII
/// (space to `~`) as is except the backslash, every other byte (and the backslash) as `\xNN`, so that the escaped
/// text reads back unambiguously. A peer cannot break a line, forge
/// another event or send terminal control codes.
public enum LogText {
    /// `bytes` escaped.
    public static func escaped(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".unicodeScalars)
        var out = String.UnicodeScalarView()
        for byte in bytes {
            if byte >= 0x20 && byte < 0x7F && byte != UInt8(ascii: "\\") {
                out.append(Unicode.Scalar(byte))
            } else {
                out.append("\\")
                out.append("x")
                out.append(digits[Int(byte >> 4)])
                out.append(digits[Int(byte & 0xF)])
            }
        }
        return String(out)
    }

    /// The UTF-8 bytes of `text` escaped.
    public static func escaped(_ text: String) -> String { escaped(text.utf8) }
}
