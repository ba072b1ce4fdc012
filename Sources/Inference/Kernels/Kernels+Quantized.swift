// MARK: Integer dot products of GGML weight blocks with 8-bit activation blocks

/// One GGML block format of 32 weights, as the integer kernels read it.
///
/// A block's contribution to a dot product with an activation block (scale `dx`, scaled sum `sx = dx·Σq_x`)
/// is computed from the integer sum `Σ q_w·q_x` of the stored weight integers: Q8_0 `d·dx·Σ`,
/// Q4_0 `d·(dx·Σ − 8·sx)` (its nibbles are biased by 8), Q4_1 `d·dx·Σ + m·sx`.
protocol WeightBlockFormat {
    /// Bytes per block of 32 weights.
    static var blockBytes: Int { get }
    /// `Σ q_w·q_x` over the block at `block` and the 32 activation values at `x`.
    static func integerDot(_ block: UnsafeRawPointer, _ x: UnsafePointer<Int16>) -> Int32
    /// Adds the block's contribution to `acc`, given its integer dot and the activation block's numbers.
    static func accumulate(_ acc: inout Float, _ block: UnsafeRawPointer, dot: Int32, dx: Float, sx: Float)
}

enum Q8_0Format: WeightBlockFormat {
    static var blockBytes: Int { 34 }

    @inline(__always)
    static func integerDot(_ block: UnsafeRawPointer, _ x: UnsafePointer<Int16>) -> Int32 {
        let w = (block + 2).assumingMemoryBound(to: Int8.self)
        var sum: Int32 = 0
        for i in 0..<32 { sum &+= Int32(w[i]) &* Int32(x[i]) }
        return sum
    }

    @inline(__always)
    static func accumulate(_ acc: inout Float, _ block: UnsafeRawPointer, dot: Int32, dx: Float, sx: Float) {
        let d = Float(halfBits: block.loadUnaligned(as: UInt16.self))
        acc = acc.addingProduct(d, dx * Float(dot))
    }
}

enum Q4_0Format: WeightBlockFormat {
    static var blockBytes: Int { 18 }

    @inline(__always)
    static func integerDot(_ block: UnsafeRawPointer, _ x: UnsafePointer<Int16>) -> Int32 {
        nibbleDot((block + 2).assumingMemoryBound(to: UInt8.self), x)
    }

    @inline(__always)
    static func accumulate(_ acc: inout Float, _ block: UnsafeRawPointer, dot: Int32, dx: Float, sx: Float) {
        let d = Float(halfBits: block.loadUnaligned(as: UInt16.self))
        acc = acc.addingProduct(d, dx * Float(dot) - 8 * sx)
    }
}

enum Q4_1Format: WeightBlockFormat {
    static var blockBytes: Int { 20 }

    @inline(__always)
    static func integerDot(_ block: UnsafeRawPointer, _ x: UnsafePointer<Int16>) -> Int32 {
        nibbleDot((block + 4).assumingMemoryBound(to: UInt8.self), x)
    }

    @inline(__always)
    static func accumulate(_ acc: inout Float, _ block: UnsafeRawPointer, dot: Int32, dx: Float, sx: Float) {
        let d = Float(halfBits: block.loadUnaligned(as: UInt16.self))
        let m = Float(halfBits: block.loadUnaligned(fromByteOffset: 2, as: UInt16.self))
        acc = acc.addingProduct(d, dx * Float(dot)).addingProduct(m, sx)
    }
}

/// `Σ` over 16 bytes of nibble pairs: value `i` is the low nibble of byte `i`, value `i + 16` the high one.
/// A plain `Int32` loop: it compiles to `vpmovzxbd`/`vpmaddwd`/`vpdpwssd` with `-target-cpu native`.
@inline(__always)
private func nibbleDot(_ w: UnsafePointer<UInt8>, _ x: UnsafePointer<Int16>) -> Int32 {
    var sum: Int32 = 0
    for i in 0..<16 {
        sum &+= Int32(w[i] & 0x0F) &* Int32(x[i]) &+ Int32(w[i] >> 4) &* Int32(x[i + 16])
    }
    return sum
}

extension Kernels {
    /// Rows `rowRange` of `w · x` for all activation rows, weights in format `F`.
    ///
    /// Each weight row is read once per group of 4 activation rows: its blocks stay in L1 while the
    /// activations (at most a few hundred KB) stream from L2.
    @inline(never)
    static func quantizedRows<F: WeightBlockFormat>(
        _ format: F.Type, _ w: QuantizedMatrix, _ a: QuantizedActivations, rowRange: Range<Int>,
        out: UnsafeMutablePointer<Float>
    ) {
        let nb = a.blocks
        let columns = a.columns
        let batch = a.rows
        for r in rowRange {
            let wr = w.row(r)
            var t = 0
            while t + 4 <= batch {
                let x0 = a.values + t * columns
                let x1 = x0 + columns, x2 = x1 + columns, x3 = x2 + columns
                let d0 = a.scales + t * nb, d1 = d0 + nb, d2 = d1 + nb, d3 = d2 + nb
                let s0 = a.sums + t * nb, s1 = s0 + nb, s2 = s1 + nb, s3 = s2 + nb
                var acc0: Float = 0, acc1: Float = 0, acc2: Float = 0, acc3: Float = 0
                for b in 0..<nb {
                    let block = wr + b * F.blockBytes
                    let i0 = F.integerDot(block, x0 + 32 * b)
                    let i1 = F.integerDot(block, x1 + 32 * b)
                    let i2 = F.integerDot(block, x2 + 32 * b)
                    let i3 = F.integerDot(block, x3 + 32 * b)
                    F.accumulate(&acc0, block, dot: i0, dx: d0[b], sx: s0[b])
                    F.accumulate(&acc1, block, dot: i1, dx: d1[b], sx: s1[b])
                    F.accumulate(&acc2, block, dot: i2, dx: d2[b], sx: s2[b])
                    F.accumulate(&acc3, block, dot: i3, dx: d3[b], sx: s3[b])
                }
                out[t * w.rows + r] = acc0
                out[(t + 1) * w.rows + r] = acc1
                out[(t + 2) * w.rows + r] = acc2
                out[(t + 3) * w.rows + r] = acc3
                t += 4
            }
            while t < batch {
                let x0 = a.values + t * columns
                let d0 = a.scales + t * nb
                let s0 = a.sums + t * nb
                var acc0: Float = 0
                for b in 0..<nb {
                    let block = wr + b * F.blockBytes
                    F.accumulate(&acc0, block, dot: F.integerDot(block, x0 + 32 * b), dx: d0[b], sx: s0[b])
                }
                out[t * w.rows + r] = acc0
                t += 1
            }
        }
    }
}
