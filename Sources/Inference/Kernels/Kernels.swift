/// Compute kernels over quantised weights.
///
/// Contract (the model code relies on it):
/// - `dequantizeRow` writes one row as `Float`s.
/// - `matmul` computes `out[t·rows + r] = Σ_c W[r, c] · x[t·columns + c]` for every `t < batch`.
public enum Kernels {
    /// Tensor types the kernels read.
    public static let supportedTypes: Set<GGMLType> = [.f32, .f16, .q4_0, .q4_1, .q8_0]

    /// Writes row `row` of `w` as `w.columns` floats into `out`.
    public static func dequantizeRow(_ w: QuantizedMatrix, row: Int, into out: UnsafeMutablePointer<Float>) {
        let src = w.row(row)
        let blocks = w.columns / w.type.blockSize
        switch w.type {
        case .f32:
            out.update(from: src.assumingMemoryBound(to: Float.self), count: w.columns)
        case .f16:
            for i in 0..<w.columns { out[i] = Float(halfBits: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
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
        default:
            // Unreachable: QuantizedMatrix.init admits supported types only.
            out.update(repeating: 0, count: w.columns)
        }
    }

    /// `out[t·rows + r] = Σ_c W[r, c] · x[t·columns + c]` for `t < batch`. Reference implementation.
    public static func matmul(
        _ w: QuantizedMatrix, x: UnsafePointer<Float>, batch: Int, out: UnsafeMutablePointer<Float>,
        pool: ThreadPool
    ) {
        let row = UnsafeMutablePointer<Float>.allocate(capacity: w.columns)
        defer { row.deallocate() }
        for r in 0..<w.rows {
            dequantizeRow(w, row: r, into: row)
            for t in 0..<batch {
                var sum: Float = 0
                let xt = x + t * w.columns
                for c in 0..<w.columns { sum += row[c] * xt[c] }
                out[t * w.rows + r] = sum
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
