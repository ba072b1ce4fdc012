import Foundation
import Inference


/// Largest absolute difference of two equally long rows.
func maxAbsDifference(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count)
    return zip(a, b).map { abs($0 - $1) }.max() ?? 0
}

func argmax(_ a: [Float]) -> Int { a.indices.max { a[$0] < a[$1] } ?? 0 }

/// Largest difference of two rows after subtracting each row's mean: logits that differ by a constant give
/// the same probabilities, so a common offset is not an error.
func maxCenteredDifference(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count && !a.isEmpty)
    let ma = a.reduce(0, +) / Float(a.count)
    let mb = b.reduce(0, +) / Float(b.count)
    return zip(a, b).map { abs(($0 - ma) - ($1 - mb)) }.max() ?? 0
}
