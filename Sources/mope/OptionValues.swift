import CLI

/// The checked forms of the numeric options the commands share: each bad value is a usage error (exit 2) naming
/// its option and what it takes.
extension ParsedArguments {
    /// A required whole number of at least `minimum`.
    func count(_ name: String, atLeast minimum: Int = 1) throws(UsageError) -> Int {
        try require(name, as: Int.self, in: minimum...Int.max, expected: "a whole number ≥ \(minimum)")
    }

    /// A thread count from 1 to 1024, or nil when the option is absent and has no default.
    func threads(_ name: String = "threads") throws(UsageError) -> Int? {
        try value(name, as: Int.self, in: 1...1024, expected: "1 to 1024 threads")
    }

    /// A required finite number greater than 0.
    func positive<T: BinaryFloatingPoint & LosslessStringConvertible>(_ name: String, as type: T.Type)
        throws(UsageError) -> T
    {
        try require(name, as: T.self, in: T.leastNonzeroMagnitude...T.greatestFiniteMagnitude,
                    expected: "a number > 0")
    }

    /// A required finite number of at least 0.
    func nonNegative<T: BinaryFloatingPoint & LosslessStringConvertible>(_ name: String, as type: T.Type)
        throws(UsageError) -> T
    {
        try require(name, as: T.self, in: 0...T.greatestFiniteMagnitude, expected: "a number ≥ 0")
    }

    /// The fluency gate's weight (`--fluency W`): a number from 0 (off) to 1.
    func fluencyWeight() throws(UsageError) -> Double {
        try require("fluency", as: Double.self, in: 0...1, expected: "a weight from 0 (off) to 1")
    }
}

extension Option {
    /// `--fluency W`, shared by the commands that score answers.
    static let fluency = Option.value(
        "fluency", "W", default: "0",
        help: "Fluency gate weight, 0 (off) to 1: every dimension's reward is multiplied by "
            + "(1−W) + W·min(1, 2σ(2(f − f_ref + 1.5))), f the base model's mean log-probability per token of the "
            + "answer given the prompt and f_ref that of its own greedy answer; an answer under 8 tokens or with "
            + "over half its token 3-grams repeated gets the floor 1−W.")
}
