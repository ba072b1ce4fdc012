/// SentencePiece BPE (`tokenizer.ggml.model = llama`), as Llama 1/2 and Mistral vocabularies use it.
///
/// Spaces become "▁" (U+2581), with one "▁" put before the text when `add_space_prefix` is set. Starting from
/// single scalars, the adjacent pair whose joined text is a vocabulary token of the highest score is merged
/// (leftmost first among equals) until no pair is a token. A symbol that is not a token is spelled with the
/// byte-fallback tokens `<0xNN>` of its UTF-8 bytes, or the unknown token when those are missing.
struct SentencePieceTokenizer: Tokenizer {
    let tables: VocabularyTables
    let addsBOS: Bool
    let addSpacePrefix: Bool
    private let scores: [Float]
    /// The `<0xNN>` token of each byte, if the vocabulary has byte fallback.
    private let byteTokens: [Int32?]
    private let bytesOfToken: [[UInt8]]

    static let spaceMark: Unicode.Scalar = "\u{2581}"

    init(_ vocabulary: TokenizerVocabulary) throws(TokenizerError) {
        tables = try VocabularyTables(vocabulary)
        guard vocabulary.scores.isEmpty || vocabulary.scores.count == vocabulary.tokens.count else {
            throw .scoreCountMismatch(tokens: vocabulary.tokens.count, scores: vocabulary.scores.count)
        }
        scores = vocabulary.scores.isEmpty ? Array(repeating: 0, count: vocabulary.tokens.count) : vocabulary.scores
        addsBOS = vocabulary.addBOS && tables.bosTokenID != nil
        addSpacePrefix = vocabulary.addSpacePrefix

        var byteTokens = [Int32?](repeating: nil, count: 256)
        var bytesOfToken: [[UInt8]] = []
        bytesOfToken.reserveCapacity(vocabulary.tokens.count)
        for (id, text) in vocabulary.tokens.enumerated() {
            let kind = tables.kinds[id]
            if kind == .byte, let byte = Self.byteValue(text) {
                if byteTokens[Int(byte)] == nil { byteTokens[Int(byte)] = Int32(id) }
                bytesOfToken.append([byte])
            } else if kind == .normal || kind == .userDefined || kind == .unused {
                var view = String.UnicodeScalarView()
                for scalar in text.unicodeScalars { view.append(scalar == Self.spaceMark ? " " : scalar) }
                bytesOfToken.append(Array(String(view).utf8))
            } else {
                bytesOfToken.append(Array(text.utf8))
            }
        }
        self.byteTokens = byteTokens
        self.bytesOfToken = bytesOfToken
    }

    /// The byte of a `<0xNN>` token text.
    private static func byteValue(_ text: String) -> UInt8? {
        let utf8 = Array(text.utf8)
        guard utf8.count == 6, text.hasPrefix("<0x"), text.hasSuffix(">") else { return nil }
        return UInt8(String(decoding: utf8[3 ..< 5], as: UTF8.self), radix: 16)
    }

    var vocabSize: Int { tables.tokens.count }
    var bosTokenID: Int32? { tables.bosTokenID }
    var eosTokenIDs: [Int32] { tables.eosTokenIDs }

    func encode(_ prompt: [PromptSegment]) -> [Int32] {
        var ids: [Int32] = []
        if addsBOS, let bos = tables.bosTokenID { ids.append(bos) }
        for (index, fragment) in tables.specials.split(prompt).enumerated() {
            switch fragment {
            case .token(let id):
                ids.append(id)
            case .text(let text):
                var scalars: [Unicode.Scalar] = addSpacePrefix && index == 0 ? [Self.spaceMark] : []
                for scalar in text.unicodeScalars { scalars.append(scalar == " " ? Self.spaceMark : scalar) }
                encodeFragment(scalars, into: &ids)
            }
        }
        return ids
    }

    private struct Candidate: Comparable {
        let score: Float
        let left: Int32
        let leftLength: Int32
        let rightLength: Int32
        let id: Int32

        /// Higher score first, then leftmost.
        static func < (a: Candidate, b: Candidate) -> Bool {
            a.score != b.score ? a.score > b.score : a.left < b.left
        }
    }

    private func encodeFragment(_ scalars: [Unicode.Scalar], into ids: inout [Int32]) {
        guard !scalars.isEmpty else { return }
        // Symbol i covers scalars[i ..< i + length[i]]; the list links surviving symbols.
        var list = SymbolList(Array(repeating: 1, count: scalars.count))
        var utf8: [UInt8] = []
        var offsets: [Int] = []
        for scalar in scalars {
            offsets.append(utf8.count)
            UTF8.encode(scalar) { utf8.append($0) }
        }
        offsets.append(utf8.count)
        func text(_ start: Int, _ length: Int) -> [UInt8] {
            Array(utf8[offsets[start] ..< offsets[start + length]])
        }
        func candidate(_ left: Int32) -> Candidate? {
            guard left >= 0 else { return nil }
            let right = list.next[Int(left)]
            guard right >= 0 else { return nil }
            let leftLength = list.ids[Int(left)], rightLength = list.ids[Int(right)]
            guard let id = tables.idOfBytes[text(Int(left), Int(leftLength + rightLength))] else { return nil }
            let kind = tables.kinds[Int(id)]
            guard kind == .normal || kind == .userDefined else { return nil }
            return Candidate(score: scores[Int(id)], left: left, leftLength: leftLength, rightLength: rightLength,
                             id: id)
        }
        var queue = MinHeap<Candidate>()
        for i in 0 ..< Int32(scalars.count - 1) {
            if let c = candidate(i) { queue.push(c) }
        }
        while let c = queue.pop() {
            let left = Int(c.left)
            guard list.alive[left], list.ids[left] == c.leftLength else { continue }
            let right = list.next[left]
            guard right >= 0, list.ids[Int(right)] == c.rightLength else { continue }
            list.merge(left, into: c.leftLength + c.rightLength)
            if let p = candidate(list.previous[left]) { queue.push(p) }
            if let n = candidate(c.left) { queue.push(n) }
        }
        var start: Int32 = 0
        while start >= 0 {
            let length = Int(list.ids[Int(start)])
            let symbol = text(Int(start), length)
            if let id = tables.idOfBytes[symbol], tables.kinds[Int(id)] != .byte {
                ids.append(id)
            } else {
                for byte in symbol {
                    if let id = byteTokens[Int(byte)] {
                        ids.append(id)
                    } else if let unknown = tables.unknownTokenID {
                        ids.append(unknown)
                        break
                    }
                }
            }
            start = list.next[Int(start)]
        }
    }

    /// Decodes, dropping the space the encoder put before the text: the leading space of the first token that
    /// is not a control token, when `add_space_prefix` is set.
    func decode(_ ids: [Int32], skipControlTokens: Bool) -> String {
        var bytes: [UInt8] = []
        var atStart = addSpacePrefix
        for id in ids {
            if tokenKind(id) == .control {
                if !skipControlTokens { bytes.append(contentsOf: tokenBytes(id)) }
                continue
            }
            let piece = tokenBytes(id)
            if atStart && piece.first == 0x20 {
                bytes.append(contentsOf: piece.dropFirst())
            } else {
                bytes.append(contentsOf: piece)
            }
            atStart = false
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    func tokenBytes(_ id: Int32) -> [UInt8] {
        tables.isValid(id) ? bytesOfToken[Int(id)] : VocabularyTables.replacementBytes
    }

    func tokenKind(_ id: Int32) -> TokenKind { tables.kind(id) }
}
