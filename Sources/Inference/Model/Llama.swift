import CPUKernels

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// The Llama family (llama, qwen2): pre-norm transformer blocks with RMSNorm, rotary position embeddings,
// grouped-query attention and a SwiGLU feed-forward network. qwen2 adds biases to the Q/K/V projections
// and rotates split halves of each head (NEOX style) instead of adjacent pairs.
//
// A forward call takes a batch of sessions, each appending one token (a decode step) or many (a prefill).
// All T new tokens are stacked into a [T × dim] activation matrix, so each weight matrix is streamed from
// memory once per call; attention then runs per session and head over that session's own KV cache.

// MARK: - Attention

/// The attention weights of one block, keyed by their GGUF names `blk.N.attn_{q,k,v,output}.weight`
/// (and `.bias` for qwen2).
struct LlamaAttention: Sendable {
    let wq: QuantizedMatrix
    let wk: QuantizedMatrix
    let wv: QuantizedMatrix
    let wo: QuantizedMatrix
    let bq: [Float]?
    let bk: [Float]?
    let bv: [Float]?

    init(gguf: GGUFFile, block n: Int, config c: LlamaConfiguration) throws(GGUFError) {
        let p = "blk.\(n).attn_"
        wq = try LlamaModel.matrix(gguf, p + "q.weight", rows: c.queryWidth, columns: c.embeddingLength)
        wk = try LlamaModel.matrix(gguf, p + "k.weight", rows: c.keyValueWidth, columns: c.embeddingLength)
        wv = try LlamaModel.matrix(gguf, p + "v.weight", rows: c.keyValueWidth, columns: c.embeddingLength)
        wo = try LlamaModel.matrix(gguf, p + "output.weight", rows: c.embeddingLength, columns: c.queryWidth)
        if c.attentionBias {
            bq = try LlamaModel.vector(gguf, p + "q.bias", count: c.queryWidth)
            bk = try LlamaModel.vector(gguf, p + "k.bias", count: c.keyValueWidth)
            bv = try LlamaModel.vector(gguf, p + "v.bias", count: c.keyValueWidth)
        } else {
            bq = nil
            bk = nil
            bv = nil
        }
    }
}

// MARK: - MLP

/// The SwiGLU feed-forward weights of one block: `blk.N.ffn_{gate,up,down}.weight`.
struct LlamaMLP: Sendable {
    let gate: QuantizedMatrix
    let up: QuantizedMatrix
    let down: QuantizedMatrix

    init(gguf: GGUFFile, block n: Int, config c: LlamaConfiguration) throws(GGUFError) {
        let p = "blk.\(n).ffn_"
        gate = try LlamaModel.matrix(gguf, p + "gate.weight", rows: c.feedForwardLength, columns: c.embeddingLength)
        up = try LlamaModel.matrix(gguf, p + "up.weight", rows: c.feedForwardLength, columns: c.embeddingLength)
        down = try LlamaModel.matrix(gguf, p + "down.weight", rows: c.embeddingLength, columns: c.feedForwardLength)
    }
}

// MARK: - Block

/// One transformer block: `x += attn(norm(x)); x += mlp(norm(x))`.
struct LlamaBlock: Sendable {
    let attentionNorm: [Float]
    let attention: LlamaAttention
    let feedForwardNorm: [Float]
    let mlp: LlamaMLP

    init(gguf: GGUFFile, block n: Int, config c: LlamaConfiguration) throws(GGUFError) {
        attentionNorm = try LlamaModel.vector(gguf, "blk.\(n).attn_norm.weight", count: c.embeddingLength)
        attention = try LlamaAttention(gguf: gguf, block: n, config: c)
        feedForwardNorm = try LlamaModel.vector(gguf, "blk.\(n).ffn_norm.weight", count: c.embeddingLength)
        mlp = try LlamaMLP(gguf: gguf, block: n, config: c)
    }
}

// MARK: - Model

/// The weights of a Llama-family model and the forward pass over a batch of sessions.
///
/// Not safe for concurrent `forward` calls (the scratch buffers are shared); `LanguageModel` serialises them.
final class LlamaModel {
    let config: LlamaConfiguration
    let embedding: QuantizedMatrix
    let blocks: [LlamaBlock]
    let outputNorm: [Float]
    let output: QuantizedMatrix
    let pool: ThreadPool
    /// Inverse frequencies of the rotary embedding, one per rotated pair.
    private let inverseFrequencies: [Double]
    private let scratch = Scratch()

    init(gguf: GGUFFile, config c: LlamaConfiguration, pool: ThreadPool) throws(GGUFError) {
        self.config = c
        self.pool = pool
        embedding = try Self.matrix(gguf, "token_embd.weight", rows: c.vocabularySize, columns: c.embeddingLength)
        var blocks: [LlamaBlock] = []
        for n in 0..<c.blockCount { blocks.append(try LlamaBlock(gguf: gguf, block: n, config: c)) }
        self.blocks = blocks
        outputNorm = try Self.vector(gguf, "output_norm.weight", count: c.embeddingLength)
        if gguf.tensorInfo("output.weight") != nil {
            output = try Self.matrix(gguf, "output.weight", rows: c.vocabularySize, columns: c.embeddingLength)
        } else {
            output = embedding  // tied embeddings
        }
        let half = c.ropeDimension / 2
        inverseFrequencies = (0..<half).map { i in
            pow(Double(c.ropeFrequencyBase), -2 * Double(i) / Double(c.ropeDimension))
        }
    }

    static func matrix(_ gguf: GGUFFile, _ name: String, rows: Int, columns: Int) throws(GGUFError) -> QuantizedMatrix {
        let m = try gguf.matrix(name)
        guard m.rows == rows, m.columns == columns else {
            throw .badShape(tensor: name, shape: gguf.tensorInfo(name)?.shape ?? [],
                            expected: "[\(columns), \(rows)] (columns, rows)")
        }
        return m.withPackedLayout()
    }

    static func vector(_ gguf: GGUFFile, _ name: String, count: Int) throws(GGUFError) -> [Float] {
        let v = try gguf.floats(name)
        guard v.count == count else {
            throw .badShape(tensor: name, shape: gguf.tensorInfo(name)?.shape ?? [], expected: "[\(count)]")
        }
        return v
    }

    /// Attention work (multiply–adds per layer) below which the heads run on the calling thread.
    static let parallelAttentionThreshold = 262_144

    func makeCache(capacity: Int, precision: KVCache.Precision) -> KVCache {
        KVCache(layers: config.blockCount, width: config.keyValueWidth, capacity: capacity, precision: precision)
    }

    // MARK: Forward

    /// Appends each entry's tokens to its cache and writes the logits of each entry's last new token into
    /// `logits` (row `s` = entry `s`, `vocabularySize` floats a row; `logits` must hold `batch.count` rows).
    /// Nothing is changed when an error is thrown.
    func forward(
        _ batch: [(cache: KVCache, tokens: [Int32])], logits: UnsafeMutablePointer<Float>
    ) throws(InferenceError) {
        let c = config
        // Validate everything before touching any cache.
        let (total, longest) = try validate(batch)
        let s = scratch
        s.caches.removeAll(keepingCapacity: true)
        guard !batch.isEmpty else { return }

        let dim = c.embeddingLength
        let qWidth = c.queryWidth
        let kvWidth = c.keyValueWidth
        let ffn = c.feedForwardLength
        let headDim = c.headDimension
        let half = c.ropeDimension / 2
        let sessions = batch.count
        let headCount = c.headCount
        let groupSize = c.headCount / c.keyValueHeadCount
        s.ensure(tokens: total, config: c, attentionTasks: sessions * headCount, longest: longest, sessions: sessions)

        // Row bookkeeping: which session and position each of the T rows belongs to.
        var row = 0
        for (b, (cache, tokens)) in batch.enumerated() {
            s.caches.append(cache)
            cache.reserve(cache.count + tokens.count)
            s.sessionStart[b] = row
            for (i, token) in tokens.enumerated() {
                let position = cache.count + i
                s.rowPosition[row] = position
                Kernels.dequantizeRow(embedding, row: Int(token), into: s.x + row * dim)
                for p in 0..<half {
                    let angle = Double(position) * inverseFrequencies[p]
                    s.ropeCos[row * half + p] = Float(cos(angle))
                    s.ropeSin[row * half + p] = Float(sin(angle))
                }
                row += 1
            }
        }
        s.sessionStart[sessions] = row

        let T = total
        let adapted = batch.contains { $0.cache.adapter != nil }
        // Multiply–adds of one layer's attention (scores and weighted values), to decide on threading.
        var attentionWork = 0
        for t in 0..<T { attentionWork += (s.rowPosition[t] + 1) * 2 * qWidth }
        let eps = c.rmsEpsilon
        let scale = 1 / Float(headDim).squareRoot()
        for (layer, block) in blocks.enumerated() {
            // Attention.
            for t in 0..<T {
                VectorMath.rmsNorm(s.x + t * dim, weight: block.attentionNorm, eps: eps, out: s.xn + t * dim, dim)
            }
            let a = block.attention
            Kernels.matmul((a.wq, s.q), (a.wk, s.k), (a.wv, s.v), x: s.xn, batch: T, pool: pool)
            if adapted {
                addLoRA(.query, layer: layer, batch: batch, x: s.xn, out: s.q)
                addLoRA(.key, layer: layer, batch: batch, x: s.xn, out: s.k)
                addLoRA(.value, layer: layer, batch: batch, x: s.xn, out: s.v)
            }
            if let bq = a.bq, let bk = a.bk, let bv = a.bv {
                for t in 0..<T {
                    VectorMath.add(bq, into: s.q + t * qWidth, qWidth)
                    VectorMath.add(bk, into: s.k + t * kvWidth, kvWidth)
                    VectorMath.add(bv, into: s.v + t * kvWidth, kvWidth)
                }
            }
            for t in 0..<T {
                let cosRow = s.ropeCos + t * half
                let sinRow = s.ropeSin + t * half
                for h in 0..<headCount { rotate(s.q + t * qWidth + h * headDim, cos: cosRow, sin: sinRow) }
                for h in 0..<c.keyValueHeadCount { rotate(s.k + t * kvWidth + h * headDim, cos: cosRow, sin: sinRow) }
            }
            for (b, (cache, _)) in batch.enumerated() {
                for t in s.sessionStart[b]..<s.sessionStart[b + 1] {
                    cache.store(layer: layer, position: s.rowPosition[t], key: s.k + t * kvWidth,
                                value: s.v + t * kvWidth)
                }
            }
            let caches = s.caches
            let scoresStride = s.scoresStride
            let attendHead = { (task: Int) in
                let b = task / headCount
                let h = task % headCount
                let cache = caches[b]
                let kvOffset = (h / groupSize) * headDim
                let scores = s.scores + task * scoresStride
                for t in s.sessionStart[b]..<s.sessionStart[b + 1] {
                    let length = s.rowPosition[t] + 1  // causal: positions 0...p
                    let query = UnsafePointer(s.q + t * qWidth + h * headDim)
                    let out = s.attention + t * qWidth + h * headDim
                    Self.attend(query: query, cache: cache, layer: layer, kvOffset: kvOffset, length: length,
                                headDim: headDim, scale: scale, scores: scores, out: out)
                }
            }
            // Waking other threads costs tens of microseconds: short attention work stays on this thread.
            if attentionWork >= Self.parallelAttentionThreshold {
                pool.run(tasks: sessions * headCount, attendHead)
            } else {
                for task in 0..<sessions * headCount { attendHead(task) }
            }
            Kernels.matmul(a.wo, x: s.attention, batch: T, out: s.xn, pool: pool)
            if adapted { addLoRA(.attentionOutput, layer: layer, batch: batch, x: s.attention, out: s.xn) }
            VectorMath.add(s.xn, into: s.x, T * dim)

            // Feed-forward.
            for t in 0..<T {
                VectorMath.rmsNorm(s.x + t * dim, weight: block.feedForwardNorm, eps: eps, out: s.xn + t * dim, dim)
            }
            Kernels.matmul((block.mlp.gate, s.gate), (block.mlp.up, s.up), x: s.xn, batch: T, pool: pool)
            if adapted {
                addLoRA(.gate, layer: layer, batch: batch, x: s.xn, out: s.gate)
                addLoRA(.up, layer: layer, batch: batch, x: s.xn, out: s.up)
            }
            VectorMath.swiglu(gate: s.gate, up: s.up, T * ffn)
            Kernels.matmul(block.mlp.down, x: s.gate, batch: T, out: s.xn, pool: pool)
            if adapted { addLoRA(.down, layer: layer, batch: batch, x: s.gate, out: s.xn) }
            VectorMath.add(s.xn, into: s.x, T * dim)
        }

        for (b, (cache, tokens)) in batch.enumerated() {
            cache.tokens.append(contentsOf: tokens)
            cache.count += tokens.count
            let last = s.sessionStart[b + 1] - 1
            VectorMath.rmsNorm(s.x + last * dim, weight: outputNorm, eps: eps, out: s.lastRows + b * dim, dim)
        }
        Kernels.matmul(output, x: s.lastRows, batch: sessions, out: logits, pool: pool)
        if adapted {
            for (b, (cache, _)) in batch.enumerated() {
                guard let adapter = cache.adapter, let pair = adapter.output else { continue }
                addLowRank(pair, scale: adapter.outputScale, x: s.lastRows + b * dim, rows: 1, out: logits + b * c.vocabularySize)
            }
        }
    }

    /// Adds each adapted session's `s · B·(A·x)` for `target` of `layer` to its rows of `out` (`x` holds every
    /// row of the batch, in the sessions' order).
    private func addLoRA(
        _ target: LoRAAdapter.Target, layer: Int, batch: [(cache: KVCache, tokens: [Int32])],
        x: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>
    ) {
        let s = scratch
        for (b, (cache, _)) in batch.enumerated() {
            guard let adapter = cache.adapter, let pair = adapter.blocks[layer][target.rawValue] else { continue }
            let start = s.sessionStart[b]
            let rows = s.sessionStart[b + 1] - start
            addLowRank(pair, scale: adapter.blockScales[layer][target.rawValue], x: x + start * pair.a.columns,
                       rows: rows, out: out + start * pair.b.rows)
        }
    }

    /// `out[t] += scale · B·(A·x[t])` for `rows` consecutive rows: per rank, one dot with A's row and one
    /// scaled add of B's column (a few thousand multiply–adds a row, on the calling thread).
    private func addLowRank(
        _ pair: LoRAAdapter.Pair, scale: Float, x: UnsafePointer<Float>, rows: Int, out: UnsafeMutablePointer<Float>
    ) {
        let inputs = pair.a.columns, outputs = pair.b.rows
        pair.aRows.withUnsafeBufferPointer { a in
            pair.bColumns.withUnsafeBufferPointer { b in
                for t in 0..<rows {
                    for k in 0..<pair.rank {
                        let c = scale * VectorMath.dot(a.baseAddress! + k * inputs, x + t * inputs, inputs)
                        VectorMath.axpy(c, b.baseAddress! + k * outputs, out + t * outputs, outputs)
                    }
                }
            }
        }
    }

    /// Checks a batch: every entry has tokens in the vocabulary that fit its cache, and no cache appears
    /// twice. Returns the number of new tokens and the longest sequence after the call.
    func validate(_ batch: [(cache: KVCache, tokens: [Int32])]) throws(InferenceError) -> (total: Int, longest: Int) {
        let c = config
        let s = scratch
        s.seen.removeAll(keepingCapacity: true)
        var total = 0
        var longest = 0
        for (cache, tokens) in batch {
            guard !tokens.isEmpty else { throw .emptyInput }
            guard s.seen.insert(ObjectIdentifier(cache)).inserted else { throw .duplicateCache }
            guard cache.layers == c.blockCount, cache.width == c.keyValueWidth else { throw .cacheMismatch }
            guard tokens.count <= cache.capacity - cache.count else {
                throw .contextFull(capacity: cache.capacity, count: cache.count, adding: tokens.count)
            }
            for t in tokens where t < 0 || Int(t) >= c.vocabularySize {
                throw .tokenOutOfRange(token: t, vocabularySize: c.vocabularySize)
            }
            total += tokens.count
            longest = max(longest, cache.count + tokens.count)
        }
        return (total, longest)
    }

    /// Rotates the first `ropeDimension` values of one head in place.
    @inline(__always)
    private func rotate(_ x: UnsafeMutablePointer<Float>, cos: UnsafePointer<Float>, sin: UnsafePointer<Float>) {
        let half = config.ropeDimension / 2
        switch config.ropeStyle {
        case .adjacentPairs:
            for p in 0..<half {
                let a = x[2 * p], b = x[2 * p + 1]
                x[2 * p] = a * cos[p] - b * sin[p]
                x[2 * p + 1] = a * sin[p] + b * cos[p]
            }
        case .splitHalf:
            for p in 0..<half {
                let a = x[p], b = x[p + half]
                x[p] = a * cos[p] - b * sin[p]
                x[p + half] = a * sin[p] + b * cos[p]
            }
        }
    }

    /// Softmax attention of one query over cache positions `0..<length` of one KV head.
    @inline(__always)
    private static func attend(
        query: UnsafePointer<Float>, cache: KVCache, layer: Int, kvOffset: Int, length: Int, headDim: Int,
        scale: Float, scores: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>
    ) {
        let width = cache.width
        var maxScore = -Float.infinity
        switch cache.precision {
        case .f32:
            let keys = UnsafePointer(cache.keys[layer].assumingMemoryBound(to: Float.self)) + kvOffset
            if headDim == 64 {
                let q0 = VectorMath.load16(query), q1 = VectorMath.load16(query + 16)
                let q2 = VectorMath.load16(query + 32), q3 = VectorMath.load16(query + 48)
                for j in 0..<length {
                    let k = keys + j * width
                    var acc = q0 * VectorMath.load16(k)
                    acc.addProduct(q1, VectorMath.load16(k + 16))
                    acc.addProduct(q2, VectorMath.load16(k + 32))
                    acc.addProduct(q3, VectorMath.load16(k + 48))
                    let sc = VectorMath.horizontalSum(acc) * scale
                    scores[j] = sc
                    maxScore = max(maxScore, sc)
                }
            } else {
                for j in 0..<length {
                    let sc = VectorMath.dot(query, keys + j * width, headDim) * scale
                    scores[j] = sc
                    maxScore = max(maxScore, sc)
                }
            }
        case .f16:
            let keys = UnsafePointer(cache.keys[layer].assumingMemoryBound(to: Float16.self)) + kvOffset
            for j in 0..<length {
                let sc = VectorMath.dot(query, keys + j * width, headDim) * scale
                scores[j] = sc
                maxScore = max(maxScore, sc)
            }
        }
        var sum: Float = 0
        var j = 0
        var sum16 = SIMD16<Float>()
        let max16 = SIMD16<Float>(repeating: maxScore)
        while j + 16 <= length {
            let e = VectorMath.exp(VectorMath.load16(scores + j) - max16)
            VectorMath.store16(e, scores + j)
            sum16 += e
            j += 16
        }
        sum = VectorMath.horizontalSum(sum16)
        while j < length {
            let e = Float.exp(scores[j] - maxScore)
            scores[j] = e
            sum += e
            j += 1
        }
        let inverse = 1 / sum
        out.update(repeating: 0, count: headDim)
        switch cache.precision {
        case .f32:
            let values = UnsafePointer(cache.values[layer].assumingMemoryBound(to: Float.self)) + kvOffset
            // 64 output values at a time stay in registers across all positions.
            var d = 0
            while d + 64 <= headDim {
                var a0 = SIMD16<Float>(), a1 = SIMD16<Float>(), a2 = SIMD16<Float>(), a3 = SIMD16<Float>()
                for j in 0..<length {
                    let w = SIMD16<Float>(repeating: scores[j])
                    let v = values + j * width + d
                    a0.addProduct(w, VectorMath.load16(v))
                    a1.addProduct(w, VectorMath.load16(v + 16))
                    a2.addProduct(w, VectorMath.load16(v + 32))
                    a3.addProduct(w, VectorMath.load16(v + 48))
                }
                let scale = SIMD16<Float>(repeating: inverse)
                VectorMath.store16(a0 * scale, out + d)
                VectorMath.store16(a1 * scale, out + d + 16)
                VectorMath.store16(a2 * scale, out + d + 32)
                VectorMath.store16(a3 * scale, out + d + 48)
                d += 64
            }
            if d < headDim {
                for j in 0..<length {
                    VectorMath.axpy(scores[j] * inverse, values + j * width + d, out + d, headDim - d)
                }
            }
        case .f16:
            let values = UnsafePointer(cache.values[layer].assumingMemoryBound(to: Float16.self)) + kvOffset
            for j in 0..<length { VectorMath.axpy(scores[j] * inverse, values + j * width, out, headDim) }
        }
    }
}

// MARK: - Scratch

/// Activation buffers of the forward pass, sized for the largest batch seen so far and grown on demand,
/// so a steady stream of same-sized batches allocates nothing.
final class Scratch {
    private(set) var tokenCapacity = 0
    private(set) var sessionCapacity = 0
    private(set) var scoresStride = 0
    private var taskCapacity = 0
    /// The batch's caches, for the attention tasks and the duplicate check (kept to reuse their storage).
    var caches: [KVCache] = []
    var seen = Set<ObjectIdentifier>()

    var x = UnsafeMutablePointer<Float>.allocate(capacity: 0)
    var xn = UnsafeMutablePointer<Float>.allocate(capacity: 0)
    var q = UnsafeMutablePointer<Float>.allocate(capacity: 0)
    var k = UnsafeMutablePointer<Float>.allocate(capacity: 0)
    var v = UnsafeMutablePointer<Float>.allocate(capacity: 0)
    var attention = UnsafeMutablePointer<Float>.allocate(capacity: 0)
    var gate = UnsafeMutablePointer<Float>.allocate(capacity: 0)
    var up = UnsafeMutablePointer<Float>.allocate(capacity: 0)
    var ropeCos = UnsafeMutablePointer<Float>.allocate(capacity: 0)
    var ropeSin = UnsafeMutablePointer<Float>.allocate(capacity: 0)
    var rowPosition = UnsafeMutablePointer<Int>.allocate(capacity: 0)
    var sessionStart = UnsafeMutablePointer<Int>.allocate(capacity: 1)
    var lastRows = UnsafeMutablePointer<Float>.allocate(capacity: 0)
    var scores = UnsafeMutablePointer<Float>.allocate(capacity: 0)
    deinit {
        for p in [x, xn, q, k, v, attention, gate, up, ropeCos, ropeSin, lastRows, scores] { p.deallocate() }
        rowPosition.deallocate()
        sessionStart.deallocate()
    }

    private static func grow<T>(_ p: inout UnsafeMutablePointer<T>, _ count: Int) {
        p.deallocate()
        p = UnsafeMutablePointer<T>.allocate(capacity: count)
    }

    func ensure(tokens: Int, config c: LlamaConfiguration, attentionTasks: Int, longest: Int, sessions: Int) {
        if tokens > tokenCapacity {
            let n = max(tokens, tokenCapacity * 3 / 2)
            Self.grow(&x, n * c.embeddingLength)
            Self.grow(&xn, n * c.embeddingLength)
            Self.grow(&q, n * c.queryWidth)
            Self.grow(&k, n * c.keyValueWidth)
            Self.grow(&v, n * c.keyValueWidth)
            Self.grow(&attention, n * c.queryWidth)
            Self.grow(&gate, n * c.feedForwardLength)
            Self.grow(&up, n * c.feedForwardLength)
            Self.grow(&ropeCos, n * max(1, c.ropeDimension / 2))
            Self.grow(&ropeSin, n * max(1, c.ropeDimension / 2))
            Self.grow(&rowPosition, n)
            tokenCapacity = n
        }
        if sessions > sessionCapacity {
            let n = max(sessions, sessionCapacity * 3 / 2)
            Self.grow(&sessionStart, n + 1)
            Self.grow(&lastRows, n * c.embeddingLength)
            sessionCapacity = n
        }
        if attentionTasks > taskCapacity || longest > scoresStride {
            let stride = longest > scoresStride ? max(longest, scoresStride * 2, 64) : scoresStride
            let tasks = max(attentionTasks, taskCapacity)
            Self.grow(&scores, tasks * stride)
            scoresStride = stride
            taskCapacity = tasks
        }
    }
}

// MARK: - Configuration

/// The hyperparameters of a Llama-family model, read from GGUF metadata under the architecture's prefix
/// (`llama.block_count`, `qwen2.embedding_length`, …).
public struct LlamaConfiguration: Sendable, Equatable {
    /// How rotary position embeddings pair up a head's values.
    public enum RopeStyle: Sendable, Equatable {
        /// Rotate (x[2i], x[2i+1]): llama.cpp's "normal" mode, used by `llama` GGUF files.
        case adjacentPairs
        /// Rotate (x[i], x[i + d/2]): the NEOX mode, used by `qwen2`.
        case splitHalf
    }

    /// `general.architecture` ("llama" or "qwen2").
    public var architecture: String
    /// Transformer blocks.
    public var blockCount: Int
    /// Width of the residual stream (`dim`).
    public var embeddingLength: Int
    /// Hidden width of the feed-forward network.
    public var feedForwardLength: Int
    /// Query heads.
    public var headCount: Int
    /// Key/value heads (grouped-query attention: `headCount` is a multiple of it).
    public var keyValueHeadCount: Int
    /// Values per head.
    public var headDimension: Int
    /// Values of each head that are rotated (even, at most `headDimension`).
    public var ropeDimension: Int
    /// The RoPE base θ.
    public var ropeFrequencyBase: Float
    /// The ε of RMSNorm.
    public var rmsEpsilon: Float
    /// Longest context the model was trained for.
    public var contextLength: Int
    /// Tokens in the vocabulary (rows of the embedding and of the output projection).
    public var vocabularySize: Int
    /// The rotary embedding's pairing.
    public var ropeStyle: RopeStyle
    /// Whether the Q/K/V projections have biases.
    public var attentionBias: Bool

    /// Width of all query heads together.
    public var queryWidth: Int { headCount * headDimension }
    /// Width of all key (or value) heads together.
    public var keyValueWidth: Int { keyValueHeadCount * headDimension }

    /// Reads the configuration from `gguf`'s metadata; the vocabulary size is the length of
    /// `tokenizer.ggml.tokens`.
    /// - Throws: `GGUFError` for missing or ill-typed keys, `InferenceError.unsupportedArchitecture`,
    ///   `InferenceError.badConfiguration` for inconsistent values.
    public init(gguf: GGUFFile) throws {
        let arch = try gguf.string("general.architecture")
        switch arch {
        case "llama":
            ropeStyle = .adjacentPairs
            attentionBias = false
        case "qwen2":
            ropeStyle = .splitHalf
            attentionBias = true
        default:
            throw InferenceError.unsupportedArchitecture(arch)
        }
        architecture = arch
        blockCount = try gguf.int("\(arch).block_count")
        embeddingLength = try gguf.int("\(arch).embedding_length")
        feedForwardLength = try gguf.int("\(arch).feed_forward_length")
        headCount = try gguf.int("\(arch).attention.head_count")
        keyValueHeadCount = gguf.value("\(arch).attention.head_count_kv") == nil
            ? headCount : try gguf.int("\(arch).attention.head_count_kv")
        guard headCount > 0 else { throw InferenceError.badConfiguration("attention.head_count is \(headCount)") }
        headDimension = gguf.value("\(arch).attention.key_length") == nil
            ? embeddingLength / headCount : try gguf.int("\(arch).attention.key_length")
        ropeDimension = gguf.value("\(arch).rope.dimension_count") == nil
            ? headDimension : try gguf.int("\(arch).rope.dimension_count")
        ropeFrequencyBase = gguf.value("\(arch).rope.freq_base") == nil
            ? 10_000 : Float(try gguf.float("\(arch).rope.freq_base"))
        rmsEpsilon = Float(try gguf.float("\(arch).attention.layer_norm_rms_epsilon"))
        contextLength = try gguf.int("\(arch).context_length")
        vocabularySize = try gguf.strings("tokenizer.ggml.tokens").count
        try validate()
    }

    /// Creates a configuration from explicit values.
    /// - Throws: `InferenceError.badConfiguration` for inconsistent values.
    public init(
        architecture: String, blockCount: Int, embeddingLength: Int, feedForwardLength: Int, headCount: Int,
        keyValueHeadCount: Int, headDimension: Int, ropeDimension: Int, ropeFrequencyBase: Float, rmsEpsilon: Float,
        contextLength: Int, vocabularySize: Int, ropeStyle: RopeStyle, attentionBias: Bool
    ) throws {
        self.architecture = architecture
        self.blockCount = blockCount
        self.embeddingLength = embeddingLength
        self.feedForwardLength = feedForwardLength
        self.headCount = headCount
        self.keyValueHeadCount = keyValueHeadCount
        self.headDimension = headDimension
        self.ropeDimension = ropeDimension
        self.ropeFrequencyBase = ropeFrequencyBase
        self.rmsEpsilon = rmsEpsilon
        self.contextLength = contextLength
        self.vocabularySize = vocabularySize
        self.ropeStyle = ropeStyle
        self.attentionBias = attentionBias
        try validate()
    }

    private func validate() throws(InferenceError) {
        func check(_ ok: Bool, _ reason: String) throws(InferenceError) {
            if !ok { throw .badConfiguration(reason) }
        }
        let limit = 1 << 20
        try check((1...4096).contains(blockCount), "block_count \(blockCount) is outside 1...4096")
        try check((1...limit).contains(embeddingLength), "embedding_length \(embeddingLength) is out of range")
        try check((1...limit).contains(feedForwardLength), "feed_forward_length \(feedForwardLength) is out of range")
        try check((1...4096).contains(headCount), "head_count \(headCount) is out of range")
        try check(keyValueHeadCount > 0 && headCount % keyValueHeadCount == 0,
                  "head_count \(headCount) is not a multiple of head_count_kv \(keyValueHeadCount)")
        try check((1...limit).contains(headDimension), "the head dimension \(headDimension) is out of range")
        try check(ropeDimension >= 0 && ropeDimension % 2 == 0 && ropeDimension <= headDimension,
                  "rope.dimension_count \(ropeDimension) must be even and at most the head dimension \(headDimension)")
        try check(ropeFrequencyBase.isFinite && ropeFrequencyBase > 0,
                  "rope.freq_base \(ropeFrequencyBase) is not positive")
        try check(rmsEpsilon.isFinite && rmsEpsilon >= 0, "layer_norm_rms_epsilon \(rmsEpsilon) is negative")
        try check((1...(1 << 24)).contains(contextLength), "context_length \(contextLength) is out of range")
        try check((1...(1 << 24)).contains(vocabularySize), "the vocabulary size \(vocabularySize) is out of range")
    }
}
