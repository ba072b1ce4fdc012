import CPUKernels

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One entry of a GGUF file's tensor table.
public struct GGUFTensorInfo: Sendable, Equatable {
    /// The tensor's name ("blk.0.attn_q.weight").
    public let name: String
    /// The dimensions, innermost first (GGML's `ne`): a matrix is `[columns, rows]`.
    public let shape: [Int]
    /// The element type.
    public let type: GGMLType
    /// Offset of the first byte from the start of the data section.
    public let offset: Int
    /// Size of the tensor's data in bytes.
    public let byteCount: Int

    /// Number of elements.
    public var elementCount: Int { shape.reduce(1, *) }
}

/// A GGUF model file (versions 1–3), memory-mapped read-only.
///
/// Layout: magic "GGUF", version, tensor count, metadata count, the metadata key–value pairs, the tensor
/// table (name, dimensions, type, offset), padding to `general.alignment` (default 32), then the tensor
/// data. Version 1 stores counts and string lengths as 32-bit numbers, versions 2 and 3 as 64-bit ones.
/// Opening checks the whole header and every tensor's extent, so accessors never read outside the file.
public final class GGUFFile: @unchecked Sendable {
    // Safe to share: every stored property is immutable after init, and the mapped bytes are read-only.

    /// The format version (1, 2 or 3).
    public let version: UInt32
    /// Metadata values by key.
    public let metadata: [String: GGUFValue]
    /// Metadata keys in file order.
    public let metadataKeys: [String]
    /// The tensor table in file order.
    public let tensors: [GGUFTensorInfo]
    /// The alignment of tensor data (`general.alignment`, default 32).
    public let alignment: Int
    /// Offset of the data section from the start of the file.
    public let dataOffset: Int
    /// Size of the file in bytes.
    public let fileSize: Int
    /// Bytes from the start of the file to the end of the tensor table (the header).
    public let headerSize: Int

    private let base: UnsafeRawPointer?
    private let release: Storage
    private let tensorIndex: [String: Int]

    private enum Storage {
        case mapped(UnsafeMutableRawPointer, Int)
        case owned(UnsafeMutableRawPointer)
        case none
    }

    /// Opens and maps the file at `path` read-only.
    /// - Throws: `GGUFError` when the file cannot be read or is not a well-formed GGUF file.
    public convenience init(path: String) throws(GGUFError) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .unreadable(path: path, reason: Self.errnoText()) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw .unreadable(path: path, reason: Self.errnoText()) }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw .unreadable(path: path, reason: "not a regular file")
        }
        let size = Int(st.st_size)
        if size == 0 {
            try self.init(storage: .none, base: nil, size: 0)
            return
        }
        guard let mapped = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), mapped != MAP_FAILED else {
            throw .unreadable(path: path, reason: Self.errnoText())
        }
        try self.init(storage: .mapped(mapped, size), base: UnsafeRawPointer(mapped), size: size)
    }

    /// Reads a GGUF file held in memory (the bytes are copied).
    /// - Throws: `GGUFError` when the bytes are not a well-formed GGUF file.
    public convenience init(bytes: [UInt8]) throws(GGUFError) {
        if bytes.isEmpty {
            try self.init(storage: .none, base: nil, size: 0)
            return
        }
        // Allocated with a generous alignment so tensor data keeps the file's alignment in memory.
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: bytes.count, alignment: 64)
        bytes.withUnsafeBytes { buffer.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
        try self.init(storage: .owned(buffer), base: UnsafeRawPointer(buffer), size: bytes.count)
    }

    private init(storage: Storage, base: UnsafeRawPointer?, size: Int) throws(GGUFError) {
        // Release the storage if parsing fails (deinit does not run for a failed init).
        var parsed = false
        defer { if !parsed { Self.free(storage) } }

        var reader = Reader(base: base, size: size)
        let magic = try reader.read(UInt32.self)
        guard magic == 0x4655_4747 else { throw .badMagic(found: magic) }
        let version = try reader.read(UInt32.self)
        guard (1...3).contains(version) else { throw .unsupportedVersion(version) }
        reader.wideCounts = version >= 2
        let tensorCount = try reader.readCount()
        let metadataCount = try reader.readCount()
        // Each metadata pair takes at least 8 + 4 bytes, each tensor entry at least 8 + 4 + 4 + 8.
        // A count larger than the rest of the file can hold means the file was cut short (or is damaged).
        guard metadataCount <= UInt64(reader.remaining / 12) else {
            throw .truncated(offset: reader.offset, needed: Int(clamping: metadataCount.multipliedReportingOverflow(
                by: 12).partialValue), fileSize: size)
        }
        guard tensorCount <= UInt64(reader.remaining / 24) else {
            throw .truncated(offset: reader.offset, needed: Int(clamping: tensorCount.multipliedReportingOverflow(
                by: 24).partialValue), fileSize: size)
        }

        var metadata: [String: GGUFValue] = [:]
        var keys: [String] = []
        keys.reserveCapacity(Int(metadataCount))
        for _ in 0..<Int(metadataCount) {
            let key = try reader.readString()
            let rawType = try reader.read(UInt32.self)
            guard let type = GGUFValueType(rawValue: rawType) else {
                throw .unknownValueType(key: key, type: rawType)
            }
            let value = try reader.readValue(type: type, key: key, depth: 0)
            if metadata.updateValue(value, forKey: key) == nil { keys.append(key) }
        }

        var alignment = 32
        if let value = metadata["general.alignment"] {
            guard let a = value.intValue else {
                throw .wrongMetadataType(key: "general.alignment", expected: "an integer", found: value.typeDescription)
            }
            guard a > 0, a & (a - 1) == 0, a <= 1 << 20 else { throw .badAlignment(UInt64(max(a, 0))) }
            alignment = a
        }

        struct RawTensor { var name: String; var shape: [Int]; var rawType: UInt32; var offset: UInt64 }
        var raw: [RawTensor] = []
        raw.reserveCapacity(Int(tensorCount))
        for _ in 0..<Int(tensorCount) {
            let name = try reader.readString()
            let dims = try reader.read(UInt32.self)
            guard (1...4).contains(dims) else {
                throw .badShape(tensor: name, shape: [], expected: "1 to 4 dimensions, found \(dims)")
            }
            var shape: [Int] = []
            for _ in 0..<dims {
                let d = reader.wideCounts ? try reader.read(UInt64.self) : UInt64(try reader.read(UInt32.self))
                guard d > 0, d <= UInt64(Int32.max) else {
                    throw .badShape(tensor: name, shape: shape + [Int(truncatingIfNeeded: d)],
                                    expected: "every dimension between 1 and 2^31")
                }
                shape.append(Int(d))
            }
            let rawType = try reader.read(UInt32.self)
            let offset = try reader.read(UInt64.self)
            raw.append(RawTensor(name: name, shape: shape, rawType: rawType, offset: offset))
        }
        let headerSize = reader.offset
        let dataOffset = (headerSize + alignment - 1) / alignment * alignment

        var tensors: [GGUFTensorInfo] = []
        var index: [String: Int] = [:]
        tensors.reserveCapacity(raw.count)
        for t in raw {
            guard let type = GGMLType(rawValue: t.rawType) else {
                throw .unknownTensorType(tensor: t.name, type: t.rawType)
            }
            var count = 1
            for d in t.shape {
                let (p, overflow) = count.multipliedReportingOverflow(by: d)
                guard !overflow else { throw .badShape(tensor: t.name, shape: t.shape, expected: "fewer elements") }
                count = p
            }
            guard t.shape[0] % type.blockSize == 0, let bytes = type.byteCount(values: count) else {
                throw .badShape(tensor: t.name, shape: t.shape,
                                expected: "a first dimension that is a multiple of \(type.blockSize) for \(type.name)")
            }
            guard t.offset % UInt64(alignment) == 0 else {
                throw .misalignedTensor(tensor: t.name, offset: t.offset, alignment: alignment)
            }
            let available = UInt64(max(0, size - dataOffset))
            guard t.offset <= available, UInt64(bytes) <= available - t.offset else {
                throw .tensorOutOfBounds(tensor: t.name, offset: t.offset, size: UInt64(bytes), fileSize: size)
            }
            guard index.updateValue(tensors.count, forKey: t.name) == nil else { throw .duplicateTensor(t.name) }
            tensors.append(GGUFTensorInfo(name: t.name, shape: t.shape, type: type, offset: Int(t.offset),
                                          byteCount: bytes))
        }

        self.version = version
        self.metadata = metadata
        self.metadataKeys = keys
        self.tensors = tensors
        self.alignment = alignment
        self.dataOffset = dataOffset
        self.fileSize = size
        self.headerSize = headerSize
        self.base = base
        self.release = storage
        self.tensorIndex = index
        parsed = true
    }

    deinit { Self.free(release) }

    private static func free(_ storage: Storage) {
        switch storage {
        case .mapped(let p, let size): munmap(p, size)
        case .owned(let p): p.deallocate()
        case .none: break
        }
    }

    private static func errnoText() -> String {
        let code = errno
        return String(cString: strerror(code)) + " (errno \(code))"
    }

    // MARK: Raw bytes

    /// The file's bytes from `offset` for `count` bytes; the range must lie inside the file.
    func bytes(at offset: Int, count: Int) -> UnsafeRawBufferPointer {
        precondition(offset >= 0 && count >= 0 && offset + count <= fileSize)
        guard let base else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        return UnsafeRawBufferPointer(start: base + offset, count: count)
    }

    // MARK: Tensors

    /// The tensor-table entry named `name`, or nil.
    public func tensorInfo(_ name: String) -> GGUFTensorInfo? {
        tensorIndex[name].map { tensors[$0] }
    }

    /// The first byte of a tensor's data.
    public func tensorData(_ info: GGUFTensorInfo) -> UnsafeRawPointer {
        // A file with tensors has a non-empty mapping: every tensor was checked to lie inside it.
        base! + dataOffset + info.offset
    }

    /// The 2-D tensor `name` as a matrix the kernels read (rows = `shape[1]`, columns = `shape[0]`).
    /// - Throws: `.missingTensor`, `.badShape` for a tensor that is not 2-D, `.unsupportedTensorType`.
    public func matrix(_ name: String) throws(GGUFError) -> QuantizedMatrix {
        guard let info = tensorInfo(name) else { throw .missingTensor(name) }
        guard info.shape.count == 2 || (info.shape.count > 2 && info.shape[2...].allSatisfy { $0 == 1 }) else {
            throw .badShape(tensor: name, shape: info.shape, expected: "a matrix")
        }
        do {
            return try QuantizedMatrix(type: info.type, rows: info.shape[1], columns: info.shape[0],
                                       data: tensorData(info))
        } catch {
            switch error {
            case .unsupportedType(let t): throw .unsupportedTensorType(tensor: name, type: t)
            case .badShape: throw .badShape(tensor: name, shape: info.shape, expected: "whole blocks per row")
            }
        }
    }

    /// The tensor `name` as `Float`s (any type the kernels read; quantised data is dequantised).
    /// - Throws: `.missingTensor`, `.unsupportedTensorType`.
    public func floats(_ name: String) throws(GGUFError) -> [Float] {
        guard let info = tensorInfo(name) else { throw .missingTensor(name) }
        let columns = info.shape[0]
        let rows = info.elementCount / columns
        let m: QuantizedMatrix
        do {
            m = try QuantizedMatrix(type: info.type, rows: rows, columns: columns, data: tensorData(info))
        } catch {
            switch error {
            case .unsupportedType(let t): throw .unsupportedTensorType(tensor: name, type: t)
            case .badShape: throw .badShape(tensor: name, shape: info.shape, expected: "whole blocks per row")
            }
        }
        return [Float](unsafeUninitializedCapacity: info.elementCount) { buffer, initialized in
            for r in 0..<rows { Kernels.dequantizeRow(m, row: r, into: buffer.baseAddress! + r * columns) }
            initialized = info.elementCount
        }
    }

    // MARK: Metadata

    /// The metadata value under `key`, or nil.
    public func value(_ key: String) -> GGUFValue? { metadata[key] }

    /// The string under `key`.
    /// - Throws: `.missingMetadata` or `.wrongMetadataType`.
    public func string(_ key: String) throws(GGUFError) -> String {
        let v = try required(key)
        guard case .string(let s) = v else {
            throw .wrongMetadataType(key: key, expected: "string", found: v.typeDescription)
        }
        return s
    }

    /// The integer under `key` (any integer type).
    /// - Throws: `.missingMetadata` or `.wrongMetadataType`.
    public func int(_ key: String) throws(GGUFError) -> Int {
        let v = try required(key)
        guard let i = v.intValue else {
            throw .wrongMetadataType(key: key, expected: "integer", found: v.typeDescription)
        }
        return i
    }

    /// The number under `key` (a float or an integer type).
    /// - Throws: `.missingMetadata` or `.wrongMetadataType`.
    public func float(_ key: String) throws(GGUFError) -> Double {
        let v = try required(key)
        guard let f = v.floatValue else {
            throw .wrongMetadataType(key: key, expected: "number", found: v.typeDescription)
        }
        return f
    }

    /// The boolean under `key`.
    /// - Throws: `.missingMetadata` or `.wrongMetadataType`.
    public func bool(_ key: String) throws(GGUFError) -> Bool {
        let v = try required(key)
        guard case .bool(let b) = v else {
            throw .wrongMetadataType(key: key, expected: "bool", found: v.typeDescription)
        }
        return b
    }

    /// The array of strings under `key`.
    /// - Throws: `.missingMetadata` or `.wrongMetadataType`.
    public func strings(_ key: String) throws(GGUFError) -> [String] {
        let v = try required(key)
        guard case .array(.string, let values) = v else {
            throw .wrongMetadataType(key: key, expected: "array of string", found: v.typeDescription)
        }
        return values.map { if case .string(let s) = $0 { s } else { "" } }
    }

    /// The array of integers under `key`, as `Int32` (any integer element type whose values fit).
    /// - Throws: `.missingMetadata` or `.wrongMetadataType`.
    public func int32s(_ key: String) throws(GGUFError) -> [Int32] {
        let v = try required(key)
        guard case .array(_, let values) = v else {
            throw .wrongMetadataType(key: key, expected: "array of integers", found: v.typeDescription)
        }
        var out: [Int32] = []
        out.reserveCapacity(values.count)
        for element in values {
            guard let i = element.intValue, let i32 = Int32(exactly: i) else {
                throw .wrongMetadataType(key: key, expected: "array of 32-bit integers", found: v.typeDescription)
            }
            out.append(i32)
        }
        return out
    }

    /// The array of numbers under `key`, as `Float`.
    /// - Throws: `.missingMetadata` or `.wrongMetadataType`.
    public func floatArray(_ key: String) throws(GGUFError) -> [Float] {
        let v = try required(key)
        guard case .array(_, let values) = v else {
            throw .wrongMetadataType(key: key, expected: "array of numbers", found: v.typeDescription)
        }
        var out: [Float] = []
        out.reserveCapacity(values.count)
        for element in values {
            guard let f = element.floatValue else {
                throw .wrongMetadataType(key: key, expected: "array of numbers", found: v.typeDescription)
            }
            out.append(Float(f))
        }
        return out
    }

    private func required(_ key: String) throws(GGUFError) -> GGUFValue {
        guard let v = metadata[key] else { throw .missingMetadata(key: key) }
        return v
    }
}

// MARK: - Reader

/// A bounds-checked little-endian cursor over the file's bytes.
private struct Reader {
    let base: UnsafeRawPointer?
    let size: Int
    var offset = 0
    /// Counts and string lengths are 64-bit (version ≥ 2) or 32-bit (version 1).
    var wideCounts = true

    init(base: UnsafeRawPointer?, size: Int) {
        self.base = base
        self.size = size
    }

    var remaining: Int { size - offset }

    mutating func need(_ n: Int) throws(GGUFError) -> UnsafeRawPointer {
        guard n >= 0, n <= remaining, let base else { throw .truncated(offset: offset, needed: n, fileSize: size) }
        let p = base + offset
        offset += n
        return p
    }

    mutating func read<T: FixedWidthInteger>(_: T.Type) throws(GGUFError) -> T {
        let p = try need(MemoryLayout<T>.size)
        return T(littleEndian: p.loadUnaligned(as: T.self))
    }

    mutating func readCount() throws(GGUFError) -> UInt64 {
        wideCounts ? try read(UInt64.self) : UInt64(try read(UInt32.self))
    }

    mutating func readString() throws(GGUFError) -> String {
        let start = offset
        let length = try readCount()
        guard length <= UInt64(remaining) else {
            throw .truncated(offset: offset, needed: Int(clamping: length), fileSize: size)
        }
        let p = try need(Int(length))
        let bytes = UnsafeRawBufferPointer(start: p, count: Int(length))
        guard let s = String(validating: bytes.bindMemory(to: UInt8.self), as: UTF8.self) else {
            throw .invalidString(offset: start)
        }
        return s
    }

    mutating func readValue(type: GGUFValueType, key: String, depth: Int) throws(GGUFError) -> GGUFValue {
        switch type {
        case .uint8: return .uint8(try read(UInt8.self))
        case .int8: return .int8(try read(Int8.self))
        case .uint16: return .uint16(try read(UInt16.self))
        case .int16: return .int16(try read(Int16.self))
        case .uint32: return .uint32(try read(UInt32.self))
        case .int32: return .int32(try read(Int32.self))
        case .float32: return .float32(Float(bitPattern: try read(UInt32.self)))
        case .bool: return .bool(try read(UInt8.self) != 0)
        case .string: return .string(try readString())
        case .uint64: return .uint64(try read(UInt64.self))
        case .int64: return .int64(try read(Int64.self))
        case .float64: return .float64(Double(bitPattern: try read(UInt64.self)))
        case .array:
            let rawElement = try read(UInt32.self)
            guard let element = GGUFValueType(rawValue: rawElement) else {
                throw .unknownValueType(key: key, type: rawElement)
            }
            let count = try readCount()
            // Every element takes at least one byte (a string at least its length field).
            let minWidth = element.fixedWidth ?? (element == .string ? (wideCounts ? 8 : 4) : 12)
            guard count <= UInt64(remaining / minWidth) else {
                throw .truncated(offset: offset, needed: Int(clamping: count.multipliedReportingOverflow(
                    by: UInt64(minWidth)).partialValue), fileSize: size)
            }
            guard depth < 4 else { throw .implausibleCount(what: "levels of nested arrays", count: UInt64(depth + 1)) }
            var values: [GGUFValue] = []
            values.reserveCapacity(Int(count))
            for _ in 0..<Int(count) {
                values.append(try readValue(type: element, key: key, depth: depth + 1))
            }
            return .array(elementType: element, values: values)
        }
    }
}
