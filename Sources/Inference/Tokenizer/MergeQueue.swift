/// A binary min-heap: the merge candidates of BPE, best first.
struct MinHeap<Element: Comparable> {
    private var items: [Element] = []

    var isEmpty: Bool { items.isEmpty }

    mutating func push(_ element: Element) {
        items.append(element)
        var child = items.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard items[child] < items[parent] else { break }
            items.swapAt(child, parent)
            child = parent
        }
    }

    mutating func pop() -> Element? {
        guard !items.isEmpty else { return nil }
        items.swapAt(0, items.count - 1)
        let top = items.removeLast()
        var parent = 0
        while true {
            let left = 2 * parent + 1
            let right = left + 1
            var best = parent
            if left < items.count && items[left] < items[best] { best = left }
            if right < items.count && items[right] < items[best] { best = right }
            if best == parent { break }
            items.swapAt(parent, best)
            parent = best
        }
        return top
    }
}

/// A doubly linked list of symbols over an array, for merging neighbours in place.
struct SymbolList {
    var ids: [Int32]
    var previous: [Int32]
    var next: [Int32]
    var alive: [Bool]

    init(_ ids: [Int32]) {
        self.ids = ids
        previous = (0 ..< Int32(ids.count)).map { $0 - 1 }
        next = (0 ..< Int32(ids.count)).map { $0 + 1 == Int32(ids.count) ? -1 : $0 + 1 }
        alive = Array(repeating: true, count: ids.count)
    }

    /// Joins symbol `left` with its right neighbour into `merged`.
    mutating func merge(_ left: Int, into merged: Int32) {
        let right = Int(next[left])
        ids[left] = merged
        alive[right] = false
        next[left] = next[right]
        if next[right] >= 0 { previous[Int(next[right])] = Int32(left) }
    }

    /// The surviving symbols, in order.
    var result: [Int32] {
        var out: [Int32] = []
        var i: Int32 = ids.isEmpty ? -1 : 0
        while i >= 0 {
            out.append(ids[Int(i)])
            i = next[Int(i)]
        }
        return out
    }
}
