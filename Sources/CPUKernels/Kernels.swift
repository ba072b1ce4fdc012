import CKernels
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Compute kernels over quantised weights.
///
/// Contract (the model code relies on it):
/// - `dequantizeRow` writes one row as `Float`s.
/// - `matmul` computes `out[t·rows + r] = Σ_c W[r, c] · x[t·columns + c]` for every `t < batch`.
///
/// How `matmul` is fast on a CPU (the scheme of llama.cpp's CPU backend):
/// 1. The input rows are quantised once per call to 8-bit blocks of 32 (`QuantizedActivations`).
/// 2. Each weight block meets an input block in an exact integer dot product (plain `Int32` loops that
///    compile to `vpmaddwd`/`vpdpwssd`), scaled by the two blocks' scales: `Kernels+Quantized.swift`,
///    `Kernels+KQuants.swift`.
/// 3. With several input rows a weight block is unpacked once and used for many: 4 input rows per integer
///    loop, and from 16 input rows on, 16 rows in the lanes of `SIMD16<Float>` FMAs over weights unpacked to
///    floats (exact small integers, so the result is bit-identical to the integer loops: a row's output
///    never depends on the batch it was computed in). Batched decoding and prefill are compute-bound.
/// 4. Rows are split into about 8 chunks per thread, taken dynamically by the `ThreadPool`'s threads.
///
/// Where the CPU has AVX2, Q4_1 and Q8_0 matrices loaded with `withPackedLayout()` go instead to the C kernels
/// of `CKernels`: `vpmaddubsw` multiplies 32 weight bytes by 32 activation bytes at once, and 8 weight rows share
/// every activation load, so a decode step of a few rows costs little more than one row. `MOPE_PORTABLE=1` in the
/// environment (or at build time) keeps every product on the Swift kernels.
///
/// Float helpers for the rest of a forward pass (dot, axpy, RMS norm, softmax, SwiGLU, exp) are in `Vector`.
public enum Kernels {
    /// Whether `QuantizedMatrix.withPackedLayout()` packs matrices for the C kernels: the CPU runs them and
    /// `MOPE_PORTABLE` is not set in the environment.
    public static let packedKernels: Bool = {
        guard mope_kernels_available() != 0 else { return false }
        guard let value = getenv("MOPE_PORTABLE") else { return true }
        return String(cString: value).isEmpty || String(cString: value) == "0"
    }()

    /// Tensor types the kernels read.
    public static let supportedTypes: Set<GGMLType> = [.f32, .f16, .q4_0, .q4_1, .q5_0, .q8_0, .q4_K, .q6_K]

    /// Writes row `row` of `w` as `w.columns` floats into `out`.
    public static func dequantizeRow(_ w: QuantizedMatrix, row: Int, into out: UnsafeMutablePointer<Float>) {
        let src = w.row(row)
        let blocks = w.columns / w.type.blockSize
        switch w.type {
        case .f32:
            out.update(from: src.assumingMemoryBound(to: Float.self), count: w.columns)
        case .f16:
            for i in 0..<w.columns {
                out[i] = Float(halfBits: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
            }
        case .q8_0:
            for b in 0..<blocks {
                let block = src + b * 34
                let d = Float(halfBits: block.loadUnaligned(as: UInt16.self))
                for i in 0..<32 { out[b * 32 + i] = d * Float(block.load(fromByteOffset: 2 + i, as: Int8.self)) }
            }
        case .q4_0:
            for b in 0..<blocks {
                let block = src + b * 18
                let d = Float(halfBits: block.loadUnaligned(as: UInt16.self))
                for i in 0..<16 {
                    let q = block.load(fromByteOffset: 2 + i, as: UInt8.self)
                    out[b * 32 + i] = d * Float(Int(q & 0x0F) - 8)
                    out[b * 32 + i + 16] = d * Float(Int(q >> 4) - 8)
                }
            }
        case .q4_1:
            for b in 0..<blocks {
                let block = src + b * 20
                let d = Float(halfBits: block.loadUnaligned(as: UInt16.self))
                let m = Float(halfBits: block.loadUnaligned(fromByteOffset: 2, as: UInt16.self))
                for i in 0..<16 {
                    let q = block.load(fromByteOffset: 4 + i, as: UInt8.self)
                    out[b * 32 + i] = d * Float(q & 0x0F) + m
                    out[b * 32 + i + 16] = d * Float(q >> 4) + m
                }
            }
        case .q5_0, .q4_K, .q6_K:
            dequantizeKRow(w.type, row: src, columns: w.columns, into: out)
        default:
            // Unreachable: QuantizedMatrix.init admits supported types only.
            out.update(repeating: 0, count: w.columns)
        }
    }

    /// `out[t·rows + r] = Σ_c W[r, c] · x[t·columns + c]` for `t < batch`, spread over `pool`.
    ///
    /// Numerics follow llama.cpp's CPU backend: for quantised weights (Q8_0, Q4_0, Q4_1, Q5_0, Q4_K, Q6_K)
    /// each input row is
    /// first quantised to 8-bit blocks of 32 (scale `max|x|/127`, round to nearest), and every block product
    /// is an exact integer dot product scaled by the two blocks' scales (plus the Q4_1 offset times the
    /// activation block's sum). Integer dot products are several times faster than float ones here, and the
    /// answers match the common CPU engine within its tolerance; they differ from an all-float product by
    /// the activation rounding, at most `|d_x|/2` per value (relative error of a dot product ≲ 0.4 % of
    /// `Σ|W|·|x|`). F32 and F16 weights use float dot products of the unquantised input.
    ///
    /// The rows are split into chunks that the pool's threads take in turn. The quantised input lives in the
    /// pool's scratch buffer: steady-state calls allocate nothing. Calls with the same pool are serialised.
    /// Row `t` of the output is bit-for-bit the same whatever `batch` it was computed in.
    public static func matmul(
        _ w: QuantizedMatrix, x: UnsafePointer<Float>, batch: Int, out: UnsafeMutablePointer<Float>,
        pool: ThreadPool
    ) {
        guard batch > 0 else { return }
        let chunk = rowChunk(rows: w.rows, batch: batch, threads: pool.threads)
        let tasks = (w.rows + chunk - 1) / chunk
        switch w.type {
        case .q8_0, .q4_0, .q4_1, .q5_0, .q4_K, .q6_K:
            let bytes = QuantizedActivations.byteCount(rows: batch, columns: w.columns)
            pool.withScratch(bytes: bytes) { scratch in
                let a = QuantizedActivations(scratch: scratch, rows: batch, columns: w.columns)
                let forms = QuantizedActivations.forms(w)
                a.fill(from: x, swift: forms.swift, packed: forms.packed)
                pool.runLocked(tasks: tasks) { task in
                    integerRows(w, a, rowRange: task * chunk..<min(w.rows, (task + 1) * chunk), out: out)
                }
            }
        default:
            // F32 and F16 (QuantizedMatrix.init admits supported types only).
            pool.withScratch(bytes: 0) { _ in
                pool.runLocked(tasks: tasks) { task in
                    floatRows(w, x: x, batch: batch, rowRange: task * chunk..<min(w.rows, (task + 1) * chunk), out: out)
                }
            }
        }
    }

    /// `matmul` of up to three matrices with the same number of columns and the same input, in one parallel
    /// loop: `out_i[t·rows_i + r] = Σ_c W_i[r, c] · x[t·columns + c]`.
    ///
    /// The Q/K/V projections and the gate/up projections of a block read the same input. Done together, the
    /// input is quantised once and the pool's threads meet once instead of three (or two) times, which is
    /// most of the difference at batch 1, where each matrix is a few microseconds of work. Every output row
    /// is computed by the same code as in `matmul`, so the results are bit-identical to separate calls.
    public static func matmul(
        _ first: (w: QuantizedMatrix, out: UnsafeMutablePointer<Float>),
        _ second: (w: QuantizedMatrix, out: UnsafeMutablePointer<Float>),
        _ third: (w: QuantizedMatrix, out: UnsafeMutablePointer<Float>)? = nil,
        x: UnsafePointer<Float>, batch: Int, pool: ThreadPool
    ) {
        guard batch > 0 else { return }
        let columns = first.w.columns
        let fused = isIntegerKernelType(first.w.type) && isIntegerKernelType(second.w.type)
            && isIntegerKernelType(third?.w.type ?? first.w.type)
            && second.w.columns == columns && (third?.w.columns ?? columns) == columns
        guard fused else {
            matmul(first.w, x: x, batch: batch, out: first.out, pool: pool)
            matmul(second.w, x: x, batch: batch, out: second.out, pool: pool)
            if let third { matmul(third.w, x: x, batch: batch, out: third.out, pool: pool) }
            return
        }
        let rows2 = third?.w.rows ?? 0
        let chunk = rowChunk(rows: first.w.rows + second.w.rows + rows2, batch: batch, threads: pool.threads)
        let tasks0 = (first.w.rows + chunk - 1) / chunk
        let tasks01 = tasks0 + (second.w.rows + chunk - 1) / chunk
        let tasks = tasks01 + (rows2 + chunk - 1) / chunk
        let bytes = QuantizedActivations.byteCount(rows: batch, columns: columns)
        pool.withScratch(bytes: bytes) { scratch in
            let a = QuantizedActivations(scratch: scratch, rows: batch, columns: columns)
            let f1 = QuantizedActivations.forms(first.w), f2 = QuantizedActivations.forms(second.w)
            let f3 = third.map { QuantizedActivations.forms($0.w) } ?? (swift: false, packed: false)
            a.fill(from: x, swift: f1.swift || f2.swift || f3.swift, packed: f1.packed || f2.packed || f3.packed)
            pool.runLocked(tasks: tasks) { task in
                let part = task < tasks0 ? first : task < tasks01 ? second : third.unsafelyUnwrapped
                let index = task < tasks0 ? task : task < tasks01 ? task - tasks0 : task - tasks01
                let range = index * chunk..<min(part.w.rows, (index + 1) * chunk)
                integerRows(part.w, a, rowRange: range, out: part.out)
            }
        }
    }

    /// Whether `type` goes through the quantised-activation integer kernels.
    @inline(__always)
    static func isIntegerKernelType(_ type: GGMLType) -> Bool {
        switch type {
        case .q8_0, .q4_0, .q4_1, .q5_0, .q4_K, .q6_K: true
        default: false
        }
    }

    /// Rows per task: enough tasks (about 8 per thread) to balance uneven threads, each big enough that
    /// handing it out costs little next to its work; a multiple of 8, so that every task starts at a group of
    /// the packed layout and a row is computed by the same kernel whatever the batch and the threads.
    static func rowChunk(rows: Int, batch: Int, threads: Int) -> Int {
        if threads == 1 { return rows }
        let perTask = max(1, 16 / min(batch, 16))  // about 16 row·batch products at least
        return (max(perTask, (rows + threads * 8 - 1) / (threads * 8)) + 7) & ~7
    }

    /// Rows `rowRange` of `w · x` for F32/F16 weights.
    static func floatRows(
        _ w: QuantizedMatrix, x: UnsafePointer<Float>, batch: Int, rowRange: Range<Int>,
        out: UnsafeMutablePointer<Float>
    ) {
        let n = w.columns
        if w.type == .f32 {
            for r in rowRange {
                let wr = w.row(r).assumingMemoryBound(to: Float.self)
                for t in 0..<batch { out[t * w.rows + r] = Vector.dot(wr, x + t * n, count: n) }
            }
            return
        }
        withUnsafeTemporaryAllocation(of: Float.self, capacity: n) { buffer in
            let row = buffer.baseAddress.unsafelyUnwrapped
            for r in rowRange {
                dequantizeRow(w, row: r, into: row)
                for t in 0..<batch { out[t * w.rows + r] = Vector.dot(row, x + t * n, count: n) }
            }
        }
    }
}

extension Float {
    /// The value of an IEEE 754 half-precision bit pattern.
    @inlinable
    public init(halfBits: UInt16) {
        self = Float(Float16(bitPattern: halfBits))
    }
}
