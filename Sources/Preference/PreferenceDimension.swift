import Foundation

// MARK: - Axes and dimensions

/// One axis of preference: two opposite poles a user chooses between (Personalized Soups, Jang et al. 2023).
public enum PreferenceAxis: String, Sendable, CaseIterable, Codable, Hashable {
    /// How much expertise the answer assumes: `elementary` or `knowledgeable`.
    case expertise
    /// How long and complete the answer is: `concise` or `informative`.
    case informativeness
    /// The tone of the answer: `friendly` or `unfriendly`.
    case style

    /// The two poles of this axis, the "A" pole first.
    public var poles: (PreferenceDimension, PreferenceDimension) {
        switch self {
        case .expertise: (.elementary, .knowledgeable)
        case .informativeness: (.concise, .informative)
        case .style: (.friendly, .unfriendly)
        }
    }
}

/// One of the six preference dimensions of Personalized Soups; each expert of the demo cluster serves one.
///
/// The raw value is the pole's name as a user writes it ("concise").
public enum PreferenceDimension: String, Sendable, CaseIterable, Codable, Hashable, Comparable {
    /// P1A: understandable by an elementary school student.
    case elementary
    /// P1B: written for a PhD student of the field.
    case knowledgeable
    /// P2A: concise and to the point.
    case concise
    /// P2B: very informative, with the background included.
    case informative
    /// P3A: friendly, witty and humorous.
    case friendly
    /// P3B: unfriendly.
    case unfriendly

    /// The axis this dimension is a pole of.
    public var axis: PreferenceAxis {
        switch self {
        case .elementary, .knowledgeable: .expertise
        case .concise, .informative: .informativeness
        case .friendly, .unfriendly: .style
        }
    }

    /// The other pole of the same axis.
    public var opposite: PreferenceDimension {
        let (a, b) = axis.poles
        return self == a ? b : a
    }

    /// The identifier used by Personalized Soups ("P1A" … "P3B").
    public var id: String {
        switch self {
        case .elementary: "P1A"
        case .knowledgeable: "P1B"
        case .concise: "P2A"
        case .informative: "P2B"
        case .friendly: "P3A"
        case .unfriendly: "P3B"
        }
    }

    /// The preference prompt Personalized Soups uses for this dimension (identical to
    /// `preference_dimensions.json`); an expert of the demo cluster uses it as its system prompt.
    public var defaultPrompt: String {
        switch self {
        case .elementary:
            "Generate a response that can be easily understood by an elementary school student."
        case .knowledgeable:
            "Generate a response that only a PhD Student in that specific field could understand."
        case .concise:
            "Generate a response that is concise and to the point, without being verbose."
        case .informative:
            "Generate a response that is very informative, without missing any background information."
        case .friendly:
            "Generate a response that is friendly, witty, funny, and humorous, like a close friend."
        case .unfriendly:
            "Generate a response in an unfriendly manner."
        }
    }

    /// Dimensions order as listed: P1A, P1B, P2A, P2B, P3A, P3B.
    public static func < (lhs: PreferenceDimension, rhs: PreferenceDimension) -> Bool {
        lhs.ordinal < rhs.ordinal
    }

    /// The position of the dimension in `allCases`.
    public var ordinal: Int {
        switch self {
        case .elementary: 0
        case .knowledgeable: 1
        case .concise: 2
        case .informative: 3
        case .friendly: 4
        case .unfriendly: 5
        }
    }
}

// MARK: - The dimensions file

/// The JSON file that lists the dimensions and their prompts (`preference_dimensions.json`).
public struct PreferenceDimensionsFile: Sendable, Codable, Equatable {
    /// One entry of the file.
    public struct Entry: Sendable, Codable, Equatable {
        /// "P1A" … "P3B".
        public var id: String
        /// "expertise", "informativeness" or "style".
        public var axis: String
        /// The dimension's name, e.g. "concise".
        public var pole: String
        /// The preference prompt.
        public var prompt: String
        /// A tuned expert's logit-bias file (`LogitBias`, made by `mope tune`), relative to the dimensions file's
        /// directory; nil: the expert is its system prompt alone.
        public var bias: String?
        /// A trained expert's LoRA adapter (GGUF, `Scripts/train-lora.py`), relative to the dimensions file's
        /// directory; nil: the base model.
        public var lora: String?

        /// Creates an entry.
        public init(id: String, axis: String, pole: String, prompt: String, bias: String? = nil, lora: String? = nil) {
            self.lora = lora
            self.id = id
            self.axis = axis
            self.pole = pole
            self.prompt = prompt
            self.bias = bias
        }
    }

    /// Where the prompts come from.
    public var source: String?
    /// The six dimensions.
    public var dimensions: [Entry]
    /// A description of the combinations.
    public var combinations: String?
    /// What each expert of a mixture is told of the user's preference (`ExpertContext`'s names); nil: "own".
    public var context: String?

    /// Creates a file's contents.
    public init(source: String? = nil, dimensions: [Entry], combinations: String? = nil, context: String? = nil) {
        self.source = source
        self.dimensions = dimensions
        self.combinations = combinations
        self.context = context
    }

    /// The experts' context, checked.
    public func expertContext(path: String = "<data>") throws(PreferenceError) -> ExpertContext {
        guard let context else { return .own }
        guard let value = ExpertContext(rawValue: context) else {
            let names = ExpertContext.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")
            throw .unreadableDimensionsFile(path: path, reason: "context must be one of \(names), not \"\(context)\"")
        }
        return value
    }

    /// The built-in dimensions, as the file in the repository lists them.
    public static let builtIn = PreferenceDimensionsFile(
        source: "Personalized Soups (Jang et al. 2023), preference prompts P1A..P3B",
        dimensions: PreferenceDimension.allCases.map {
            Entry(id: $0.id, axis: $0.axis.rawValue, pole: $0.rawValue, prompt: $0.defaultPrompt)
        },
        combinations: "one pole from each of the three axes: 8 combinations (e.g. P1A+P2A+P3A)"
    )

    /// Reads and checks a dimensions file.
    public static func load(contentsOf url: URL) throws(PreferenceError) -> PreferenceDimensionsFile {
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw .unreadableDimensionsFile(path: url.path, reason: "\(error.localizedDescription)")
        }
        return try decode(data, path: url.path)
    }

    /// Decodes and checks the contents of a dimensions file.
    public static func decode(_ data: Data, path: String = "<data>") throws(PreferenceError)
        -> PreferenceDimensionsFile
    {
        let file: PreferenceDimensionsFile
        do {
            file = try JSONDecoder().decode(PreferenceDimensionsFile.self, from: data)
        } catch {
            throw .unreadableDimensionsFile(path: path, reason: "not a dimensions file: \(error)")
        }
        _ = try file.prompts(path: path)
        _ = try file.expertContext(path: path)
        return file
    }

    /// The logit-bias file of each dimension that names one, resolved against the directory of the dimensions
    /// file at `path` (absolute paths stay as they are).
    public func biasPaths(relativeTo path: String) -> [PreferenceDimension: String] {
        paths(\.bias, relativeTo: path)
    }

    /// The LoRA adapter file of each dimension that names one, resolved as `biasPaths`.
    public func loraPaths(relativeTo path: String) -> [PreferenceDimension: String] {
        paths(\.lora, relativeTo: path)
    }

    private func paths(_ field: KeyPath<Entry, String?>, relativeTo path: String) -> [PreferenceDimension: String] {
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent()
        var out: [PreferenceDimension: String] = [:]
        for entry in dimensions {
            guard let file = entry[keyPath: field], let dimension = PreferenceDimension(rawValue: entry.pole.lowercased())
            else { continue }
            out[dimension] = file.hasPrefix("/") ? file : directory.appendingPathComponent(file).path
        }
        return out
    }

    /// The prompt of each dimension, after checking that every entry names a known dimension with the
    /// right id and axis, and that each dimension appears exactly once.
    public func prompts(path: String = "<data>") throws(PreferenceError) -> PreferencePrompts {
        var prompts: [PreferenceDimension: String] = [:]
        for entry in dimensions {
            guard let dimension = PreferenceDimension(rawValue: entry.pole.lowercased()) else {
                throw .unreadableDimensionsFile(path: path, reason: "unknown pole \"\(entry.pole)\"")
            }
            guard entry.id == dimension.id, entry.axis == dimension.axis.rawValue else {
                throw .unreadableDimensionsFile(
                    path: path,
                    reason: "\(entry.pole) must have id \(dimension.id) and axis \(dimension.axis.rawValue)"
                )
            }
            guard prompts[dimension] == nil else {
                throw .unreadableDimensionsFile(path: path, reason: "\(entry.pole) is listed twice")
            }
            prompts[dimension] = entry.prompt
        }
        if let missing = PreferenceDimension.allCases.first(where: { prompts[$0] == nil }) {
            throw .unreadableDimensionsFile(path: path, reason: "\(missing.rawValue) is missing")
        }
        return PreferencePrompts(prompts)
    }
}

/// The preference prompt of every dimension.
public struct PreferencePrompts: Sendable, Equatable {
    private var table: [PreferenceDimension: String]

    /// The prompts of `table`; a dimension it lacks has its built-in prompt (`PreferenceDimension.defaultPrompt`).
    public init(_ table: [PreferenceDimension: String]) { self.table = table }

    /// The built-in prompts (`PreferenceDimension.defaultPrompt`).
    public static let builtIn = PreferencePrompts(
        Dictionary(uniqueKeysWithValues: PreferenceDimension.allCases.map { ($0, $0.defaultPrompt) })
    )

    /// The prompt of one dimension.
    public subscript(dimension: PreferenceDimension) -> String {
        table[dimension] ?? dimension.defaultPrompt
    }
}

extension PreferencePrompts {
    /// Preference prompting's system prompt for `preference`: the prompts of its dimensions of positive weight, in
    /// dimension order, joined by spaces.
    public func joined(_ preference: PreferenceSpec) -> String {
        PreferenceDimension.allCases.filter { preference.weight(of: $0) > 0 }.map { self[$0] }.joined(separator: " ")
    }

    /// The system prompt of `dimension`'s expert when it serves `preference`, under `context`.
    public func system(for dimension: PreferenceDimension, in preference: PreferenceSpec,
                       context: ExpertContext) -> String
    {
        switch context {
        case .own: self[dimension]
        case .ownAndPreference: self[dimension] + "\n\n" + joined(preference)
        case .preference: joined(preference)
        }
    }
}

/// What each expert of a mixture is told about the user's preference.
public enum ExpertContext: String, Sendable, CaseIterable, CustomStringConvertible {
    /// Its own dimension's system prompt only: each expert knows nothing of the other dimensions asked for.
    case own
    /// Its own system prompt, then (after a blank line) the user's whole stated preference, the combination's
    /// prompts joined as in preference prompting. This is what a worker with a system prompt renders when the
    /// request carries the preference as its own system turn (`WorkerPrompt`).
    case ownAndPreference = "own+preference"
    /// The user's stated preference in place of the expert's own prompt: the experts differ only by their tuned
    /// parts.
    case preference

    /// The name used in options and files.
    public var description: String { rawValue }
}
