/// Small vector helpers for the forward pass, written with SIMD accumulators (Swift neither fuses
/// multiply–adds nor vectorises float reductions on its own).
enum VectorMath {
    @inline(__always)
    static func load16(_ p: UnsafePointer<Float>) -> SIMD16<Float> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Float>.self)
    }

    @inline(__always)
    static func store16(_ v: SIMD16<Float>, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD16<Float>.self)
    }

    /// The sum of the 16 lanes, by halving in vector registers (`.sum()` adds lane by lane in order, and
    /// the compiler then scalarises the products that feed it).
    @inline(__always)
    static func horizontalSum(_ v: SIMD16<Float>) -> Float {
        let h8 = v.lowHalf + v.highHalf
        let h4 = h8.lowHalf + h8.highHalf
        let h2 = h4.lowHalf + h4.highHalf
        return h2.x + h2.y
    }

    /// Σ a[i]·b[i].
    @inline(__always)
    static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
        var acc0 = SIMD16<Float>()
        var acc1 = SIMD16<Float>()
        var i = 0
        while i + 32 <= n {
            acc0.addProduct(load16(a + i), load16(b + i))
            acc1.addProduct(load16(a + i + 16), load16(b + i + 16))
            i += 32
        }
        if i + 16 <= n {
            acc0.addProduct(load16(a + i), load16(b + i))
            i += 16
        }
        var s = horizontalSum(acc0 + acc1)
        while i < n {
            s += a[i] * b[i]
            i += 1
        }
        return s
    }

    /// Σ a[i]·Float(b[i]) for half-precision `b`.
    @inline(__always)
    static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float16>, _ n: Int) -> Float {
        var acc = SIMD16<Float>()
        var i = 0
        while i + 16 <= n {
            let h = UnsafeRawPointer(b + i).loadUnaligned(as: SIMD16<Float16>.self)
            acc.addProduct(load16(a + i), SIMD16<Float>(h))
            i += 16
        }
        var s = horizontalSum(acc)
        while i < n {
            s += a[i] * Float(b[i])
            i += 1
        }
        return s
    }

    /// y[i] += w · x[i].
    @inline(__always)
    static func axpy(_ w: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
        var i = 0
        let w16 = SIMD16<Float>(repeating: w)
        while i + 16 <= n {
            store16(load16(y + i).addingProduct(w16, load16(x + i)), y + i)
            i += 16
        }
        while i < n {
            y[i] += w * x[i]
            i += 1
        }
    }

    /// y[i] += w · Float(x[i]) for half-precision `x`.
    @inline(__always)
    static func axpy(_ w: Float, _ x: UnsafePointer<Float16>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
        var i = 0
        let w16 = SIMD16<Float>(repeating: w)
        while i + 16 <= n {
            let h = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float16>.self)
            store16(load16(y + i).addingProduct(w16, SIMD16<Float>(h)), y + i)
            i += 16
        }
        while i < n {
            y[i] += w * Float(x[i])
            i += 1
        }
    }

    /// out = x / rms(x) · weight, with rms(x) = sqrt(mean(x²) + eps). `out` may equal `x`.
    static func rmsNorm(
        _ x: UnsafePointer<Float>, weight: UnsafePointer<Float>, eps: Float, out: UnsafeMutablePointer<Float>, _ n: Int
    ) {
        let ss = dot(x, x, n)
        let scale = 1 / (ss / Float(n) + eps).squareRoot()
        var i = 0
        let s16 = SIMD16<Float>(repeating: scale)
        while i + 16 <= n {
            store16(load16(x + i) * s16 * load16(weight + i), out + i)
            i += 16
        }
        while i < n {
            out[i] = x[i] * scale * weight[i]
            i += 1
        }
    }

    /// y[i] += x[i].
    static func add(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, _ n: Int) {
        var i = 0
        while i + 16 <= n {
            store16(load16(y + i) + load16(x + i), y + i)
            i += 16
        }
        while i < n {
            y[i] += x[i]
            i += 1
        }
    }

    /// gate[i] = silu(gate[i]) · up[i], silu(g) = g / (1 + e^−g).
    static func swiglu(gate: UnsafeMutablePointer<Float>, up: UnsafePointer<Float>, _ n: Int) {
        var i = 0
        while i + 16 <= n {
            let g = load16(gate + i)
            store16(g / (1 + exp(-g)) * load16(up + i), gate + i)
            i += 16
        }
        while i < n {
            let g = gate[i]
            gate[i] = g / (1 + Float.exp(-g)) * up[i]
            i += 1
        }
    }

    /// e^x lane by lane (Cephes' single-precision polynomial, relative error ~2e-7). Inputs are clamped to
    /// [−87.3, 88.7], so −∞ gives ~1e-38 rather than 0 and +∞ gives ~3e38.
    @inline(__always) @_transparent
    static func exp(_ x: SIMD16<Float>) -> SIMD16<Float> {
        let lo = SIMD16<Float>(repeating: -87.3), hi = SIMD16<Float>(repeating: 88.7)
        let x = x.replacing(with: lo, where: .!(x .>= lo)).replacing(with: hi, where: x .> hi)
        // Round x·log2(e) to an integer n by adding 1.5·2^23 (the sum's low mantissa bits hold n), which
        // stays in vector registers where `rounded()` and `Int32(_:)` would go lane by lane.
        let magic = SIMD16<Float>(repeating: 12_582_912)
        let t = x * 1.442_695_04 + magic
        let n = t - magic
        var r = x - n * 0.693_359_375
        r = r + n * 2.121_944_4e-4
        var p = SIMD16<Float>(repeating: 1.987_569_15e-4)
        p = p * r + 1.398_199_95e-3
        p = p * r + 8.333_451_9e-3
        p = p * r + 4.166_579_59e-2
        p = p * r + 1.666_666_55e-1
        p = p * r + 5.000_000_12e-1
        p = p * r * r + r + 1
        let bits = (unsafeBitCast(t, to: SIMD16<Int32>.self) &- 0x4B40_0000 &+ 127) &<< 23
        return p * unsafeBitCast(bits, to: SIMD16<Float>.self)
    }
}

extension Float {
    @inline(__always)
    static func exp(_ x: Float) -> Float {
        #if canImport(Glibc)
        Glibc.expf(x)
        #else
        Darwin.expf(x)
        #endif
    }

    @inline(__always)
    static func log(_ x: Float) -> Float {
        #if canImport(Glibc)
        Glibc.logf(x)
        #else
        Darwin.logf(x)
        #endif
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
