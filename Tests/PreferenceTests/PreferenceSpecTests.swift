import Foundation
import TestKit
import Testing

@testable import Preference

@Suite struct PreferenceSpecTests {
    @Test(
        "the usual ways of writing a preference parse to the same dimensions and weights",
        arguments: [
            ("concise, friendly", [(PreferenceDimension.concise, Float(1)), (.friendly, 1)]),
            ("elementary and unfriendly", [(.elementary, 1), (.unfriendly, 1)]),
            ("informative+knowledgeable", [(.knowledgeable, 1), (.informative, 1)]),
            ("concise:2, friendly", [(.concise, 2), (.friendly, 1)]),
            ("Concise : 2 & Friendly=0.5", [(.concise, 2), (.friendly, 0.5)]),
            ("P1A P2B P3A", [(.elementary, 1), (.informative, 1), (.friendly, 1)]),
            ("  friendly  ", [(.friendly, 1)]),
            ("knowledgeable;concise/unfriendly", [(.knowledgeable, 1), (.concise, 1), (.unfriendly, 1)]),
        ]
    )
    func parsesValidForms(text: String, expected: [(PreferenceDimension, Float)]) throws {
        let spec = try PreferenceSpec.parse(text)
        #expect(spec.terms.map(\.dimension) == expected.map(\.0))
        #expect(spec.terms.map(\.weight) == expected.map(\.1))
    }

    @Test("an empty preference names no dimension", arguments: ["", "   ", " , "])
    func emptyPreference(text: String) throws {
        #expect(try PreferenceSpec.parse(text).isEmpty)
    }

    @Test(
        "an unknown word is an error suggesting the closest dimension",
        arguments: [
            ("consise", PreferenceDimension.concise), ("frendly", .friendly), ("unfriendy", .unfriendly),
            ("knowledgable", .knowledgeable), ("elementry", .elementary), ("informatve", .informative),
        ]
    )
    func unknownWordSuggests(word: String, suggestion: PreferenceDimension) {
        #expect(throws: PreferenceError.unknownWord(word, suggestion: suggestion)) {
            try PreferenceSpec.parse("\(word), friendly")
        }
    }

    @Test(
        "naming both poles of one axis is a contradiction",
        arguments: [
            ("concise, informative", PreferenceDimension.concise, PreferenceDimension.informative),
            ("friendly and unfriendly", .friendly, .unfriendly),
            ("knowledgeable+elementary", .knowledgeable, .elementary),
        ]
    )
    func contradiction(text: String, first: PreferenceDimension, second: PreferenceDimension) {
        #expect(throws: PreferenceError.contradiction(first, second)) { try PreferenceSpec.parse(text) }
    }

    @Test("a weight that is not a positive number is an error", arguments: ["concise:0", "concise:-1", "concise:x",
        "concise:inf", "concise:"])
    func invalidWeight(text: String) {
        do {
            _ = try PreferenceSpec.parse(text)
            Issue.record("\(text) parsed")
        } catch {
            guard case .invalidWeight(.concise, _) = error else {
                Issue.record("expected invalidWeight, got \(error)")
                return
            }
        }
    }

    @Test("naming a dimension twice is an error")
    func duplicate() {
        #expect(throws: PreferenceError.duplicate(.concise)) { try PreferenceSpec.parse("concise, concise:2") }
    }

    @Test("the canonical text parses back to the same preference")
    func descriptionRoundTrips() throws {
        let spec = try PreferenceSpec.parse("friendly, concise:2.5, elementary")
        #expect(spec.description == "elementary, concise:2.5, friendly")
        #expect(try PreferenceSpec.parse(spec.description) == spec)
    }

    @Test("there are 8 combinations, one pole per axis, all different")
    func combinations() {
        let all = PreferenceSpec.combinations
        #expect(all.count == 8)
        #expect(Set(all).count == 8)
        for spec in all {
            #expect(Set(spec.dimensions.map(\.axis)) == Set(PreferenceAxis.allCases))
        }
        #expect(all.first?.description == "elementary, concise, friendly")
        #expect(all.last?.description == "knowledgeable, informative, unfriendly")
    }

    @Test("error messages name the suggestion and the axis")
    func errorMessages() {
        #expect(PreferenceError.unknownWord("consise", suggestion: .concise).description.contains("\"concise\""))
        #expect(PreferenceError.contradiction(.concise, .informative).description.contains("informativeness"))
    }
}

@Suite struct PreferenceDimensionTests {
    /// The repository's copy of the dimensions file (Configs/preference_dimensions.json).
    static let repositoryFile = Fixtures.configs.appendingPathComponent("preference_dimensions.json")

    @Test("each dimension's opposite is the other pole of its axis")
    func opposites() {
        for dimension in PreferenceDimension.allCases {
            #expect(dimension.opposite.axis == dimension.axis)
            #expect(dimension.opposite != dimension)
            #expect(dimension.opposite.opposite == dimension)
        }
    }

    @Test("the built-in prompts and ids match the dimensions file")
    func builtInMatchesFile() throws {
        let file = try PreferenceDimensionsFile.load(contentsOf: Self.repositoryFile)
        #expect(file.dimensions == PreferenceDimensionsFile.builtIn.dimensions)
        let prompts = try file.prompts()
        for dimension in PreferenceDimension.allCases {
            #expect(prompts[dimension] == dimension.defaultPrompt)
        }
    }

    @Test("the built-in file encodes and decodes back to itself")
    func builtInRoundTrips() throws {
        let data = try JSONEncoder().encode(PreferenceDimensionsFile.builtIn)
        #expect(try PreferenceDimensionsFile.decode(data) == PreferenceDimensionsFile.builtIn)
    }

    @Test("a dimensions file with a wrong axis or a missing pole is refused")
    func inconsistentFileRefused() throws {
        var wrongAxis = PreferenceDimensionsFile.builtIn
        wrongAxis.dimensions[0].axis = "style"
        #expect(throws: PreferenceError.self) { try PreferenceDimensionsFile.decode(JSONEncoder().encode(wrongAxis)) }
        var missing = PreferenceDimensionsFile.builtIn
        missing.dimensions.removeLast()
        #expect(throws: PreferenceError.self) { try PreferenceDimensionsFile.decode(JSONEncoder().encode(missing)) }
        #expect(throws: PreferenceError.self) { try PreferenceDimensionsFile.decode(Data("{".utf8)) }
    }

    @Test("an expert's system prompt under each context: its own, its own then the joined preference, or the latter")
    func expertContexts() throws {
        let prompts = PreferencePrompts.builtIn
        let spec = try PreferenceSpec(.elementary, .concise, .friendly)
        let joined = prompts[.elementary] + " " + prompts[.concise] + " " + prompts[.friendly]
        #expect(prompts.joined(spec) == joined)
        #expect(prompts.joined(try PreferenceSpec(.friendly, .concise, .elementary)) == joined, "in dimension order")
        #expect(prompts.system(for: .concise, in: spec, context: .own) == prompts[.concise])
        #expect(prompts.system(for: .concise, in: spec, context: .ownAndPreference)
                == prompts[.concise] + "\n\n" + joined)
        #expect(prompts.system(for: .concise, in: spec, context: .preference) == joined)
    }

    @Test("a dimensions file's context: absent is own, a known name is read, an unknown one is refused")
    func fileContext() throws {
        #expect(try PreferenceDimensionsFile.builtIn.expertContext() == .own)
        var file = PreferenceDimensionsFile.builtIn
        file.context = "own+preference"
        let decoded = try PreferenceDimensionsFile.decode(JSONEncoder().encode(file))
        #expect(try decoded.expertContext() == .ownAndPreference)
        file.context = "everything"
        #expect(throws: PreferenceError.self) { try PreferenceDimensionsFile.decode(JSONEncoder().encode(file)) }
    }
}

@Suite struct UniformControllerTests {
    static let experts = [
        ExpertDescriptor(name: "concise", dimension: .concise),
        ExpertDescriptor(name: "friendly", dimension: .friendly),
        ExpertDescriptor(name: "unfriendly", dimension: .unfriendly),
        ExpertDescriptor(name: "base", dimension: nil),
    ]

    func weights(_ text: String, experts: [ExpertDescriptor] = experts) throws -> [Float] {
        var controller = UniformController()
        let context = ControllerContext(promptTokens: [], generatedTokens: [], step: 0)
        return controller.weights(preference: try PreferenceSpec.parse(text), experts: experts, context: context)
    }

    @Test("weight is uniform over the experts whose dimension is asked for")
    func uniformOverAsked() throws {
        #expect(try weights("concise, friendly") == [0.5, 0.5, 0, 0])
        #expect(try weights("unfriendly") == [0, 0, 1, 0])
    }

    @Test("weights from the preference are honoured")
    func weighted() throws {
        let w = try weights("concise:2, friendly")
        #expect(abs(w[0] - 2.0 / 3) < 1e-6)
        #expect(abs(w[1] - 1.0 / 3) < 1e-6)
        #expect(w[2] == 0 && w[3] == 0)
    }

    @Test("every expert gets the same weight when the preference names none of them",
          arguments: ["", "elementary", "knowledgeable, informative"])
    func noneAsked(text: String) throws {
        #expect(try weights(text) == [0.25, 0.25, 0.25, 0.25])
    }

    @Test("no experts give no weights")
    func noExperts() throws {
        #expect(try weights("concise", experts: []).isEmpty)
    }
}
