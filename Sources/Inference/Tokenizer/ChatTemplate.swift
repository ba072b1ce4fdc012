/// One message of a conversation.
public struct ChatMessage: Sendable, Equatable {
    /// "system", "user" or "assistant".
    public var role: String
    /// The message text, placed in the prompt verbatim and always tokenized as text.
    public var content: String

    /// A message from `role` saying `content`.
    public init(role: String, content: String) {
        self.role = role
        self.content = content
    }
}

/// A model's chat template, recognised by family and rendered natively (no Jinja engine).
///
/// Supported families:
/// - **ChatML** (SmolLM2, Qwen2/2.5): `<|im_start|>{role}\n{content}<|im_end|>\n` per message and
///   `<|im_start|>assistant\n` as the generation prompt. When the template carries a default system prompt
///   (a literal `<|im_start|>system\n…<|im_end|>` block, as SmolLM2 and Qwen2.5 ship), it is put first unless
///   the conversation starts with its own system message, which replaces it.
/// - **Llama 3**: `<|start_header_id|>{role}<|end_header_id|>\n\n{content, trimmed}<|eot_id|>` per message,
///   BOS text first, `<|start_header_id|>assistant<|end_header_id|>\n\n` as the generation prompt.
///
/// Any other template is rejected with ``TokenizerError/unsupportedChatTemplate(_:)`` naming what was not
/// recognised; so are template features whose output these renderings would not reproduce (tool preambles,
/// reasoning sections).
public struct ChatTemplate: Sendable, Equatable {
    /// The template families mope renders.
    public enum Family: Sendable, Equatable {
        /// `<|im_start|>role … <|im_end|>`.
        case chatML
        /// `<|start_header_id|>role<|end_header_id|> … <|eot_id|>`.
        case llama3
    }

    /// The family the template was recognised as.
    public let family: Family
    /// The system prompt the template puts first when the conversation has none.
    public let defaultSystemPrompt: String?
    /// The BOS text a Llama 3 prompt starts with.
    public let bosText: String
    /// Whether the template writes the default system prompt even for an empty conversation
    /// (false when it does so only for the first message, as SmolLM2's does inside its message loop).
    private let defaultSystemWithoutMessages: Bool

    /// Recognises the Jinja template `source`; `bosText` is the BOS token's text for families that start with it.
    ///
    /// - Throws: ``TokenizerError/unsupportedChatTemplate(_:)`` naming the feature that was not recognised.
    public init(source: String, bosText: String = "") throws(TokenizerError) {
        self.bosText = bosText
        let mentionsRole = ["message['role']", "message[\"role\"]", "message.role"].contains { source.contains($0) }
        if source.contains("<|im_start|>") && source.contains("<|im_end|>") {
            guard mentionsRole else {
                throw .unsupportedChatTemplate("ChatML markers found but the template never writes message roles")
            }
            if source.contains("<think>") {
                throw .unsupportedChatTemplate("ChatML template with reasoning (<think>) sections")
            }
            family = .chatML
            if let found = Self.defaultChatMLSystemPrompt(in: source) {
                defaultSystemPrompt = found.prompt
                if let loop = source.firstRange(of: "for message in messages") {
                    defaultSystemWithoutMessages = found.position < loop.lowerBound
                } else {
                    defaultSystemWithoutMessages = true
                }
            } else {
                defaultSystemPrompt = nil
                defaultSystemWithoutMessages = false
            }
        } else if source.contains("<|start_header_id|>") && source.contains("<|end_header_id|>")
            && source.contains("<|eot_id|>")
        {
            guard mentionsRole else {
                throw .unsupportedChatTemplate("Llama 3 headers found but the template never writes message roles")
            }
            if source.contains("Cutting Knowledge Date") || source.contains("tools_in_user_message") {
                throw .unsupportedChatTemplate("Llama 3.1-style template with tool and date preamble")
            }
            family = .llama3
            defaultSystemPrompt = nil
            defaultSystemWithoutMessages = false
        } else {
            throw .unsupportedChatTemplate(
                "neither ChatML (<|im_start|>, <|im_end|>) nor Llama 3 (<|start_header_id|>, <|eot_id|>) markers found")
        }
    }

    /// The template of `vocabulary` (`tokenizer.chat_template`), with its BOS token's text.
    ///
    /// - Throws: ``TokenizerError/missingChatTemplate`` when the model ships none, or what ``init(source:bosText:)``
    ///   throws.
    public init(vocabulary: TokenizerVocabulary) throws(TokenizerError) {
        guard let source = vocabulary.chatTemplate else { throw .missingChatTemplate }
        var bos = ""
        if let id = vocabulary.bosTokenID, id >= 0, Int(id) < vocabulary.tokens.count {
            bos = vocabulary.tokens[Int(id)]
        }
        try self.init(source: source, bosText: bos)
    }

    /// The prompt for `messages` as segments, ending with the assistant's turn opener when `addGenerationPrompt`:
    /// the template's markup (and its default system prompt, which is the model's own text) as
    /// ``PromptSegment/markup(_:)``, every message's role and content as ``PromptSegment/text(_:)``, so a message
    /// that spells a control token stays text. Encode it with ``Tokenizer/encode(_:)``.
    ///
    /// - Throws: ``TokenizerError/invalidChatRole(_:)`` for a role that is empty or holds a line break or `<|`.
    public func segments(_ messages: [ChatMessage], addGenerationPrompt: Bool) throws(TokenizerError)
        -> [PromptSegment]
    {
        for message in messages {
            let role = message.role
            let breaksLine = role.unicodeScalars.contains { $0 == "\n" || $0 == "\r" }
            if role.isEmpty || role.contains("<|") || breaksLine {
                throw .invalidChatRole(role)
            }
        }
        var out: [PromptSegment] = []
        func content(_ text: String) {
            if !text.isEmpty { out.append(.text(text)) }
        }
        switch family {
        case .chatML:
            let hasOwnSystem = messages.first?.role == "system"
            if let system = defaultSystemPrompt, !hasOwnSystem, !messages.isEmpty || defaultSystemWithoutMessages {
                out.append(.markup("<|im_start|>system\n" + system + "<|im_end|>\n"))
            }
            for message in messages {
                out += [.markup("<|im_start|>"), .text(message.role), .markup("\n")]
                content(message.content)
                out.append(.markup("<|im_end|>\n"))
            }
            if addGenerationPrompt { out.append(.markup("<|im_start|>assistant\n")) }
        case .llama3:
            if !bosText.isEmpty { out.append(.markup(bosText)) }
            for message in messages {
                out += [.markup("<|start_header_id|>"), .text(message.role), .markup("<|end_header_id|>\n\n")]
                content(Self.trimmed(message.content))
                out.append(.markup("<|eot_id|>"))
            }
            if addGenerationPrompt { out.append(.markup("<|start_header_id|>assistant<|end_header_id|>\n\n")) }
        }
        return out
    }

    /// The prompt text for `messages`: ``segments(_:addGenerationPrompt:)`` joined, for display. Never
    /// tokenize it with special tokens parsed (a message's spelling of a control token would become one); encode
    /// the segments instead.
    ///
    /// - Throws: ``TokenizerError/invalidChatRole(_:)`` for a role that is empty or holds a line break or `<|`.
    public func render(_ messages: [ChatMessage], addGenerationPrompt: Bool) throws(TokenizerError) -> String {
        try segments(messages, addGenerationPrompt: addGenerationPrompt).joinedText
    }

    // MARK: - Template source analysis

    /// Finds a string literal in `source` that is exactly `<|im_start|>system\n{prompt}<|im_end|>` (optionally
    /// followed by a newline) and returns the prompt and where the literal starts.
    static func defaultChatMLSystemPrompt(in source: String) -> (prompt: String, position: String.Index)? {
        let opener = "<|im_start|>system"
        var searchStart = source.startIndex
        while let found = source[searchStart...].firstRange(of: opener) {
            searchStart = found.upperBound
            guard found.lowerBound > source.startIndex else { continue }
            let quoteIndex = source.index(before: found.lowerBound)
            let quote = source[quoteIndex]
            guard quote == "'" || quote == "\"" else { continue }
            guard let literal = jinjaStringLiteral(source, from: found.lowerBound, quote: quote) else { continue }
            var body = Substring(literal)
            guard body.hasPrefix(opener + "\n") else { continue }
            body = body.dropFirst(opener.count + 1)
            if body.hasSuffix("\n") { body = body.dropLast() }
            guard body.hasSuffix("<|im_end|>") else { continue }
            body = body.dropLast("<|im_end|>".count)
            guard !body.contains("<|im_") else { continue }
            return (String(body), quoteIndex)
        }
        return nil
    }

    /// The value of a Jinja string literal whose text starts at `start` (after the opening `quote`), with escapes
    /// resolved; nil when it is not closed.
    private static func jinjaStringLiteral(_ source: String, from start: String.Index, quote: Character) -> String? {
        var out = ""
        var i = start
        while i < source.endIndex {
            let c = source[i]
            if c == quote { return out }
            if c == "\\" {
                let next = source.index(after: i)
                guard next < source.endIndex else { return nil }
                switch source[next] {
                case "n": out.append("\n")
                case "t": out.append("\t")
                case "r": out.append("\r")
                default: out.append(source[next])
                }
                i = source.index(after: next)
                continue
            }
            out.append(c)
            i = source.index(after: i)
        }
        return nil
    }

    /// Jinja's `trim`: leading and trailing whitespace removed.
    private static func trimmed(_ text: String) -> String {
        let scalars = Array(text.unicodeScalars)
        guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }),
              let last = scalars.lastIndex(where: { !$0.properties.isWhitespace })
        else { return "" }
        var view = String.UnicodeScalarView()
        view.append(contentsOf: scalars[first ... last])
        return String(view)
    }
}
