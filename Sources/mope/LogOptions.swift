import CLI
import Logging

/// `--log-level` and `--quiet`, shared by every long-running command.
enum LogOptions {
    /// The options, for a command's `options`.
    static let options: [Option] = [
        .value("log-level", "level", default: "info", help: "The least severe events logged to standard error: "
            + "error, warn, info or debug (debug adds a line per request and session)."),
        .flag("quiet", help: "The same as --log-level warn."),
    ]

    /// The level the options ask for (`--quiet` is `warn`).
    /// - Throws: `UsageError.invalidValue` for a level name not known.
    static func level(_ arguments: ParsedArguments) throws(UsageError) -> LogLevel {
        if arguments.flag("quiet") { return .warn }
        let name = arguments.value("log-level") ?? "info"
        guard let level = LogLevel(name: name) else {
            throw UsageError.invalidValue(option: "log-level", value: name, expected: "error, warn, info or debug")
        }
        return level
    }

    /// A logger on standard error labelled `label` at the options' level.
    static func logger(label: String, _ arguments: ParsedArguments) throws(UsageError) -> Logger {
        Logger(label: label, level: try level(arguments))
    }
}
