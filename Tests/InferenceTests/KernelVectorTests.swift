import Foundation
import Testing

@testable import CPUKernels
@testable import Inference

@Suite struct KernelVectorTests {
    static func values(_ count: Int, seed: Int) -> [Float] {
        (0..<count).map { Float(sin(Double($0 * 7 + seed) * 0.731)) * 3 }
    }

    @Test("dot equals the Double-precision sum for lengths around the unrolled widths",
          arguments: [0, 1, 15, 16, 17, 63, 64, 65, 576, 1537])
    func dot(count: Int) {
        let a = Self.values(count, seed: 1), b = Self.values(count, seed: 2)
        let expected = zip(a, b).map { Double($0) * Double($1) }.reduce(0, +)
        let scale = zip(a, b).map { abs(Double($0) * Double($1)) }.reduce(0, +)
        let got = Vector.dot(a, b, count: count)
        #expect(abs(Double(got) - expected) <= 1e-5 * (1 + scale))
    }

    @Test("exp is accurate to a few parts in 10^7 over the range softmax and silu use")
    func exp() {
        var x: Float = -87
        while x < 88 {
            let expected = Foundation.exp(Double(x))
            #expect(abs(Double(Vector.exp(x)) - expected) <= 4e-7 * expected, "x = \(x)")
            x += 0.0137
        }
        #expect(Vector.exp(-200) == 0)
        #expect(Vector.exp(200) == .infinity)
        #expect(Vector.exp(0) == 1)
        #expect(Vector.exp(.nan).isNaN)
    }

    @Test("softmax gives probabilities summing to 1 in the order of the inputs, and returns the normaliser")
    func softmax() {
        var x: [Float] = [1, 2, 3, 1000, -5] + Self.values(40, seed: 3)
        let original = x
        let sum = Vector.softmax(&x, count: x.count)
        #expect(abs(x.reduce(0, +) - 1) < 1e-5)
        #expect(x[3] > 0.99)
        let m = original.max()!
        let expectedSum = original.map { Foundation.exp(Double($0 - m)) }.reduce(0, +)
        #expect(abs(Double(sum) - expectedSum) < 1e-5 * expectedSum)
        for i in x.indices where i != 3 {
            #expect(abs(Double(x[i]) - Foundation.exp(Double(original[i] - m)) / expectedSum) < 1e-7)
        }
    }

    @Test("rmsNorm scales to unit root-mean-square times the weight")
    func rmsNorm() {
        let x = Self.values(576, seed: 4)
        let weight = Self.values(576, seed: 5)
        var out = [Float](repeating: 0, count: 576)
        Vector.rmsNorm(x, weight: weight, epsilon: 1e-5, count: 576, out: &out)
        let rms = (x.map { Double($0) * Double($0) }.reduce(0, +) / 576 + 1e-5).squareRoot()
        for i in 0..<576 { #expect(abs(Double(out[i]) - Double(x[i]) / rms * Double(weight[i])) < 1e-5) }
    }

    @Test("siluMul is silu(gate)·up, also in place")
    func siluMul() {
        let gate = Self.values(100, seed: 6) + [-90, 90, 0]
        let up = Self.values(103, seed: 7)
        var out = [Float](repeating: 0, count: 103)
        Vector.siluMul(gate: gate, up: up, count: 103, out: &out)
        for i in 0..<103 {
            let g = Double(gate[i])
            let expected = g / (1 + Foundation.exp(-g)) * Double(up[i])
            #expect(abs(Double(out[i]) - expected) < 1e-5 * (1 + abs(expected)), "gate \(g)")
        }
        var inPlace = gate
        inPlace.withUnsafeMutableBufferPointer { p in
            Vector.siluMul(gate: p.baseAddress!, up: up, count: 103, out: p.baseAddress!)
        }
        #expect(inPlace == out)
    }

    @Test("axpy, add, scale and max do what they say")
    func elementwise() {
        var y: [Float] = [1, 2, 3]
        Vector.axpy(2, [1, 1, 1], &y, count: 3)
        #expect(y == [3, 4, 5])
        Vector.add([1, 0, -1], into: &y, count: 3)
        #expect(y == [4, 4, 4])
        Vector.scale(&y, by: 0.5, count: 3)
        #expect(y == [2, 2, 2])
        let v = Self.values(37, seed: 8)
        #expect(Vector.max(v, count: 37) == v.max())
        #expect(Vector.max(v, count: 0) == -.infinity)
    }
}
