import CKernels

// MARK: Integer dot products of GGML weight blocks with 8-bit activation blocks

/// Block `index` (32 weights) of the weight row at `row`. For the K-quant formats a 32-weight block is a
/// part of a 256-weight super-block.
struct BlockRef {
    let row: UnsafeRawPointer
    let index: Int
}

/// One GGML block format, as the integer kernels read it: 32 weights at a time.
///
/// A block's contribution to a dot product with an activation block (scale `dx`, scaled sum `sx = dx·Σq_x`)
/// is computed from the integer sum `Σ q_w·q_x` of the stored weight integers: Q8_0 `d·dx·Σ`,
/// Q4_0 `d·(dx·Σ − 8·sx)` (its nibbles are biased by 8), Q4_1 `d·dx·Σ + m·sx`.
protocol WeightBlockFormat {
    /// `Σ q_w·q_x` over the block and the 32 activation values at `x` (for Q6_K, with its sub-scales).
    static func integerDot(_ block: BlockRef, _ x: UnsafePointer<Int16>) -> Int32
    /// The block's 32 weight integers as floats, in order, such that `Σ values[i]·x[i] == integerDot` (for
    /// Q6_K multiplied by their sub-scales).
    static func unpack(_ block: BlockRef, into values: UnsafeMutablePointer<Float>)
    /// The block's factors: its contribution to the two partial sums is `acc += scale·(dx·Σ)` and
    /// `offset += offset·sx`.
    static func factors(_ block: BlockRef) -> (scale: Float, offset: Float)
    /// The dot product from the two partial sums.
    static func finish(_ acc: Float, _ offset: Float) -> Float
    /// Whether a group of 8 input rows goes to the `SIMD8` lanes kernel (faster for 4-bit formats, whose
    /// unpacking it shares) rather than the integer loops (faster for Q8_0).
    static var usesEightLanes: Bool { get }
}

extension WeightBlockFormat {
    static var usesEightLanes: Bool { true }

    /// Adds the block's contribution, given its integer dot and the activation block's numbers, to two
    /// partial sums (two independent FMA chains): the result is `finish(acc, offset)`.
    @inline(__always)
    static func accumulate(
        _ acc: inout Float, _ offset: inout Float, _ block: BlockRef, dot: Int32, dx: Float, sx: Float
    ) {
        let f = factors(block)
        acc = acc.addingProduct(f.scale, dx * Float(dot))
        offset = offset.addingProduct(f.offset, sx)
    }
}

/// Q8_0: 34 bytes per 32 weights, an f16 scale `d` and 32 signed bytes; `w = d·q`.
enum Q8_0Format: WeightBlockFormat {
    @inline(__always)
    static func integerDot(_ ref: BlockRef, _ x: UnsafePointer<Int16>) -> Int32 {
        let w = (ref.row + 34 * ref.index + 2).assumingMemoryBound(to: Int8.self)
        var sum: Int32 = 0
        for i in 0..<32 { sum &+= Int32(w[i]) &* Int32(x[i]) }
        return sum
    }

    @inline(__always)
    static func unpack(_ ref: BlockRef, into values: UnsafeMutablePointer<Float>) {
        let w = (ref.row + 34 * ref.index + 2).assumingMemoryBound(to: Int8.self)
        for i in 0..<32 { values[i] = Float(w[i]) }
    }

    @inline(__always)
    static func factors(_ ref: BlockRef) -> (scale: Float, offset: Float) {
        (Float(halfBits: (ref.row + 34 * ref.index).loadUnaligned(as: UInt16.self)), 0)
    }

    @inline(__always)
    static func finish(_ acc: Float, _ offset: Float) -> Float { acc }

    static var usesEightLanes: Bool { false }
}

/// Q4_0: 18 bytes per 32 weights, an f16 scale `d` and 16 bytes of nibbles; `w = d·(q − 8)`.
enum Q4_0Format: WeightBlockFormat {
    @inline(__always)
    static func integerDot(_ ref: BlockRef, _ x: UnsafePointer<Int16>) -> Int32 {
        nibbleDot((ref.row + 18 * ref.index + 2).assumingMemoryBound(to: UInt8.self), x)
    }

    @inline(__always)
    static func unpack(_ ref: BlockRef, into values: UnsafeMutablePointer<Float>) {
        unpackNibbles((ref.row + 18 * ref.index + 2).assumingMemoryBound(to: UInt8.self), values)
    }

    @inline(__always)
    static func factors(_ ref: BlockRef) -> (scale: Float, offset: Float) {
        let d = Float(halfBits: (ref.row + 18 * ref.index).loadUnaligned(as: UInt16.self))
        return (d, d)
    }

    @inline(__always)
    static func finish(_ acc: Float, _ offset: Float) -> Float { acc - 8 * offset }
}

/// Q4_1: 20 bytes per 32 weights, f16 scale `d` and minimum `m`, 16 bytes of nibbles; `w = d·q + m`.
enum Q4_1Format: WeightBlockFormat {
    @inline(__always)
    static func integerDot(_ ref: BlockRef, _ x: UnsafePointer<Int16>) -> Int32 {
        nibbleDot((ref.row + 20 * ref.index + 4).assumingMemoryBound(to: UInt8.self), x)
    }

    @inline(__always)
    static func unpack(_ ref: BlockRef, into values: UnsafeMutablePointer<Float>) {
        unpackNibbles((ref.row + 20 * ref.index + 4).assumingMemoryBound(to: UInt8.self), values)
    }

    @inline(__always)
    static func factors(_ ref: BlockRef) -> (scale: Float, offset: Float) {
        let block = ref.row + 20 * ref.index
        return (Float(halfBits: block.loadUnaligned(as: UInt16.self)),
                Float(halfBits: block.loadUnaligned(fromByteOffset: 2, as: UInt16.self)))
    }

    @inline(__always)
    static func finish(_ acc: Float, _ offset: Float) -> Float { acc + offset }
}

/// 16 bytes of nibble pairs as 32 floats: value `i` from the low nibble of byte `i`, `i + 16` from its high one.
@inline(__always)
func unpackNibbles(_ w: UnsafePointer<UInt8>, _ values: UnsafeMutablePointer<Float>) {
    for i in 0..<16 {
        values[i] = Float(w[i] & 0x0F)
        values[i + 16] = Float(w[i] >> 4)
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
    /// Rows `rowRange` of `w · a` for a type the integer kernels read.
    ///
    /// It lives in the file of `quantizedRows` on purpose: a build without whole-module optimisation (debug
    /// builds, which still optimise this module) specialises a generic function only for callers in its own
    /// file. Called from another file, `quantizedRows` and `laneRows` ran unspecialised, every SIMD lane access
    /// a runtime metadata lookup, and a forward pass of the real model took minutes instead of milliseconds.
    static func integerRows(
        _ w: QuantizedMatrix, _ a: QuantizedActivations, rowRange range: Range<Int>, out: UnsafeMutablePointer<Float>
    ) {
        var range = range
        if let packed = w.packed {
            // Whole groups of 8 rows to the C kernels; the rows after the last whole group (and a range that does
            // not start at a group, which `rowChunk` never makes) to the Swift kernels below.
            let begin = range.lowerBound % 8 == 0 ? range.lowerBound / 8 : packed.groups
            let end = max(begin, min(packed.groups, range.upperBound / 8))
            if end > begin {
                let bytes = UnsafePointer(packed.bytes.assumingMemoryBound(to: UInt8.self))
                if w.type == .q4_1 {
                    mope_q4_1_rows(bytes, a.blocks, begin, end, a.bytes, a.scales, a.sums, a.rows, out, w.rows)
                } else {
                    mope_q8_0_rows(bytes, a.blocks, begin, end, a.bytes, a.scales, a.rows, out, w.rows)
                }
                range = 8 * end..<max(8 * end, range.upperBound)
            }
            if range.isEmpty { return }
        }
        switch w.type {
        case .q8_0: quantizedRows(Q8_0Format.self, w, a, rowRange: range, out: out)
        case .q4_0: quantizedRows(Q4_0Format.self, w, a, rowRange: range, out: out)
        case .q5_0: quantizedRows(Q5_0Format.self, w, a, rowRange: range, out: out)
        case .q4_K: quantizedRows(Q4_KFormat.self, w, a, rowRange: range, out: out)
        case .q6_K: quantizedRows(Q6_KFormat.self, w, a, rowRange: range, out: out)
        default: quantizedRows(Q4_1Format.self, w, a, rowRange: range, out: out)
        }
    }

    /// Rows `rowRange` of `w · x` for all activation rows, weights in format `F`.
    ///
    /// Groups of 16 (then 8) input rows go to `laneRows`; the rest are done here, a weight row at a time
    /// (two from 8 input rows on) against 4 input rows, then single rows, with integer block dot products.
    /// A weight row stays in L1 while the input rows (grouped to a few hundred KB) stream from L2.
    @inline(never)
    static func quantizedRows<F: WeightBlockFormat>(
        _ format: F.Type, _ w: QuantizedMatrix, _ a: QuantizedActivations, rowRange: Range<Int>,
        out: UnsafeMutablePointer<Float>
    ) {
        let nb = a.blocks
        let columns = a.columns
        // Input rows in groups whose quantised values (2 bytes each) fit in L2 beside the weight rows.
        let group = max(4, (96 * 1024 / (2 * columns)) & ~3)
        if a.groups16 > 0 {
            laneRows(F.self, SIMD16<Float>.self, w, a, inputRows: 0..<16 * a.groups16, rowRange: rowRange, out: out)
        }
        let lanes8 = F.usesEightLanes && a.laneRows > 16 * a.groups16
        if lanes8 {
            laneRows(F.self, SIMD8<Float>.self, w, a, inputRows: 16 * a.groups16..<a.laneRows, rowRange: rowRange,
                     out: out)
        }
        for first in stride(from: lanes8 ? a.laneRows : 16 * a.groups16, to: a.rows, by: group) {
        let batch = min(a.rows, first + group)
        var r = rowRange.lowerBound
        // Two weight rows × four input rows: each activation block loaded serves two weight blocks. Only for
        // 8+ input rows: with fewer, the weights stream from DRAM and reading two rows at once measured
        // slower (the prefetcher keeps up less well) than one row at a time.
        while r + 2 <= rowRange.upperBound, batch - first >= 8 {
            let wa = w.row(r), wb = w.row(r + 1)
            var t = first
            while t + 4 <= batch {
                let x0 = a.values + t * columns
                let x1 = x0 + columns, x2 = x1 + columns, x3 = x2 + columns
                let d0 = a.scales + t * nb, d1 = d0 + nb, d2 = d1 + nb, d3 = d2 + nb
                let s0 = a.sums + t * nb, s1 = s0 + nb, s2 = s1 + nb, s3 = s2 + nb
                var accA = (SIMD4<Float>(), SIMD4<Float>()), offA = (SIMD4<Float>(), SIMD4<Float>())
                var accB = (SIMD4<Float>(), SIMD4<Float>()), offB = (SIMD4<Float>(), SIMD4<Float>())
                @inline(__always)
                func step(_ b: Int, _ accA: inout SIMD4<Float>, _ offA: inout SIMD4<Float>,
                          _ accB: inout SIMD4<Float>, _ offB: inout SIMD4<Float>) {
                    let blockA = BlockRef(row: wa, index: b), blockB = BlockRef(row: wb, index: b)
                    let xs = (x0 + 32 * b, x1 + 32 * b, x2 + 32 * b, x3 + 32 * b)
                    let ia = (F.integerDot(blockA, xs.0), F.integerDot(blockA, xs.1),
                              F.integerDot(blockA, xs.2), F.integerDot(blockA, xs.3))
                    let ib = (F.integerDot(blockB, xs.0), F.integerDot(blockB, xs.1),
                              F.integerDot(blockB, xs.2), F.integerDot(blockB, xs.3))
                    F.accumulate(&accA[0], &offA[0], blockA, dot: ia.0, dx: d0[b], sx: s0[b])
                    F.accumulate(&accA[1], &offA[1], blockA, dot: ia.1, dx: d1[b], sx: s1[b])
                    F.accumulate(&accA[2], &offA[2], blockA, dot: ia.2, dx: d2[b], sx: s2[b])
                    F.accumulate(&accA[3], &offA[3], blockA, dot: ia.3, dx: d3[b], sx: s3[b])
                    F.accumulate(&accB[0], &offB[0], blockB, dot: ib.0, dx: d0[b], sx: s0[b])
                    F.accumulate(&accB[1], &offB[1], blockB, dot: ib.1, dx: d1[b], sx: s1[b])
                    F.accumulate(&accB[2], &offB[2], blockB, dot: ib.2, dx: d2[b], sx: s2[b])
                    F.accumulate(&accB[3], &offB[3], blockB, dot: ib.3, dx: d3[b], sx: s3[b])
                }
                var b = 0
                while b + 2 <= nb {
                    step(b, &accA.0, &offA.0, &accB.0, &offB.0)
                    step(b + 1, &accA.1, &offA.1, &accB.1, &offB.1)
                    b += 2
                }
                if b < nb { step(b, &accA.0, &offA.0, &accB.0, &offB.0) }
                let sumsA = accA.0 + accA.1, offsetsA = offA.0 + offA.1
                let sumsB = accB.0 + accB.1, offsetsB = offB.0 + offB.1
                for i in 0..<4 {
                    out[(t + i) * w.rows + r] = F.finish(sumsA[i], offsetsA[i])
                    out[(t + i) * w.rows + r + 1] = F.finish(sumsB[i], offsetsB[i])
                }
                t += 4
            }
            for rr in r..<r + 2 { oneRowTail(F.self, w, a, row: rr, from: t, to: batch, out: out) }
            r += 2
        }
        while r < rowRange.upperBound {
            defer { r += 1 }
            let wr = w.row(r)
            var t = first
            while t + 4 <= batch {
                // Four input rows share each weight block. The sums are kept exactly as in the one-row loop
                // below (even and odd blocks apart), so a row's result does not depend on the batch around it.
                let x0 = a.values + t * columns
                let x1 = x0 + columns, x2 = x1 + columns, x3 = x2 + columns
                let d0 = a.scales + t * nb, d1 = d0 + nb, d2 = d1 + nb, d3 = d2 + nb
                let s0 = a.sums + t * nb, s1 = s0 + nb, s2 = s1 + nb, s3 = s2 + nb
                var acc = (SIMD4<Float>(), SIMD4<Float>())  // even / odd blocks, lanes = input rows
                var off = (SIMD4<Float>(), SIMD4<Float>())
                var b = 0
                @inline(__always)
                func step(_ b: Int, _ acc: inout SIMD4<Float>, _ off: inout SIMD4<Float>) {
                    let block = BlockRef(row: wr, index: b)
                    let i0 = F.integerDot(block, x0 + 32 * b)
                    let i1 = F.integerDot(block, x1 + 32 * b)
                    let i2 = F.integerDot(block, x2 + 32 * b)
                    let i3 = F.integerDot(block, x3 + 32 * b)
                    F.accumulate(&acc[0], &off[0], block, dot: i0, dx: d0[b], sx: s0[b])
                    F.accumulate(&acc[1], &off[1], block, dot: i1, dx: d1[b], sx: s1[b])
                    F.accumulate(&acc[2], &off[2], block, dot: i2, dx: d2[b], sx: s2[b])
                    F.accumulate(&acc[3], &off[3], block, dot: i3, dx: d3[b], sx: s3[b])
                }
                while b + 2 <= nb {
                    step(b, &acc.0, &off.0)
                    step(b + 1, &acc.1, &off.1)
                    b += 2
                }
                if b < nb { step(b, &acc.0, &off.0) }
                let sums = acc.0 + acc.1, offsets = off.0 + off.1
                for i in 0..<4 { out[(t + i) * w.rows + r] = F.finish(sums[i], offsets[i]) }
                t += 4
            }
            oneRowTail(F.self, w, a, row: r, from: t, to: batch, out: out)
        }
        }
    }

    /// Row `r` of `w · x` for input rows `from..<to`, one input row at a time.
    @inline(__always)
    static func oneRowTail<F: WeightBlockFormat>(
        _ format: F.Type, _ w: QuantizedMatrix, _ a: QuantizedActivations, row r: Int, from: Int, to batch: Int,
        out: UnsafeMutablePointer<Float>
    ) {
        let nb = a.blocks
        let columns = a.columns
        var t = from
        let wr = w.row(r)
        while t < batch {
            // One input row: blocks in pairs with separate sums, so that consecutive blocks' FMAs do not
            // wait for each other.
            let x0 = a.values + t * columns
            let d0 = a.scales + t * nb
            let s0 = a.sums + t * nb
            var acc0: Float = 0, off0: Float = 0, acc1: Float = 0, off1: Float = 0
            var b = 0
            while b + 2 <= nb {
                let block0 = BlockRef(row: wr, index: b)
                let block1 = BlockRef(row: wr, index: b + 1)
                let i0 = F.integerDot(block0, x0 + 32 * b)
                let i1 = F.integerDot(block1, x0 + 32 * b + 32)
                F.accumulate(&acc0, &off0, block0, dot: i0, dx: d0[b], sx: s0[b])
                F.accumulate(&acc1, &off1, block1, dot: i1, dx: d0[b + 1], sx: s0[b + 1])
                b += 2
            }
            if b < nb {
                let block = BlockRef(row: wr, index: b)
                F.accumulate(&acc0, &off0, block, dot: F.integerDot(block, x0 + 32 * b), dx: d0[b], sx: s0[b])
            }
            out[t * w.rows + r] = F.finish(acc0 + acc1, off0 + off1)
            t += 1
        }
    }

    /// Rows `rowRange` of `w · x` for input rows `inputRows` (groups of `V.scalarCount` in the transposed
    /// layout), a group of input rows at a time in the lanes of `V` vectors and two weight rows at a time.
    ///
    /// Each weight row is unpacked to floats once (exact small integers), so a block's `Σ q_w·q_x` for a group
    /// of input rows is 32 vector FMAs with no horizontal sums; every product and partial sum is an integer
    /// below 2^24, hence exact, and the per-block scaling repeats the one-row loop's arithmetic lane by
    /// lane. The results are therefore bit-identical to those of the integer loops.
    static func laneRows<F: WeightBlockFormat, V: SIMD>(
        _ format: F.Type, _ lanes: V.Type, _ w: QuantizedMatrix, _ a: QuantizedActivations, inputRows: Range<Int>,
        rowRange: Range<Int>, out: UnsafeMutablePointer<Float>
    ) where V.Scalar == Float {
        let width = V.scalarCount
        let nb = a.blocks
        let columns = a.columns
        // Input rows per pass: about 256 KB of transposed activations, so that they stay in L2.
        let rowsPerPass = max(width, (256 * 1024) / (columns * 4) / width * width)
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 * columns + 4 * nb) { buffer in
            let wA = buffer.baseAddress.unsafelyUnwrapped, wB = wA + columns
            let fA = wB + columns, oA = fA + nb, fB = oA + nb, oB = fB + nb
            func unpack(row: Int, _ values: UnsafeMutablePointer<Float>, _ scales: UnsafeMutablePointer<Float>,
                        _ offsets: UnsafeMutablePointer<Float>) {
                let wr = w.row(row)
                for b in 0..<nb {
                    let ref = BlockRef(row: wr, index: b)
                    F.unpack(ref, into: values + 32 * b)
                    (scales[b], offsets[b]) = F.factors(ref)
                }
            }
            for pass in stride(from: inputRows.lowerBound, to: inputRows.upperBound, by: rowsPerPass) {
                var r = rowRange.lowerBound
                while r < rowRange.upperBound {
                    // With an odd count the last pair repeats its row and writes it once.
                    let rB = min(r + 1, rowRange.upperBound - 1)
                    unpack(row: r, wA, fA, oA)
                    unpack(row: rB, wB, fB, oB)
                    for t0 in stride(from: pass, to: min(inputRows.upperBound, pass + rowsPerPass), by: width) {
                        let xs = UnsafeRawPointer(a.lanes + t0 * columns)
                        let ds = UnsafeRawPointer(a.laneScales + t0 * nb)
                        let ss = UnsafeRawPointer(a.laneSums + t0 * nb)
                        let vector = 4 * width  // bytes
                        var accA = (V(), V()), offA = (V(), V()), accB = (V(), V()), offB = (V(), V())
                        for b in 0..<nb {
                            let xb = xs + b * 32 * vector
                            var pa0 = V(), pa1 = V(), pb0 = V(), pb1 = V()
                            let wa = wA + 32 * b, wb = wB + 32 * b
                            for i in stride(from: 0, to: 32, by: 2) {
                                let x0 = xb.loadUnaligned(fromByteOffset: vector * i, as: V.self)
                                let x1 = xb.loadUnaligned(fromByteOffset: vector * i + vector, as: V.self)
                                pa0.addProduct(wa[i], x0)
                                pa1.addProduct(wa[i + 1], x1)
                                pb0.addProduct(wb[i], x0)
                                pb1.addProduct(wb[i + 1], x1)
                            }
                            let dx = ds.loadUnaligned(fromByteOffset: vector * b, as: V.self)
                            let sx = ss.loadUnaligned(fromByteOffset: vector * b, as: V.self)
                            let pa = dx * (pa0 + pa1), pb = dx * (pb0 + pb1)
                            if b & 1 == 0 {
                                accA.0 = accA.0.addingProduct(fA[b], pa)
                                offA.0 = offA.0.addingProduct(oA[b], sx)
                                accB.0 = accB.0.addingProduct(fB[b], pb)
                                offB.0 = offB.0.addingProduct(oB[b], sx)
                            } else {
                                accA.1 = accA.1.addingProduct(fA[b], pa)
                                offA.1 = offA.1.addingProduct(oA[b], sx)
                                accB.1 = accB.1.addingProduct(fB[b], pb)
                                offB.1 = offB.1.addingProduct(oB[b], sx)
                            }
                        }
                        let sumA = accA.0 + accA.1, offsetA = offA.0 + offA.1
                        let sumB = accB.0 + accB.1, offsetB = offB.0 + offB.1
                        for l in 0..<width {
                            out[(t0 + l) * w.rows + r] = F.finish(sumA[l], offsetA[l])
                            if rB != r { out[(t0 + l) * w.rows + rB] = F.finish(sumB[l], offsetB[l]) }
                        }
                    }
                    r += 2
                }
            }
        }
    }
}
