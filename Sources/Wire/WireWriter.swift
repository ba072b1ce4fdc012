/// Where `WireCodec.serialize` puts a message's fields: a byte counter or a writer.
protocol WireSink {
    mutating func u8(_ value: UInt8)
    mutating func u16(_ value: UInt16)
    mutating func u32(_ value: UInt32)
    mutating func u64(_ value: UInt64)
    mutating func f32(_ value: Float)
    mutating func string(_ value: String)
    mutating func u32Array(_ values: [UInt32])
    mutating func f32Array(_ values: [Float])
}

extension WireSink {
    /// A presence byte (0 or 1), then the value when there is one.
    mutating func optional<T>(_ value: T?, _ write: (inout Self, T) -> Void) {
        if let value {
            u8(1)
            write(&self, value)
        } else {
            u8(0)
        }
    }
}

/// Counts the bytes of a frame without writing it.
struct SizeCounter: WireSink {
    var count = 0
    mutating func u8(_ value: UInt8) { count &+= 1 }
    mutating func u16(_ value: UInt16) { count &+= 2 }
    mutating func u32(_ value: UInt32) { count &+= 4 }
    mutating func u64(_ value: UInt64) { count &+= 8 }
    mutating func f32(_ value: Float) { count &+= 4 }
    mutating func string(_ value: String) { count &+= 4 &+ value.utf8.count }
    mutating func u32Array(_ values: [UInt32]) { count &+= 4 &+ 4 &* values.count }
    mutating func f32Array(_ values: [Float]) { count &+= 4 &+ 4 &* values.count }
}

/// Writes a frame into memory sized by `SizeCounter` beforehand (so it never checks bounds itself).
struct WireWriter: WireSink {
    let base: UnsafeMutableRawPointer
    var offset = 0

    init(base: UnsafeMutableRawPointer) { self.base = base }

    @inline(__always)
    private mutating func fixed<T: FixedWidthInteger>(_ value: T) {
        base.storeBytes(of: value.littleEndian, toByteOffset: offset, as: T.self)
        offset &+= MemoryLayout<T>.size
    }

    mutating func u8(_ value: UInt8) { fixed(value) }
    mutating func u16(_ value: UInt16) { fixed(value) }
    mutating func u32(_ value: UInt32) { fixed(value) }
    mutating func u64(_ value: UInt64) { fixed(value) }
    mutating func f32(_ value: Float) { fixed(value.bitPattern) }

    mutating func string(_ value: String) {
        let utf8 = value.utf8
        fixed(UInt32(truncatingIfNeeded: utf8.count))
        let copied: Void? = utf8.withContiguousStorageIfAvailable { source in
            if let address = source.baseAddress {
                (base + offset).copyMemory(from: address, byteCount: source.count)
            }
        }
        if copied == nil {
            var at = offset
            for byte in utf8 {
                base.storeBytes(of: byte, toByteOffset: at, as: UInt8.self)
                at &+= 1
            }
        }
        offset &+= utf8.count
    }

    mutating func u32Array(_ values: [UInt32]) {
        fixed(UInt32(truncatingIfNeeded: values.count))
        #if _endian(big)
        for value in values { fixed(value) }
        #else
        values.withUnsafeBytes { source in
            if let address = source.baseAddress {
                (base + offset).copyMemory(from: address, byteCount: source.count)
            }
            offset &+= source.count
        }
        #endif
    }

    mutating func f32Array(_ values: [Float]) {
        fixed(UInt32(truncatingIfNeeded: values.count))
        #if _endian(big)
        for value in values { fixed(value.bitPattern) }
        #else
        values.withUnsafeBytes { source in
            if let address = source.baseAddress {
                (base + offset).copyMemory(from: address, byteCount: source.count)
            }
            offset &+= source.count
        }
        #endif
    }
}
