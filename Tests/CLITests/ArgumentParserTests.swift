import Testing

@testable import CLI

private let config = CommandConfiguration(
    name: "worker",
    abstract: "Serve one expert.",
    options: [
        .value("model", short: "m", "path", help: "Model file."),
        .value("threads", "n", default: "2", help: "Threads."),
        .flag("verbose", short: "v", help: "Say more."),
        .repeating("stop", "text", help: "Stop string."),
    ],
    positionals: [Positional("prompt", help: "The prompt.", optional: true)]
)

@Suite struct ArgumentParserTests {
    @Test("options take values separately or after '=', and defaults fill absent ones")
    func valuesAndDefaults() throws {
        let a = try ArgumentParser.parse(["--model", "x.gguf", "-v", "hello"], configuration: config)
        #expect(a.value("model") == "x.gguf")
        #expect(a.flag("verbose"))
        #expect(try a.value("threads", as: Int.self) == 2)
        #expect(a.positional("prompt") == "hello")
        let b = try ArgumentParser.parse(["--threads=4", "-m", "y"], configuration: config)
        #expect(try b.value("threads", as: Int.self) == 4)
        #expect(b.value("model") == "y")
        #expect(b.positional("prompt") == nil)
    }

    @Test("a repeating option keeps every value in order")
    func repeating() throws {
        let a = try ArgumentParser.parse(["--stop", "a", "--stop=b"], configuration: config)
        #expect(a.values("stop") == ["a", "b"])
    }

    @Test("'--' ends the options, so a prompt may start with a dash")
    func doubleDash() throws {
        let a = try ArgumentParser.parse(["--", "--not-an-option"], configuration: config)
        #expect(a.positional("prompt") == "--not-an-option")
    }

    @Test(
        "misuse is a usage error naming the problem",
        arguments: [
            (["--bogus"], UsageError.unknownOption("--bogus")),
            (["--model"], UsageError.missingValue(option: "model")),
            (["--verbose=yes"], UsageError.unexpectedValue(option: "verbose")),
            (["-x"], UsageError.unknownOption("-x")),
            (["one", "two"], UsageError.unexpectedArgument("two")),
        ])
    func usageErrors(arguments: [String], expected: UsageError) {
        #expect(throws: expected) { try ArgumentParser.parse(arguments, configuration: config) }
    }

    @Test("a value that does not convert names the option and the expected type")
    func badValue() throws {
        let a = try ArgumentParser.parse(["--threads", "many"], configuration: config)
        #expect(throws: UsageError.invalidValue(option: "threads", value: "many", expected: "an integer")) {
            try a.value("threads", as: Int.self)
        }
        #expect(throws: UsageError.missingOption("model")) { try a.require("model") }
    }

    @Test("a required positional that is missing is a usage error")
    func missingPositional() {
        let c = CommandConfiguration(name: "x", abstract: "", positionals: [Positional("file", help: "")])
        #expect(throws: UsageError.missingArgument("file")) { try ArgumentParser.parse([], configuration: c) }
    }
}

private enum Leaf: ParsableCommand {
    static let configuration = config
    static func run(_ arguments: ParsedArguments) async throws -> Int32 {
        arguments.value("model") == nil ? 7 : 0
    }
}

private enum Root: ParsableCommand {
    static let configuration = CommandConfiguration(name: "tool", abstract: "A tool.", subcommands: [Leaf.self])
}

@Suite struct CommandTreeTests {
    @Test("subcommands resolve by name and run with their own options")
    func dispatch() async {
        #expect(await CLI.run(Root.self, arguments: ["worker", "--model", "m"]) == 0)
        #expect(await CLI.run(Root.self, arguments: ["worker"]) == 7)
    }

    @Test("usage errors exit 2, --help exits 0 and lists every option")
    func exitCodes() async {
        #expect(await CLI.run(Root.self, arguments: ["worker", "--nope"]) == CLI.usage)
        #expect(await CLI.run(Root.self, arguments: ["nope"]) == CLI.usage)
        #expect(await CLI.run(Root.self, arguments: []) == CLI.usage)
        #expect(await CLI.run(Root.self, arguments: ["worker", "--help"]) == CLI.success)
        let help = CLI.help(for: Leaf.self, path: ["tool", "worker"])
        for name in ["--model", "--threads", "--verbose", "--stop", "--help", "<prompt>", "(default: 2)"] {
            #expect(help.contains(name), "help lacks \(name)")
        }
        #expect(CLI.help(for: Root.self, path: ["tool"]).contains("worker"))
    }
}
