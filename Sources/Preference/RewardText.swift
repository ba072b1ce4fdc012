import Foundation

// MARK: - Text statistics

/// Counts of one text that the rewards are computed from: words, sentences, syllables, long words and
/// distinct content words.
///
/// Words are maximal runs of letters, digits and apostrophes; a sentence ends at `.`, `!`, `?` or a line
/// break after some words (a text with words and no terminator counts as one sentence).
public struct TextStatistics: Sendable, Equatable {
    /// The number of words.
    public var words: Int
    /// The number of sentences (at least 1 when there is a word).
    public var sentences: Int
    /// The estimated syllables of all words (see `syllables(in:)`).
    public var syllables: Int
    /// Words of three or more syllables ("polysyllables", as in SMOG and Gunning fog).
    public var polysyllables: Int
    /// Words of at least 9 letters.
    public var longWords: Int
    /// Distinct lower-cased words that are not in the stop-word list and have at least 3 letters.
    public var distinctContentWords: Int

    /// Computes the statistics of `text`.
    public init(_ text: String) {
        var words = 0, sentences = 0, syllables = 0, poly = 0, long = 0
        var content = Set<String>()
        var wordsInSentence = 0
        for token in RewardText.scan(text) {
            switch token {
            case let .word(word):
                words += 1
                wordsInSentence += 1
                let s = RewardText.syllables(in: word)
                syllables += s
                if s >= 3 { poly += 1 }
                let letters = word.unicodeScalars.filter { CharacterSet.letters.contains($0) }.count
                if letters >= 9 { long += 1 }
                let lower = word.lowercased()
                if letters >= 3, !RewardText.stopWords.contains(lower) { content.insert(lower) }
            case .sentenceEnd:
                if wordsInSentence > 0 { sentences += 1 }
                wordsInSentence = 0
            }
        }
        if wordsInSentence > 0 { sentences += 1 }
        self.words = words
        self.sentences = sentences
        self.syllables = syllables
        self.polysyllables = poly
        self.longWords = long
        self.distinctContentWords = content.count
    }

    /// The Flesch–Kincaid grade level, 0.39 (words/sentences) + 11.8 (syllables/words) − 15.59; 0 for a text
    /// with no word. Sentence length is capped at 40 words so that an unpunctuated ramble does not dominate.
    public var fleschKincaidGrade: Double {
        guard words > 0 else { return 0 }
        let wordsPerSentence = min(Double(words) / Double(max(sentences, 1)), 40)
        return 0.39 * wordsPerSentence + 11.8 * Double(syllables) / Double(words) - 15.59
    }
}

/// Word scanning, syllable estimation and the stop-word list the rewards share.
public enum RewardText {
    /// A piece of scanned text.
    enum Token: Equatable {
        case word(String)
        case sentenceEnd
    }

    /// Splits text into words and sentence ends.
    static func scan(_ text: String) -> [Token] {
        var tokens: [Token] = []
        var current = String.UnicodeScalarView()
        func flush() {
            if !current.isEmpty {
                tokens.append(.word(String(current)))
                current = String.UnicodeScalarView()
            }
        }
        for scalar in text.unicodeScalars {
            if CharacterSet.alphanumerics.contains(scalar) || scalar == "'" || scalar == "\u{2019}" {
                if scalar == "'" || scalar == "\u{2019}" {
                    if !current.isEmpty { current.append("'") }
                } else {
                    current.append(scalar)
                }
            } else {
                flush()
                if scalar == "." || scalar == "!" || scalar == "?" || scalar == "\n" { tokens.append(.sentenceEnd) }
            }
        }
        flush()
        return tokens
    }

    /// The words of `text`, in order.
    public static func words(_ text: String) -> [String] {
        scan(text).compactMap { if case let .word(w) = $0 { w } else { nil } }
    }

    /// Estimated syllables of one English word: groups of vowels (y counts as a vowel after the first
    /// letter), minus a silent final "e" (but not "-le"), at least 1. Digits count one syllable per digit
    /// group.
    public static func syllables(in word: String) -> Int {
        let lower = Array(word.lowercased().unicodeScalars)
        guard !lower.isEmpty else { return 0 }
        if lower.allSatisfy({ CharacterSet.decimalDigits.contains($0) }) { return max(1, lower.count / 2) }
        func isVowel(_ i: Int) -> Bool {
            let c = lower[i]
            if "aeiou".unicodeScalars.contains(c) { return true }
            return c == "y" && i > 0
        }
        var count = 0
        var previousVowel = false
        for i in lower.indices {
            let v = isVowel(i)
            if v && !previousVowel { count += 1 }
            previousVowel = v
        }
        let n = lower.count
        if n > 2, lower[n - 1] == "e", !isVowel(n - 2), !(lower[n - 2] == "l" && n > 3 && !isVowel(n - 3)),
            count > 1
        {
            count -= 1
        }
        if n > 3, lower[n - 1] == "s", lower[n - 2] == "e", !isVowel(n - 3), count > 1,
            !"scxz".unicodeScalars.contains(lower[n - 3]), !(lower[n - 3] == "h")
        {
            count -= 1
        }
        return max(count, 1)
    }

    /// Common English function words, excluded from the content-word count.
    public static let stopWords: Set<String> = [
        "the", "and", "for", "are", "but", "not", "you", "all", "any", "can", "had", "her", "was", "one", "our",
        "out", "has", "him", "his", "how", "its", "may", "who", "did", "get", "let", "say", "she", "too", "use",
        "that", "with", "have", "this", "will", "your", "from", "they", "been", "were", "what", "when", "which",
        "their", "there", "them", "then", "than", "these", "those", "would", "could", "should", "about", "into",
        "just", "also", "some", "such", "very", "more", "most", "other", "only", "over", "here", "where",
        "while", "because", "being", "each", "does", "doing", "done", "both", "same", "own", "off", "yes",
        "it's", "i'm", "you're", "don't", "can't", "won't", "isn't", "aren't", "we're", "they're", "that's",
        "there's", "let's", "i'll", "you'll", "we'll", "i've", "you've", "we've", "why", "yet", "via",
    ]
}
