/// A stated preference: some of the six dimensions, each with a positive weight, at most one pole per axis.
///
/// Parsed from what a user writes: names separated by commas, `+`, `&`, `;`, `/`, spaces or the word "and"
/// ("concise, friendly", "elementary and unfriendly", "informative+knowledgeable"), each optionally with a
/// weight after a colon or `=` ("concise:2, friendly"; the default weight is 1). Case does not matter, and the
/// Personalized Soups ids ("P2A") are accepted too. The empty text is the empty preference: every expert
/// equally.
public struct PreferenceSpec: Sendable, Equatable, Hashable, CustomStringConvertible {
    /// One named dimension and its weight.
    public struct Term: Sendable, Equatable, Hashable {
        /// The dimension.
        public var dimension: PreferenceDimension
        /// Its weight (> 0).
        public var weight: Float

        /// Creates a term.
        public init(dimension: PreferenceDimension, weight: Float = 1) {
            self.dimension = dimension
            self.weight = weight
        }
    }

    /// The named dimensions in `PreferenceDimension` order, each at most once.
    public private(set) var terms: [Term]

    /// The empty preference (every expert equally).
    public static let none = PreferenceSpec(checked: [])

    private init(checked terms: [Term]) { self.terms = terms.sorted { $0.dimension < $1.dimension } }

    /// Creates a preference from terms, checking weights, duplicates and contradictions.
    public init(_ terms: [Term]) throws(PreferenceError) {
        var seen: [PreferenceDimension] = []
        for term in terms {
            guard term.weight.isFinite, term.weight > 0 else {
                throw .invalidWeight(dimension: term.dimension, text: "\(term.weight)")
            }
            if seen.contains(term.dimension) { throw .duplicate(term.dimension) }
            if seen.contains(term.dimension.opposite) {
                throw .contradiction(term.dimension.opposite, term.dimension)
            }
            seen.append(term.dimension)
        }
        self.init(checked: terms)
    }

    /// Creates a preference of the given dimensions, each with weight 1.
    public init(_ dimensions: PreferenceDimension...) throws(PreferenceError) {
        try self.init(dimensions.map { Term(dimension: $0) })
    }

    /// True when no dimension is named.
    public var isEmpty: Bool { terms.isEmpty }

    /// The named dimensions, in order.
    public var dimensions: [PreferenceDimension] { terms.map(\.dimension) }

    /// The weight of a dimension: 0 when it is not named.
    public func weight(of dimension: PreferenceDimension) -> Float {
        terms.first { $0.dimension == dimension }?.weight ?? 0
    }

    /// The canonical text, e.g. "concise:2, friendly"; parsing it gives this preference back.
    public var description: String {
        terms.map { term in
            term.weight == 1 ? term.dimension.rawValue : "\(term.dimension.rawValue):\(formatWeight(term.weight))"
        }.joined(separator: ", ")
    }

    /// The 8 full preferences of the paper's evaluation: one pole from each axis, weight 1 each,
    /// in the order P1A+P2A+P3A, P1A+P2A+P3B, …, P1B+P2B+P3B.
    public static let combinations: [PreferenceSpec] = {
        var result: [PreferenceSpec] = []
        for e in [PreferenceDimension.elementary, .knowledgeable] {
            for i in [PreferenceDimension.concise, .informative] {
                for s in [PreferenceDimension.friendly, .unfriendly] {
                    result.append(PreferenceSpec(checked: [Term(dimension: e), Term(dimension: i), Term(dimension: s)]))
                }
            }
        }
        return result
    }()

    // MARK: Parsing

    /// Parses a preference as a user writes it.
    public static func parse(_ text: String) throws(PreferenceError) -> PreferenceSpec {
        var terms: [Term] = []
        for word in words(of: text) {
            let parts = word.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
            let name = String(parts[0])
            guard let dimension = dimension(named: name) else {
                throw .unknownWord(name, suggestion: closestDimension(to: name))
            }
            var weight: Float = 1
            if parts.count == 2 {
                let weightText = String(parts[1])
                guard let value = Float(weightText), value.isFinite, value > 0 else {
                    throw .invalidWeight(dimension: dimension, text: weightText)
                }
                weight = value
            }
            terms.append(Term(dimension: dimension, weight: weight))
        }
        return try PreferenceSpec(terms)
    }

    /// Splits text into "name" or "name:weight" words; "and" and separators are dropped.
    private static func words(of text: String) -> [String] {
        var normalised = ""
        for character in text.lowercased() {
            switch character {
            case ",", "+", "&", ";", "/", "|": normalised.append(" ")
            case "=": normalised.append(":")
            default: normalised.append(character)
            }
        }
        // Glue "concise : 2" and "concise :2" into "concise:2".
        var tokens: [String] = []
        var glueNext = false
        for piece in normalised.split(whereSeparator: { $0.isWhitespace }) {
            let piece = String(piece)
            if glueNext, let last = tokens.popLast() {
                tokens.append(last + piece)
                glueNext = piece.hasSuffix(":")
            } else if piece.hasPrefix(":"), let last = tokens.popLast() {
                tokens.append(last + piece)
                glueNext = piece == ":"
            } else {
                tokens.append(piece)
                glueNext = piece.hasSuffix(":")
            }
        }
        return tokens.filter { $0 != "and" }
    }

    /// The dimension a word names: its name or its Personalized Soups id, any case.
    public static func dimension(named word: String) -> PreferenceDimension? {
        let word = word.lowercased()
        if let dimension = PreferenceDimension(rawValue: word) { return dimension }
        return PreferenceDimension.allCases.first { $0.id.lowercased() == word }
    }

    /// The dimension whose name is closest to a word (Levenshtein distance; ties go to the earlier dimension).
    public static func closestDimension(to word: String) -> PreferenceDimension {
        let word = Array(word.lowercased().unicodeScalars)
        var best = PreferenceDimension.elementary
        var bestDistance = Int.max
        for dimension in PreferenceDimension.allCases {
            let distance = editDistance(word, Array(dimension.rawValue.unicodeScalars))
            if distance < bestDistance {
                best = dimension
                bestDistance = distance
            }
        }
        return best
    }

    private static func editDistance(_ a: [Unicode.Scalar], _ b: [Unicode.Scalar]) -> Int {
        if a.isEmpty { return b.count }
        var previous = Array(0...b.count)
        var current = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            current[0] = i
            for j in stride(from: 1, through: b.count, by: 1) {
                let substitution = previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)
                current[j] = min(substitution, previous[j] + 1, current[j - 1] + 1)
            }
            swap(&previous, &current)
        }
        return previous[b.count]
    }
}

private func formatWeight(_ weight: Float) -> String {
    weight == weight.rounded() && abs(weight) < 1e6 ? String(Int(weight)) : "\(weight)"
}
