/// The keys and values of one session's past positions, for every layer.
///
/// Storage per layer is `[position × kvWidth]` (kvWidth = KV heads × head dimension), as `Float` or
/// `Float16`. Memory grows by doubling as positions are added, up to `capacity`, and is kept across
/// `reset()` and `truncate(to:)`, so a reused cache allocates nothing in the steady state.
/// Appending past `capacity` is `InferenceError.contextFull`.
public final class KVCache: @unchecked Sendable {
    // Safe to send between threads: a cache is used by one thread at a time (its owner, or the model's
    // forward pass, which the owner calls and waits for). It must not be used from two threads at once.

    /// How keys and values are stored.
    public enum Precision: Sendable, Equatable {
        /// 4 bytes a value.
        case f32
        /// 2 bytes a value (half the memory; rounding error ~1e-3 relative).
        case f16
    }

    /// The most positions the cache holds.
    public let capacity: Int
    /// The storage precision.
    public let precision: Precision
    /// Positions held (the next token goes at position `count`).
    public internal(set) var count: Int {
        didSet { if tokens.count > count { tokens.removeLast(tokens.count - count) } }
    }
    /// The token at each position held (`count` of them), so a new sequence that starts the same way can keep
    /// them (`commonPrefix`, then `truncate(to:)`) instead of computing them again.
    public internal(set) var tokens: [Int32] = []
    /// The LoRA adapter this session's rows run with (nil: the base model). The keys and values held were
    /// computed with it: change it only on an empty cache (after `reset()`).
    public var adapter: LoRAAdapter?

    let layers: Int
    let width: Int
    private(set) var allocated: Int = 0
    private(set) var keys: [UnsafeMutableRawPointer] = []
    private(set) var values: [UnsafeMutableRawPointer] = []

    /// How many leading tokens of `sequence` this cache holds already.
    public func commonPrefix(_ sequence: some Collection<Int32>) -> Int {
        var n = 0
        for (held, wanted) in zip(tokens, sequence) {
            guard held == wanted else { break }
            n += 1
        }
        return n
    }

    init(layers: Int, width: Int, capacity: Int, precision: Precision) {
        self.count = 0
        self.layers = layers
        self.width = width
        self.capacity = capacity
        self.precision = precision
    }

    deinit {
        for p in keys { p.deallocate() }
        for p in values { p.deallocate() }
    }

    /// Positions still free.
    public var remaining: Int { capacity - count }

    /// Bytes of memory the cache holds now (it grows with use, up to `maxBytes`).
    public var allocatedBytes: Int { 2 * layers * allocated * width * bytesPerValue }

    /// Bytes the cache holds when full.
    public var maxBytes: Int { 2 * layers * capacity * width * bytesPerValue }

    /// Forgets every position (the memory is kept for reuse).
    public func reset() { count = 0 }

    /// Keeps the first `n` positions and forgets the rest (to roll back tokens).
    /// - Throws: `InferenceError.badTruncation` unless `0 <= n <= count`.
    public func truncate(to n: Int) throws(InferenceError) {
        guard n >= 0, n <= count else { throw .badTruncation(requested: n, count: count) }
        count = n
    }

    var bytesPerValue: Int { precision == .f32 ? 4 : 2 }

    /// Makes room for `positions` positions in total (at most `capacity`).
    func reserve(_ positions: Int) {
        guard positions > allocated else { return }
        let newAllocated = min(capacity, max(positions, allocated * 2, 64))
        let rowBytes = width * bytesPerValue
        for l in 0..<layers {
            let k = UnsafeMutableRawPointer.allocate(byteCount: newAllocated * rowBytes, alignment: 64)
            let v = UnsafeMutableRawPointer.allocate(byteCount: newAllocated * rowBytes, alignment: 64)
            if allocated > 0 {
                k.copyMemory(from: keys[l], byteCount: count * rowBytes)
                v.copyMemory(from: values[l], byteCount: count * rowBytes)
                keys[l].deallocate()
                values[l].deallocate()
                keys[l] = k
                values[l] = v
            } else {
                keys.append(k)
                values.append(v)
            }
        }
        allocated = newAllocated
    }

    /// Stores one position's key and value rows (`width` floats each) of `layer`.
    @inline(__always)
    func store(layer: Int, position: Int, key: UnsafePointer<Float>, value: UnsafePointer<Float>) {
        switch precision {
        case .f32:
            (keys[layer].assumingMemoryBound(to: Float.self) + position * width).update(from: key, count: width)
            (values[layer].assumingMemoryBound(to: Float.self) + position * width).update(from: value, count: width)
        case .f16:
            let k = keys[layer].assumingMemoryBound(to: Float16.self) + position * width
            let v = values[layer].assumingMemoryBound(to: Float16.self) + position * width
            for i in 0..<width {
                k[i] = Float16(key[i])
                v[i] = Float16(value[i])
            }
        }
    }
}
