#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Float vector helpers for the forward pass, written so that they compile to AVX-512 code: explicit
/// `SIMD16` accumulators (the compiler neither vectorises float reductions nor fuses multiply–adds on
/// its own) and element-wise loops the auto-vectoriser handles.
///
/// Every function reads and writes `count` floats through raw pointers; outputs may alias inputs only
/// where stated.
public enum Vector {
    /// `Σ a[i]·b[i]`.
    @inlinable
    public static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int) -> Float {
        let ra = UnsafeRawPointer(a), rb = UnsafeRawPointer(b)
        var s0 = SIMD16<Float>(), s1 = SIMD16<Float>(), s2 = SIMD16<Float>(), s3 = SIMD16<Float>()
        var i = 0
        while i + 64 <= count {
            s0.addProduct(ra.loadUnaligned(fromByteOffset: 4 * i, as: SIMD16<Float>.self),
                          rb.loadUnaligned(fromByteOffset: 4 * i, as: SIMD16<Float>.self))
            s1.addProduct(ra.loadUnaligned(fromByteOffset: 4 * i + 64, as: SIMD16<Float>.self),
                          rb.loadUnaligned(fromByteOffset: 4 * i + 64, as: SIMD16<Float>.self))
            s2.addProduct(ra.loadUnaligned(fromByteOffset: 4 * i + 128, as: SIMD16<Float>.self),
                          rb.loadUnaligned(fromByteOffset: 4 * i + 128, as: SIMD16<Float>.self))
            s3.addProduct(ra.loadUnaligned(fromByteOffset: 4 * i + 192, as: SIMD16<Float>.self),
                          rb.loadUnaligned(fromByteOffset: 4 * i + 192, as: SIMD16<Float>.self))
            i += 64
        }
        while i + 16 <= count {
            s0.addProduct(ra.loadUnaligned(fromByteOffset: 4 * i, as: SIMD16<Float>.self),
                          rb.loadUnaligned(fromByteOffset: 4 * i, as: SIMD16<Float>.self))
            i += 16
        }
        var sum = ((s0 + s1) + (s2 + s3)).sum()
        while i < count {
            sum = sum.addingProduct(a[i], b[i])
            i += 1
        }
        return sum
    }

    /// `y[i] += alpha·x[i]`.
    @inlinable
    public static func axpy(_ alpha: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { y[i] = y[i].addingProduct(alpha, x[i]) }
    }

    /// `y[i] += x[i]` (a residual connection).
    @inlinable
    public static func add(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { y[i] += x[i] }
    }

    /// `x[i] *= factor`.
    @inlinable
    public static func scale(_ x: UnsafeMutablePointer<Float>, by factor: Float, count: Int) {
        for i in 0..<count { x[i] *= factor }
    }

    /// `Σ x[i]²`.
    @inlinable
    public static func sumOfSquares(_ x: UnsafePointer<Float>, count: Int) -> Float {
        dot(x, x, count: count)
    }

    /// RMS normalisation: `out[i] = x[i] · weight[i] / sqrt(mean(x²) + epsilon)`. `out` may be `x`.
    @inlinable
    public static func rmsNorm(
        _ x: UnsafePointer<Float>, weight: UnsafePointer<Float>, epsilon: Float, count: Int,
        out: UnsafeMutablePointer<Float>
    ) {
        let factor = 1 / (sumOfSquares(x, count: count) / Float(count) + epsilon).squareRoot()
        for i in 0..<count { out[i] = x[i] * factor * weight[i] }
    }

    /// The largest of `x[0..<count]` (`-infinity` when `count` is 0).
    @inlinable
    public static func max(_ x: UnsafePointer<Float>, count: Int) -> Float {
        var m = SIMD16<Float>(repeating: -.infinity)
        var i = 0
        while i + 16 <= count {
            m = pointwiseMax(m, UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float>.self))
            i += 16
        }
        var result = m.max()
        while i < count {
            result = Swift.max(result, x[i])
            i += 1
        }
        return result
    }

    /// In-place softmax: `x[i] = exp(x[i] − max) / Σ exp(x[j] − max)`. Returns the sum before
    /// normalising (useful for log-probabilities: `log p_i = x_i − max − log(sum)`).
    @inlinable
    @discardableResult
    public static func softmax(_ x: UnsafeMutablePointer<Float>, count: Int) -> Float {
        guard count > 0 else { return 0 }
        let m = max(x, count: count)
        for i in 0..<count { x[i] = exp(x[i] - m) }
        var s0 = SIMD16<Float>()
        var i = 0
        while i + 16 <= count {
            s0 += UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float>.self)
            i += 16
        }
        var sum = s0.sum()
        while i < count {
            sum += x[i]
            i += 1
        }
        scale(x, by: 1 / sum, count: count)
        return sum
    }

    /// SwiGLU: `out[i] = silu(gate[i]) · up[i]` with `silu(g) = g / (1 + exp(−g))`. `out` may be `gate`
    /// or `up`.
    @inlinable
    public static func siluMul(
        gate: UnsafePointer<Float>, up: UnsafePointer<Float>, count: Int, out: UnsafeMutablePointer<Float>
    ) {
        for i in 0..<count {
            let g = gate[i]
            out[i] = g / (1 + exp(-g)) * up[i]
        }
    }

    /// `e^x` to within a few ulp for normal results, written so that loops over it vectorise
    /// (no library call): `2^n · p(r)` with `x = n·ln 2 + r`, `|r| ≤ ln 2 / 2`, and a degree-7 polynomial.
    /// Inputs below −87.3 give 0, above 88.37 give +infinity, NaN gives NaN.
    @inlinable
    @inline(__always)
    public static func exp(_ x: Float) -> Float {
        let clamped = Swift.min(Swift.max(x, -87.33654), 88.37626)
        // Round x·log2(e) to an integer with the 1.5·2^23 trick; n's bits then sit in the low mantissa.
        let t = clamped * 1.442_695_04 + 12_582_912
        let n = t - 12_582_912
        var r = clamped.addingProduct(n, -0.693_359_375)
        r = r.addingProduct(n, 2.121_944_4e-4)
        var p: Float = 1.987_569_1e-4
        p = Float(1.398_199_9e-3).addingProduct(p, r)
        p = Float(8.333_452e-3).addingProduct(p, r)
        p = Float(4.166_579_6e-2).addingProduct(p, r)
        p = Float(0.166_666_65).addingProduct(p, r)
        p = Float(0.5).addingProduct(p, r)
        p = r.addingProduct(p, r * r) + 1
        let bits = (t.bitPattern &- 0x4B40_0000) << 23
        let result = Float(bitPattern: p.bitPattern &+ bits)
        if x != x { return x }
        return x > 88.37626 ? .infinity : (x < -87.33654 ? 0 : result)
    }
}
