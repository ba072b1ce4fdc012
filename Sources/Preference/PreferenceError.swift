/// Why a preference could not be understood, or the dimensions file could not be read.
public enum PreferenceError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A word that names no dimension; `suggestion` is the closest dimension name.
    case unknownWord(String, suggestion: PreferenceDimension)
    /// Both poles of one axis were asked for (e.g. "concise, informative").
    case contradiction(PreferenceDimension, PreferenceDimension)
    /// A weight that is not a positive finite number (e.g. "concise:0", "concise:x").
    case invalidWeight(dimension: PreferenceDimension, text: String)
    /// The same dimension named twice.
    case duplicate(PreferenceDimension)
    /// The dimensions file could not be read or is inconsistent.
    case unreadableDimensionsFile(path: String, reason: String)

    /// A message a user can act on.
    public var description: String {
        switch self {
        case let .unknownWord(word, suggestion):
            "unknown preference \"\(word)\"; did you mean \"\(suggestion.rawValue)\"? The dimensions are "
                + PreferenceDimension.allCases.map(\.rawValue).joined(separator: ", ")
        case let .contradiction(a, b):
            "\"\(a.rawValue)\" and \"\(b.rawValue)\" are opposite poles of the \(a.axis.rawValue) axis; choose one"
        case let .invalidWeight(dimension, text):
            "the weight \"\(text)\" of \(dimension.rawValue) must be a positive number, e.g. \(dimension.rawValue):2"
        case let .duplicate(dimension):
            "\(dimension.rawValue) is named twice; name it once (with a weight such as \(dimension.rawValue):2)"
        case let .unreadableDimensionsFile(path, reason):
            "cannot read the preference dimensions file \(path): \(reason)"
        }
    }
}
