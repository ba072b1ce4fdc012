import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// How a child process ended.
public enum ExitStatus: Sendable, Equatable, CustomStringConvertible {
    /// It called `exit` with this code.
    case exited(Int32)
    /// A signal ended it.
    case signaled(Int32)

    /// The status `waitpid` reported.
    public init(waitStatus status: Int32) {
        self = (status & 0x7f) == 0 ? .exited((status >> 8) & 0xff) : .signaled(status & 0x7f)
    }

    /// The code a shell reports: the exit code, or 128 + the signal's number.
    public var code: Int32 {
        switch self {
        case let .exited(code): code
        case let .signaled(signal): 128 + signal
        }
    }

    /// "exit status 1" or "signal 9 (SIGKILL)".
    public var description: String {
        switch self {
        case let .exited(code): "exit status \(code)"
        case let .signaled(signal): "signal \(signal)" + (Self.names[signal].map { " (\($0))" } ?? "")
        }
    }

    private static let names: [Int32: String] = [
        SIGHUP: "SIGHUP", SIGINT: "SIGINT", SIGQUIT: "SIGQUIT", SIGILL: "SIGILL", SIGABRT: "SIGABRT",
        SIGBUS: "SIGBUS", SIGFPE: "SIGFPE", SIGKILL: "SIGKILL", SIGSEGV: "SIGSEGV", SIGPIPE: "SIGPIPE",
        SIGTERM: "SIGTERM", SIGTRAP: "SIGTRAP",
    ]
}

/// Where a child's standard output or error goes.
public enum ChildOutput: Sendable, Equatable {
    /// The parent's own stream.
    case inherit
    /// `/dev/null`.
    case discard
    /// Appended to this file (created when missing).
    case file(String)
    /// This open descriptor of the parent (e.g. a pipe's write end).
    case descriptor(Int32)
}

/// A child process could not be started.
public struct SpawnError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The program.
    public let executable: String
    /// The `errno` of `posix_spawn`.
    public let code: Int32

    /// The program and the system's reason.
    public var description: String { "cannot start \(executable): \(String(cString: strerror(code)))" }
}

/// Child processes started, signalled, killed and reaped together.
///
/// With `.own` grouping the first child leads a new process group and every later child joins it (a child
/// started once every member has exited leads a new one), so that
/// `killAll` reaches every descendant that stayed in the group (also grandchildren) with one `kill(-group)`.
/// With `.caller` the children stay in the caller's group (a launcher that made itself a group leader, so that
/// `kill -- -PID` from a shell reaches it and its children alike); signals then go to each child in turn.
///
/// `deinit` kills and reaps whatever is still running: no child outlives its owner's scope by accident.
/// Safe to use from several threads.
public final class ProcessGroup: Sendable {
    /// Which process group the children join.
    public enum Grouping: Sendable, Equatable {
        /// A new group, led by the first child.
        case own
        /// The caller's group.
        case caller
    }

    private struct State {
        var group: pid_t = 0
        var running: [pid_t] = []
        var names: [pid_t: String] = [:]
    }

    /// Which group the children join.
    public let grouping: Grouping
    private let state = Mutex(State())

    /// An empty group.
    public init(grouping: Grouping = .own) { self.grouping = grouping }

    deinit { killAll() }

    /// The group's id (the first child's pid) with `.own` grouping once a child started; 0 otherwise.
    public var groupID: pid_t { state.withLock { $0.group } }

    /// The children not yet reaped.
    public var running: [pid_t] { state.withLock { $0.running } }

    /// The name a child was started with.
    public func name(of pid: pid_t) -> String? { state.withLock { $0.names[pid] } }

    /// Starts `executable` (a path) with `arguments`.
    ///
    /// - Parameters:
    ///   - name: what reports call the child (default: the executable's path).
    ///   - environment: variables added to (or replacing those of) this process's environment.
    ///   - standardInput: nil reads `/dev/null`; a descriptor of the parent otherwise.
    ///   - standardOutput, standardError: where the child writes.
    /// - Returns: the child's pid.
    @discardableResult
    public func spawn(
        _ executable: String, _ arguments: [String], name: String? = nil, environment: [String: String] = [:],
        standardInput: Int32? = nil, standardOutput: ChildOutput = .inherit, standardError: ChildOutput = .inherit
    ) throws(SpawnError) -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if let standardInput {
            posix_spawn_file_actions_adddup2(&actions, standardInput, 0)
        } else {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        }
        for (fd, output) in [(Int32(1), standardOutput), (Int32(2), standardError)] {
            switch output {
            case .inherit: break
            case .discard: posix_spawn_file_actions_addopen(&actions, fd, "/dev/null", O_WRONLY, 0)
            case let .file(path):
                posix_spawn_file_actions_addopen(&actions, fd, path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
            case let .descriptor(source): posix_spawn_file_actions_adddup2(&actions, source, fd)
            }
        }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // The child starts with default signal actions and an empty mask, whatever this process set.
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigdefault(&attributes, &all)
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attributes, &none)
        var flags = Int32(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK)
        let environmentList = Self.environment(adding: environment)
        return try state.withLock { state throws(SpawnError) -> pid_t in
            if grouping == .own {
                flags |= Int32(POSIX_SPAWN_SETPGROUP)
                posix_spawnattr_setpgroup(&attributes, state.group)
            }
            posix_spawnattr_setflags(&attributes, Int16(flags))
            let argv = ([executable] + arguments).map { strdup($0) } + [nil]
            let envp = environmentList.map { strdup($0) } + [nil]
            defer { for pointer in argv + envp { free(pointer) } }
            var pid: pid_t = 0
            var result = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
            if result == EPERM, grouping == .own, state.group != 0 {
                // Every member of the group has exited, so it is gone: the child leads a new one.
                posix_spawnattr_setpgroup(&attributes, 0)
                result = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
                if result == 0 { state.group = pid }
            }
            guard result == 0 else { throw SpawnError(executable: executable, code: result) }
            if grouping == .own, state.group == 0 { state.group = pid }
            state.running.append(pid)
            state.names[pid] = name ?? executable
            return pid
        }
    }

    /// This process's environment with `extra` added, as `NAME=value` strings.
    private static func environment(adding extra: [String: String]) -> [String] {
        var parent: [String] = []
        var pointer = environ
        while let entry = pointer.pointee {
            parent.append(String(cString: entry))
            pointer += 1
        }
        return childEnvironment(parent: parent, adding: extra)
    }

    /// Variables a service manager sets for the one process it started: its readiness socket, the sockets it
    /// passes and the watchdog. A child that inherited `NOTIFY_SOCKET` would report its own readiness as the
    /// service's, so none of them is passed on unless the caller gives it explicitly.
    public static let serviceManagerVariables: Set<String> = [
        "NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "WATCHDOG_PID", "WATCHDOG_USEC",
    ]

    /// A child's environment: `parent`'s `NAME=value` entries without the service manager's variables and without
    /// those `extra` replaces, then `extra` in name order.
    public static func childEnvironment(parent: [String], adding extra: [String: String]) -> [String] {
        var list: [String] = []
        for text in parent {
            let name = text.split(separator: "=", maxSplits: 1).first.map(String.init) ?? text
            if extra[name] == nil, !serviceManagerVariables.contains(name) { list.append(text) }
        }
        for (name, value) in extra.sorted(by: { $0.key < $1.key }) { list.append("\(name)=\(value)") }
        return list
    }

    /// Sends `number` to one child (nothing when it was reaped already).
    public func signal(_ pid: pid_t, _ number: Int32) {
        state.withLock { state in
            if state.running.contains(pid) { _ = kill(pid, number) }
        }
    }

    /// Sends `number` to every child: to the whole group with `.own` grouping, else to each running child.
    public func signalAll(_ number: Int32) {
        state.withLock { state in
            if grouping == .own, state.group != 0 {
                _ = kill(-state.group, number)
            } else {
                for pid in state.running { _ = kill(pid, number) }
            }
        }
    }

    /// Reaps the children that have exited, without waiting; each with how it ended.
    public func reapExited() -> [(pid: pid_t, status: ExitStatus)] {
        state.withLock { state in
            var exited: [(pid: pid_t, status: ExitStatus)] = []
            for pid in state.running {
                var status: Int32 = 0
                let result = waitpid(pid, &status, WNOHANG)
                if result == pid {
                    exited.append((pid, ExitStatus(waitStatus: status)))
                } else if result < 0, errno == ECHILD {
                    exited.append((pid, .exited(-1)))
                }
            }
            state.running.removeAll { pid in exited.contains { $0.pid == pid } }
            return exited
        }
    }

    /// Waits up to `timeout` for a child to exit and reaps it; nil while it still runs.
    public func wait(_ pid: pid_t, timeout: Duration) -> ExitStatus? {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while true {
            let found: ExitStatus?? = state.withLock { state in
                guard state.running.contains(pid) else { return .some(nil) }
                var status: Int32 = 0
                let result = waitpid(pid, &status, WNOHANG)
                guard result == pid || (result < 0 && errno == ECHILD) else { return nil }
                state.running.removeAll { $0 == pid }
                return .some(result == pid ? ExitStatus(waitStatus: status) : .exited(-1))
            }
            if let found { return found }
            if clock.now >= deadline { return nil }
            usleep(10_000)
        }
    }

    /// Waits up to `timeout` for every child to exit on its own, reaping them; true when none is left.
    @discardableResult
    public func waitAll(timeout: Duration) -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while true {
            _ = reapExited()
            if running.isEmpty { return true }
            if clock.now >= deadline { return false }
            usleep(5_000)
        }
    }

    /// SIGTERM to every child, then SIGKILL to those still running after `grace`; returns once all are reaped.
    public func stop(grace: Duration) {
        signalAll(SIGCONT)
        signalAll(SIGTERM)
        waitAll(timeout: grace)
        killAll()
    }

    /// SIGKILLs every child (the whole group with `.own` grouping) and reaps them all.
    public func killAll() {
        let pids: [pid_t] = state.withLock { state in
            if grouping == .own, state.group != 0 {
                _ = kill(-state.group, SIGCONT)
                _ = kill(-state.group, SIGKILL)
            }
            for pid in state.running { _ = kill(pid, SIGKILL) }
            defer { state.running.removeAll() }
            return state.running
        }
        for pid in pids {
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        }
    }
}
