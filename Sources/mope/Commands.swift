import CLI

/// The subcommands of `mope`, in the order `mope --help` lists them.
enum MopeCommands {
    static let all: [any ParsableCommand.Type] = [
        CoordinatorCommand.self, WorkerCommand.self, GenerateCommand.self, StatusCommand.self, ServeCommand.self,
        ClusterCommand.self, RunCommand.self,
        TuneCommand.self, SampleCommand.self, TrainCommand.self, EvalCommand.self, Bench.self, Keygen.self, TokenizerFileCommand.self,
        Version.self,
    ]
}

/// `mope version`.
enum Version: ParsableCommand {
    static let configuration = CommandConfiguration(name: "version", abstract: "Print mope's version.")
    static let text = "mope 0.1.0"

    static func run(_ arguments: ParsedArguments) async throws -> Int32 {
        CLI.writeOut(text + "\n")
        return CLI.success
    }
}
