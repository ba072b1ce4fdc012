import Foundation

/// Why a reward could not be computed or its data read.
public enum RewardError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The sentiment lexicon could not be read.
    case unreadableLexicon(path: String, reason: String)
    /// No lexicon path was given and `vaderSentiment` could not be found.
    case lexiconNotFound

    /// A message a user can act on.
    public var description: String {
        switch self {
        case let .unreadableLexicon(path, reason):
            "cannot read the sentiment lexicon \(path): \(reason)"
        case .lexiconNotFound:
            "no sentiment lexicon: `pip install vaderSentiment` (Scripts/setup.sh does), or pass --lexicon "
                + "PATH/vader_lexicon.txt or set MOPE_VADER_LEXICON"
        }
    }
}

/// The six rule-based rewards, one per preference dimension: offline, deterministic, cheap.
///
/// Raw rewards r_j(x, y) are on a logit-like scale (a difference of 1 between two answers means the better
/// one wins with probability σ(1) ≈ 0.73 under Bradley–Terry). Each is scaled so that its spread over sampled
/// answers to one prompt (SmolLM2-135M, 48 tokens) is about 1: a typical difference then matters as much on
/// every dimension, and no dimension's reward is flat next to the others in a combination.
///
/// - **elementary**: −FK/4, the Flesch–Kincaid grade lowered (shorter sentences, fewer syllables per word);
/// - **knowledgeable**: (FK/4 + 8 · (share of words with ≥ 3 syllables) + 4 · (share of words ≥ 9 letters)) / 2:
///   harder text and technical vocabulary;
/// - **concise**: −2 ln(max(words, 8)): fewer words, with no gain below 8 words (an empty answer is not
///   concise, it is no answer);
/// - **informative**: distinct content words / ln(words + e): new information per length, which grows with
///   length but rewards variety over repetition;
/// - **friendly**: 2 · VADER compound; **unfriendly**: −2 · VADER compound.
public struct RewardModel: Sendable {
    /// The sentiment analyzer the style rewards use.
    public let sentiment: SentimentAnalyzer

    /// Creates the rewards with a sentiment analyzer.
    public init(sentiment: SentimentAnalyzer) { self.sentiment = sentiment }

    /// The raw reward of every dimension for `response`, indexed by `PreferenceDimension.ordinal`.
    public func raw(_ response: String) -> [Double] {
        let stats = TextStatistics(response)
        let grade = stats.fleschKincaidGrade
        let words = Double(stats.words)
        let poly = words > 0 ? Double(stats.polysyllables) / words : 0
        let long = words > 0 ? Double(stats.longWords) / words : 0
        let compound = sentiment.compound(response)
        return [
            -grade / 4,
            (grade / 4 + 8 * poly + 4 * long) / 2,
            -2 * log(max(words, 8)),
            Double(stats.distinctContentWords) / log(words + M_E),
            2 * compound,
            -2 * compound,
        ]
    }

    /// The Bradley–Terry normalised rewards R_j = σ(r_j(y) − r_j(y_ref)) of every dimension.
    public func normalised(_ response: String, reference: [Double]) -> [Double] {
        zip(raw(response), reference).map { RewardModel.sigmoid($0 - $1) }
    }

    /// A preference's reward: the weighted mean of its dimensions' normalised rewards
    /// (every dimension equally for the empty preference).
    public static func combine(_ normalised: [Double], preference: PreferenceSpec) -> Double {
        if preference.isEmpty { return normalised.reduce(0, +) / Double(max(normalised.count, 1)) }
        var total = 0.0, weight = 0.0
        for term in preference.terms where term.dimension.ordinal < normalised.count {
            total += Double(term.weight) * normalised[term.dimension.ordinal]
            weight += Double(term.weight)
        }
        return weight > 0 ? total / weight : 0
    }

    /// The logistic function.
    public static func sigmoid(_ x: Double) -> Double { 1 / (1 + exp(-x)) }
}
