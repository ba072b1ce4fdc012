/// A bounds-checked cursor over a frame's bytes. Every read checks the bytes left before touching memory
/// or allocating, and offsets never overflow (a frame is at most `WireLimits.maxFrameBytes`).
struct WireReader {
    private let bytes: UnsafeRawBufferPointer
    private(set) var offset = 0

    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    /// The bytes not yet read.
    var remaining: Int { bytes.count &- offset }

    @inline(__always)
    private func truncated(_ field: StaticString) -> WireError {
        .truncated(field: "\(field)", offset: offset)
    }

    @inline(__always)
    private mutating func fixed<T: FixedWidthInteger>(_: T.Type, _ field: StaticString) throws(WireError) -> T {
        let size = MemoryLayout<T>.size
        guard remaining >= size else { throw truncated(field) }
        let value = bytes.loadUnaligned(fromByteOffset: offset, as: T.self)
        offset &+= size
        return T(littleEndian: value)
    }

    @inline(__always)
    mutating func u8(_ field: StaticString) throws(WireError) -> UInt8 { try fixed(UInt8.self, field) }
    @inline(__always)
    mutating func u16(_ field: StaticString) throws(WireError) -> UInt16 { try fixed(UInt16.self, field) }
    @inline(__always)
    mutating func u32(_ field: StaticString) throws(WireError) -> UInt32 { try fixed(UInt32.self, field) }
    @inline(__always)
    mutating func u64(_ field: StaticString) throws(WireError) -> UInt64 { try fixed(UInt64.self, field) }

    @inline(__always)
    mutating func f32(_ field: StaticString) throws(WireError) -> Float {
        Float(bitPattern: try fixed(UInt32.self, field))
    }

    mutating func bool(_ field: StaticString) throws(WireError) -> Bool {
        let byte = try u8(field)
        guard byte <= 1 else { throw .invalidValue(field: "\(field)", reason: "byte \(byte) is not a bool (0 or 1)") }
        return byte == 1
    }

    /// An element count, checked against `limit` and against the bytes left (each element takes at least
    /// `minElementBytes`), so that a caller may reserve that many elements.
    mutating func count(_ field: StaticString, limit: Int, minElementBytes: Int) throws(WireError) -> Int {
        let start = offset
        let count = Int(try u32(field))
        guard count <= limit else { throw .countOverLimit(field: "\(field)", count: count, limit: limit) }
        // count < 2^32 and minElementBytes is small: the product cannot overflow a 64-bit Int.
        let (needed, overflow) = count.multipliedReportingOverflow(by: minElementBytes)
        guard !overflow, needed <= remaining else { throw .truncated(field: "\(field)", offset: start) }
        return count
    }

    mutating func string(_ field: StaticString) throws(WireError) -> String {
        let length = try count(field, limit: WireLimits.maxStringBytes, minElementBytes: 1)
        if length == 0 { return "" }
        let slice = UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset &+ length)])
        let decoded = slice.withMemoryRebound(to: UInt8.self) { String(validating: $0, as: UTF8.self) }
        guard let decoded else { throw .invalidUTF8(field: "\(field)") }
        offset &+= length
        return decoded
    }

    mutating func u32Array(_ field: StaticString, limit: Int) throws(WireError) -> [UInt32] {
        let values = try rawArray(UInt32.self, field, limit: limit)
        #if _endian(big)
        return values.map { UInt32(littleEndian: $0) }
        #else
        return values
        #endif
    }

    mutating func f32Array(_ field: StaticString, limit: Int) throws(WireError) -> [Float] {
        let values = try rawArray(Float.self, field, limit: limit)
        #if _endian(big)
        return values.map { Float(bitPattern: UInt32(littleEndian: $0.bitPattern)) }
        #else
        return values
        #endif
    }

    /// `count` fixed-size values copied in one block, as they lie in the frame (little-endian).
    /// Inlined so that it is specialised: a generic array allocation looks its metadata up at run time.
    @inline(__always)
    private mutating func rawArray<T: BitwiseCopyable>(
        _: T.Type, _ field: StaticString, limit: Int
    ) throws(WireError) -> [T] {
        let size = MemoryLayout<T>.size
        let count = try count(field, limit: limit, minElementBytes: size)
        if count == 0 { return [] }
        let byteCount = count &* size
        let source = UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset &+ byteCount)])
        offset &+= byteCount
        return [T](unsafeUninitializedCapacity: count) { buffer, initialized in
            UnsafeMutableRawBufferPointer(buffer).copyMemory(from: source)
            initialized = count
        }
    }
}
