import Logging
import ProcessSupport

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A small command-line parser in the shape of swift-argument-parser: a tree of commands, each with a
/// static ``CommandConfiguration`` (name, abstract, options, positionals, subcommands) and a `run`.
///
/// - `--help` / `-h` on any command prints its help and exits 0.
/// - Unknown options, missing values, bad values and missing positionals are usage errors: a message,
///   a hint to `--help`, and exit code 2.
/// - Errors thrown by `run` print `error: …` and exit 1.
/// - Options take their value as `--name value` or `--name=value`; `--` ends the options.
public enum CLI {
    /// Exit code of a successful command.
    public static let success: Int32 = 0
    /// Exit code of a command that failed.
    public static let failure: Int32 = 1
    /// Exit code of a command line that could not be parsed.
    public static let usage: Int32 = 2

    /// Parses `arguments` (without the program name) against `root` and runs the command found.
    /// Returns the exit code; never exits itself.
    public static func run(_ root: any ParsableCommand.Type, arguments: [String]) async -> Int32 {
        let resolved: (command: any ParsableCommand.Type, path: [String], rest: [String])
        resolved = resolve(root, arguments: arguments)
        let config = resolved.command.configuration
        if resolved.rest.prefix(while: { $0 != "--" }).contains(where: { $0 == "--help" || $0 == "-h" }) {
            writeOut(help(for: resolved.command, path: resolved.path))
            return success
        }
        if config.subcommands.isEmpty == false && config.options.isEmpty && config.positionals.isEmpty
            && !config.runsWithoutSubcommand
        {
            if let first = resolved.rest.first {
                writeErr("error: unknown command '\(first)' for '\(resolved.path.joined(separator: " "))'\n")
            } else {
                writeErr("error: '\(resolved.path.joined(separator: " "))' needs a command\n")
            }
            writeErr(usageLine(for: resolved.command, path: resolved.path) + "\n")
            writeErr("See '\(resolved.path.joined(separator: " ")) --help'.\n")
            return usage
        }
        let parsed: ParsedArguments
        do {
            parsed = try ArgumentParser.parse(resolved.rest, configuration: config)
        } catch {
            writeErr("error: \(error.description)\n")
            writeErr(usageLine(for: resolved.command, path: resolved.path) + "\n")
            writeErr("See '\(resolved.path.joined(separator: " ")) --help'.\n")
            return usage
        }
        do {
            return try await resolved.command.run(parsed)
        } catch let error as UsageError {
            writeErr("error: \(error.description)\n")
            writeErr("See '\(resolved.path.joined(separator: " ")) --help'.\n")
            return usage
        } catch {
            writeErr("error: \(String(describing: error))\n")
            return failure
        }
    }

    /// Walks subcommand names from the front of `arguments`.
    static func resolve(
        _ root: any ParsableCommand.Type, arguments: [String]
    ) -> (command: any ParsableCommand.Type, path: [String], rest: [String]) {
        var command = root
        var path = [root.configuration.name]
        var rest = arguments[...]
        while let first = rest.first,
            let sub = command.configuration.subcommands.first(where: {
                $0.configuration.name == first || $0.configuration.aliases.contains(first)
            })
        {
            command = sub
            path.append(sub.configuration.name)
            rest = rest.dropFirst()
        }
        return (command, path, Array(rest))
    }

    /// The one-line usage of a command.
    public static func usageLine(for command: any ParsableCommand.Type, path: [String]) -> String {
        let config = command.configuration
        var parts = ["usage:"] + path
        if !config.subcommands.isEmpty && config.options.isEmpty && config.positionals.isEmpty {
            parts.append("<command>")
        } else {
            if !config.options.isEmpty { parts.append("[options]") }
            for p in config.positionals {
                let name = "<\(p.name)>" + (p.repeating ? "..." : "")
                parts.append(p.optional ? "[\(name)]" : name)
            }
        }
        return parts.joined(separator: " ")
    }

    /// The full help text of a command.
    public static func help(for command: any ParsableCommand.Type, path: [String]) -> String {
        let config = command.configuration
        var out = "\(path.joined(separator: " ")) — \(config.abstract)\n\n"
        out += usageLine(for: command, path: path) + "\n"
        if !config.discussion.isEmpty {
            out += "\n" + config.discussion.trimmingTrailingNewlines() + "\n"
        }
        if !config.subcommands.isEmpty {
            out += "\nCommands:\n"
            let width = config.subcommands.map { $0.configuration.name.count }.max() ?? 0
            for sub in config.subcommands {
                let name = sub.configuration.name
                out += "  " + name + String(repeating: " ", count: width - name.count + 2)
                    + sub.configuration.abstract + "\n"
            }
        }
        if !config.positionals.isEmpty {
            out += "\nArguments:\n"
            for p in config.positionals {
                out += "  <\(p.name)>\(p.repeating ? "..." : "")\n      \(p.help)\n"
            }
        }
        let options = config.options + [Option.flag("help", short: "h", help: "Show this help and exit.")]
        out += "\nOptions:\n"
        for o in options {
            var names = "--\(o.name)"
            if let s = o.short { names = "-\(s), " + names }
            if case .value(let valueName, _) = o.kind { names += " <\(valueName)>" }
            if case .repeating(let valueName) = o.kind { names += " <\(valueName)> (repeatable)" }
            out += "  \(names)\n      \(o.help)"
            if case .value(_, let def?) = o.kind { out += " (default: \(def))" }
            out += "\n"
        }
        if !config.subcommands.isEmpty {
            out += "\nSee '\(path.joined(separator: " ")) <command> --help' for a command's own options.\n"
        }
        return out
    }

    /// Writes to standard output and flushes (output to a pipe is otherwise block-buffered).
    public static func writeOut(_ text: String) {
        StandardStreams.writeOutput(text)
    }

    /// Writes to standard error.
    public static func writeErr(_ text: String) {
        StandardStreams.writeError(text)
    }

}

/// A command of the tree.
public protocol ParsableCommand: SendableMetatype {
    /// The command's name, help and accepted arguments.
    static var configuration: CommandConfiguration { get }
    /// Runs the command with its parsed arguments; returns the exit code. Throw ``UsageError`` for a bad
    /// combination of arguments (exit 2), any other error for a failure (exit 1).
    static func run(_ arguments: ParsedArguments) async throws -> Int32
}

extension ParsableCommand {
    /// A command that only groups subcommands has nothing to run.
    public static func run(_ arguments: ParsedArguments) async throws -> Int32 {
        throw UsageError.missingCommand
    }
}

/// A command's name, help text and accepted arguments.
public struct CommandConfiguration: Sendable {
    public var name: String
    public var aliases: [String]
    public var abstract: String
    public var discussion: String
    public var options: [Option]
    public var positionals: [Positional]
    public var subcommands: [any ParsableCommand.Type]
    /// A command with subcommands that also runs on its own.
    public var runsWithoutSubcommand: Bool

    public init(
        name: String, aliases: [String] = [], abstract: String, discussion: String = "", options: [Option] = [],
        positionals: [Positional] = [], subcommands: [any ParsableCommand.Type] = [],
        runsWithoutSubcommand: Bool = false
    ) {
        self.name = name
        self.aliases = aliases
        self.abstract = abstract
        self.discussion = discussion
        self.options = options
        self.positionals = positionals
        self.subcommands = subcommands
        self.runsWithoutSubcommand = runsWithoutSubcommand
    }
}

/// A named option (`--name`) of a command.
public struct Option: Sendable {
    /// How an option takes values.
    public enum Kind: Sendable, Equatable {
        /// Present or absent.
        case flag
        /// Takes one value; the last occurrence wins. The default is shown in the help.
        case value(valueName: String, defaultValue: String?)
        /// Takes one value per occurrence; all are kept.
        case repeating(valueName: String)
    }

    public var name: String
    public var short: Character?
    public var help: String
    public var kind: Kind

    public init(name: String, short: Character? = nil, help: String, kind: Kind) {
        self.name = name
        self.short = short
        self.help = help
        self.kind = kind
    }

    /// An option that is present or absent.
    public static func flag(_ name: String, short: Character? = nil, help: String) -> Option {
        Option(name: name, short: short, help: help, kind: .flag)
    }

    /// An option with one value.
    public static func value(
        _ name: String, short: Character? = nil, _ valueName: String, default defaultValue: String? = nil,
        help: String
    ) -> Option {
        Option(name: name, short: short, help: help, kind: .value(valueName: valueName, defaultValue: defaultValue))
    }

    /// An option that may be given several times.
    public static func repeating(_ name: String, short: Character? = nil, _ valueName: String, help: String)
        -> Option
    {
        Option(name: name, short: short, help: help, kind: .repeating(valueName: valueName))
    }
}

/// A positional argument.
public struct Positional: Sendable {
    public var name: String
    public var help: String
    public var optional: Bool
    /// Takes every remaining positional argument.
    public var repeating: Bool

    public init(_ name: String, help: String, optional: Bool = false, repeating: Bool = false) {
        self.name = name
        self.help = help
        self.optional = optional
        self.repeating = repeating
    }
}

/// A command line that does not fit the command's configuration.
public enum UsageError: Error, Equatable, CustomStringConvertible {
    case unknownOption(String)
    case missingValue(option: String)
    case unexpectedValue(option: String)
    case invalidValue(option: String, value: String, expected: String)
    case missingOption(String)
    case missingArgument(String)
    case unexpectedArgument(String)
    case missingCommand
    /// Any other misuse, in words.
    case other(String)

    public var description: String {
        switch self {
        case .unknownOption(let o): "unknown option '\(o)'"
        case .missingValue(let o): "option '--\(o)' needs a value"
        case .unexpectedValue(let o): "option '--\(o)' takes no value"
        case .invalidValue(let o, let v, let e): "invalid value '\(v)' for '--\(o)': expected \(e)"
        case .missingOption(let o): "missing required option '--\(o)'"
        case .missingArgument(let a): "missing argument <\(a)>"
        case .unexpectedArgument(let a): "unexpected argument '\(a)'"
        case .missingCommand: "a command is needed"
        case .other(let text): text
        }
    }
}

/// The parsed options and positionals of one command.
public struct ParsedArguments: Sendable, Equatable {
    /// Values by option name, in command-line order (flags map to an empty list per occurrence).
    public var options: [String: [String]]
    /// Positionals by name; a repeating positional holds all remaining arguments.
    public var positionals: [String: [String]]
    /// Defaults from the configuration, used when an option is absent.
    public var defaults: [String: String]

    public init(options: [String: [String]] = [:], positionals: [String: [String]] = [:], defaults: [String: String] = [:]) {
        self.options = options
        self.positionals = positionals
        self.defaults = defaults
    }

    /// Whether a flag (or any option) was given.
    public func flag(_ name: String) -> Bool { options[name] != nil }

    /// The option's last value, or its default, or nil.
    public func value(_ name: String) -> String? { options[name]?.last ?? defaults[name] }

    /// Every value of a repeating option.
    public func values(_ name: String) -> [String] { options[name] ?? [] }

    /// The option's value converted to `T`, its default, or nil; a value that does not convert is a
    /// usage error naming the option.
    public func value<T: LosslessStringConvertible>(_ name: String, as type: T.Type) throws(UsageError) -> T? {
        guard let raw = value(name) else { return nil }
        guard let v = T(raw) else {
            throw .invalidValue(option: name, value: raw, expected: Self.expectation(for: T.self))
        }
        return v
    }

    /// A required option's value converted to `T`.
    public func require<T: LosslessStringConvertible>(_ name: String, as type: T.Type) throws(UsageError) -> T {
        guard let v = try value(name, as: T.self) else { throw .missingOption(name) }
        return v
    }

    /// The option's value converted to `T` and inside `range`, its default, or nil; a value that does not convert
    /// or lies outside the range is a usage error naming the option and saying what it takes (`expected`, else
    /// the range).
    public func value<T: LosslessStringConvertible & Comparable>(
        _ name: String, as type: T.Type, in range: ClosedRange<T>, expected: String? = nil
    ) throws(UsageError) -> T? {
        guard let v = try value(name, as: T.self) else { return nil }
        // `contains` is false for NaN, which no range holds.
        guard range.contains(v) else {
            throw .invalidValue(option: name, value: value(name) ?? "\(v)",
                                expected: expected ?? "\(range.lowerBound) to \(range.upperBound)")
        }
        return v
    }

    /// A required option's value converted to `T` and inside `range` (see ``value(_:as:in:expected:)``).
    public func require<T: LosslessStringConvertible & Comparable>(
        _ name: String, as type: T.Type, in range: ClosedRange<T>, expected: String? = nil
    ) throws(UsageError) -> T {
        guard let v = try value(name, as: T.self, in: range, expected: expected) else { throw .missingOption(name) }
        return v
    }

    /// The option's ZeroMQ endpoint, checked for its form (``Endpoint/problem(_:binding:)``), or nil when absent.
    public func endpoint(_ name: String, binding: Bool) throws(UsageError) -> String? {
        guard let raw = value(name) else { return nil }
        if let problem = Endpoint.problem(raw, binding: binding) {
            throw .invalidValue(option: name, value: raw, expected: problem)
        }
        return raw
    }

    /// A required option's value.
    public func require(_ name: String) throws(UsageError) -> String {
        guard let v = value(name) else { throw .missingOption(name) }
        return v
    }

    /// A positional's value.
    public func positional(_ name: String) -> String? { positionals[name]?.first }

    /// A repeating positional's values.
    public func positionalList(_ name: String) -> [String] { positionals[name] ?? [] }

    static func expectation<T>(for type: T.Type) -> String {
        switch type {
        case is Int.Type, is Int32.Type, is Int64.Type, is UInt.Type, is UInt32.Type, is UInt64.Type,
            is UInt16.Type:
            "an integer"
        case is Float.Type, is Double.Type: "a number"
        case is Bool.Type: "true or false"
        default: "a value of type \(T.self)"
        }
    }
}

/// The form of the ZeroMQ endpoints mope's commands take. Pure.
public enum Endpoint {
    /// Why `endpoint` is not a usable endpoint, as the text of what is expected; nil when it is one.
    ///
    /// Accepted: `tcp://HOST:PORT` with a port from 1 to 65535 (when `binding`, also `*` as the host and `*` or
    /// `0` as the port: any interface, any free port), `ipc://PATH` and `inproc://NAME` with a non-empty name.
    public static func problem(_ endpoint: String, binding: Bool) -> String? {
        let form = "tcp://HOST:PORT (port 1 to 65535) or ipc:///PATH"
        if let rest = endpoint.strippingPrefix("ipc://") ?? endpoint.strippingPrefix("inproc://") {
            return rest.isEmpty ? form : nil
        }
        guard let address = endpoint.strippingPrefix("tcp://"), let colon = address.lastIndex(of: ":") else {
            return form
        }
        let host = address[..<colon]
        let port = address[address.index(after: colon)...]
        guard !host.isEmpty, !host.contains(where: \.isWhitespace) else { return form }
        if binding && (port == "*" || port == "0") { return nil }
        guard !port.isEmpty, port.allSatisfy(\.isASCIIDigit), let number = Int(port), (1...65535).contains(number)
        else { return form }
        return nil
    }
}

extension String {
    fileprivate func strippingPrefix(_ prefix: String) -> String? {
        hasPrefix(prefix) ? String(dropFirst(prefix.count)) : nil
    }
}

extension Character {
    fileprivate var isASCIIDigit: Bool { ("0"..."9").contains(self) }
}

/// Matches arguments against a configuration. Pure.
public enum ArgumentParser {
    /// Parses the arguments that follow a command's name.
    public static func parse(_ arguments: [String], configuration: CommandConfiguration) throws(UsageError)
        -> ParsedArguments
    {
        var result = ParsedArguments()
        for o in configuration.options {
            if case .value(_, let def?) = o.kind { result.defaults[o.name] = def }
        }
        var positionals: [String] = []
        var i = 0
        var optionsEnded = false
        while i < arguments.count {
            let arg = arguments[i]
            i += 1
            if optionsEnded || arg == "-" || !arg.hasPrefix("-") {
                positionals.append(arg)
                continue
            }
            if arg == "--" {
                optionsEnded = true
                continue
            }
            var name: String
            var inlineValue: String?
            if arg.hasPrefix("--") {
                name = String(arg.dropFirst(2))
                if let eq = name.firstIndex(of: "=") {
                    inlineValue = String(name[name.index(after: eq)...])
                    name = String(name[..<eq])
                }
            } else {
                // A negative number is a positional, not an option.
                if Double(arg) != nil {
                    positionals.append(arg)
                    continue
                }
                let body = arg.dropFirst()
                guard body.count == 1, let c = body.first,
                    let o = configuration.options.first(where: { $0.short == c })
                else { throw .unknownOption(arg) }
                name = o.name
            }
            guard let option = configuration.options.first(where: { $0.name == name }) else {
                throw .unknownOption(arg.split(separator: "=", maxSplits: 1).first.map(String.init) ?? arg)
            }
            switch option.kind {
            case .flag:
                if inlineValue != nil { throw .unexpectedValue(option: name) }
                result.options[name, default: []].append("")
            case .value, .repeating:
                let value: String
                if let inlineValue {
                    value = inlineValue
                } else {
                    guard i < arguments.count else { throw .missingValue(option: name) }
                    value = arguments[i]
                    i += 1
                }
                result.options[name, default: []].append(value)
            }
        }
        var index = 0
        for p in configuration.positionals {
            if p.repeating {
                result.positionals[p.name] = Array(positionals[min(index, positionals.count)...])
                if positionals.count <= index && !p.optional { throw .missingArgument(p.name) }
                index = positionals.count
            } else if index < positionals.count {
                result.positionals[p.name] = [positionals[index]]
                index += 1
            } else if !p.optional {
                throw .missingArgument(p.name)
            }
        }
        if index < positionals.count { throw .unexpectedArgument(positionals[index]) }
        return result
    }
}

extension String {
    fileprivate func trimmingTrailingNewlines() -> String {
        var s = self
        while s.last == "\n" { s.removeLast() }
        return s
    }
}
