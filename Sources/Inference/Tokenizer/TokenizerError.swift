/// Why a tokenizer or a chat template could not be built or used.
public enum TokenizerError: Error, Sendable, Equatable, CustomStringConvertible {
    /// `tokenizer.ggml.model` names a tokenizer family this build does not implement (only "gpt2" and "llama").
    case unsupportedModel(String)
    /// `tokenizer.ggml.pre` names pre-tokenizer rules this build does not implement.
    case unsupportedPreTokenizer(String)
    /// The vocabulary holds no tokens.
    case emptyVocabulary
    /// `tokenizer.ggml.token_type` is present but its length differs from the number of tokens.
    case tokenTypeCountMismatch(tokens: Int, types: Int)
    /// `tokenizer.ggml.scores` is present but its length differs from the number of tokens.
    case scoreCountMismatch(tokens: Int, scores: Int)
    /// Merge number `index` is not two tokens separated by one space.
    case badMerge(index: Int, line: String)
    /// Merge number `index` names a token (or a merged result) that is not in the vocabulary.
    case mergeTokenMissing(index: Int, token: String)
    /// A control token is also what ordinary text encodes to (a byte's token, a merge's result or the unknown
    /// token), so user text could become control tokens: the vocabulary is inconsistent.
    case textEncodesToControlToken(id: Int32, text: String)
    /// A special token id from the metadata (`name`: "bos", "eos", …) lies outside the vocabulary.
    case specialTokenOutOfRange(name: String, id: Int32, vocabularySize: Int)
    /// The model ships no chat template, so chat requests cannot be formatted for it.
    case missingChatTemplate
    /// The chat template is not one of the families mope renders; the text says which feature was not recognised.
    case unsupportedChatTemplate(String)
    /// A chat message's role cannot be placed in the prompt (empty, or holding a line break or a special marker).
    case invalidChatRole(String)

    /// A sentence a user can act on.
    public var description: String {
        switch self {
        case .unsupportedModel(let name):
            return "tokenizer model \"\(name)\" is not supported (supported: gpt2 byte-level BPE, llama SentencePiece)"
        case .unsupportedPreTokenizer(let name):
            return "pre-tokenizer \"\(name)\" is not supported (supported: gpt2, smollm and its aliases, qwen2, llama3)"
        case .emptyVocabulary:
            return "the tokenizer vocabulary is empty"
        case .tokenTypeCountMismatch(let tokens, let types):
            return "the vocabulary has \(tokens) tokens but \(types) token types"
        case .scoreCountMismatch(let tokens, let scores):
            return "the vocabulary has \(tokens) tokens but \(scores) scores"
        case .badMerge(let index, let line):
            return "merge \(index) (\"\(line)\") is not two tokens separated by a space"
        case .mergeTokenMissing(let index, let token):
            return "merge \(index) uses \"\(token)\", which is not in the vocabulary"
        case .textEncodesToControlToken(let id, let text):
            return "token \(id) (\(text.debugDescription)) is a control token, yet ordinary text encodes to it (as a "
                + "byte, a merge result or the unknown token): the vocabulary is inconsistent"
        case .specialTokenOutOfRange(let name, let id, let size):
            return "the \(name) token id \(id) is outside the vocabulary of \(size) tokens"
        case .missingChatTemplate:
            return "the model has no chat template (tokenizer.chat_template); send raw text instead"
        case .unsupportedChatTemplate(let reason):
            return "unsupported chat template: \(reason)"
        case .invalidChatRole(let role):
            return "chat role \"\(role)\" is empty or contains a line break or a special marker"
        }
    }
}
