/// Input rows quantised to 8-bit blocks of 32 values, the form the integer dot products read.
///
/// Per block of 32 values: the scale `d = max|x| / 127`, the values `q = round(x / d)` in −127…127 (stored
/// widened to `Int16`, which lets the dot products compile to `vpmaddwd`), and `d·Σq` (what a Q4_1 weight's
/// offset and a Q4_0 weight's bias of −8 multiply). This is llama.cpp's Q8_0/Q8_1 activation format.
struct QuantizedActivations {
    /// `rows × columns` values, row-major.
    let values: UnsafeMutablePointer<Int16>
    /// The same values as bytes, what the packed-weight kernels of `CKernels` read.
    let bytes: UnsafeMutablePointer<Int8>
    /// `rows × blocks` scales.
    let scales: UnsafeMutablePointer<Float>
    /// `rows × blocks` scaled sums `d·Σq`.
    let sums: UnsafeMutablePointer<Float>
    /// The same numbers for the first `laneRows` rows, transposed in groups of 16 rows (then at most one group
    /// of 8) so that a group's rows sit side by side in one SIMD vector per value. The group of width `W`
    /// starting at row `t0` keeps value `32b + i` of row `t0 + l` at `lanes[t0·columns + (32b + i)·W + l]` as a
    /// float (an exact small integer), and its scale and sum at `laneScales`/`laneSums[t0·blocks + b·W + l]`.
    let lanes: UnsafeMutablePointer<Float>
    let laneScales: UnsafeMutablePointer<Float>
    let laneSums: UnsafeMutablePointer<Float>
    let rows: Int
    let columns: Int
    var blocks: Int { columns / 32 }
    /// Groups of 16 rows in the transposed layout.
    var groups16: Int { rows / 16 }
    /// Rows in the transposed layout: the groups of 16 and, when at least 8 rows are left, one group of 8.
    var laneRows: Int { Self.laneRows(rows) }

    static func laneRows(_ rows: Int) -> Int { rows / 16 * 16 + (rows % 16 >= 8 ? 8 : 0) }

    private static func layout(rows: Int, columns: Int) -> (values: Int, bytes: Int, perBlock: Int, lanes: Int) {
        let values = (rows * columns * 2 + 63) & ~63
        let bytes = (rows * columns + 63) & ~63
        let perBlock = (rows * (columns / 32) * 4 + 63) & ~63
        let lanes = laneRows(rows) * columns * 4
        return (values, bytes, perBlock, lanes)
    }

    /// Bytes of scratch memory `rows × columns` activations need.
    static func byteCount(rows: Int, columns: Int) -> Int {
        let l = layout(rows: rows, columns: columns)
        return l.values + l.bytes + 4 * l.perBlock + l.lanes
    }

    /// Lays out the activations in `scratch` (at least `byteCount(rows:columns:)` bytes, 64-byte aligned).
    init(scratch: UnsafeMutableRawPointer, rows: Int, columns: Int) {
        self.rows = rows
        self.columns = columns
        let l = Self.layout(rows: rows, columns: columns)
        let nb = columns / 32
        values = scratch.bindMemory(to: Int16.self, capacity: rows * columns)
        bytes = (scratch + l.values).bindMemory(to: Int8.self, capacity: rows * columns)
        let perBlock = scratch + l.values + l.bytes
        scales = perBlock.bindMemory(to: Float.self, capacity: rows * nb)
        sums = (perBlock + l.perBlock).bindMemory(to: Float.self, capacity: rows * nb)
        laneScales = (perBlock + 2 * l.perBlock).bindMemory(to: Float.self, capacity: rows * nb)
        laneSums = (perBlock + 3 * l.perBlock).bindMemory(to: Float.self, capacity: rows * nb)
        lanes = (perBlock + 4 * l.perBlock)
            .bindMemory(to: Float.self, capacity: Self.laneRows(rows) * columns)
    }

    /// Fills the transposed layout from the quantised rows.
    func transpose() {
        let nb = blocks
        var t0 = 0
        while t0 < laneRows {
            let width = laneRows - t0 >= 16 ? 16 : 8
            for l in 0..<width {
                let src = values + (t0 + l) * columns
                let dst = lanes + t0 * columns + l
                for c in 0..<columns { dst[c * width] = Float(src[c]) }
                for b in 0..<nb {
                    laneScales[t0 * nb + b * width + l] = scales[(t0 + l) * nb + b]
                    laneSums[t0 * nb + b * width + l] = sums[(t0 + l) * nb + b]
                }
            }
            t0 += width
        }
    }

    /// Quantises every row from `x` (`rows × columns` floats) into the forms the products read: with `swift`, the
    /// widened values and the transposed layout of the Swift kernels (for a matrix not fully packed); with
    /// `packed`, the bytes of the C kernels (for a packed matrix). Scales and sums are always written.
    func fill(from x: UnsafePointer<Float>, swift: Bool, packed: Bool) {
        for t in 0..<rows { quantize(row: t, from: x + t * columns, wide: swift, bytes: packed) }
        if swift { transpose() }
    }

    /// The forms a product with `w` reads (see `fill`).
    static func forms(_ w: QuantizedMatrix) -> (swift: Bool, packed: Bool) { (!w.fullyPacked, w.packed != nil) }

    /// Quantises row `row` from `columns` floats at `x`, writing the widened values when `wide` and the bytes
    /// when `bytes`.
    func quantize(row: Int, from x: UnsafePointer<Float>, wide: Bool, bytes writeBytes: Bool) {
        let nb = blocks
        let q = values + row * columns
        let q8 = bytes + row * columns
        for b in 0..<nb {
            // max|x| over the bit patterns: for non-negative floats integer order is float order, and an
            // integer max reduction vectorises (a float one does not).
            var bits: UInt32 = 0
            for i in 0..<32 { bits = Swift.max(bits, x[32 * b + i].bitPattern & 0x7FFF_FFFF) }
            let amax = Float(bitPattern: bits)
            let d = amax / 127
            let inverse: Float = amax > 0 ? 127 / amax : 0
            let qb = q + 32 * b, q8b = q8 + 32 * b
            var sum: Int32 = 0
            for i in 0..<32 {
                let value = Int16(truncatingIfNeeded: Int32((x[32 * b + i] * inverse).rounded(.toNearestOrEven)))
                if wide { qb[i] = value }
                if writeBytes { q8b[i] = Int8(truncatingIfNeeded: value) }
                sum &+= Int32(value)
            }
            scales[row * nb + b] = d
            sums[row * nb + b] = d * Float(sum)
        }
    }
}
