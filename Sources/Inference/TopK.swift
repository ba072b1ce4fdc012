/// The `k` most likely next tokens of a logits row, with their log-probabilities, and the probability mass
/// of all other tokens.
///
/// Two passes over the row, 16 values at a time: the first finds the largest logit (compare and blend: Swift's
/// `pointwiseMax` on floats goes lane by lane and is 25 times slower); the second sums e^(x − max) with a
/// vectorised exp and collects the values above the current k-th best into a candidate buffer; when the buffer
/// fills, a quickselect keeps the best `k` and raises the bar. A chunk with no value above the bar costs one
/// vector compare. Only the final `k` are sorted. (A single pass with a running maximum, rescaling the sums as
/// it rises, measured 3 times slower over a 49,152-token row: its loop carries a dependency on the maximum.)
/// Log-probabilities are `logit − logsumexp(logits)`.
public struct TopK: Sendable, Equatable {
    /// Token ids, most likely first (ties: lower id first).
    public var ids: [Int32]
    /// Natural-log probabilities, descending, aligned with `ids`.
    public var logProbs: [Float]
    /// 1 − Σ exp(logProbs), clamped to 0...1: the probability of every token not listed.
    public var tailMass: Float

    /// Creates a value from its parts.
    public init(ids: [Int32], logProbs: [Float], tailMass: Float) {
        self.ids = ids
        self.logProbs = logProbs
        self.tailMass = tailMass
    }

    /// The `k` best tokens of `logits` (at most `logits.count`; none for `k <= 0`).
    public init(logits: UnsafeBufferPointer<Float>, k: Int) {
        let n = logits.count
        let k = max(0, min(k, n))
        guard n > 0 else {
            self.init(ids: [], logProbs: [], tailMass: 1)
            return
        }
        let p = logits.baseAddress!
        // Pass 1: the largest logit. Starting from the most negative finite value keeps −∞ logits from
        // producing NaN below.
        var m0 = SIMD16<Float>(repeating: -.greatestFiniteMagnitude)
        var m1 = m0
        var i = 0
        while i + 32 <= n {
            let x0 = UnsafeRawPointer(p + i).loadUnaligned(as: SIMD16<Float>.self)
            let x1 = UnsafeRawPointer(p + i + 16).loadUnaligned(as: SIMD16<Float>.self)
            m0.replace(with: x0, where: x0 .> m0)
            m1.replace(with: x1, where: x1 .> m1)
            i += 32
        }
        m0.replace(with: m1, where: m1 .> m0)
        var maxLogit = m0.max()
        while i < n {
            if p[i] > maxLogit { maxLogit = p[i] }
            i += 1
        }
        // Pass 2: Σ e^(x − max), and the candidates. Candidates are keys that order like (value descending,
        // id ascending): the value's bits made order-preserving in the high half, the complemented id in the low
        // half.
        let cap = max(2 * k, k + 256)
        let keys = UnsafeMutablePointer<UInt64>.allocate(capacity: cap + 16)
        defer { keys.deallocate() }
        var count = 0
        let top = SIMD16<Float>(repeating: maxLogit)
        var s = SIMD16<Float>()
        // Values at or below the k-th best candidate so far cannot enter the top k.
        var threshold = -Float.infinity
        var bar = SIMD16<Float>(repeating: threshold)
        i = 0
        while i + 16 <= n {
            let x = UnsafeRawPointer(p + i).loadUnaligned(as: SIMD16<Float>.self)
            s += VectorMath.exp(x - top)
            if k > 0 && any(x .> bar) {
                for lane in 0..<16 where x[lane] > threshold {
                    keys[count] = Self.key(x[lane], Int32(i + lane))
                    count += 1
                }
                if count >= cap {
                    threshold = Self.keepBest(k, of: UnsafeMutableBufferPointer(start: keys, count: count))
                    bar = SIMD16(repeating: threshold)
                    count = k
                }
            }
            i += 16
        }
        var sum = VectorMath.horizontalSum(s)
        while i < n {
            let x = p[i]
            sum += Float.exp(x - maxLogit)
            if k > 0 && x > threshold {
                keys[count] = Self.key(x, Int32(i))
                count += 1
            }
            i += 1
        }
        let logZ = maxLogit + Float.log(sum)
        if count > k {
            _ = Self.keepBest(k, of: UnsafeMutableBufferPointer(start: keys, count: count))
            count = k
        }
        var best = UnsafeMutableBufferPointer(start: keys, count: count)
        best.sort()  // ascending: best last

        var ids = [Int32]()
        var logProbs = [Float]()
        ids.reserveCapacity(count)
        logProbs.reserveCapacity(count)
        var mass: Float = 0
        for key in best.reversed() {
            let lp = Self.value(of: key) - logZ
            ids.append(Self.id(of: key))
            logProbs.append(lp)
            mass += Float.exp(lp)
        }
        self.init(ids: ids, logProbs: logProbs, tailMass: min(1, max(0, 1 - mass)))
    }

    /// The `k` best tokens of `logits`.
    public init(logits: [Float], k: Int) {
        self = logits.withUnsafeBufferPointer { TopK(logits: $0, k: k) }
    }

    // MARK: Selection

    /// A key that orders like (value descending, id ascending) when compared as an unsigned number.
    @inline(__always)
    static func key(_ value: Float, _ id: Int32) -> UInt64 {
        let b = value.bitPattern
        let ordered = b & 0x8000_0000 != 0 ? ~b : b | 0x8000_0000
        return UInt64(ordered) << 32 | UInt64(~UInt32(bitPattern: id))
    }

    @inline(__always)
    static func value(of key: UInt64) -> Float {
        let ordered = UInt32(truncatingIfNeeded: key >> 32)
        return Float(bitPattern: ordered & 0x8000_0000 != 0 ? ordered & 0x7FFF_FFFF : ~ordered)
    }

    @inline(__always)
    static func id(of key: UInt64) -> Int32 { Int32(bitPattern: ~UInt32(truncatingIfNeeded: key)) }

    /// Moves the `k` largest keys to the front of `a` (in any order) and returns the value of the smallest
    /// of them. Quickselect with median-of-three pivots; keys are distinct (ids differ).
    static func keepBest(_ k: Int, of a: UnsafeMutableBufferPointer<UInt64>) -> Float {
        do {
            var lo = 0
            var hi = a.count - 1
            // Invariant: the k largest lie in a[0..<k] once lo...hi shrinks around position k − 1.
            while lo < hi {
                let mid = lo + (hi - lo) / 2
                // Median of three, descending order.
                if a[mid] > a[lo] { a.swapAt(mid, lo) }
                if a[hi] > a[lo] { a.swapAt(hi, lo) }
                if a[hi] > a[mid] { a.swapAt(hi, mid) }
                let pivot = a[mid]
                var i = lo
                var j = hi
                while i <= j {
                    while a[i] > pivot { i += 1 }
                    while a[j] < pivot { j -= 1 }
                    if i <= j {
                        a.swapAt(i, j)
                        i += 1
                        j -= 1
                    }
                }
                if k - 1 <= j {
                    hi = j
                } else if k - 1 >= i {
                    lo = i
                } else {
                    break
                }
            }
        }
        var smallest = UInt64.max
        for key in a[0..<k] { smallest = min(smallest, key) }
        return value(of: smallest)
    }
}
