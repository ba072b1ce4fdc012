import CPUKernels

extension TopK {
    /// One row of a batch of logits to take the top-k of.
    public struct Row: Sendable {
        /// The row's index in the logits buffer.
        public var index: Int
        /// How many tokens to keep.
        public var k: Int
        /// A logit bias added to the row first (one value per token), or nil.
        public var bias: [Float]?

        /// Creates a row.
        public init(index: Int, k: Int, bias: [Float]? = nil) {
            self.index = index
            self.k = k
            self.bias = bias
        }
    }

    /// The top-k of the given rows of `logits` (rows of `vocabularySize` values, one after another), each after
    /// its bias (applied in place), spread over `pool`'s threads when there are several rows: with a batch, this
    /// pass over the vocabulary is part of every step's time. Each row is touched by one task only.
    /// - Precondition: every row index lies within `logits`.
    public static func rows(
        _ rows: [Row], of logits: inout [Float], vocabularySize v: Int, pool: ThreadPool
    ) -> [TopK] {
        logits.withUnsafeMutableBufferPointer { buffer in
            func top(_ row: Row) -> TopK {
                let slice = UnsafeMutableBufferPointer(rebasing: buffer[row.index * v..<(row.index + 1) * v])
                if let bias = row.bias { LogitBias.apply(bias, to: slice) }
                return TopK(logits: UnsafeBufferPointer(slice), k: row.k)
            }
            guard rows.count > 1, pool.threads > 1 else { return rows.map(top) }
            let results = UnsafeMutableBufferPointer<TopK>.allocate(capacity: rows.count)
            defer {
                results.deinitialize()
                results.deallocate()
            }
            pool.run(tasks: rows.count) { task in
                (results.baseAddress! + task).initialize(to: top(rows[task]))
            }
            return Array(results)
        }
    }
}
