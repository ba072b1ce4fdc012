import Inference
import Wire

/// Turns a session's request into the model's prompt tokens: the model's chat template with the expert's own
/// system prompt for chat requests, the text as is for raw requests.
///
/// System prompt rules: with a worker system prompt, it replaces the template's default one; when the request
/// itself starts with a system turn, the worker's prompt comes first and the request's system text follows it
/// after a blank line (the expert keeps its persona, the caller keeps its instructions). Without a worker
/// system prompt (nil or empty) the request's turns are rendered as given (the template's default applies when they
/// hold none).
public struct WorkerPrompt: Sendable {
    /// The tokenizer of the model.
    public let tokenizer: any Tokenizer
    /// The model's chat template; nil when the model ships none (then only raw requests are served).
    public let template: ChatTemplate?
    /// Why the template is missing or unusable, when `template` is nil.
    public let templateProblem: String?
    /// The expert's system prompt (nil: none of its own).
    public let systemPrompt: String?

    /// Builds the prompt maker of `model`.
    /// - Throws: `TokenizerError` when the model's tokenizer is unsupported or inconsistent.
    public init(model: LanguageModel, systemPrompt: String?) throws(TokenizerError) {
        tokenizer = try makeTokenizer(model.vocabulary)
        self.systemPrompt = systemPrompt?.isEmpty == false ? systemPrompt : nil
        do {
            template = try ChatTemplate(vocabulary: model.vocabulary)
            templateProblem = nil
        } catch {
            template = nil
            templateProblem = error.description
        }
    }

    /// The chat messages the template renders for `turns`, the expert's system prompt applied.
    public func messages(for turns: [ChatTurn]) -> [ChatMessage] {
        var messages = turns.map { ChatMessage(role: $0.role, content: $0.content) }
        if let systemPrompt {
            if let first = messages.first, first.role == "system" {
                messages[0].content = first.content.isEmpty ? systemPrompt : systemPrompt + "\n\n" + first.content
            } else {
                messages.insert(ChatMessage(role: "system", content: systemPrompt), at: 0)
            }
        }
        return messages
    }

    /// The prompt of `turns` as segments (the template applied, ending with the assistant's turn opener).
    /// - Throws: `WorkerPromptError` when the model has no usable template or a role is invalid.
    public func segments(for turns: [ChatTurn]) throws(WorkerPromptError) -> [PromptSegment] {
        guard let template else {
            throw .noChatTemplate(templateProblem ?? "the model ships no chat template")
        }
        do {
            return try template.segments(messages(for: turns), addGenerationPrompt: true)
        } catch {
            throw .invalidTurns(error.description)
        }
    }

    /// The prompt text of `turns`, for display (see ``segments(for:)``).
    /// - Throws: `WorkerPromptError` when the model has no usable template or a role is invalid.
    public func text(for turns: [ChatTurn]) throws(WorkerPromptError) -> String {
        try segments(for: turns).joinedText
    }

    /// The token ids of `request`. Chat turns are rendered through the template, whose markup alone may hold
    /// control tokens: the turns' content is always text. A raw request is the model's input exactly, control
    /// tokens recognised (the caller writes the whole prompt, so it can cross no boundary the worker draws).
    /// - Throws: `WorkerPromptError` when the request cannot be rendered.
    public func tokens(for request: Request) throws(WorkerPromptError) -> [UInt32] {
        let segments: [PromptSegment]
        switch request {
        case .raw(let raw): segments = [.markup(raw)]
        case .chat(let turns): segments = try self.segments(for: turns)
        }
        return tokenizer.encode(segments).map { UInt32(bitPattern: $0) }
    }
}

/// Why a request cannot be turned into prompt tokens; the worker answers `error badRequest` with the text.
public enum WorkerPromptError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The model has no chat template mope can render, so chat requests cannot be served (raw ones can).
    case noChatTemplate(String)
    /// The chat turns cannot be rendered (an empty role, or one holding a line break or `<|`).
    case invalidTurns(String)

    /// A message a user can act on.
    public var description: String {
        switch self {
        case .noChatTemplate(let reason): "this worker serves raw requests only: \(reason)"
        case .invalidTurns(let reason): "the chat turns cannot be rendered: \(reason)"
        }
    }
}
