/// The `k` most likely next tokens of a logits row, with their log-probabilities, and the probability mass
/// of all other tokens.
///
/// One pass over the row keeps a running maximum and a rescaled sum of exponentials (the online
/// log-sum-exp) and, at the same time, a min-heap of the `k` best entries, so most entries cost one compare;
/// only the `k` survivors are sorted. Log-probabilities are `logit − logsumexp(logits)`.
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
        var maxLogit = -Float.infinity
        var sum: Float = 0
        heapValues.withUnsafeMutableBufferPointer { hv in
            heapIDs.withUnsafeMutableBufferPointer { hi in
                for i in 0..<n {
                    let x = logits[i]
                    // Online log-sum-exp.
                    if x > maxLogit {
                        sum = sum * Float.exp(maxLogit - x) + 1
                        maxLogit = x
                    } else {
                        sum += Float.exp(x - maxLogit)
                    }
                    // Keep the k best. Indices rise, so an equal value never displaces an earlier id.
                    if heapCount < k {
                        Self.push(x, Int32(i), hv, hi, &heapCount)
                    } else if k > 0 && x > hv[0] {
                        Self.replaceRoot(x, Int32(i), hv, hi, heapCount)
                    }
                }
            }
        }
        let logZ = maxLogit + Float.log(sum)
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
