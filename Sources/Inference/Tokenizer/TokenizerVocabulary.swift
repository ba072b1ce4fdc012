/// Everything a tokenizer is built from, as a GGUF file's `tokenizer.ggml.*` metadata holds it.
public struct TokenizerVocabulary: Sendable, Equatable {
    /// `tokenizer.ggml.model`: "gpt2" (byte-level BPE) or "llama" (SentencePiece).
    public var model: String
    /// `tokenizer.ggml.pre`: the pre-tokenizer ("smollm", "gpt2", "qwen2", "llama3", …); nil if absent.
    public var pre: String?
    /// `tokenizer.ggml.tokens`: every token's text, indexed by id.
    public var tokens: [String]
    /// `tokenizer.ggml.token_type`: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
    public var tokenTypes: [Int32]
    /// `tokenizer.ggml.scores`: SentencePiece scores (empty for BPE).
    public var scores: [Float]
    /// `tokenizer.ggml.merges`: BPE merges "a b", highest priority first (empty for SentencePiece).
    public var merges: [String]
    /// `tokenizer.ggml.bos_token_id`.
    public var bosTokenID: Int32?
    /// `tokenizer.ggml.eos_token_id`.
    public var eosTokenID: Int32?
    /// `tokenizer.ggml.unknown_token_id`.
    public var unknownTokenID: Int32?
    /// `tokenizer.ggml.padding_token_id`.
    public var paddingTokenID: Int32?
    /// `tokenizer.ggml.add_bos_token`.
    public var addBOS: Bool
    /// `tokenizer.ggml.add_space_prefix` (SentencePiece).
    public var addSpacePrefix: Bool
    /// `tokenizer.chat_template`: the Jinja chat template the model ships, if any.
    public var chatTemplate: String?

    public init(
        model: String, pre: String? = nil, tokens: [String], tokenTypes: [Int32] = [], scores: [Float] = [],
        merges: [String] = [], bosTokenID: Int32? = nil, eosTokenID: Int32? = nil, unknownTokenID: Int32? = nil,
        paddingTokenID: Int32? = nil, addBOS: Bool = false, addSpacePrefix: Bool = false, chatTemplate: String? = nil
    ) {
        self.model = model
        self.pre = pre
        self.tokens = tokens
        self.tokenTypes = tokenTypes
        self.scores = scores
        self.merges = merges
        self.bosTokenID = bosTokenID
        self.eosTokenID = eosTokenID
        self.unknownTokenID = unknownTokenID
        self.paddingTokenID = paddingTokenID
        self.addBOS = addBOS
        self.addSpacePrefix = addSpacePrefix
        self.chatTemplate = chatTemplate
    }
}
