import CKernels
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

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
    /// The same weights in the layout of the packed-weight kernels (`withPackedLayout()`), or nil.
    public let packed: PackedWeights?

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
        packed = nil
    }

    private init(_ m: QuantizedMatrix, packed: PackedWeights) {
        type = m.type
        rows = m.rows
        columns = m.columns
        data = m.data
        rowBytes = m.rowBytes
        self.packed = packed
    }

    /// This matrix with a copy of its weights in the packed layout that `Kernels.matmul` reads with the C kernels,
    /// when they run on this CPU and read its type (Q4_1, Q8_0) and it has at least 8 rows; otherwise `self`.
    ///
    /// The copy costs as much memory as the weights (the original bytes stay where they are, for
    /// `dequantizeRow`); it is made once, when a model loads. A product with a packed matrix gives the same
    /// bits as the portable Swift kernels, whatever the batch.
    public func withPackedLayout() -> QuantizedMatrix {
        guard packed == nil, Kernels.packedKernels, rows >= 8, type == .q4_1 || type == .q8_0 else { return self }
        return QuantizedMatrix(self, packed: PackedWeights(self))
    }

    /// Whether the packed layout holds every row, so that products never need the Swift kernels' transposed
    /// activations.
    var fullyPacked: Bool { packed.map { 8 * $0.groups == rows } ?? false }

    /// The first byte of row `row`.
    @inlinable
    public func row(_ row: Int) -> UnsafeRawPointer { data + row * rowBytes }
}

/// A matrix's weights repacked for the C kernels: groups of 8 rows, block by block (see `CKernels.h`). The rows
/// past the last whole group are not packed; the Swift kernels compute them.
public final class PackedWeights: @unchecked Sendable {
    // Safe to share: written once in init, read-only afterwards.

    /// The packed bytes, 64-byte aligned, inside `chunk`.
    let bytes: UnsafeMutableRawPointer
    /// Whole groups of 8 rows.
    let groups: Int
    /// The memory the bytes live in, kept alive by every matrix in it.
    private let chunk: PackedChunk

    init(_ m: QuantizedMatrix) {
        groups = m.rows / 8
        let blocks = m.columns / 32
        let perGroupBlock = m.type == .q4_1 ? Int(MOPE_Q4_1_GROUP_BLOCK_BYTES) : Int(MOPE_Q8_0_GROUP_BLOCK_BYTES)
        (chunk, bytes) = PackedChunk.allocate(max(1, groups * blocks * perGroupBlock))
        let src = m.data.assumingMemoryBound(to: UInt8.self)
        let dst = bytes.assumingMemoryBound(to: UInt8.self)
        if m.type == .q4_1 {
            mope_q4_1_pack(src, dst, 8 * groups, blocks)
        } else {
            mope_q8_0_pack(src, dst, 8 * groups, blocks)
        }
    }
}

/// Memory for packed weights: chunks of at least 32 MB in 2 MB pages (transparent huge pages, where the kernel
/// grants them on request), handed out in order, so that the matrices of a model loaded together lie side by
/// side in few pages. A decode pass streams every byte of them: with 4 KB pages the hardware prefetchers stop at
/// each page boundary and the TLB misses add up (measured: a 1-row pass of all matmuls on one thread, 12.2–15.5 ms
/// in 4 KB pages, 9.2–10.1 ms in 2 MB pages; docs/benchmarks.md). A chunk is freed when the last matrix in it is.
final class PackedChunk: @unchecked Sendable {
    // Safe to share: the bytes are handed out once each, under `current`'s lock.
    static let page = 2 << 20
    static let minimumSize = 32 << 20
    private static let current = Mutex<(chunk: PackedChunk?, used: Int)>((nil, 0))

    let base: UnsafeMutableRawPointer
    let size: Int

    private init(size: Int) {
        self.size = size
        base = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: Self.page)
        #if canImport(Glibc)
        _ = madvise(base, size, MADV_HUGEPAGE)
        #endif
    }

    deinit { base.deallocate() }

    /// `count` bytes, 64-byte aligned, and the chunk they are in.
    static func allocate(_ count: Int) -> (PackedChunk, UnsafeMutableRawPointer) {
        let n = (count + 63) & ~63
        return current.withLock { state in
            if let chunk = state.chunk, state.used + n <= chunk.size {
                defer { state.used += n }
                return (chunk, chunk.base + state.used)
            }
            let chunk = PackedChunk(size: max(minimumSize, (n + page - 1) / page * page))
            state = (chunk, n)
            return (chunk, chunk.base)
        }
    }
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
