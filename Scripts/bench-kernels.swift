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
                    bytes.storeBytes(of: Float16(0.01).bitPattern, toByteOffset: b * type.blockBytes + o, as: UInt16.self)
                }
            }
            return try! QuantizedMatrix(type: type, rows: rows, columns: columns, data: bytes)
        }
    }

    static func main() {
        let threadCounts = CommandLine.arguments.dropFirst().compactMap { Int($0) }
        let shapes: [(String, GGMLType, Int, Int)] = [
            ("576->576   Q4_1", .q4_1, 576, 576),
            ("576->1536  Q4_1", .q4_1, 1536, 576),
            ("1536->576  Q4_1", .q4_1, 576, 1536),
            ("576->49152 Q8_0", .q8_0, 49152, 576),
            ("576->1536  Q4_0", .q4_0, 1536, 576),
            ("576->1536  Q8_0", .q8_0, 1536, 576),
            ("576->1536  F32 ", .f32, 1536, 576),
        ]
        print("shape            thr batch   us/call   G params/s   GB/s(weights)")
        for threads in threadCounts.isEmpty ? [1, 2] : threadCounts {
            let pool = ThreadPool(threads: threads)
            let filter = ProcessInfo.processInfo.environment["BENCH_FILTER"] ?? ""
            for (name, type, rows, columns) in shapes where filter.isEmpty || name.contains(filter) {
                let bytes = rows * type.byteCount(values: columns)!
                // Enough copies that the weights come from DRAM, as in a real forward pass.
                let copies = max(1, (96 << 20) / bytes)
                let matrices = randomMatrix(type, rows: rows, columns: columns, copies: copies)
                for batch in [1, 4, 16, 64] {
                    let x = UnsafeMutablePointer<Float>.allocate(capacity: batch * columns)
                    for i in 0..<batch * columns { x[i] = Float.random(in: -1...1) }
                    let out = UnsafeMutablePointer<Float>.allocate(capacity: batch * rows)
                    let calls = max(copies, min(2000, 20_000_000 / (rows * columns * batch)))
                    var times: [Double] = []
                    for _ in 0..<3 {
                        let start = DispatchTime.now().uptimeNanoseconds
                        for c in 0..<calls {
                            Kernels.matmul(matrices[c % copies], x: x, batch: batch, out: out, pool: pool)
                        }
                        times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / Double(calls))
                    }
                    let ns = times.sorted()[times.count / 2]
                    let params = Double(rows * columns * batch) / ns
                    let gbs = Double(bytes) / ns
                    print(name, String(format: "%3d %5d %9.1f %11.2f %12.2f", threads, batch, ns / 1000, params, gbs))
                    x.deallocate()
                    out.deallocate()
                }
            }
        }
    }
}
