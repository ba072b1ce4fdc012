/// A small command-line parser: subcommands, options, flags, `--help`, usage errors with exit code 2.
public enum CLI {}
