/// `text` as a log line may show it when a peer chose it (a worker id, a routing identity): printable ASCII as is,
/// a backslash doubled, every other byte of its UTF-8 as `\xNN`. A peer cannot start a new line, move the
/// cursor or forge another log line through its name.
public func logEscaped(_ text: String) -> String {
    logEscaped(bytes: Array(text.utf8))
}

/// `bytes` (a routing identity, not necessarily UTF-8) escaped as ``logEscaped(_:)`` escapes text.
public func logEscaped(bytes: [UInt8]) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var out: [UInt8] = []
    out.reserveCapacity(bytes.count)
    for byte in bytes {
        switch byte {
        case UInt8(ascii: "\\"): out += [byte, byte]
        case 0x20...0x7E: out.append(byte)
        default: out += [UInt8(ascii: "\\"), UInt8(ascii: "x"), digits[Int(byte >> 4)], digits[Int(byte & 0xF)]]
        }
    }
    return String(decoding: out, as: UTF8.self)
}
