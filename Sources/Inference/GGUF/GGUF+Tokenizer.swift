extension TokenizerVocabulary {
    /// Reads the vocabulary from a GGUF file's `tokenizer.ggml.*` metadata and `tokenizer.chat_template`.
    /// - Throws: `GGUFError.missingMetadata` when `tokenizer.ggml.model` or `tokenizer.ggml.tokens` is absent,
    ///   `.wrongMetadataType` when a key holds the wrong type or an array's length differs from the token count.
    public init(gguf: GGUFFile) throws(GGUFError) {
        let model = try gguf.string("tokenizer.ggml.model")
        let tokens = try gguf.strings("tokenizer.ggml.tokens")
        func optionalID(_ key: String) throws(GGUFError) -> Int32? {
            guard gguf.value(key) != nil else { return nil }
            let id = try gguf.int(key)
            guard let id32 = Int32(exactly: id) else {
                throw .wrongMetadataType(key: key, expected: "a token id", found: "\(id)")
            }
            return id32
        }
        func optionalBool(_ key: String, default value: Bool) throws(GGUFError) -> Bool {
            gguf.value(key) == nil ? value : try gguf.bool(key)
        }
        let types = gguf.value("tokenizer.ggml.token_type") == nil ? [] : try gguf.int32s("tokenizer.ggml.token_type")
        let scores = gguf.value("tokenizer.ggml.scores") == nil ? [] : try gguf.floatArray("tokenizer.ggml.scores")
        guard types.isEmpty || types.count == tokens.count else {
            throw .wrongMetadataType(key: "tokenizer.ggml.token_type", expected: "\(tokens.count) entries",
                                     found: "\(types.count) entries")
        }
        guard scores.isEmpty || scores.count == tokens.count else {
            throw .wrongMetadataType(key: "tokenizer.ggml.scores", expected: "\(tokens.count) entries",
                                     found: "\(scores.count) entries")
        }
        self.init(
            model: model,
            pre: gguf.value("tokenizer.ggml.pre") == nil ? nil : try gguf.string("tokenizer.ggml.pre"),
            tokens: tokens,
            tokenTypes: types,
            scores: scores,
            merges: gguf.value("tokenizer.ggml.merges") == nil ? [] : try gguf.strings("tokenizer.ggml.merges"),
            bosTokenID: try optionalID("tokenizer.ggml.bos_token_id"),
            eosTokenID: try optionalID("tokenizer.ggml.eos_token_id"),
            unknownTokenID: try optionalID("tokenizer.ggml.unknown_token_id"),
            paddingTokenID: try optionalID("tokenizer.ggml.padding_token_id"),
            addBOS: try optionalBool("tokenizer.ggml.add_bos_token", default: false),
            addSpacePrefix: try optionalBool("tokenizer.ggml.add_space_prefix", default: false),
            chatTemplate: gguf.value("tokenizer.chat_template") == nil
                ? nil : try gguf.string("tokenizer.chat_template")
        )
    }

    /// A hash of the token texts in id order (FNV-1a 64 over each token's UTF-8 bytes, each followed by a
    /// 0xFF separator, which never occurs in UTF-8), as 16 hex digits. Workers whose vocabularies hash
    /// alike can have their distributions merged token by token.
    public var vocabularyHash: String {
        var h = FNV1a64()
        for token in tokens {
            h.add(token.utf8)
            h.add(UInt8(0xFF))
        }
        return h.hex
    }
}

/// The 64-bit FNV-1a hash.
struct FNV1a64 {
    private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325

    mutating func add(_ byte: UInt8) {
        value = (value ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
    }

    mutating func add<S: Sequence>(_ bytes: S) where S.Element == UInt8 {
        var v = value
        for b in bytes { v = (v ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
        value = v
    }

    mutating func add(number: UInt64) {
        withUnsafeBytes(of: number.littleEndian) { add($0) }
    }

    /// 16 lowercase hex digits.
    var hex: String {
        let s = String(value, radix: 16)
        return String(repeating: "0", count: 16 - s.count) + s
    }
}

extension GGUFFile {
    /// A fingerprint of the model: FNV-1a 64 over the header bytes (metadata and tensor table) and the file
    /// size, as 16 hex digits. Two files with equal fingerprints hold the same model with near certainty;
    /// computing it reads only the header, not the weights.
    public var fingerprint: String {
        var h = FNV1a64()
        h.add(bytes(at: 0, count: headerSize))
        h.add(number: UInt64(fileSize))
        return h.hex
    }
}
