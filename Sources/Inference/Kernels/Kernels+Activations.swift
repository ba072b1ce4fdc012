/// Input rows quantised to 8-bit blocks of 32 values, the form the integer dot products read.
///
/// Per block of 32 values: the scale `d = max|x| / 127`, the values `q = round(x / d)` in −127…127 (stored
/// widened to `Int16`, which lets the dot products compile to `vpmaddwd`), and `d·Σq` (what a Q4_1 weight's
/// offset and a Q4_0 weight's bias of −8 multiply). This is llama.cpp's Q8_0/Q8_1 activation format.
struct QuantizedActivations {
    /// `rows × columns` values, row-major.
    let values: UnsafeMutablePointer<Int16>
    /// `rows × blocks` scales.
    let scales: UnsafeMutablePointer<Float>
    /// `rows × blocks` scaled sums `d·Σq`.
    let sums: UnsafeMutablePointer<Float>
    let rows: Int
    let columns: Int
    var blocks: Int { columns / 32 }

    /// Bytes of scratch memory `rows × columns` activations need.
    static func byteCount(rows: Int, columns: Int) -> Int {
        let values = (rows * columns * 2 + 63) & ~63
        let perBlock = (rows * (columns / 32) * 4 + 63) & ~63
        return values + 2 * perBlock
    }

    /// Lays out the activations in `scratch` (at least `byteCount(rows:columns:)` bytes, 64-byte aligned).
    init(scratch: UnsafeMutableRawPointer, rows: Int, columns: Int) {
        self.rows = rows
        self.columns = columns
        let valueBytes = (rows * columns * 2 + 63) & ~63
        let perBlock = (rows * (columns / 32) * 4 + 63) & ~63
        values = scratch.bindMemory(to: Int16.self, capacity: rows * columns)
        scales = (scratch + valueBytes).bindMemory(to: Float.self, capacity: rows * (columns / 32))
        sums = (scratch + valueBytes + perBlock).bindMemory(to: Float.self, capacity: rows * (columns / 32))
    }

    /// Quantises row `row` from `columns` floats at `x`.
    func quantize(row: Int, from x: UnsafePointer<Float>) {
        let nb = blocks
        let q = values + row * columns
        for b in 0..<nb {
            // max|x| over the bit patterns: for non-negative floats integer order is float order, and an
            // integer max reduction vectorises (a float one does not).
            var bits: UInt32 = 0
            for i in 0..<32 { bits = Swift.max(bits, x[32 * b + i].bitPattern & 0x7FFF_FFFF) }
            let amax = Float(bitPattern: bits)
            let d = amax / 127
            let inverse: Float = amax > 0 ? 127 / amax : 0
            let qb = q + 32 * b
            var sum: Int32 = 0
            for i in 0..<32 {
                let value = Int16(truncatingIfNeeded: Int32((x[32 * b + i] * inverse).rounded(.toNearestOrEven)))
                qb[i] = value
                sum &+= Int32(value)
            }
            scales[row * nb + b] = d
            sums[row * nb + b] = d * Float(sum)
        }
    }
}
