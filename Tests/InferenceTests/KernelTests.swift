import Decoding
import Foundation
import Testing

@testable import CPUKernels
@testable import Inference

/// A matrix of random values in `type`'s block format, with realistic scales.
private final class RandomMatrix {
    let bytes: UnsafeMutableRawPointer
    let matrix: QuantizedMatrix

    /// With `packed`, the matrix carries the packed layout of the C kernels (where this CPU runs them).
    init(_ type: GGMLType, rows: Int, columns: Int, seed: UInt64, packed: Bool = false) throws {
        var rng = SplitMix64(seed: seed)
        let rowBytes = try #require(type.byteCount(values: columns))
        let bytes = UnsafeMutableRawPointer.allocate(byteCount: rows * rowBytes, alignment: 64)
        for i in 0..<rows * rowBytes {
            bytes.storeBytes(of: UInt8.random(in: 0...255, using: &rng), toByteOffset: i, as: UInt8.self)
        }
        func half(_ v: Float) -> UInt16 { Float16(v).bitPattern }
        func store(_ v: Float, _ offset: Int) { bytes.storeBytes(of: half(v), toByteOffset: offset, as: UInt16.self) }
        switch type {
        case .f32:
            let f = bytes.assumingMemoryBound(to: Float.self)
            for i in 0..<rows * columns { f[i] = Float.random(in: -1...1, using: &rng) }
        case .f16:
            for i in 0..<rows * columns { store(Float.random(in: -1...1, using: &rng), 2 * i) }
        case .q8_0, .q4_0:
            for b in 0..<rows * columns / 32 { store(Float.random(in: 0.001...0.1, using: &rng), b * type.blockBytes) }
        case .q4_1:
            for b in 0..<rows * columns / 32 {
                store(Float.random(in: 0.001...0.1, using: &rng), b * 20)
                store(Float.random(in: -0.8...0, using: &rng), b * 20 + 2)
            }
        case .q5_0:
            for b in 0..<rows * columns / 32 { store(Float.random(in: 0.001...0.05, using: &rng), b * 22) }
        case .q4_K:
            for b in 0..<rows * columns / 256 {
                store(Float.random(in: 0.0005...0.003, using: &rng), b * 144)
                store(Float.random(in: 0.0005...0.003, using: &rng), b * 144 + 2)
            }
        case .q6_K:
            for b in 0..<rows * columns / 256 { store(Float.random(in: 0.0001...0.001, using: &rng), b * 210 + 208) }
        default:
            break
        }
        self.bytes = bytes
        let plain = try QuantizedMatrix(type: type, rows: rows, columns: columns, data: bytes)
        matrix = packed ? plain.withPackedLayout() : plain
    }

    deinit { bytes.deallocate() }
}

private func randomInput(count: Int, seed: UInt64) -> [Float] {
    var rng = SplitMix64(seed: seed)
    return (0..<count).map { _ in Float.random(in: -2...2, using: &rng) }
}

/// `W·x` by dequantising each row and summing in Double (the exact answer for the stored weights), and for
/// each output the bound on the error 8-bit activations may add: every activation moves by at most half a
/// quantisation step, `max|x_block| / 254`, so an output moves by at most `Σ |W[r, c]| · step(c)`.
private func reference(_ w: QuantizedMatrix, _ x: [Float], batch: Int) -> (values: [Float], bounds: [Float]) {
    var values = [Float](repeating: 0, count: batch * w.rows)
    var bounds = [Float](repeating: 0, count: batch * w.rows)
    var row = [Float](repeating: 0, count: w.columns)
    for r in 0..<w.rows {
        row.withUnsafeMutableBufferPointer { Kernels.dequantizeRow(w, row: r, into: $0.baseAddress!) }
        for t in 0..<batch {
            var sum = 0.0
            var bound = 0.0
            for b in 0..<w.columns / 32 {
                let start = t * w.columns + 32 * b
                let step = Double(x[start..<start + 32].map(abs).max()!) / 254
                for c in 0..<32 {
                    sum += Double(row[32 * b + c]) * Double(x[start + c])
                    bound += abs(Double(row[32 * b + c])) * step
                }
            }
            values[t * w.rows + r] = Float(sum)
            bounds[t * w.rows + r] = Float(bound)
        }
    }
    return (values, bounds)
}

private func matmul(_ w: QuantizedMatrix, _ x: [Float], batch: Int, pool: ThreadPool) -> [Float] {
    var out = [Float](repeating: .nan, count: batch * w.rows)
    x.withUnsafeBufferPointer { xp in
        out.withUnsafeMutableBufferPointer { op in
            Kernels.matmul(w, x: xp.baseAddress!, batch: batch, out: op.baseAddress!, pool: pool)
        }
    }
    return out
}

@Suite struct KernelTests {
    struct Shape: Sendable, CustomStringConvertible {
        let rows: Int, columns: Int, batch: Int
        var description: String { "\(rows)×\(columns) batch \(batch)" }
    }

    static let shapes = [
        Shape(rows: 7, columns: 64, batch: 1), Shape(rows: 37, columns: 96, batch: 1),
        Shape(rows: 37, columns: 96, batch: 5), Shape(rows: 130, columns: 576, batch: 9),
        Shape(rows: 5, columns: 32, batch: 4), Shape(rows: 3, columns: 1536, batch: 2),
        Shape(rows: 37, columns: 96, batch: 17), Shape(rows: 6, columns: 64, batch: 35),
    ]

    @Test("matmul matches a dequantise-then-dot reference within the 8-bit activation rounding bound",
          arguments: [GGMLType.f32, .f16, .q8_0, .q4_0, .q4_1], shapes)
    func matmulMatchesReference(type: GGMLType, shape: Shape) throws {
        try checkAgainstReference(type: type, shape: shape, packed: false)
    }

    /// `matmul` against the dequantise-then-dot reference, on 1 to 3 threads.
    func checkAgainstReference(type: GGMLType, shape: Shape, packed: Bool) throws {
        let m = try RandomMatrix(type, rows: shape.rows, columns: shape.columns,
                                 seed: UInt64(shape.rows * 31 + shape.batch), packed: packed)
        #expect((m.matrix.packed != nil) == (packed && shape.rows >= 8 && Kernels.packedKernels))
        let x = randomInput(count: shape.batch * shape.columns, seed: 7)
        let (expected, bounds) = reference(m.matrix, x, batch: shape.batch)
        for threads in [1, 2, 3] {
            let out = matmul(m.matrix, x, batch: shape.batch, pool: ThreadPool(threads: threads))
            for i in 0..<out.count {
                // Quantised weights: the activation rounding bound; all types: float rounding on top.
                let quantised = type != .f32 && type != .f16
                let allowed = (quantised ? bounds[i] : 0) + 1e-4 * (1 + abs(expected[i]))
                #expect(abs(out[i] - expected[i]) <= allowed, "\(type.name) \(shape) threads \(threads) output \(i)")
            }
        }
    }

    static let kShapes = [
        Shape(rows: 5, columns: 256, batch: 1), Shape(rows: 13, columns: 512, batch: 7),
        Shape(rows: 2, columns: 1536, batch: 4), Shape(rows: 3, columns: 256, batch: 20),
    ]

    @Test("Q5_0, Q4_K and Q6_K matmuls match the reference within the 8-bit activation rounding bound",
          arguments: [GGMLType.q5_0, .q4_K, .q6_K], kShapes)
    func kQuantMatmulMatchesReference(type: GGMLType, shape: Shape) throws {
        try matmulMatchesReference(type: type, shape: shape)
    }

    @Test("rows of every quantised type dequantise to the values the gguf reference implementation gives",
          arguments: [
              (GGMLType.q5_0, KernelFixtures.q5_0Bytes, KernelFixtures.q5_0Values),
              (.q4_K, KernelFixtures.q4_KBytes, KernelFixtures.q4_KValues),
              (.q6_K, KernelFixtures.q6_KBytes, KernelFixtures.q6_KValues),
              (.q4_0, KernelFixtures.q4_0Bytes, KernelFixtures.q4_0Values),
              (.q4_1, KernelFixtures.q4_1Bytes, KernelFixtures.q4_1Values),
              (.q8_0, KernelFixtures.q8_0Bytes, KernelFixtures.q8_0Values),
          ])
    func dequantizeMatchesGGUF(type: GGMLType, bytes: [UInt8], values: [Float]) throws {
        var out = [Float](repeating: .nan, count: values.count)
        try bytes.withUnsafeBytes { raw in
            let m = try QuantizedMatrix(type: type, rows: 1, columns: values.count, data: raw.baseAddress!)
            out.withUnsafeMutableBufferPointer { Kernels.dequantizeRow(m, row: 0, into: $0.baseAddress!) }
        }
        for i in values.indices {
            #expect(abs(out[i] - values[i]) <= 1e-6 * (1 + abs(values[i])), "\(type.name) value \(i)")
        }
    }

    @Test("8-bit activations cost far less than the worst-case bound on typical data")
    func activationErrorIsSmall() throws {
        let m = try RandomMatrix(.q4_1, rows: 64, columns: 576, seed: 9)
        let x = randomInput(count: 576, seed: 13)
        let (expected, _) = reference(m.matrix, x, batch: 1)
        let out = matmul(m.matrix, x, batch: 1, pool: ThreadPool(threads: 1))
        let error = zip(out, expected).map { Double(abs($0 - $1)) }.reduce(0, +)
        let scale = expected.map { Double(abs($0)) }.reduce(0, +)
        #expect(error / scale < 0.01)
    }

    @Test("matmul with batch T equals T separate batch-1 matmuls, bit for bit",
          arguments: [GGMLType.q4_1, .q4_0, .q8_0, .q5_0, .q4_K, .q6_K], [6, 12, 19, 27, 37])
    func batchEqualsSingles(type: GGMLType, batch: Int) throws {
        try checkBatchEqualsSingles(try RandomMatrix(type, rows: 45, columns: 512, seed: 3), batch: batch, threads: [2])
    }

    /// A matmul of `batch` rows against `batch` matmuls of one row each, bit for bit.
    private func checkBatchEqualsSingles(_ m: RandomMatrix, batch: Int, threads: [Int]) throws {
        let rows = m.matrix.rows, columns = m.matrix.columns
        let x = randomInput(count: batch * columns, seed: 11)
        for count in threads {
            let pool = ThreadPool(threads: count)
            let batched = matmul(m.matrix, x, batch: batch, pool: pool)
            for t in 0..<batch {
                let single = matmul(m.matrix, Array(x[t * columns..<(t + 1) * columns]), batch: 1, pool: pool)
                #expect(Array(batched[t * rows..<(t + 1) * rows]) == single,
                        "\(m.matrix.type.name) batch \(batch) row \(t) threads \(count)")
            }
        }
    }

    @Test("a fused matmul of two or three matrices equals separate matmuls, bit for bit",
          arguments: [
              [GGMLType.q4_1, .q4_1, .q4_1], [.q4_1, .q8_0], [.q4_K, .q6_K, .q4_0], [.q4_1, .f32, .q4_1], [.f16, .f16],
          ], [1, 3, 20])
    func fusedEqualsSeparate(types: [GGMLType], batch: Int) throws {
        let columns = 256
        let rows = [45, 13, 29]
        let matrices = try types.indices.map { try RandomMatrix(types[$0], rows: rows[$0], columns: columns,
                                                                 seed: UInt64(17 + $0)) }
        try checkFusedEqualsSeparate(matrices, batch: batch)
    }

    /// One fused matmul of two or three matrices against separate matmuls, on 1 to 3 threads.
    private func checkFusedEqualsSeparate(_ matrices: [RandomMatrix], batch: Int) throws {
        let columns = matrices[0].matrix.columns
        let x = randomInput(count: batch * columns, seed: 23)
        for threads in [1, 2, 3] {
            let pool = ThreadPool(threads: threads)
            let outs = matrices.map { UnsafeMutablePointer<Float>.allocate(capacity: batch * $0.matrix.rows) }
            defer { outs.forEach { $0.deallocate() } }
            for (m, out) in zip(matrices, outs) { out.initialize(repeating: .nan, count: batch * m.matrix.rows) }
            x.withUnsafeBufferPointer { xp in
                let third = matrices.count > 2 ? (w: matrices[2].matrix, out: outs[2]) : nil
                Kernels.matmul((matrices[0].matrix, outs[0]), (matrices[1].matrix, outs[1]), third,
                               x: xp.baseAddress!, batch: batch, pool: pool)
            }
            for (m, out) in zip(matrices, outs) {
                let separate = matmul(m.matrix, x, batch: batch, pool: pool)
                #expect(Array(UnsafeBufferPointer(start: out, count: separate.count)) == separate,
                        "\(m.matrix.type.name) in \(matrices.map(\.matrix.type.name)) batch \(batch) threads \(threads)")
            }
        }
    }

    static let packedShapes = [
        Shape(rows: 64, columns: 576, batch: 1), Shape(rows: 64, columns: 576, batch: 2),
        Shape(rows: 45, columns: 96, batch: 3), Shape(rows: 40, columns: 1536, batch: 4),
        Shape(rows: 45, columns: 96, batch: 5), Shape(rows: 8, columns: 32, batch: 16),
        Shape(rows: 130, columns: 576, batch: 17), Shape(rows: 7, columns: 64, batch: 3),
    ]

    @Test("packed Q4_1 and Q8_0 matrices go to the C kernels and match the reference within the activation bound",
          .enabled(if: Kernels.packedKernels), arguments: [GGMLType.q4_1, .q8_0], packedShapes)
    func packedMatchesReference(type: GGMLType, shape: Shape) throws {
        try checkAgainstReference(type: type, shape: shape, packed: true)
    }

    @Test("the C kernels give the Swift kernels' results bit for bit (the same integer sums and float operations)",
          .enabled(if: Kernels.packedKernels), arguments: [GGMLType.q4_1, .q8_0], [1, 2, 3, 4, 5, 16, 17])
    func packedMatchesSwift(type: GGMLType, batch: Int) throws {
        let rows = 45, columns = 608  // 19 blocks: an odd count, so the last block goes to the even sums
        let plain = try RandomMatrix(type, rows: rows, columns: columns, seed: 5)
        let packed = try RandomMatrix(type, rows: rows, columns: columns, seed: 5, packed: true)
        let x = randomInput(count: batch * columns, seed: 13)
        let pool = ThreadPool(threads: 2)
        let a = matmul(plain.matrix, x, batch: batch, pool: pool)
        let b = matmul(packed.matrix, x, batch: batch, pool: pool)
        #expect(packed.matrix.packed != nil)
        #expect(a == b, "\(type.name) batch \(batch): \(zip(a, b).filter { $0 != $1 }.count) outputs differ")
    }

    @Test("with packed weights, batch T equals T separate batch-1 matmuls, bit for bit, on 1 to 3 threads",
          .enabled(if: Kernels.packedKernels), arguments: [GGMLType.q4_1, .q8_0], [2, 3, 5, 16, 19])
    func packedBatchEqualsSingles(type: GGMLType, batch: Int) throws {
        let m = try RandomMatrix(type, rows: 85, columns: 576, seed: 3, packed: true)
        #expect(m.matrix.packed != nil)
        try checkBatchEqualsSingles(m, batch: batch, threads: [1, 2, 3])
    }

    @Test("a fused matmul of packed and unpacked matrices equals separate matmuls, bit for bit",
          .enabled(if: Kernels.packedKernels), arguments: [1, 3, 20])
    func packedFusedEqualsSeparate(batch: Int) throws {
        let columns = 256
        let matrices = [
            try RandomMatrix(.q4_1, rows: 48, columns: columns, seed: 17, packed: true),
            try RandomMatrix(.q4_0, rows: 13, columns: columns, seed: 18),
            try RandomMatrix(.q8_0, rows: 29, columns: columns, seed: 19, packed: true),
        ]
        #expect(matrices[0].matrix.packed != nil && matrices[2].matrix.packed != nil)
        try checkFusedEqualsSeparate(matrices, batch: batch)
    }

    @Test("a zero input row gives zero outputs (no division by a zero scale)")
    func zeroInput() throws {
        let m = try RandomMatrix(.q4_1, rows: 9, columns: 64, seed: 5)
        let out = matmul(m.matrix, [Float](repeating: 0, count: 64), batch: 1, pool: ThreadPool(threads: 1))
        #expect(out == [Float](repeating: 0, count: 9))
    }

    @Test("the thread pool runs every task exactly once", arguments: [1, 2, 4])
    func poolRunsEveryTaskOnce(threads: Int) {
        let pool = ThreadPool(threads: threads)
        for tasks in [0, 1, 2, 3, 17, 1000, 70_000] {
            let counts = UnsafeMutablePointer<Int>.allocate(capacity: max(1, tasks))
            counts.initialize(repeating: 0, count: max(1, tasks))
            // Each task writes only its own slot, so no two threads touch the same memory.
            pool.run(tasks: tasks) { counts[$0] += 1 }
            #expect((0..<tasks).allSatisfy { counts[$0] == 1 }, "\(tasks) tasks on \(threads) threads")
            counts.deallocate()
        }
    }

    @Test("a thousand back-to-back loops complete without deadlock, with and without spinning",
          arguments: [(2, 50), (2, 0), (4, 0), (4, 50)])
    func poolRepeatedLoops(threads: Int, spin: Int) {
        let pool = ThreadPool(threads: threads, spinMicroseconds: spin)
        let total = UnsafeMutablePointer<Int>.allocate(capacity: 8)
        total.initialize(repeating: 0, count: 8)
        for loop in 0..<1000 {
            pool.run(tasks: 1 + loop % 8) { total[$0] += 1 }
        }
        // Task t runs in every loop that has at least t + 1 tasks.
        for t in 0..<8 { #expect(total[t] == (0..<1000).filter { 1 + $0 % 8 > t }.count) }
        total.deallocate()
    }

    @Test("park() sends spinning workers to sleep at once, and the next loop wakes them")
    func poolPark() async throws {
        // Workers that would spin for a minute after each loop.
        let pool = ThreadPool(threads: 3, spinMicroseconds: 60_000_000)
        let seen = UnsafeMutablePointer<Int>.allocate(capacity: 6)
        defer { seen.deallocate() }
        seen.initialize(repeating: 0, count: 6)
        pool.run(tasks: 6) { seen[$0] += 1 }
        #expect(pool.sleepingWorkers == 0, "spinning, not asleep")
        pool.park()
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(30)
        while pool.sleepingWorkers < 2, clock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
        #expect(pool.sleepingWorkers == 2)
        pool.run(tasks: 6) { seen[$0] += 1 }
        #expect((0..<6).allSatisfy { seen[$0] == 2 })
        pool.park()
        pool.park()  // parking twice is harmless
        pool.run(tasks: 6) { seen[$0] += 1 }
        #expect((0..<6).allSatisfy { seen[$0] == 3 })
    }

    @Test("a pool can be created, used and dropped repeatedly")
    func poolLifecycle() {
        for _ in 0..<20 {
            let pool = ThreadPool(threads: 3, spinMicroseconds: 0)
            let seen = UnsafeMutablePointer<Int>.allocate(capacity: 4)
            seen.initialize(repeating: 0, count: 4)
            pool.run(tasks: 4) { seen[$0] = 1 }
            #expect((0..<4).allSatisfy { seen[$0] == 1 })
            seen.deallocate()
        }
    }
}
