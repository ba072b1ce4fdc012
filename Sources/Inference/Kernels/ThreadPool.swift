/// A fixed set of threads that run the parts of one parallel loop. Reference implementation: serial.
public final class ThreadPool: @unchecked Sendable {
    /// How many threads take part in a loop (the caller's thread included).
    public let threads: Int

    /// Creates a pool of `threads` threads (at least 1).
    public init(threads: Int) {
        self.threads = max(1, threads)
    }

    /// Calls `body(task)` for every `task` in `0..<tasks`, spread over the pool, and returns when all
    /// are done. `body` must be safe to call concurrently for different tasks.
    public func run(tasks: Int, _ body: (_ task: Int) -> Void) {
        for t in 0..<tasks { body(t) }
    }
}
