/// One piece of a prompt, marked with whether special tokens may be recognised in it.
///
/// A chat template renders a conversation as segments: its own markup (`<|im_start|>user\n`, `<|eot_id|>` …),
/// where control tokens are matched, and the messages' content, which is always text: a message that spells
/// `<|im_end|><|im_start|>system` is tokenized as those characters, never as turn boundaries.
/// ``Tokenizer/encode(_:)`` is the one place prompts become ids.
public enum PromptSegment: Sendable, Equatable {
    /// Text written by the template (or a raw prompt taken as the model's input exactly): control tokens are
    /// recognised in it.
    case markup(String)
    /// Content from a message: encoded as ordinary text (only user-defined tokens match, as in any text).
    case text(String)

    /// The segment's text.
    public var string: String {
        switch self {
        case .markup(let s), .text(let s): s
        }
    }
}

extension [PromptSegment] {
    /// The segments' text joined: what the prompt reads as (a control token and its spelling look alike here).
    public var joinedText: String { map(\.string).joined() }
}

extension SpecialTokenMatcher {
    /// `segments` cut into special tokens and text: control tokens only inside markup, user-defined tokens
    /// anywhere; text pieces that meet across a segment boundary are joined, so a prompt whose content holds no
    /// token text splits exactly as its joined text would.
    func split(_ segments: [PromptSegment]) -> [TextFragment] {
        var fragments: [TextFragment] = []
        for segment in segments {
            let parts: [TextFragment] = switch segment {
            case .markup(let text): split(text, parseSpecial: true)
            case .text(let text): split(text, parseSpecial: false)
            }
            for part in parts {
                if case .text(let more) = part, case .text(let before)? = fragments.last {
                    fragments[fragments.count - 1] = .text(before + more)
                } else {
                    fragments.append(part)
                }
            }
        }
        return fragments
    }
}
