// MARK: Q5_0 and the K-quant formats (Q4_K, Q6_K)

/// Q5_0: 22 bytes per 32 weights, `w = d·(q − 16)` with `q` 5 bits: 16 bytes of low nibbles (value `i` in
/// the low nibble of byte `i`, value `i + 16` in the high one) and the fifth bits in a 32-bit mask.
enum Q5_0Format: WeightBlockFormat {
    @inline(__always)
    static func integerDot(_ ref: BlockRef, _ x: UnsafePointer<Int16>) -> Int32 {
        let block = ref.row + 22 * ref.index
        let high = block.loadUnaligned(fromByteOffset: 2, as: UInt32.self)
        let w = (block + 6).assumingMemoryBound(to: UInt8.self)
        var sum: Int32 = 0
        for i in 0..<16 {
            let lo = Int32(w[i] & 0x0F) | Int32((high >> UInt32(i)) & 1) << 4
            let hi = Int32(w[i] >> 4) | Int32((high >> UInt32(i + 16)) & 1) << 4
            sum &+= lo &* Int32(x[i]) &+ hi &* Int32(x[i + 16])
        }
        return sum
    }

    @inline(__always)
    static func unpack(_ ref: BlockRef, into values: UnsafeMutablePointer<Float>) {
        let block = ref.row + 22 * ref.index
        let high = block.loadUnaligned(fromByteOffset: 2, as: UInt32.self)
        let w = (block + 6).assumingMemoryBound(to: UInt8.self)
        for i in 0..<16 {
            values[i] = Float(UInt32(w[i] & 0x0F) | ((high >> UInt32(i)) & 1) << 4)
            values[i + 16] = Float(UInt32(w[i] >> 4) | ((high >> UInt32(i + 16)) & 1) << 4)
        }
    }

    @inline(__always)
    static func factors(_ ref: BlockRef) -> (scale: Float, offset: Float) {
        let d = Float(halfBits: (ref.row + 22 * ref.index).loadUnaligned(as: UInt16.self))
        return (d, d)
    }

    @inline(__always)
    static func finish(_ acc: Float, _ offset: Float) -> Float { acc - 16 * offset }
}

/// Q4_K: 144 bytes per super-block of 256 weights: `d`, `dmin` (f16), 12 bytes of packed 6-bit scales and
/// mins for 8 sub-blocks of 32, then 128 bytes of nibbles (sub-block `2j` in the low nibbles of bytes
/// `32j..<32j+32`, sub-block `2j+1` in their high nibbles). `w = d·sc·q − dmin·m`.
enum Q4_KFormat: WeightBlockFormat {
    /// Scale and min of sub-block `j` from the 12 packed bytes at `s`.
    @inline(__always)
    static func scaleMin(_ s: UnsafeRawPointer, _ j: Int) -> (scale: UInt8, min: UInt8) {
        func byte(_ i: Int) -> UInt8 { s.load(fromByteOffset: i, as: UInt8.self) }
        if j < 4 { return (byte(j) & 63, byte(j + 4) & 63) }
        return ((byte(j + 4) & 0x0F) | (byte(j - 4) >> 6) << 4, (byte(j + 4) >> 4) | (byte(j) >> 6) << 4)
    }

    @inline(__always)
    static func integerDot(_ ref: BlockRef, _ x: UnsafePointer<Int16>) -> Int32 {
        let sub = ref.index & 7
        let w = (ref.row + 144 * (ref.index >> 3) + 16 + 32 * (sub >> 1)).assumingMemoryBound(to: UInt8.self)
        let shift = UInt8(4 * (sub & 1))
        var sum: Int32 = 0
        for i in 0..<32 { sum &+= Int32((w[i] >> shift) & 0x0F) &* Int32(x[i]) }
        return sum
    }

    @inline(__always)
    static func unpack(_ ref: BlockRef, into values: UnsafeMutablePointer<Float>) {
        let sub = ref.index & 7
        let w = (ref.row + 144 * (ref.index >> 3) + 16 + 32 * (sub >> 1)).assumingMemoryBound(to: UInt8.self)
        let shift = UInt8(4 * (sub & 1))
        for i in 0..<32 { values[i] = Float((w[i] >> shift) & 0x0F) }
    }

    @inline(__always)
    static func factors(_ ref: BlockRef) -> (scale: Float, offset: Float) {
        let block = ref.row + 144 * (ref.index >> 3)
        let d = Float(halfBits: block.loadUnaligned(as: UInt16.self))
        let dmin = Float(halfBits: block.loadUnaligned(fromByteOffset: 2, as: UInt16.self))
        let (scale, min) = scaleMin(block + 4, ref.index & 7)
        return (d * Float(scale), dmin * Float(min))
    }

    @inline(__always)
    static func finish(_ acc: Float, _ offset: Float) -> Float { acc - offset }
}

/// Q6_K: 210 bytes per super-block of 256 weights: 128 bytes of low nibbles, 64 bytes of high 2-bit pairs,
/// 16 signed 8-bit scales (one per 16 weights), then `d` (f16). `w = d·sc·(q − 32)`. Weight
/// `v = 128h + 32s + i` (`h < 2`, `s < 4`, `i < 32`) takes its low nibble from byte `64h + 32(s mod 2) + i`
/// (low nibble for `s < 2`, high for `s ≥ 2`) and bits 4–5 from bits `2s…2s+1` of byte `32h + i` of the
/// high part.
enum Q6_KFormat: WeightBlockFormat {
    /// `Σ sc·(q − 32)·x` over the block's two halves of 16, each with its own scale.
    @inline(__always)
    static func integerDot(_ ref: BlockRef, _ x: UnsafePointer<Int16>) -> Int32 {
        let block = ref.row + 210 * (ref.index >> 3)
        let k = ref.index & 7
        let h = k >> 2, s = k & 3
        let low = (block + 64 * h + 32 * (s & 1)).assumingMemoryBound(to: UInt8.self)
        let high = (block + 128 + 32 * h).assumingMemoryBound(to: UInt8.self)
        let lowShift = UInt8(4 * (s >> 1)), highShift = UInt8(2 * s)
        var sumA: Int32 = 0, sumB: Int32 = 0
        for i in 0..<16 {
            let q = Int32((low[i] >> lowShift) & 0x0F | ((high[i] >> highShift) & 3) << 4) - 32
            sumA &+= q &* Int32(x[i])
        }
        for i in 16..<32 {
            let q = Int32((low[i] >> lowShift) & 0x0F | ((high[i] >> highShift) & 3) << 4) - 32
            sumB &+= q &* Int32(x[i])
        }
        let scales = (block + 192).assumingMemoryBound(to: Int8.self)
        return Int32(scales[2 * k]) &* sumA &+ Int32(scales[2 * k + 1]) &* sumB
    }

    @inline(__always)
    static func unpack(_ ref: BlockRef, into values: UnsafeMutablePointer<Float>) {
        let block = ref.row + 210 * (ref.index >> 3)
        let k = ref.index & 7
        let h = k >> 2, s = k & 3
        let low = (block + 64 * h + 32 * (s & 1)).assumingMemoryBound(to: UInt8.self)
        let high = (block + 128 + 32 * h).assumingMemoryBound(to: UInt8.self)
        let lowShift = UInt8(4 * (s >> 1)), highShift = UInt8(2 * s)
        let scales = (block + 192).assumingMemoryBound(to: Int8.self)
        let scaleA = Int32(scales[2 * k]), scaleB = Int32(scales[2 * k + 1])
        for i in 0..<32 {
            let q = Int32((low[i] >> lowShift) & 0x0F | ((high[i] >> highShift) & 3) << 4) - 32
            values[i] = Float(q * (i < 16 ? scaleA : scaleB))
        }
    }

    @inline(__always)
    static func factors(_ ref: BlockRef) -> (scale: Float, offset: Float) {
        (Float(halfBits: (ref.row + 210 * (ref.index >> 3)).loadUnaligned(fromByteOffset: 208, as: UInt16.self)), 0)
    }

    @inline(__always)
    static func finish(_ acc: Float, _ offset: Float) -> Float { acc }
}

extension Kernels {
    /// Writes one row of a Q5_0, Q4_K or Q6_K matrix as floats, 32 values per `BlockRef`.
    static func dequantizeKRow(
        _ type: GGMLType, row: UnsafeRawPointer, columns: Int, into out: UnsafeMutablePointer<Float>
    ) {
        for b in 0..<columns / 32 {
            let o = out + 32 * b
            switch type {
            case .q5_0:
                let block = row + 22 * b
                let d = Float(halfBits: block.loadUnaligned(as: UInt16.self))
                let high = block.loadUnaligned(fromByteOffset: 2, as: UInt32.self)
                for i in 0..<16 {
                    let byte = block.load(fromByteOffset: 6 + i, as: UInt8.self)
                    o[i] = d * Float(Int(byte & 0x0F | UInt8((high >> UInt32(i)) & 1) << 4) - 16)
                    o[i + 16] = d * Float(Int(byte >> 4 | UInt8((high >> UInt32(i + 16)) & 1) << 4) - 16)
                }
            case .q4_K:
                let block = row + 144 * (b >> 3)
                let d = Float(halfBits: block.loadUnaligned(as: UInt16.self))
                let dmin = Float(halfBits: block.loadUnaligned(fromByteOffset: 2, as: UInt16.self))
                let (scale, min) = Q4_KFormat.scaleMin(block + 4, b & 7)
                let sub = b & 7
                for i in 0..<32 {
                    let byte = block.load(fromByteOffset: 16 + 32 * (sub >> 1) + i, as: UInt8.self)
                    let q = sub & 1 == 0 ? byte & 0x0F : byte >> 4
                    o[i] = d * Float(scale) * Float(q) - dmin * Float(min)
                }
            case .q6_K:
                let block = row + 210 * (b >> 3)
                let d = Float(halfBits: block.loadUnaligned(fromByteOffset: 208, as: UInt16.self))
                let k = b & 7, h = k >> 2, s = k & 3
                for i in 0..<32 {
                    let low = block.load(fromByteOffset: 64 * h + 32 * (s & 1) + i, as: UInt8.self)
                    let high = block.load(fromByteOffset: 128 + 32 * h + i, as: UInt8.self)
                    let q = Int((low >> UInt8(4 * (s >> 1))) & 0x0F | ((high >> UInt8(2 * s)) & 3) << 4) - 32
                    let scale = block.load(fromByteOffset: 192 + 2 * k + i / 16, as: Int8.self)
                    o[i] = d * Float(scale) * Float(q)
                }
            default:
                o.update(repeating: 0, count: 32)
            }
        }
    }
}
