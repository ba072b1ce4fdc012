import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Drain and stop requests from other threads (signal handlers, tests) to a process's event loop, which polls
/// `readDescriptor`: every request writes one byte to a non-blocking pipe, so a loop asleep in `poll` wakes.
public final class LoopControl: Sendable {
    /// A request to the loop.
    public enum Request: Sendable { case drain, stop }

    /// The requests received so far.
    public struct State: Sendable, Equatable {
        /// How many drains were requested (a second one usually means "stop now").
        public var drains = 0
        /// Whether a stop was requested.
        public var stop = false
    }

    private let state = Mutex(State())
    /// The pipe's read end, for the loop's poller.
    public let readDescriptor: Int32
    private let writeDescriptor: Int32

    /// Creates the pipe; nil when `pipe` fails (see `errno`).
    public init?() {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { return nil }
        for fd in fds {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
        readDescriptor = fds[0]
        writeDescriptor = fds[1]
    }

    deinit {
        close(readDescriptor)
        close(writeDescriptor)
    }

    /// Records a request and wakes the loop.
    public func request(_ request: Request) {
        state.withLock {
            switch request {
            case .drain: $0.drains += 1
            case .stop: $0.stop = true
            }
        }
        var byte: UInt8 = 1
        _ = write(writeDescriptor, &byte, 1)  // A full pipe wakes the loop already.
    }

    /// Whether a drain was requested, without emptying the pipe.
    public var isDrainRequested: Bool { state.withLock { $0.drains > 0 } }

    /// The requests so far, after emptying the pipe.
    public func take() -> State {
        var buffer = [UInt8](repeating: 0, count: 64)
        while read(readDescriptor, &buffer, buffer.count) > 0 {}
        return state.withLock { $0 }
    }
}

/// Ends a child process whose launcher is gone. `mope cluster` names itself in its children's environment
/// (`MOPE_LAUNCHER_PID`); a child started that way checks twice a second that the launcher is still its parent.
/// When it is not (the launcher died, even by SIGKILL, and the child was re-parented), the child sends itself
/// SIGTERM once, so it drains and exits as on any stop instead of living on as an orphan that holds its port.
public enum ParentWatch {
    /// The environment variable a launcher sets to its own pid in the environment of its children.
    public static let variable = "MOPE_LAUNCHER_PID"

    private static let started = Mutex(false)

    /// Starts watching when the environment names a launcher; does nothing otherwise (or when already started).
    public static func startIfLaunched() {
        guard let value = getenv(variable), let launcher = pid_t(String(cString: value)), launcher > 1 else {
            return
        }
        // Not inherited further: a process this one starts has another parent.
        unsetenv(variable)
        let first = started.withLock { started in
            defer { started = true }
            return !started
        }
        guard first else { return }
        Threads.start(name: "mope-parent", stackSize: 1 << 18) {
            while getppid() == launcher { usleep(500_000) }
            StandardStreams.writeError("the launcher (pid \(launcher)) is gone; shutting down\n")
            kill(getpid(), SIGTERM)
        }
    }
}

/// Per-step timestamps for finding where a cluster's time goes; off unless `MOPE_TIMELINE` names a directory.
///
/// With it set, each process that calls `start(role:)` appends tab-separated lines to `DIR/ROLE-PID.tsv`:
/// `nanoseconds  event  worker  session  step`, the time from the monotonic clock (comparable between processes
/// of one machine only). The coordinator writes `step-sent` and `dist-read`, a worker `step-read`, `pass-start`,
/// `pass-end` (the forward pass that computes the step) and `dist-sent`; `Scripts/timeline.py DIR` turns them
/// into a per-step breakdown. Each line is one `write`.
public enum Timeline {
    /// The environment variable naming the directory.
    public static let variable = "MOPE_TIMELINE"

    private static let descriptor = Mutex<Int32>(-1)

    /// Opens this process's file when `MOPE_TIMELINE` is set; returns the path, or nil when off or unwritable.
    @discardableResult
    public static func start(role: String) -> String? {
        guard let value = getenv(variable) else { return nil }
        return start(role: role, directory: String(cString: value))
    }

    /// Opens `DIRECTORY/ROLE-PID.tsv` for this process's events (replacing any file opened before); returns the
    /// path, or nil when it cannot be opened.
    @discardableResult
    public static func start(role: String, directory: String) -> String? {
        guard !directory.isEmpty else { return nil }
        let safe = String(role.map { $0.isLetter || $0.isNumber || $0 == "-" ? $0 : "_" })
        let path = "\(directory)/\(safe)-\(getpid()).tsv"
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return nil }
        let previous = descriptor.withLock { descriptor in
            defer { descriptor = fd }
            return descriptor
        }
        if previous >= 0 { close(previous) }
        return path
    }

    /// Stops writing events and closes the file.
    public static func stop() {
        let previous = descriptor.withLock { descriptor in
            defer { descriptor = -1 }
            return descriptor
        }
        if previous >= 0 { close(previous) }
    }

    /// Whether events are being written.
    public static var isOn: Bool { descriptor.withLock { $0 >= 0 } }

    /// Writes one event, stamped now.
    public static func record(_ event: String, worker: String, session: UInt64, step: UInt32) {
        let fd = descriptor.withLock { $0 }
        guard fd >= 0 else { return }
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        let nanos = UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
        StandardStreams.writeAll(fd, "\(nanos)\t\(event)\t\(worker)\t\(session)\t\(step)\n")
    }
}
