import CPUKernels

/// Serialises a GGUF file (version 3, little-endian): metadata key–value pairs and tensors, the layout
/// `GGUFFile` reads.
///
/// Pure: it builds the file's bytes in memory. Tensor data is copied as given (already in its GGML type's
/// block layout); each tensor starts at a multiple of `general.alignment` (32 unless the metadata says otherwise).
public struct GGUFWriter: Sendable {
    /// One tensor to write.
    public struct Tensor: Sendable {
        /// The name ("token_embd.weight").
        public var name: String
        /// The dimensions, innermost first (GGML's `ne`).
        public var shape: [Int]
        /// The element type.
        public var type: GGMLType
        /// The raw bytes, `type.byteCount(values:)` of the shape's element count.
        public var data: [UInt8]

        public init(name: String, shape: [Int], type: GGMLType, data: [UInt8]) {
            self.name = name
            self.shape = shape
            self.type = type
            self.data = data
        }
    }

    /// The metadata in file order.
    public private(set) var metadata: [(key: String, value: GGUFValue)] = []
    /// The tensors in file order.
    public private(set) var tensors: [Tensor] = []

    public init() {}

    /// Adds (or replaces, keeping its place) the metadata value `key`.
    public mutating func set(_ key: String, _ value: GGUFValue) {
        if let index = metadata.firstIndex(where: { $0.key == key }) {
            metadata[index].value = value
        } else {
            metadata.append((key, value))
        }
    }

    /// Adds a tensor.
    /// - Throws: `GGUFError.badShape` when the data's size does not match the shape and type, or
    ///   `.duplicateTensor` for a name already added.
    public mutating func add(_ tensor: Tensor) throws(GGUFError) {
        guard !tensor.shape.isEmpty, tensor.shape.count <= 4, tensor.shape.allSatisfy({ $0 > 0 }),
              tensor.shape[0] % tensor.type.blockSize == 0,
              let bytes = tensor.type.byteCount(values: tensor.shape.reduce(1, *)), bytes == tensor.data.count
        else {
            throw .badShape(tensor: tensor.name, shape: tensor.shape,
                            expected: "\(tensor.data.count) bytes of \(tensor.type.name) in 1 to 4 dimensions")
        }
        guard !tensors.contains(where: { $0.name == tensor.name }) else { throw .duplicateTensor(tensor.name) }
        tensors.append(tensor)
    }

    /// The file's bytes.
    public func bytes() -> [UInt8] {
        let alignment = metadata.first { $0.key == "general.alignment" }?.value.intValue ?? 32
        var out: [UInt8] = []
        out.reserveCapacity(tensors.reduce(4096) { $0 + $1.data.count + alignment })
        Self.put(UInt32(0x4655_4747), &out)
        Self.put(UInt32(3), &out)
        Self.put(UInt64(tensors.count), &out)
        Self.put(UInt64(metadata.count), &out)
        for (key, value) in metadata {
            Self.put(key, &out)
            Self.put(value.type.rawValue, &out)
            Self.put(value, &out)
        }
        var offsets: [Int] = []
        var offset = 0
        for tensor in tensors {
            offsets.append(offset)
            offset = (offset + tensor.data.count + alignment - 1) / alignment * alignment
        }
        for (tensor, offset) in zip(tensors, offsets) {
            Self.put(tensor.name, &out)
            Self.put(UInt32(tensor.shape.count), &out)
            for d in tensor.shape { Self.put(UInt64(d), &out) }
            Self.put(tensor.type.rawValue, &out)
            Self.put(UInt64(offset), &out)
        }
        let dataStart = (out.count + alignment - 1) / alignment * alignment
        out.append(contentsOf: repeatElement(0, count: dataStart - out.count))
        for (tensor, offset) in zip(tensors, offsets) {
            out.append(contentsOf: repeatElement(0, count: dataStart + offset - out.count))
            out.append(contentsOf: tensor.data)
        }
        return out
    }

    private static func put<T: FixedWidthInteger>(_ value: T, _ out: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { out.append(contentsOf: $0) }
    }

    private static func put(_ string: String, _ out: inout [UInt8]) {
        put(UInt64(string.utf8.count), &out)
        out.append(contentsOf: string.utf8)
    }

    private static func put(_ value: GGUFValue, _ out: inout [UInt8]) {
        switch value {
        case .uint8(let v): put(v, &out)
        case .int8(let v): put(v, &out)
        case .uint16(let v): put(v, &out)
        case .int16(let v): put(v, &out)
        case .uint32(let v): put(v, &out)
        case .int32(let v): put(v, &out)
        case .float32(let v): put(v.bitPattern, &out)
        case .bool(let v): out.append(v ? 1 : 0)
        case .string(let v): put(v, &out)
        case .uint64(let v): put(v, &out)
        case .int64(let v): put(v, &out)
        case .float64(let v): put(v.bitPattern, &out)
        case .array(let element, let values):
            put(element.rawValue, &out)
            put(UInt64(values.count), &out)
            for v in values { put(v, &out) }
        }
    }
}

extension GGUFFile {
    /// The raw bytes of tensor `info`.
    public func tensorBytes(_ info: GGUFTensorInfo) -> [UInt8] {
        [UInt8](UnsafeRawBufferPointer(start: tensorData(info), count: info.byteCount))
    }

    /// A small GGUF file with this model's tokenizer and none of its weights: every metadata value, and with
    /// `embeddings` the token embedding table (`token_embd.weight`, which the learned PCM reads). A coordinator
    /// reads it in place of a whole model file (the config's `tokenizer`).
    /// - Throws: `GGUFError` when the file has no tokenizer (or, with `embeddings`, no embedding table).
    public func tokenizerFile(embeddings: Bool) throws(GGUFError) -> [UInt8] {
        _ = try TokenizerVocabulary(gguf: self)
        var writer = GGUFWriter()
        for key in metadataKeys {
            if let value = metadata[key] { writer.set(key, value) }
        }
        writer.set("mope.tokenizer_only", .bool(true))
        if embeddings {
            guard let info = tensorInfo("token_embd.weight") else { throw .missingTensor("token_embd.weight") }
            try writer.add(.init(name: info.name, shape: info.shape, type: info.type, data: tensorBytes(info)))
        }
        return writer.bytes()
    }
}
