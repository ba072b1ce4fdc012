import Foundation
import Preference
import Testing

/// The VADER lexicon of the installed vaderSentiment package (Scripts/setup.sh installs it).
enum Lexicon {
    static let analyzer: SentimentAnalyzer? = SentimentAnalyzer.locateLexicon().flatMap {
        try? SentimentAnalyzer(lexiconPath: $0)
    }
}

@Suite struct RewardTests {
    static let plain = "The sun is a star. It is hot. It gives us light."
    static let technical = """
        The photosphere of the Sun exhibits convective granulation, whereas energy transport in the radiative \
        zone proceeds predominantly through photon diffusion characterised by extraordinarily long effective \
        timescales, notwithstanding the comparatively rapid thermonuclear fusion occurring within the core, \
        which generates neutrinos detectable by sophisticated underground observatories.
        """

    @Test("a short plain answer scores more concise and more elementary than a long technical one")
    func plainVersusTechnical() throws {
        let rewards = RewardModel(sentiment: SentimentAnalyzer(lexicon: [:]))
        let plain = rewards.raw(Self.plain)
        let technical = rewards.raw(Self.technical)
        #expect(plain[PreferenceDimension.concise.ordinal] > technical[PreferenceDimension.concise.ordinal])
        #expect(plain[PreferenceDimension.elementary.ordinal] > technical[PreferenceDimension.elementary.ordinal])
        #expect(technical[PreferenceDimension.knowledgeable.ordinal] > plain[PreferenceDimension.knowledgeable.ordinal])
        #expect(technical[PreferenceDimension.informative.ordinal] > plain[PreferenceDimension.informative.ordinal])
    }

    @Test("Flesch–Kincaid grade and syllable counts follow the textbook examples")
    func readability() {
        #expect(RewardText.syllables(in: "cat") == 1)
        #expect(RewardText.syllables(in: "table") == 2)
        #expect(RewardText.syllables(in: "make") == 1)
        #expect(RewardText.syllables(in: "information") == 4)
        let stats = TextStatistics(Self.plain)
        #expect(stats.words == 12)
        #expect(stats.sentences == 3)
        #expect(stats.fleschKincaidGrade < 2)
        #expect(TextStatistics(Self.technical).fleschKincaidGrade > 16)
        #expect(TextStatistics("").fleschKincaidGrade == 0)
    }

    @Test("a warm answer scores more friendly and less unfriendly than a hostile one")
    func friendliness() throws {
        let analyzer = try #require(Lexicon.analyzer, "pip install vaderSentiment")
        let rewards = RewardModel(sentiment: analyzer)
        let warm = rewards.raw("Great question, friend! I'd love to help, this is a fun and wonderful topic :)")
        let hostile = rewards.raw("That is a stupid question. I hate explaining this, it is boring and awful.")
        #expect(warm[PreferenceDimension.friendly.ordinal] > 1)
        #expect(hostile[PreferenceDimension.friendly.ordinal] < -1)
        #expect(hostile[PreferenceDimension.unfriendly.ordinal] > warm[PreferenceDimension.unfriendly.ordinal])
    }

    @Test("negation flips a sentiment word and boosters strengthen it")
    func negationAndBoosters() throws {
        let analyzer = try #require(Lexicon.analyzer, "pip install vaderSentiment")
        #expect(analyzer.compound("This is good.") > 0)
        #expect(analyzer.compound("This is not good.") < 0)
        #expect(analyzer.compound("This is very good.") > analyzer.compound("This is good."))
        #expect(analyzer.compound("This is good!!!") > analyzer.compound("This is good."))
        #expect(analyzer.compound("The table has four legs.") == 0)
    }

    @Test("a response scores 1/2 on every dimension against itself, and combinations average their dimensions")
    func normalisation() throws {
        let rewards = RewardModel(sentiment: SentimentAnalyzer(lexicon: ["nice": 2]))
        let reference = rewards.raw(Self.plain)
        for r in rewards.normalised(Self.plain, reference: reference) { #expect(abs(r - 0.5) < 1e-12) }
        let normalised = rewards.normalised(Self.technical, reference: reference)
        let spec = try PreferenceSpec(.elementary, .concise)
        let combined = RewardModel.combine(normalised, preference: spec)
        #expect(abs(combined - (normalised[0] + normalised[2]) / 2) < 1e-12)
        #expect(combined < 0.5)
    }

    @Test("an unreadable lexicon is a typed error naming the file")
    func badLexicon() {
        #expect(throws: RewardError.self) { try SentimentAnalyzer(lexiconPath: "/nonexistent/vader_lexicon.txt") }
    }
}
