import CLI
import ProcessSupport

#if canImport(Glibc)
import Glibc
#endif

/// The `mope` command: every role of the cluster in one executable.
enum Mope: ParsableCommand {
    static let configuration = CommandConfiguration(
        name: "mope",
        abstract: "Personalise LLM output at decoding time by merging expert LLMs token by token.",
        discussion: """
            mope runs expert LLM workers and a coordinator that merges their next-token distributions
            with weights from a Preference Control Model (Zhou et al., arXiv 2407.04181).
            """,
        subcommands: MopeCommands.all
    )
}

// A child of `mope cluster` stops when the launcher is gone.
ParentWatch.startIfLaunched()
let code = await CLI.run(Mope.self, arguments: Array(CommandLine.arguments.dropFirst()))
exit(code)
