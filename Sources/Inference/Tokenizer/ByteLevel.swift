/// GPT-2's reversible mapping between bytes and printable Unicode scalars, in which byte-level BPE
/// vocabularies are written (a space is "Ġ", a newline "Ċ").
///
/// Printable Latin-1 bytes (`!`…`~`, `¡`…`¬`, `®`…`ÿ`) stand for themselves; the other 68 bytes are given the
/// scalars from U+0100 upward, in byte order.
enum ByteLevel {
    /// The scalar each byte is written as.
    static let scalarOfByte: [Unicode.Scalar] = {
        var table = [Unicode.Scalar](repeating: "\0", count: 256)
        var next: UInt32 = 256
        for byte in 0 ..< 256 {
            let printable = (0x21 ... 0x7E).contains(byte) || (0xA1 ... 0xAC).contains(byte)
                || (0xAE ... 0xFF).contains(byte)
            if printable {
                table[byte] = Unicode.Scalar(UInt8(byte))
            } else {
                table[byte] = Unicode.Scalar(next) ?? "\0"
                next += 1
            }
        }
        return table
    }()

    /// The byte a scalar stands for, or nil if it is not one of the 256 mapped scalars.
    static func byte(of scalar: Unicode.Scalar) -> UInt8? {
        let v = scalar.value
        if v < 0x100 {
            let printable = (0x21 ... 0x7E).contains(v) || (0xA1 ... 0xAC).contains(v) || (0xAE ... 0xFF).contains(v)
            return printable ? UInt8(v) : nil
        }
        return byteOfHighScalar[Int(v - 0x100)]
    }

    /// Bytes for the scalars U+0100 … U+0143.
    private static let byteOfHighScalar: [Int: UInt8] = {
        var table: [Int: UInt8] = [:]
        for (byte, scalar) in scalarOfByte.enumerated() where scalar.value >= 0x100 {
            table[Int(scalar.value - 0x100)] = UInt8(byte)
        }
        return table
    }()

    /// The byte-level spelling of raw bytes.
    static func encode(_ bytes: some Sequence<UInt8>) -> String {
        var view = String.UnicodeScalarView()
        for byte in bytes { view.append(scalarOfByte[Int(byte)]) }
        return String(view)
    }

    /// The raw bytes a byte-level token spells; a scalar outside the mapping is kept as its own UTF-8.
    static func decode(_ text: String) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count)
        for scalar in text.unicodeScalars {
            if let byte = byte(of: scalar) {
                bytes.append(byte)
            } else {
                bytes.append(contentsOf: String(scalar).utf8)
            }
        }
        return bytes
    }
}
