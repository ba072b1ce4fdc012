/// Splits text into the pieces byte-level BPE runs on, with the rules a model was trained with.
///
/// Each rule set is the regular expression the model's original tokenizer uses, written out as a hand-made
/// matcher over Unicode scalars (leftmost alternative wins, as in a backtracking regex engine):
/// - `gpt2`: `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
/// - `smollm`: every `\p{N}` scalar is a piece of its own, then `gpt2` inside the text between them
///   (Hugging Face: `Digits(individual_digits: true)` then `ByteLevel(use_regex: true)`)
/// - `qwen2`: `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|`
///   `\s+(?!\S)|\s+`
/// - `llama3`: as `qwen2` with `\p{N}{1,3}` for numbers.
///
/// `\s` is the Unicode White_Space property, `\p{L}` and `\p{N}` the general categories L* and N*.
enum PreTokenizer: Sendable, Equatable {
    case gpt2
    case smollm
    case qwen2
    case llama3

    /// The rules for a `tokenizer.ggml.pre` value; nil (absent) means GPT-2's.
    init(name: String?) throws(TokenizerError) {
        switch name {
        case nil, "default", "gpt2", "gpt-2", "mpt", "olmo", "jais":
            self = .gpt2
        case "smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b":
            self = .smollm
        case "qwen2", "stablelm2", "deepseek-r1-qwen":
            self = .qwen2
        case "llama3", "llama-bpe", "llama-v3":
            self = .llama3
        case let other?:
            throw .unsupportedPreTokenizer(other)
        }
    }

    /// The pieces of `text`, in order; joined they give `text` back.
    func split(_ text: String) -> [String] {
        let scalars = Array(text.unicodeScalars)
        return pieceRanges(scalars).map { range in
            var piece = String.UnicodeScalarView()
            piece.append(contentsOf: scalars[range])
            return String(piece)
        }
    }

    /// The pieces of `scalars` as index ranges.
    func pieceRanges(_ scalars: [Unicode.Scalar]) -> [Range<Int>] {
        let matcher = PieceMatcher(scalars: scalars)
        var ranges: [Range<Int>] = []
        ranges.reserveCapacity(scalars.count / 3 + 1)
        switch self {
        case .gpt2:
            matcher.gpt2(0, scalars.count, into: &ranges)
        case .smollm:
            var start = 0
            for i in 0 ..< scalars.count where matcher.classes[i] == .number {
                matcher.gpt2(start, i, into: &ranges)
                ranges.append(i ..< i + 1)
                start = i + 1
            }
            matcher.gpt2(start, scalars.count, into: &ranges)
        case .qwen2:
            matcher.qwen(0, scalars.count, maxDigits: 1, into: &ranges)
        case .llama3:
            matcher.qwen(0, scalars.count, maxDigits: 3, into: &ranges)
        }
        return ranges
    }
}

/// The character classes the pre-tokenizer rules distinguish.
enum ScalarClass: UInt8, Sendable {
    case letter
    case number
    case whitespace
    case other

    init(_ scalar: Unicode.Scalar) {
        let v = scalar.value
        if v < 0x80 {
            switch v {
            case 0x41 ... 0x5A, 0x61 ... 0x7A: self = .letter
            case 0x30 ... 0x39: self = .number
            case 0x09 ... 0x0D, 0x20: self = .whitespace
            default: self = .other
            }
            return
        }
        let properties = scalar.properties
        if properties.isWhitespace {
            self = .whitespace
            return
        }
        switch properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
            self = .letter
        case .decimalNumber, .letterNumber, .otherNumber:
            self = .number
        default:
            self = .other
        }
    }
}

/// The matching itself: each function appends the pieces of `start ..< end` to `ranges`.
private struct PieceMatcher {
    let scalars: [Unicode.Scalar]
    let classes: [ScalarClass]

    init(scalars: [Unicode.Scalar]) {
        self.scalars = scalars
        self.classes = scalars.map(ScalarClass.init)
    }

    private func isSpace(_ i: Int) -> Bool { scalars[i].value == 0x20 }
    private func isNewline(_ i: Int) -> Bool { scalars[i].value == 0x0A || scalars[i].value == 0x0D }

    /// The end of the run of `cls` starting at `i`.
    private func run(_ cls: ScalarClass, from i: Int, _ end: Int) -> Int {
        var j = i
        while j < end && classes[j] == cls { j += 1 }
        return j
    }

    /// The end of a contraction starting at `i` (`'s`, `'t`, `'re`, `'ve`, `'m`, `'ll`, `'d`), or nil.
    private func contraction(_ i: Int, _ end: Int, ignoreCase: Bool) -> Int? {
        guard scalars[i] == "'", i + 1 < end else { return nil }
        func lower(_ k: Int) -> UInt32 {
            let v = scalars[k].value
            guard ignoreCase else { return v }
            if v >= 0x41 && v <= 0x5A { return v + 0x20 }
            if v == 0x17F { return 0x73 }  // LATIN SMALL LETTER LONG S folds to "s"
            return v
        }
        switch lower(i + 1) {
        case 0x73, 0x74, 0x6D, 0x64:  // s t m d
            return i + 2
        case 0x72, 0x76:  // re ve
            return i + 2 < end && lower(i + 2) == 0x65 ? i + 3 : nil
        case 0x6C:  // ll
            return i + 2 < end && lower(i + 2) == 0x6C ? i + 3 : nil
        default:
            return nil
        }
    }

    /// `\s+(?!\S)|\s+` at a whitespace scalar `i`: a run followed by non-space gives up its last scalar,
    /// unless that would leave nothing.
    private func whitespaceRun(_ i: Int, _ end: Int) -> Int {
        let k = run(.whitespace, from: i, end)
        if k == end || k - i == 1 { return k }
        return k - 1
    }

    func gpt2(_ start: Int, _ end: Int, into ranges: inout [Range<Int>]) {
        var i = start
        while i < end {
            let next: Int
            if let k = contraction(i, end, ignoreCase: false) {
                next = k
            } else if classes[i] == .whitespace {
                if isSpace(i) && i + 1 < end && classes[i + 1] != .whitespace {
                    next = run(classes[i + 1], from: i + 1, end)
                } else {
                    next = whitespaceRun(i, end)
                }
            } else {
                next = run(classes[i], from: i, end)
            }
            ranges.append(i ..< next)
            i = next
        }
    }

    func qwen(_ start: Int, _ end: Int, maxDigits: Int, into ranges: inout [Range<Int>]) {
        var i = start
        while i < end {
            let cls = classes[i]
            var next = i + 1
            if let k = contraction(i, end, ignoreCase: true) {
                next = k
            } else if cls == .letter {
                next = run(.letter, from: i, end)
            } else if cls != .number && !isNewline(i) && i + 1 < end && classes[i + 1] == .letter {
                next = run(.letter, from: i + 1, end)
            } else if cls == .number {
                next = i + 1
                while next < end && next - i < maxDigits && classes[next] == .number { next += 1 }
            } else if cls == .other || (isSpace(i) && i + 1 < end && classes[i + 1] == .other) {
                next = run(.other, from: cls == .other ? i : i + 1, end)
                while next < end && isNewline(next) { next += 1 }
            } else {
                // Whitespace: `\s*[\r\n]+` ends after the run's last line break; else `\s+(?!\S)|\s+`.
                let k = run(.whitespace, from: i, end)
                var lastBreak = -1
                for j in stride(from: k - 1, through: i, by: -1) where isNewline(j) {
                    lastBreak = j
                    break
                }
                next = lastBreak >= 0 ? lastBreak + 1 : whitespaceRun(i, end)
            }
            ranges.append(i ..< next)
            i = next
        }
    }
}
