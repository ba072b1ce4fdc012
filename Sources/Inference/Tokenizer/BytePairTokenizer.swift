import Synchronization

/// Byte-level BPE (GPT-2 style), the tokenizer of SmolLM2, Qwen2 and Llama 3.
///
/// Text is cut at special tokens, split into pieces by the model's ``PreTokenizer`` rules, each piece's UTF-8
/// bytes are spelled with ``ByteLevel`` scalars, and within each piece the adjacent pair of lowest merge rank is
/// joined (leftmost first among equals) until no ranked pair remains. Piece results are cached.
struct BytePairTokenizer: Tokenizer {
    let tables: VocabularyTables
    let preTokenizer: PreTokenizer
    let addsBOS: Bool
    /// The token of each byte's scalar; nil where the vocabulary lacks it (such bytes are dropped, as Hugging Face
    /// tokenizers without an unknown token and llama.cpp do: SmolLM2 has no token for a few control bytes).
    private let byteTokens: [Int32?]
    /// (left id, right id) packed into 64 bits → (rank, merged id).
    private let merges: [UInt64: (rank: Int32, merged: Int32)]
    /// Decoded bytes of every token.
    private let bytesOfToken: [[UInt8]]
    private let cache = PieceCache()

    init(_ vocabulary: TokenizerVocabulary) throws(TokenizerError) {
        let tables = try VocabularyTables(vocabulary)
        self.tables = tables
        preTokenizer = try PreTokenizer(name: vocabulary.pre)
        addsBOS = vocabulary.addBOS && tables.bosTokenID != nil
        byteTokens = ByteLevel.scalarOfByte.map { tables.id(of: String($0)) }

        var merges: [UInt64: (rank: Int32, merged: Int32)] = [:]
        merges.reserveCapacity(vocabulary.merges.count)
        for (index, line) in vocabulary.merges.enumerated() {
            // The separator is the first space after the first character (a token may itself be a space).
            let scalars = line.unicodeScalars
            guard !scalars.isEmpty,
                  let cut = scalars[scalars.index(after: scalars.startIndex)...].firstIndex(of: " ")
            else { throw .badMerge(index: index, line: line) }
            let left = String(scalars[..<cut])
            let right = String(scalars[scalars.index(after: cut)...])
            guard !right.isEmpty else { throw .badMerge(index: index, line: line) }
            guard let leftID = tables.id(of: left) else { throw .mergeTokenMissing(index: index, token: left) }
            guard let rightID = tables.id(of: right) else { throw .mergeTokenMissing(index: index, token: right) }
            guard let mergedID = tables.id(of: left + right) else {
                throw .mergeTokenMissing(index: index, token: left + right)
            }
            let key = UInt64(UInt32(bitPattern: leftID)) << 32 | UInt64(UInt32(bitPattern: rightID))
            if merges[key] == nil { merges[key] = (Int32(index), mergedID) }
        }
        self.merges = merges

        bytesOfToken = zip(tables.tokens, tables.kinds).map { text, kind in
            switch kind {
            case .control, .userDefined, .unknown: Array(text.utf8)
            default: ByteLevel.decode(text)
            }
        }
    }

    var vocabSize: Int { tables.tokens.count }
    var bosTokenID: Int32? { tables.bosTokenID }
    var eosTokenIDs: [Int32] { tables.eosTokenIDs }

    func encode(_ prompt: [PromptSegment]) -> [Int32] {
        var ids: [Int32] = []
        if addsBOS, let bos = tables.bosTokenID { ids.append(bos) }
        for fragment in tables.specials.split(prompt) {
            switch fragment {
            case .token(let id):
                ids.append(id)
            case .text(let text):
                let scalars = Array(text.unicodeScalars)
                let utf8 = Array(text.utf8)
                // Byte offset of each scalar, and of the end.
                var offsets: [Int] = []
                offsets.reserveCapacity(scalars.count + 1)
                var offset = 0
                for scalar in scalars {
                    offsets.append(offset)
                    offset += UTF8.width(scalar)
                }
                offsets.append(offset)
                for range in preTokenizer.pieceRanges(scalars) {
                    let bytes = utf8[offsets[range.lowerBound] ..< offsets[range.upperBound]]
                    ids.append(contentsOf: encodePiece(Array(bytes)))
                }
            }
        }
        return ids
    }

    /// The ids of one pre-tokenizer piece, given as UTF-8.
    func encodePiece(_ piece: [UInt8]) -> [Int32] {
        if let cached = cache.lookup(piece) { return cached }
        // Llama 3 takes a piece that is a whole token as is, whatever the merges would make of it.
        if preTokenizer == .llama3, let id = tables.id(of: ByteLevel.encode(piece)) {
            cache.store(piece, [id])
            return [id]
        }
        let symbols = piece.compactMap { byteTokens[Int($0)] }
        let ids = symbols.count < 2 ? symbols : merge(symbols)
        cache.store(piece, ids)
        return ids
    }

    private struct Candidate: Comparable {
        let rank: Int32
        let left: Int32
        let leftID: Int32
        let rightID: Int32
        let merged: Int32

        static func < (a: Candidate, b: Candidate) -> Bool {
            a.rank != b.rank ? a.rank < b.rank : a.left < b.left
        }
    }

    private func candidate(_ list: SymbolList, _ left: Int32) -> Candidate? {
        guard left >= 0 else { return nil }
        let right = list.next[Int(left)]
        guard right >= 0 else { return nil }
        let a = list.ids[Int(left)], b = list.ids[Int(right)]
        let key = UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b))
        guard let merge = merges[key] else { return nil }
        return Candidate(rank: merge.rank, left: left, leftID: a, rightID: b, merged: merge.merged)
    }

    private func merge(_ symbols: [Int32]) -> [Int32] {
        var list = SymbolList(symbols)
        var queue = MinHeap<Candidate>()
        for i in 0 ..< Int32(symbols.count - 1) {
            if let c = candidate(list, i) { queue.push(c) }
        }
        while let c = queue.pop() {
            let left = Int(c.left)
            // Skip candidates made stale by an earlier merge.
            guard list.alive[left], list.ids[left] == c.leftID else { continue }
            let right = list.next[left]
            guard right >= 0, list.ids[Int(right)] == c.rightID else { continue }
            list.merge(left, into: c.merged)
            if let p = candidate(list, list.previous[left]) { queue.push(p) }
            if let n = candidate(list, c.left) { queue.push(n) }
        }
        return list.result
    }

    func decode(_ ids: [Int32], skipControlTokens: Bool) -> String {
        String(decoding: decodeBytes(ids, skipControlTokens: skipControlTokens), as: UTF8.self)
    }

    func tokenBytes(_ id: Int32) -> [UInt8] {
        tables.isValid(id) ? bytesOfToken[Int(id)] : VocabularyTables.replacementBytes
    }

    func tokenKind(_ id: Int32) -> TokenKind { tables.kind(id) }
}

/// Remembers the ids of recently seen pieces; shared by every copy of a tokenizer, safe across threads.
final class PieceCache: Sendable {
    /// Keyed by UTF-8 bytes: `String` keys would merge canonically equivalent pieces with different bytes.
    private let entries = Mutex<[[UInt8]: [Int32]]>([:])
    /// Past this many pieces the cache starts over, bounding its memory.
    private let capacity = 65_536
    /// Longer pieces (runs of spaces, long words) are not worth keeping.
    private let longestPiece = 128

    func lookup(_ piece: [UInt8]) -> [Int32]? {
        entries.withLock { $0[piece] }
    }

    func store(_ piece: [UInt8], _ ids: [Int32]) {
        guard piece.count <= longestPiece else { return }
        entries.withLock { entries in
            if entries.count >= capacity { entries.removeAll(keepingCapacity: true) }
            entries[piece] = ids
        }
    }
}
