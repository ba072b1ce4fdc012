import Foundation
import ProcessSupport
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite(.serialized) struct ProcessToolkitTests {
    @Test("a child's exit code and the signal that ended it are reported; output goes to the file named")
    func exitStatus() throws {
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("toolkit-\(getpid()).log").path
        defer { unlink(log) }
        let group = ProcessGroup()
        // The first child exits before the second starts: the second leads a group of its own.
        let ok = try group.spawn("/bin/sh", ["-c", "echo out; echo err >&2; exit 3"], name: "three",
                                 standardOutput: .file(log), standardError: .file(log))
        #expect(group.wait(ok, timeout: .seconds(30)) == .exited(3))
        #expect(try String(contentsOfFile: log, encoding: .utf8) == "out\nerr\n")
        let sleeper = try group.spawn("/bin/sh", ["-c", "exec sleep 60"], name: "sleeper")
        #expect(group.wait(sleeper, timeout: .zero) == nil)
        #expect(group.name(of: sleeper) == "sleeper")
        group.signal(sleeper, SIGKILL)
        let killed = group.wait(sleeper, timeout: .seconds(30))
        #expect(killed == .signaled(SIGKILL))
        #expect(killed?.code == 137)
        #expect(killed?.description == "signal 9 (SIGKILL)")
        #expect(ExitStatus.exited(1).description == "exit status 1")
        #expect(group.running.isEmpty)
    }

    @Test("children share one new process group, which killAll ends and reaps, grandchildren included")
    func groupKill() throws {
        let group = ProcessGroup()
        let first = try group.spawn("/bin/sh", ["-c", "sleep 60 & wait"])
        let second = try group.spawn("/bin/sh", ["-c", "exec sleep 60"])
        #expect(group.groupID == first)
        #expect(getpgid(first) == first && getpgid(second) == first)
        group.killAll()
        #expect(group.running.isEmpty)
        #expect(kill(first, 0) != 0 && kill(second, 0) != 0)
        // The grandchild `sleep` was in the group too: nothing of it is left running (a zombie waits for its
        // new parent to reap it).
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: .seconds(10))
        while !Self.liveMembers(of: first).isEmpty, clock.now < deadline { usleep(20_000) }
        #expect(Self.liveMembers(of: first).isEmpty)
    }

    @Test("stop sends SIGTERM and reaps the children that exit within the grace; the rest get SIGKILL")
    func stopWithGrace() throws {
        let group = ProcessGroup()
        let polite = try group.spawn("/bin/sh", ["-c", "exec sleep 60"])
        let stubborn = try group.spawn("/bin/sh", ["-c", "trap '' TERM; while :; do sleep 0.05; done"])
        usleep(200_000)  // Let the shell install its trap.
        group.stop(grace: .milliseconds(500))
        #expect(group.running.isEmpty)
        #expect(kill(polite, 0) != 0 && kill(stubborn, 0) != 0)
        let exited = group.reapExited()
        #expect(exited.isEmpty)
    }

    @Test("the environment given is added to the child's; a missing program is a typed error naming it")
    func environmentAndErrors() throws {
        let group = ProcessGroup()
        let pid = try group.spawn("/bin/sh", ["-c", "[ \"$MOPE_TOOLKIT_TEST\" = yes ] && [ -n \"$PATH\" ]"],
                                  environment: ["MOPE_TOOLKIT_TEST": "yes"])
        #expect(group.wait(pid, timeout: .seconds(30)) == .exited(0))
        #expect(throws: SpawnError.self) { try group.spawn("/nonexistent/program", []) }
        do {
            try group.spawn("/nonexistent/program", [])
        } catch {
            #expect(error.description.contains("/nonexistent/program"))
        }
    }

    @Test("a child does not inherit the service manager's readiness socket, sockets or watchdog unless given them")
    func serviceManagerVariablesStayWithTheParent() {
        let parent = ["PATH=/usr/bin", "NOTIFY_SOCKET=/run/systemd/notify", "LISTEN_FDS=1", "WATCHDOG_USEC=5000000",
                      "HOME=/root", "MOPE_X=old"]
        let child = ProcessGroup.childEnvironment(parent: parent, adding: ["MOPE_X": "new"])
        #expect(child == ["PATH=/usr/bin", "HOME=/root", "MOPE_X=new"])
        let given = ProcessGroup.childEnvironment(parent: parent, adding: ["NOTIFY_SOCKET": "/tmp/own"])
        #expect(given.filter { $0.hasPrefix("NOTIFY_SOCKET=") } == ["NOTIFY_SOCKET=/tmp/own"])
    }

    /// The processes of process group `group` that are not zombies.
    static func liveMembers(of group: pid_t) -> [pid_t] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { entry -> pid_t? in
            guard let pid = pid_t(entry),
                let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { return nil }
            // After the command's name: state, parent, process group.
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            guard fields.count > 2, fields[0] != "Z", pid_t(fields[2]) == group else { return nil }
            return pid
        }
    }

    @Test("a signal caught before the handler is set is delivered when it is set, with the count so far")
    func signalsBeforeHandler() throws {
        ShutdownSignals.install()
        defer { ShutdownSignals.uninstall() }
        let before = ShutdownSignals.count
        // To the process (any thread that does not block it takes it), as `kill` from outside sends it.
        kill(getpid(), SIGTERM)
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: .seconds(10))
        while ShutdownSignals.count == before, clock.now < deadline { usleep(5_000) }
        #expect(ShutdownSignals.count == before + 1)
        let seen = Mutex<[Int]>([])
        ShutdownSignals.onSignal { count in seen.withLock { $0.append(count) } }
        #expect(seen.withLock { $0 } == [before + 1])
        kill(getpid(), SIGINT)
        while seen.withLock({ $0.count }) < 2, clock.now < deadline { usleep(5_000) }
        #expect(seen.withLock { $0 } == [before + 1, before + 2])
    }

    @Test("a thread of its own runs the body and hands back its result; the executable's path is found")
    func threadsAndExecutable() async {
        let name = await Threads.run(name: "mope-test-thread") { () -> String in
            (try? String(contentsOfFile: "/proc/thread-self/comm", encoding: .utf8)) ?? ""
        }
        #expect(name == "mope-test-threa\n" || name == "mope-test-threa")
        #expect(CurrentExecutable.path.map { FileManager.default.isExecutableFile(atPath: $0) } == true)
    }
}
