import Testing
@testable import Inference

/// The hand-written pre-tokenizer matchers against the original regular expressions (run by Python's `regex`).
@Suite struct TokenizerPreTokenizerTests {
    static let fixture: PreTokenizeFixture? = try? TokenizerFixtures.decode(
        PreTokenizeFixture.self, "tokenizer-pretokenize.json")

    @Test("gpt2, qwen2 and llama3 pieces equal the regex matches for every reference string",
          arguments: [("gpt2", PreTokenizer.gpt2), ("qwen2", .qwen2), ("llama3", .llama3)])
    func matchesRegex(name: String, rules: PreTokenizer) throws {
        let fixture = try #require(Self.fixture)
        #expect(fixture.cases.count > 150)
        for item in fixture.cases {
            let expected = try #require(item.pieces[name])
            #expect(rules.split(item.text) == expected, "\(name): \(item.text.debugDescription)")
        }
    }

    @Test("smollm puts every digit in a piece of its own and keeps the gpt2 rules between digits")
    func smollmDigits() {
        #expect(PreTokenizer.smollm.split("a 1234b") == ["a", " ", "1", "2", "3", "4", "b"])
        #expect(PreTokenizer.smollm.split("x  12 y") == ["x", "  ", "1", "2", " y"])
        #expect(PreTokenizer.gpt2.split("x  12 y") == ["x", " ", " 12", " y"])
    }

    @Test("a whitespace run before a word leaves its last space to the word; at the end it stays whole")
    func whitespaceRuns() {
        #expect(PreTokenizer.gpt2.split("a   b") == ["a", "  ", " b"])
        #expect(PreTokenizer.gpt2.split("a   ") == ["a", "   "])
        #expect(PreTokenizer.gpt2.split("a\t b") == ["a", "\t", " b"])
        #expect(PreTokenizer.gpt2.split("\tb") == ["\t", "b"])
    }

    @Test("pre-tokenizer names from GGUF metadata select rules; unknown names are refused", arguments: [
        ("smollm", PreTokenizer.smollm), ("gpt2", .gpt2), ("gpt-2", .gpt2), ("qwen2", .qwen2),
        ("llama-bpe", .llama3), ("starcoder", .smollm),
    ])
    func names(name: String, rules: PreTokenizer) throws {
        #expect(try PreTokenizer(name: name) == rules)
    }

    @Test("a missing pre-tokenizer name means the gpt2 rules, an unknown one is an error naming it")
    func unknownName() throws {
        #expect(try PreTokenizer(name: nil) == .gpt2)
        #expect(throws: TokenizerError.unsupportedPreTokenizer("mystery")) { try PreTokenizer(name: "mystery") }
    }
}
