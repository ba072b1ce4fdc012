/// A row-major matrix stored in one of the GGML block formats, usually pointing into a memory-mapped
/// model file.
///
/// In GGUF terms a 2-D tensor of shape `[ne0, ne1]` has `ne1` rows of `ne0` contiguous values:
/// `columns = ne0`, `rows = ne1`. A matrix–vector product `y = W·x` takes `x` of length `columns` and
/// gives `y` of length `rows`.
public struct QuantizedMatrix: @unchecked Sendable {
    // Safe to share: the bytes are read-only (a private read-only mapping or an immutable buffer
    // owned by the model) and outlive every matrix that points into them.

    /// The element type.
    public let type: GGMLType
    /// Number of rows (outputs).
    public let rows: Int
    /// Number of columns (inputs); a whole number of blocks.
    public let columns: Int
    /// The first byte of row 0.
    public let data: UnsafeRawPointer
    /// Bytes per row.
    public let rowBytes: Int

    /// Wraps `rows × columns` values of `type` starting at `data`.
    /// - Throws: `KernelError.unsupportedType` for a type the kernels cannot read,
    ///   `KernelError.badShape` when `columns` is not a whole number of blocks.
    public init(type: GGMLType, rows: Int, columns: Int, data: UnsafeRawPointer) throws(KernelError) {
        guard Kernels.supportedTypes.contains(type) else { throw .unsupportedType(type) }
        guard rows > 0, columns > 0, let rowBytes = type.byteCount(values: columns) else {
            throw .badShape(type: type, rows: rows, columns: columns)
        }
        self.type = type
        self.rows = rows
        self.columns = columns
        self.data = data
        self.rowBytes = rowBytes
    }

    /// The first byte of row `row`.
    @inlinable
    public func row(_ row: Int) -> UnsafeRawPointer { data + row * rowBytes }
}

/// Why a matrix cannot be used by the kernels.
public enum KernelError: Error, Equatable, CustomStringConvertible {
    /// The kernels do not implement this tensor type.
    case unsupportedType(GGMLType)
    /// The shape does not fit the type's blocks.
    case badShape(type: GGMLType, rows: Int, columns: Int)

    public var description: String {
        switch self {
        case .unsupportedType(let t):
            "tensor type \(t.name) is not supported (supported: "
                + Kernels.supportedTypes.map(\.name).sorted().joined(separator: ", ") + ")"
        case .badShape(let t, let r, let c):
            "a \(r)×\(c) matrix cannot be stored as \(t.name): columns must be a positive multiple of \(t.blockSize)"
        }
    }
}
