import Foundation

/// The core of VADER (Hutto and Gilbert 2014, "VADER: A Parsimonious Rule-based Model for Sentiment Analysis
/// of Social Media Text"): a lexicon of word valences (−4 … +4) combined by a few rules into a compound score
/// in (−1, 1).
///
/// Rules implemented: each lexicon word's valence; an all-caps word in a text that is not all caps is
/// amplified; a booster ("very", "extremely") or dampener ("slightly") among the three words before a
/// word shifts its valence away from or towards 0, less the further it is; a negation ("not", "never",
/// "n't") among the three words before flips and shrinks it (× −0.74); words before "but" count half and words
/// after it 1.5 times; up to four "!" amplify the sum. The sum s is normalised to s / √(s² + 15).
///
/// The lexicon is read from the `vader_lexicon.txt` that the PyPI package `vaderSentiment` installs (one word a
/// line: word, tab, mean valence, …); the project does not ship it.
public struct SentimentAnalyzer: Sendable {
    private let lexicon: [String: Double]

    /// The number of words in the lexicon.
    public var lexiconSize: Int { lexicon.count }

    /// Creates an analyzer from a word → valence table.
    public init(lexicon: [String: Double]) { self.lexicon = lexicon }

    /// Reads a VADER lexicon file.
    /// - Throws: `RewardError.unreadableLexicon` when the file cannot be read or has no valid line.
    public init(lexiconPath path: String) throws(RewardError) {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw .unreadableLexicon(path: path, reason: error.localizedDescription)
        }
        var table: [String: Double] = [:]
        // Split on any line break: the file has CRLF line ends, and "\r\n" is one Character in Swift.
        for line in text.split(whereSeparator: \.isNewline) {
            let fields = line.split(separator: "\t", omittingEmptySubsequences: false)
            guard fields.count >= 2, let valence = Double(fields[1].trimmingCharacters(in: .whitespaces)) else {
                continue
            }
            table[String(fields[0])] = valence
        }
        guard table.count > 0 else { throw .unreadableLexicon(path: path, reason: "no \"word<TAB>valence\" line") }
        lexicon = table
    }

    /// Locates `vader_lexicon.txt` of the installed `vaderSentiment` package: `$MOPE_VADER_LEXICON` if set,
    /// otherwise by asking `python3` where the package lives. Nil when neither works.
    public static func locateLexicon() -> String? {
        if let path = ProcessInfo.processInfo.environment["MOPE_VADER_LEXICON"] { return path }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [
            "python3", "-c", "import vaderSentiment,os;print(os.path.dirname(vaderSentiment.__file__))",
        ]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch { return nil }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0,
            let dir = String(data: data, encoding: .utf8)?.trimmingCharacters(in: .whitespacesAndNewlines),
            !dir.isEmpty
        else { return nil }
        let path = dir + "/vader_lexicon.txt"
        return FileManager.default.fileExists(atPath: path) ? path : nil
    }

    // MARK: Constants of the method

    static let boosterIncrement = 0.293
    static let capsIncrement = 0.733
    static let negationScalar = -0.74
    static let boosters: Set<String> = [
        "absolutely", "amazingly", "awfully", "completely", "considerably", "decidedly", "deeply", "enormously",
        "entirely", "especially", "exceptionally", "extremely", "fabulously", "greatly", "highly", "hugely",
        "incredibly", "intensely", "majorly", "particularly", "purely", "quite", "really", "remarkably", "so",
        "substantially", "thoroughly", "totally", "tremendously", "unbelievably", "unusually", "utterly", "very",
        "super", "truly", "most", "more",
    ]
    static let dampeners: Set<String> = [
        "almost", "barely", "hardly", "kind", "kinda", "less", "little", "marginally", "occasionally", "partly",
        "scarcely", "slightly", "somewhat", "sort", "sorta",
    ]
    static let negations: Set<String> = [
        "not", "no", "never", "none", "nobody", "nothing", "neither", "nor", "nowhere", "cannot", "without",
        "isnt", "arent", "wasnt", "werent", "dont", "doesnt", "didnt", "cant", "couldnt", "wont", "wouldnt",
        "shouldnt", "hasnt", "havent", "hadnt", "aint", "mustnt", "neednt",
    ]

    // MARK: Scoring

    /// The compound sentiment of `text` in (−1, 1): positive for warm text, negative for hostile text, 0 when
    /// no lexicon word occurs.
    public func compound(_ text: String) -> Double {
        let raw = text.split(whereSeparator: { $0.isWhitespace }).map(String.init)
        var words: [String] = []
        var original: [String] = []
        for token in raw {
            let stripped = token.trimmingCharacters(in: .punctuationCharacters.union(.symbols))
            // Emoticons such as ":)" are lexicon entries made only of punctuation: keep them whole.
            let word = stripped.count >= 2 ? stripped : (lexicon[token] != nil ? token : stripped)
            guard !word.isEmpty else { continue }
            words.append(word.lowercased())
            original.append(word)
        }
        let anyLower = original.contains { $0 != $0.uppercased() }
        let anyUpper = original.contains { $0.count > 1 && $0 == $0.uppercased() && $0 != $0.lowercased() }
        let mixedCaps = anyLower && anyUpper
        var valences = [Double](repeating: 0, count: words.count)
        for i in words.indices {
            let w = words[i]
            guard !Self.boosters.contains(w), !Self.dampeners.contains(w), var v = lexicon[w] else { continue }
            if mixedCaps, original[i].count > 1, original[i] == original[i].uppercased() {
                v += v > 0 ? Self.capsIncrement : -Self.capsIncrement
            }
            for back in 1...3 where i - back >= 0 {
                let previous = words[i - back]
                let decay = back == 1 ? 1.0 : (back == 2 ? 0.95 : 0.9)
                if Self.boosters.contains(previous) {
                    v += (v > 0 ? Self.boosterIncrement : -Self.boosterIncrement) * decay
                } else if Self.dampeners.contains(previous) {
                    v -= (v > 0 ? Self.boosterIncrement : -Self.boosterIncrement) * decay
                }
                if Self.isNegation(previous) { v *= Self.negationScalar }
            }
            valences[i] = v
        }
        if let but = words.firstIndex(of: "but") {
            for i in valences.indices {
                if i < but { valences[i] *= 0.5 } else if i > but { valences[i] *= 1.5 }
            }
        }
        var sum = valences.reduce(0, +)
        if sum != 0 {
            let exclamations = Double(min(text.filter { $0 == "!" }.count, 4)) * 0.292
            sum += sum > 0 ? exclamations : -exclamations
        }
        return sum / (sum * sum + 15).squareRoot()
    }

    static func isNegation(_ word: String) -> Bool {
        let plain = word.replacingOccurrences(of: "'", with: "").replacingOccurrences(of: "\u{2019}", with: "")
        return negations.contains(plain) || plain.hasSuffix("nt") && word.hasSuffix("n't")
    }
}
