import Testing
@testable import Inference

/// Chat templates rendered natively against jinja2's rendering of the same templates.
@Suite struct ChatTemplateTests {
    static let fixture: ChatFixture? = try? TokenizerFixtures.decode(ChatFixture.self, "tokenizer-chat.json")

    @Test("every conversation renders exactly as jinja2 renders the template",
          arguments: ["smollm2", "chatml-default-before-loop", "chatml-plain", "llama3"])
    func matchesJinja(name: String) throws {
        let fixture = try #require(Self.fixture)
        let entry = try #require(fixture.templates.first { $0.name == name })
        let template = try ChatTemplate(source: entry.source, bosText: entry.bosText)
        #expect(entry.cases.count >= 10)
        for item in entry.cases {
            let messages = item.messages.map { ChatMessage(role: $0.role, content: $0.content) }
            let rendered = try template.render(messages, addGenerationPrompt: item.addGenerationPrompt)
            #expect(rendered == item.rendered, "\(name): \(messages)")
        }
    }

    @Test("the default system prompt is read out of the template source", arguments: [
        ("smollm2", "You are a helpful AI assistant named SmolLM, trained by Hugging Face"),
        ("chatml-default-before-loop", "You are a careful assistant. Don't guess."),
        ("chatml-plain", nil),
    ] as [(String, String?)])
    func defaultSystemPrompt(name: String, prompt: String?) throws {
        let entry = try #require(Self.fixture?.templates.first { $0.name == name })
        let template = try ChatTemplate(source: entry.source)
        #expect(template.family == .chatML)
        #expect(template.defaultSystemPrompt == prompt)
    }

    @Test("a system message from the caller replaces the template's default")
    func callerSystemReplacesDefault() throws {
        let entry = try #require(Self.fixture?.templates.first { $0.name == "smollm2" })
        let template = try ChatTemplate(source: entry.source)
        let rendered = try template.render(
            [ChatMessage(role: "system", content: "Answer like a pirate."), ChatMessage(role: "user", content: "Hi")],
            addGenerationPrompt: true)
        #expect(rendered == "<|im_start|>system\nAnswer like a pirate.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
            + "<|im_start|>assistant\n")
        #expect(!rendered.contains("SmolLM"))
    }

    @Test("templates of other families are refused with what was not recognised", arguments: [
        "{{ bos_token }}{% for message in messages %}[INST] {{ message['content'] }} [/INST]{% endfor %}",
        "{% for message in messages %}<|im_start|>{{ message.content }}<|im_end|>{% endfor %}",
        "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n<think>\\n' }}<|im_end|>{% endfor %}",
        "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>Cutting Knowledge Date: x<|eot_id|>' }}",
    ])
    func rejectsOthers(source: String) {
        #expect {
            try ChatTemplate(source: source)
        } throws: { error in
            guard case .unsupportedChatTemplate(let reason) = error as? TokenizerError else { return false }
            return !reason.isEmpty
        }
    }

    @Test("a role that would break the prompt framing is refused")
    func invalidRole() throws {
        let template = try ChatTemplate(source: try #require(Self.fixture?.templates.first?.source))
        #expect(throws: TokenizerError.invalidChatRole("user\nsystem")) {
            try template.render([ChatMessage(role: "user\nsystem", content: "x")], addGenerationPrompt: false)
        }
        #expect(throws: TokenizerError.invalidChatRole("")) {
            try template.render([ChatMessage(role: "", content: "x")], addGenerationPrompt: false)
        }
    }

    @Test("a vocabulary without a chat template says so")
    func missingTemplate() {
        let vocabulary = TokenizerVocabulary(model: "gpt2", tokens: ["a"])
        #expect(throws: TokenizerError.missingChatTemplate) { try ChatTemplate(vocabulary: vocabulary) }
    }

    @Test("the Llama 3 family starts with the vocabulary's BOS text")
    func llama3Bos() throws {
        let entry = try #require(Self.fixture?.templates.first { $0.name == "llama3" })
        let vocabulary = TokenizerVocabulary(model: "gpt2", tokens: ["<|begin_of_text|>"], bosTokenID: 0,
                                             chatTemplate: entry.source)
        let template = try ChatTemplate(vocabulary: vocabulary)
        #expect(template.family == .llama3)
        #expect(try template.render([ChatMessage(role: "user", content: " hi ")], addGenerationPrompt: false)
            == "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>")
    }
}
