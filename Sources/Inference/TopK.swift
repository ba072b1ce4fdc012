/// The `k` most likely next tokens of a logits row, with their log-probabilities, and the probability mass
/// of all other tokens.
///
/// One pass over the row, 16 values at a time, keeps running maxima and rescaled sums of exponentials (the
/// online log-sum-exp, with a vectorised exp) and, at the same time, a min-heap of the `k` best entries; a
/// chunk with no value above the heap's worst costs one vector compare. Only the `k` survivors are sorted.
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
        var heapValues = [Float](repeating: 0, count: k)
        var heapIDs = [Int32](repeating: 0, count: k)
        var heapCount = 0
        var logZ: Float = 0
        heapValues.withUnsafeMutableBufferPointer { hv in
            heapIDs.withUnsafeMutableBufferPointer { hi in
                let p = logits.baseAddress!
                // Per-lane online log-sum-exp: lane maxima `m`, lane sums `s` of e^(x − m), rescaled when
                // a lane's maximum rises. Starting from the most negative finite value keeps −∞ logits from
                // producing NaN.
                var m = SIMD16<Float>(repeating: -.greatestFiniteMagnitude)
                var s = SIMD16<Float>()
                var threshold = -Float.infinity  // the heap's worst value once it is full
                var i = 0
                while i + 16 <= n {
                    let x = UnsafeRawPointer(p + i).loadUnaligned(as: SIMD16<Float>.self)
                    let raised = m.replacing(with: x, where: x .> m)
                    s = s * VectorMath.exp(m - raised) + VectorMath.exp(x - raised)
                    m = raised
                    if heapCount < k || any(x .> SIMD16(repeating: threshold)) {
                        for lane in 0..<16 {
                            Self.offer(x[lane], Int32(i + lane), hv, hi, &heapCount, k: k)
                        }
                        if heapCount == k { threshold = hv[0] }
                    }
                    i += 16
                }
                var maxLogit = m.max()
                var sum = (s * VectorMath.exp(m - SIMD16(repeating: maxLogit))).sum()
                while i < n {
                    let x = p[i]
                    if x > maxLogit {
                        sum = sum * Float.exp(maxLogit - x) + 1
                        maxLogit = x
                    } else {
                        sum += Float.exp(x - maxLogit)
                    }
                    Self.offer(x, Int32(i), hv, hi, &heapCount, k: k)
                    i += 1
                }
                logZ = maxLogit + Float.log(sum)
            }
        }
        var order = Array(0..<heapCount)
        order.sort { a, b in
            heapValues[a] != heapValues[b] ? heapValues[a] > heapValues[b] : heapIDs[a] < heapIDs[b]
        }
        var ids = [Int32]()
        var logProbs = [Float]()
        ids.reserveCapacity(heapCount)
        logProbs.reserveCapacity(heapCount)
        var mass: Float = 0
        for j in order {
            let lp = heapValues[j] - logZ
            ids.append(heapIDs[j])
            logProbs.append(lp)
            mass += Float.exp(lp)
        }
        self.init(ids: ids, logProbs: logProbs, tailMass: min(1, max(0, 1 - mass)))
    }

    /// The `k` best tokens of `logits`.
    public init(logits: [Float], k: Int) {
        self = logits.withUnsafeBufferPointer { TopK(logits: $0, k: k) }
    }

    // MARK: Min-heap, worst entry at the root (smaller value, or equal value and larger id).

    /// Adds an entry while the heap has room, else replaces the root when the entry is better. Ids arrive in
    /// rising order, so an equal value never displaces an earlier id.
    @inline(__always)
    private static func offer(
        _ v: Float, _ id: Int32, _ hv: UnsafeMutableBufferPointer<Float>, _ hi: UnsafeMutableBufferPointer<Int32>,
        _ count: inout Int, k: Int
    ) {
        if count < k {
            push(v, id, hv, hi, &count)
        } else if k > 0 && v > hv[0] {
            replaceRoot(v, id, hv, hi, count)
        }
    }

    @inline(__always)
    private static func worse(_ va: Float, _ ia: Int32, _ vb: Float, _ ib: Int32) -> Bool {
        va < vb || (va == vb && ia > ib)
    }

    private static func push(
        _ v: Float, _ id: Int32, _ hv: UnsafeMutableBufferPointer<Float>, _ hi: UnsafeMutableBufferPointer<Int32>,
        _ count: inout Int
    ) {
        var i = count
        count += 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard worse(v, id, hv[parent], hi[parent]) else { break }
            hv[i] = hv[parent]
            hi[i] = hi[parent]
            i = parent
        }
        hv[i] = v
        hi[i] = id
    }

    private static func replaceRoot(
        _ v: Float, _ id: Int32, _ hv: UnsafeMutableBufferPointer<Float>, _ hi: UnsafeMutableBufferPointer<Int32>,
        _ count: Int
    ) {
        var i = 0
        while true {
            let l = 2 * i + 1
            guard l < count else { break }
            var child = l
            let r = l + 1
            if r < count && worse(hv[r], hi[r], hv[l], hi[l]) { child = r }
            guard worse(hv[child], hi[child], v, id) else { break }
            hv[i] = hv[child]
            hi[i] = hi[child]
            i = child
        }
        hv[i] = v
        hi[i] = id
    }
}
