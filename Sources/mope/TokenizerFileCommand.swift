import CLI
import Foundation
import Inference

/// `mope tokenizer-file MODEL OUT`: the small file a coordinator reads the cluster's tokenizer from, so that the
/// coordinator's machine (a Kubernetes pod, a Slurm head node) carries no weights.
enum TokenizerFileCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        name: "tokenizer-file",
        abstract: "Write the small GGUF file a coordinator reads the tokenizer from (no weights).",
        discussion: """
            Copies MODEL's metadata (the vocabulary, merges, special tokens and chat template) into OUT, with
            the token embedding table the learned PCM reads unless --no-embeddings. Name OUT in the cluster
            config's "tokenizer" field (or mope coordinator --tokenizer) and the coordinator no longer needs a
            model file. Workers still check their vocabulary against it: a worker whose model's vocabulary
            differs is refused.
            """,
        options: [
            .flag("no-embeddings", help: "Leave out the token embedding table (a PCM then sees no text features)."),
            .flag("force", help: "Replace OUT if it exists."),
        ],
        positionals: [
            Positional("model", help: "The GGUF model file the cluster's experts use."),
            Positional("out", help: "The tokenizer file to write."),
        ]
    )

    static func run(_ arguments: ParsedArguments) async throws -> Int32 {
        guard let model = arguments.positional("model"), let out = arguments.positional("out") else {
            throw UsageError.missingArgument("model")
        }
        if !arguments.flag("force") && FileManager.default.fileExists(atPath: out) {
            CLI.writeErr("error: \(out) exists; pass --force to replace it\n")
            return CLI.failure
        }
        let bytes: [UInt8]
        do {
            bytes = try GGUFFile(path: model).tokenizerFile(embeddings: !arguments.flag("no-embeddings"))
        } catch {
            CLI.writeErr("error: cannot read the tokenizer of \(model): \(error)\n")
            return CLI.failure
        }
        do {
            try Data(bytes).write(to: URL(fileURLWithPath: out), options: .atomic)
        } catch {
            CLI.writeErr("error: cannot write \(out): \(error.localizedDescription)\n")
            return CLI.failure
        }
        CLI.writeOut("wrote \(out) (\(bytes.count) bytes): the tokenizer of \(model)"
                     + (arguments.flag("no-embeddings") ? "" : " and its token embeddings") + "\n")
        return CLI.success
    }
}
