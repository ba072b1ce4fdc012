/// One piece of input text after special tokens are cut out of it.
enum TextFragment: Equatable {
    /// Ordinary text, tokenized by the model's rules.
    case text(String)
    /// A special token matched literally.
    case token(Int32)
}

/// Finds control and user-defined tokens in text, leftmost first and longest at a position.
struct SpecialTokenMatcher: Sendable {
    private struct Entry: Sendable {
        let bytes: [UInt8]
        let id: Int32
        /// User-defined tokens match even when special tokens are not parsed.
        let always: Bool
    }

    /// Candidates by first byte, longest first.
    private let byFirstByte: [UInt8: [Entry]]
    private let hasAlways: Bool

    init(_ tokens: [(text: String, id: Int32, always: Bool)]) {
        var table: [UInt8: [Entry]] = [:]
        for token in tokens {
            let bytes = Array(token.text.utf8)
            guard let first = bytes.first else { continue }
            table[first, default: []].append(Entry(bytes: bytes, id: token.id, always: token.always))
        }
        for key in table.keys {
            table[key]?.sort { $0.bytes.count > $1.bytes.count || ($0.bytes.count == $1.bytes.count && $0.id < $1.id) }
        }
        byFirstByte = table
        hasAlways = tokens.contains { $0.always }
    }

    /// `text` split around the special tokens found in it; control tokens only when `parseSpecial`.
    func split(_ text: String, parseSpecial: Bool) -> [TextFragment] {
        if byFirstByte.isEmpty || (!parseSpecial && !hasAlways) {
            return text.isEmpty ? [] : [.text(text)]
        }
        let bytes = Array(text.utf8)
        var fragments: [TextFragment] = []
        var textStart = 0
        var i = 0
        while i < bytes.count {
            guard let candidates = byFirstByte[bytes[i]],
                  let match = candidates.first(where: { entry in
                      (parseSpecial || entry.always) && entry.bytes.count <= bytes.count - i
                          && bytes[i ..< i + entry.bytes.count].elementsEqual(entry.bytes)
                  })
            else {
                i += 1
                continue
            }
            if textStart < i {
                fragments.append(.text(String(decoding: bytes[textStart ..< i], as: UTF8.self)))
            }
            fragments.append(.token(match.id))
            i += match.bytes.count
            textStart = i
        }
        if textStart < bytes.count {
            fragments.append(.text(String(decoding: bytes[textStart...], as: UTF8.self)))
        }
        return fragments
    }
}
