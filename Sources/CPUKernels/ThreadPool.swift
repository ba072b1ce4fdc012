#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Synchronization

/// A fixed set of threads that run the parts of one parallel loop.
///
/// The worker threads are created once, in `init`, and live as long as the pool. Between loops they spin
/// briefly (so that the next loop of a forward pass, usually microseconds away, starts without a wake-up;
/// with `pause` and periodic yields, see `workerLoop`) and then park on a condition variable, so an idle
/// pool uses no CPU. The calling thread takes part in every loop, so a pool of
/// `threads` threads starts `threads - 1` workers; a pool of one thread runs everything on the caller.
///
/// Tasks are handed out one at a time from a shared counter, so a thread that gets less CPU time (the
/// two vCPUs of a small machine often behave like one core) simply takes fewer tasks.
///
/// A pool serves one loop at a time: `run` calls from several threads at once are serialised.
public final class ThreadPool: @unchecked Sendable {
    // Safe to share: all mutable state lives in `shared` (atomics, and fields written only under the
    // protocol described there) or behind `callerLock`.

    /// How many threads take part in a loop (the caller's thread included).
    public let threads: Int

    private let shared: PoolShared
    private let callerLock = Mutex<Void>(())
    /// Scratch memory for kernels (quantised activations); used only while `callerLock` is held.
    private var scratch: UnsafeMutableRawPointer?
    private var scratchBytes = 0

    /// Creates a pool of `threads` threads (at least 1); workers spin for about 200 µs before parking.
    public convenience init(threads: Int) {
        self.init(threads: threads, spinMicroseconds: 200)
    }

    /// Creates a pool of `threads` threads (at least 1) whose idle workers spin for about
    /// `spinMicroseconds` before parking. Spinning makes back-to-back loops start faster but takes CPU time
    /// from other processes; 0 parks at once.
    public init(threads: Int, spinMicroseconds: Int) {
        self.threads = max(1, threads)
        self.shared = PoolShared(spinNanoseconds: UInt64(max(0, spinMicroseconds)) * 1000)
        for index in 1..<self.threads {
            let shared = self.shared
            let thread = Thread { shared.workerLoop() }
            thread.name = "mope-pool-\(index)"
            thread.stackSize = 8 << 20  // like the main thread: kernels keep row buffers on the stack
            thread.start()
        }
    }

    deinit {
        shared.stop()
        scratch?.deallocate()
    }

    /// Calls `body(task)` for every `task` in `0..<tasks`, spread over the pool, and returns when all
    /// are done. `body` must be safe to call concurrently for different tasks.
    public func run(tasks: Int, _ body: (_ task: Int) -> Void) {
        callerLock.withLock { _ in runLocked(tasks: tasks, body) }
    }

    /// Runs `body` with the pool reserved for the caller and a scratch buffer of at least `bytes` bytes
    /// (64-byte aligned, contents undefined); `body` starts loops with `runLocked`.
    func withScratch<R>(bytes: Int, _ body: (UnsafeMutableRawPointer) -> R) -> R {
        callerLock.withLock { _ in
            if scratch == nil || scratchBytes < bytes {
                scratch?.deallocate()
                scratchBytes = max(bytes, scratchBytes * 2, 4096)
                scratch = UnsafeMutableRawPointer.allocate(byteCount: scratchBytes, alignment: 64)
            }
            // The buffer was allocated just above if it was missing.
            return body(scratch.unsafelyUnwrapped)
        }
    }

    /// Sends the spinning workers to sleep now rather than after their spin time. For a caller that ends a
    /// burst of loops (a forward pass and its top-k) and turns to other work: sockets, or other processes, need
    /// the cores the spinning threads hold. The next loop wakes them as usual.
    public func park() {
        shared.park()
    }

    /// How many worker threads are asleep (not spinning, not working) right now.
    var sleepingWorkers: Int { shared.sleepers.load(ordering: .sequentiallyConsistent) }

    /// `run` for a caller that already holds `callerLock` (inside `withScratch`).
    func runLocked(tasks: Int, _ body: (_ task: Int) -> Void) {
        if tasks <= 0 { return }
        if threads == 1 || tasks == 1 {
            for t in 0..<tasks { body(t) }
            return
        }
        let limit = 0xFFFF
        if tasks > limit {
            // The shared counter holds at most 65535 tasks per loop: give each loop task a range.
            let per = (tasks + limit - 1) / limit
            runLocked(tasks: (tasks + per - 1) / per) { chunk in
                for t in chunk * per..<min(tasks, (chunk + 1) * per) { body(t) }
            }
            return
        }
        withoutActuallyEscaping(body) { escapable in
            shared.runLoop(tasks: tasks, body: escapable)
        }
    }
}

/// The state the caller and the workers of one pool share.
///
/// Protocol: `state` packs `generation << 32 | tasks << 16 | next`. The caller writes `body` and resets
/// `completed`, then publishes a new generation in `state` (release). A thread claims task `next` by a
/// compare-and-swap that keeps the generation and increments `next`; it reads `body` only after a
/// successful claim (acquire). `body` stays valid while any task of its generation is unfinished, because
/// the caller waits until `completed == tasks` before it returns (ending the closure's lifetime) or writes
/// `body` again. So every read of `body` happens-after its write and before the next one.
///
/// `state` and `completed` are written by every thread for every task; each has a cache line of its own so
/// that claiming a task and counting one done do not contend for the same line.
private final class PoolShared: @unchecked Sendable {
    let state = Atomic<UInt64>(0)
    private let pad0: (Int, Int, Int, Int, Int, Int, Int, Int) = (0, 0, 0, 0, 0, 0, 0, 0)
    let completed = Atomic<Int>(0)
    private let pad1: (Int, Int, Int, Int, Int, Int, Int, Int) = (0, 0, 0, 0, 0, 0, 0, 0)
    let sleepers = Atomic<Int>(0)
    let stopping = Atomic<Bool>(false)
    /// The generation after which `park()` was called: workers that have seen it stop spinning.
    let parkedGeneration = Atomic<UInt64>(UInt64.max)
    let spinNanoseconds: UInt64
    /// The current loop's body; see the protocol above.
    var body: ((Int) -> Void)?
    let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    init(spinNanoseconds: UInt64) {
        self.spinNanoseconds = spinNanoseconds
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    /// Ends every worker (after the loop it may be running). Called once, from the pool's deinit.
    func stop() {
        stopping.store(true, ordering: .sequentiallyConsistent)
        pthread_mutex_lock(mutex)
        pthread_cond_broadcast(condition)
        pthread_mutex_unlock(mutex)
    }

    /// Workers that have run the current generation stop spinning and sleep.
    func park() {
        parkedGeneration.store(state.load(ordering: .relaxed) >> 32, ordering: .releasing)
    }

    func runLoop(tasks: Int, body: @escaping (Int) -> Void) {
        self.body = body
        completed.store(0, ordering: .relaxed)
        let generation = (state.load(ordering: .relaxed) >> 32) &+ 1
        state.store((generation << 32) | UInt64(tasks) << 16, ordering: .sequentiallyConsistent)
        if sleepers.load(ordering: .sequentiallyConsistent) > 0 {
            pthread_mutex_lock(mutex)
            pthread_cond_broadcast(condition)
            pthread_mutex_unlock(mutex)
        }
        work(generation: UInt32(truncatingIfNeeded: generation))
        // A worker still runs a task it claimed, for a few microseconds at most if it runs at all. After
        // that, yield: it may be waiting for this vCPU.
        var spins = 0
        while completed.load(ordering: .acquiring) < tasks {
            spins &+= 1
            if spins > 256 { sched_yield() } else { SpinWait.pause() }
        }
        self.body = nil
    }

    /// Claims and runs tasks of `generation` until none is left.
    func work(generation: UInt32) {
        var current = state.load(ordering: .acquiring)
        while true {
            let tasks = (current >> 16) & 0xFFFF
            let next = current & 0xFFFF
            guard UInt32(truncatingIfNeeded: current >> 32) == generation, next < tasks else { return }
            let (exchanged, original) = state.compareExchange(
                expected: current, desired: current &+ 1, ordering: .acquiringAndReleasing)
            if exchanged {
                // Claimed task `next`: `body` is valid until this task is counted complete.
                body.unsafelyUnwrapped(Int(next))
                completed.add(1, ordering: .releasing)
                current = state.load(ordering: .acquiring)
            } else {
                current = original
            }
        }
    }

    func workerLoop() {
        var seen = UInt32(truncatingIfNeeded: state.load(ordering: .acquiring) >> 32)
        while true {
            var generation = UInt32(truncatingIfNeeded: state.load(ordering: .acquiring) >> 32)
            if generation == seen {
                // Stay hot between the loops of a forward pass (microseconds apart), politely: `pause` between
                // reads, the clock every 16 of them, and a yield every 256 (about 10 µs). On an idle vCPU the
                // yield returns at once. When the vCPU is shared (with this pool's caller, or another process
                // on a loaded machine), it lets the other thread run instead of spinning through its time
                // slice; the caller then runs the loops alone, as fast as one thread, where spinning without
                // yields made two threads slower than one.
                var start: UInt64 = 0
                var spins = 0
                while generation == seen, !stopping.load(ordering: .relaxed) {
                    spins &+= 1
                    SpinWait.pause()
                    if spins & 255 == 0 { sched_yield() }
                    if spins & 15 == 0 {
                        let now = DispatchTime.now().uptimeNanoseconds
                        if start == 0 {
                            start = now
                        } else if now &- start > spinNanoseconds {
                            break
                        }
                        if parkedGeneration.load(ordering: .relaxed) == UInt64(seen) { break }
                    }
                    generation = UInt32(truncatingIfNeeded: state.load(ordering: .acquiring) >> 32)
                }
            }
            if generation == seen {
                pthread_mutex_lock(mutex)
                sleepers.add(1, ordering: .sequentiallyConsistent)
                while true {
                    generation = UInt32(truncatingIfNeeded: state.load(ordering: .sequentiallyConsistent) >> 32)
                    if generation != seen || stopping.load(ordering: .sequentiallyConsistent) { break }
                    pthread_cond_wait(condition, mutex)
                }
                sleepers.subtract(1, ordering: .sequentiallyConsistent)
                pthread_mutex_unlock(mutex)
            }
            if stopping.load(ordering: .acquiring) { return }
            seen = generation
            work(generation: generation)
        }
    }
}

/// The CPU's spin-wait hint.
enum SpinWait {
    /// Tells the CPU that this thread is waiting for another (x86 `pause`): the loop uses less power and
    /// leaves more of a shared core, and the eventual exit costs no memory-order flush.
    @inline(__always)
    static func pause() {
        #if arch(x86_64)
        x86Pause()
        #endif
    }
}

#if arch(x86_64)
// The LLVM intrinsic behind `_mm_pause`; Swift has no other way to emit the instruction.
@_silgen_name("llvm.x86.sse2.pause")
private func x86Pause()
#endif
