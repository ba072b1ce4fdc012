import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// SIGTERM and SIGINT as requests to shut down, caught from the moment `install()` runs.
///
/// A long-running command (coordinator, worker, launcher) calls `install()` first thing, before it loads a model
/// or binds a socket, and hands its reaction to `onSignal` once it has something to drain: a signal that came in
/// between is not lost (and does not kill the process with the default action), it is delivered as soon as the
/// handler is set. The C handler only writes the signal's number to a pipe (async-signal-safe); a thread of its
/// own reads the pipe and calls the handler with the number of signals so far (1: drain; 2 or more: stop now).
/// `uninstall()` restores the default actions.
public enum ShutdownSignals {
    private struct State {
        var installed = false
        var count = 0
        var handler: (@Sendable (Int) -> Void)?
    }

    private static let state = Mutex(State())

    /// The signals caught.
    public static let numbers: [Int32] = [SIGTERM, SIGINT]

    /// Catches SIGTERM and SIGINT from now on (again after `uninstall()`; otherwise later calls do nothing).
    public static func install() {
        let first = state.withLock { state in
            defer { state.installed = true }
            return !state.installed
        }
        if first {
            var fds: [Int32] = [-1, -1]
            guard pipe(&fds) == 0 else { return }
            for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
            signalPipe = fds[1]
            let reader = fds[0]
            Threads.start(name: "mope-signals", stackSize: 1 << 18) {
                var byte: UInt8 = 0
                while true {
                    let n = read(reader, &byte, 1)
                    if n == 1 {
                        deliver()
                    } else if n < 0 && errno == EINTR {
                        continue
                    } else {
                        return
                    }
                }
            }
        }
        guard signalPipe >= 0 else { return }
        let handler: @convention(c) (Int32) -> Void = { number in
            var byte = UInt8(truncatingIfNeeded: number)
            _ = write(signalPipe, &byte, 1)
        }
        for number in numbers { signal(number, handler) }
    }

    /// Calls `handler` with the count of signals so far for every signal from now on, and at once when signals
    /// came before (with their count). Replaces any handler set before.
    public static func onSignal(_ handler: @escaping @Sendable (Int) -> Void) {
        install()
        let pending = state.withLock { state in
            state.handler = handler
            return state.count
        }
        if pending > 0 { handler(pending) }
    }

    /// How many signals were caught.
    public static var count: Int { state.withLock { $0.count } }

    /// Restores the default actions of SIGTERM and SIGINT and forgets the handler.
    public static func uninstall() {
        for number in numbers { signal(number, SIG_DFL) }
        state.withLock { $0.handler = nil }
    }

    private static func deliver() {
        let (handler, count) = state.withLock { state in
            state.count += 1
            return (state.handler, state.count)
        }
        handler?(count)
    }
}

/// The write end of the signal pipe, read by the C signal handler (set once, before the handler is installed).
nonisolated(unsafe) private var signalPipe: Int32 = -1
