// Matmul throughput on SmolLM2-135M's shapes; see Scripts/bench-kernels.sh.
import Foundation

@main
struct BenchKernels {
    static func randomMatrix(_ type: GGMLType, rows: Int, columns: Int, copies: Int) -> [QuantizedMatrix] {
        let rowBytes = type.byteCount(values: columns)!
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        return (0..<copies).map { _ in
            let bytes = UnsafeMutableRawPointer.allocate(byteCount: rows * rowBytes, alignment: 64)
            for i in 0..<rows * rowBytes / 8 {
                state ^= state << 13
                state ^= state >> 7
                state ^= state << 17
                bytes.storeBytes(of: state, toByteOffset: 8 * i, as: UInt64.self)
            }
            let scaleOffsets: [Int]
            switch type {
            case .q4_1: scaleOffsets = [0, 2]
            case .q4_0, .q8_0: scaleOffsets = [0]
            default: scaleOffsets = []
            }
            for b in 0..<(rows * columns / 32) where !scaleOffsets.isEmpty {
                for o in scaleOffsets {
                    let offset = b * type.blockBytes + o
                    bytes.storeBytes(of: Float16(0.01).bitPattern, toByteOffset: offset, as: UInt16.self)
                }
            }
            return try! QuantizedMatrix(type: type, rows: rows, columns: columns, data: bytes)
        }
    }

    /// CPU time of the whole process (all threads, spinning included).
    static func cpuNanoseconds() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t)
        return Double(t.tv_sec) * 1e9 + Double(t.tv_nsec)
    }

    /// The cost of a parallel loop: `threads` tasks of 20 µs of busy work each, so that every thread must take
    /// one. Printed: the loop's time minus 20 µs, back to back (workers still spinning) and after a pause long
    /// enough for the workers to park (a wake-up through the condition variable). With 1 thread there is a
    /// single task and the figure is the bare loop overhead.
    static func poolLatency() {
        func busy(_ nanoseconds: UInt64) {
            let end = DispatchTime.now().uptimeNanoseconds + nanoseconds
            while DispatchTime.now().uptimeNanoseconds < end {}
        }
        print("pool: threads spin(us)  back-to-back overhead(us)  after-park overhead(us)   (median of 200)")
        for (threads, spin) in [(1, 50), (2, 50), (2, 0)] {
            let pool = ThreadPool(threads: threads, spinMicroseconds: spin)
            var backToBack: [Double] = [], parked: [Double] = []
            for _ in 0..<200 {
                let start = DispatchTime.now().uptimeNanoseconds
                pool.run(tasks: threads) { _ in busy(20_000) }
                backToBack.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1000 - 20)
            }
            for _ in 0..<200 {
                usleep(UInt32(spin + 2000))
                let start = DispatchTime.now().uptimeNanoseconds
                pool.run(tasks: threads) { _ in busy(20_000) }
                parked.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1000 - 20)
            }
            print(String(format: "      %7d %8d %26.2f %25.2f", threads, spin, backToBack.sorted()[100],
                         parked.sorted()[100]))
        }
    }

    /// All matmuls of SmolLM2-135M for `batch` tokens (30 layers of q, k, v, o, gate, up, down in Q4_1 and the
    /// Q8_0 output matrix), with the model's own sizes and calls (q/k/v and gate/up fused, as a forward pass makes
    /// them), so that weights come from DRAM as in a forward pass; for the portable Swift kernels and the packed C
    /// kernels in the same run. Prints, per kernel, thread count and batch: ms per pass, the pass's cost over a
    /// 1-row pass of the same kernel, tokens per second (matmuls only: no attention, norms or activations), the
    /// packed kernels' speed-up over the Swift ones, and where a pass's time goes (share of each product).
    /// This machine's streaming read bandwidth with the pool's threads, in GB/s: 256 MB summed with 32-byte loads,
    /// each thread a contiguous part (best of 5). The reference for the passes' GB/s column.
    static func readBandwidth(pool: ThreadPool) -> Double {
        let count = (256 << 20) / 8
        let buffer = UnsafeMutablePointer<UInt64>.allocate(capacity: count)
        defer { buffer.deallocate() }
        for i in 0..<count { buffer[i] = UInt64(i) }
        let sums = UnsafeMutablePointer<UInt64>.allocate(capacity: pool.threads)
        defer { sums.deallocate() }
        var best = Double.infinity
        for _ in 0..<5 {
            let start = DispatchTime.now().uptimeNanoseconds
            pool.run(tasks: pool.threads) { task in
                let part = count / pool.threads
                let base = UnsafeRawPointer(buffer + task * part)
                var acc = SIMD4<UInt64>()
                var i = 0
                while i < part {
                    acc &+= base.loadUnaligned(fromByteOffset: 8 * i, as: SIMD4<UInt64>.self)
                    i += 4
                }
                sums[task] = acc.wrappedSum()
            }
            best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start))
        }
        if sums[0] == 42 { print("") }  // keeps the sums alive
        return Double(count * 8) / best
    }

    static func modelPass(threads: [Int]) {
        func layer() -> [QuantizedMatrix] {
            [(576, 576), (192, 576), (192, 576), (576, 576), (1536, 576), (1536, 576), (576, 1536)]
                .flatMap { randomMatrix(.q4_1, rows: $0.0, columns: $0.1, copies: 1) }
        }
        let layers = (0..<30).map { _ in layer() }
        let output = randomMatrix(.q8_0, rows: 49152, columns: 576, copies: 1)[0]
        let packedLayers = layers.map { $0.map { $0.withPackedLayout() } }
        let packedOutput = output.withPackedLayout()
        let bytes = (layers.flatMap { $0 } + [output]).map { $0.rows * $0.rowBytes }.reduce(0, +)
        print(String(format: "model pass (%.1f MB of weights; packed kernels %@)", Double(bytes) / 1e6,
                     Kernels.packedKernels ? "on" : "unavailable"))
        print("kernel   threads batch  ms/pass  ×1-row  tokens/s   GB/s  packed/Swift   qkv    o  gate/up down output")
        let x = UnsafeMutablePointer<Float>.allocate(capacity: 256 * 1536)
        for i in 0..<256 * 1536 { x[i] = Float.random(in: -1...1) }
        let out = UnsafeMutablePointer<Float>.allocate(capacity: 256 * 49152)
        let out2 = UnsafeMutablePointer<Float>.allocate(capacity: 256 * 1536)
        let out3 = UnsafeMutablePointer<Float>.allocate(capacity: 256 * 1536)
        func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }
        for t in threads {
            let pool = ThreadPool(threads: t)
            print(String(format: "streaming read, %d thread(s): %.1f GB/s", t, readBandwidth(pool: pool)))
            var one: [String: Double] = [:]
            var swift: [Int: Double] = [:]
            let batches = ProcessInfo.processInfo.environment["BENCH_BATCHES"].map {
                $0.split(separator: ",").compactMap { Int($0) }
            } ?? [1, 2, 3, 4, 8, 16, 64]
            for batch in batches {
                for (name, set, head) in [("swift", layers, output), ("packed", packedLayers, packedOutput)] {
                    let passes = batch <= 4 ? 20 : max(2, 60 / batch)
                    var best = Double.infinity
                    var parts = [Double](repeating: 0, count: 5)
                    for _ in 0..<3 {
                        var split = [UInt64](repeating: 0, count: 5)
                        let start = now()
                        for _ in 0..<passes {
                            for m in set {
                                var t0 = now()
                                Kernels.matmul((m[0], out), (m[1], out2), (m[2], out3), x: x, batch: batch, pool: pool)
                                var t1 = now(); split[0] += t1 - t0; t0 = t1
                                Kernels.matmul(m[3], x: x, batch: batch, out: out, pool: pool)
                                t1 = now(); split[1] += t1 - t0; t0 = t1
                                Kernels.matmul((m[4], out), (m[5], out2), x: x, batch: batch, pool: pool)
                                t1 = now(); split[2] += t1 - t0; t0 = t1
                                Kernels.matmul(m[6], x: x, batch: batch, out: out, pool: pool)
                                t1 = now(); split[3] += t1 - t0
                            }
                            let t0 = now()
                            Kernels.matmul(head, x: x, batch: batch, out: out, pool: pool)
                            split[4] += now() - t0
                        }
                        let wall = Double(now() - start) / Double(passes)
                        if wall < best {
                            best = wall
                            let total = Double(split.reduce(0, +))
                            parts = split.map { 100 * Double($0) / total }
                        }
                    }
                    if one[name] == nil { one[name] = batches[0] == 1 ? best : Double.nan }
                    if name == "swift" { swift[batch] = best }
                    let speedup = name == "packed" ? String(format: "%11.2f×", swift[batch]! / best) : "            "
                    print(String(format: "%-8@ %7d %5d %8.2f %6.2f× %9.1f %6.1f ", name, t, batch, best / 1e6,
                                 best / one[name]!, Double(batch) / best * 1e9, Double(bytes) / best) + speedup
                          + parts.map { String(format: " %4.0f%%", $0) }.joined())
                }
            }
        }
    }

    static func main() {
        let threadCounts = CommandLine.arguments.dropFirst().compactMap { Int($0) }
        if ProcessInfo.processInfo.environment["BENCH_MODEL"] != nil {
            modelPass(threads: threadCounts.isEmpty ? [1, 2] : threadCounts)
            return
        }
        let shapes: [(String, GGMLType, Int, Int)] = [
            ("576->576   Q4_1", .q4_1, 576, 576),
            ("576->1536  Q4_1", .q4_1, 1536, 576),
            ("1536->576  Q4_1", .q4_1, 576, 1536),
            ("576->49152 Q8_0", .q8_0, 49152, 576),
            ("576->1536  Q4_0", .q4_0, 1536, 576),
            ("576->1536  Q8_0", .q8_0, 1536, 576),
            ("576->1536  F32 ", .f32, 1536, 576),
        ]
        poolLatency()
        print("shape           kernel  thr batch   us/call   G params/s   GB/s(weights)  G params/CPU-s")
        for threads in threadCounts.isEmpty ? [1, 2] : threadCounts {
            let pool = ThreadPool(threads: threads)
            let filter = ProcessInfo.processInfo.environment["BENCH_FILTER"] ?? ""
            for (name, type, rows, columns) in shapes where filter.isEmpty || name.contains(filter) {
                let bytes = rows * type.byteCount(values: columns)!
                // Enough copies that the weights come from DRAM, as in a real forward pass.
                // (BENCH_IN_CACHE=1: one copy, so that it stays in cache.)
                let inCache = ProcessInfo.processInfo.environment["BENCH_IN_CACHE"] != nil
                let copies = inCache ? 1 : max(1, (96 << 20) / bytes)
                let plain = randomMatrix(type, rows: rows, columns: columns, copies: copies)
                for (kernel, matrices) in [("swift ", plain), ("packed", plain.map { $0.withPackedLayout() })]
                    where kernel == "swift " || matrices[0].packed != nil {
                for batch in rows > 10_000 ? [1, 4, 8, 16, 64] : [1, 4, 8, 16, 64, 256] {
                    let x = UnsafeMutablePointer<Float>.allocate(capacity: batch * columns)
                    for i in 0..<batch * columns { x[i] = Float.random(in: -1...1) }
                    let out = UnsafeMutablePointer<Float>.allocate(capacity: batch * rows)
                    let calls = max(copies, min(2000, 20_000_000 / (rows * columns * batch)))
                    var times: [(wall: Double, cpu: Double)] = []
                    for _ in 0..<3 {
                        let start = DispatchTime.now().uptimeNanoseconds
                        let cpuStart = cpuNanoseconds()
                        for c in 0..<calls {
                            Kernels.matmul(matrices[c % copies], x: x, batch: batch, out: out, pool: pool)
                        }
                        times.append((Double(DispatchTime.now().uptimeNanoseconds - start) / Double(calls),
                                      (cpuNanoseconds() - cpuStart) / Double(calls)))
                    }
                    let (ns, cpu) = times.sorted { $0.wall < $1.wall }[times.count / 2]
                    let params = Double(rows * columns * batch) / ns
                    let gbs = Double(bytes) / ns
                    print(name, kernel, String(format: "%3d %5d %9.1f %11.2f %12.2f %14.2f", threads, batch, ns / 1000,
                                               params, gbs, Double(rows * columns * batch) / cpu))
                    x.deallocate()
                    out.deallocate()
                }
                }
            }
        }
    }
}
