import Logging

#if canImport(Glibc)
import Glibc
#endif

/// Threads of their own (never the cooperative pool) for blocking loops: sockets, signal pipes, children.
public enum Threads {
    /// Starts `body` on a new detached thread named `name` (at most 15 bytes show) with `stackSize` bytes of stack.
    /// Returns false when the system refuses a thread.
    @discardableResult
    public static func start(
        name: String, stackSize: Int = 8 << 20, _ body: @escaping @Sendable () -> Void
    ) -> Bool {
        final class Start {
            let name: String
            let body: @Sendable () -> Void
            init(name: String, body: @escaping @Sendable () -> Void) {
                self.name = name
                self.body = body
            }
        }
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setstacksize(&attributes, max(stackSize, 1 << 16))
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        let context = Unmanaged.passRetained(Start(name: name, body: body)).toOpaque()
        var thread = pthread_t()
        let result = pthread_create(&thread, &attributes, { context in
            let start = Unmanaged<Start>.fromOpaque(context!).takeRetainedValue()
            // Named through the kernel's own file (glibc's pthread_setname_np is not visible from Swift).
            let fd = open("/proc/thread-self/comm", O_WRONLY | O_CLOEXEC)
            if fd >= 0 {
                StandardStreams.writeAll(fd, String(decoding: start.name.utf8.prefix(15), as: UTF8.self))
                close(fd)
            }
            start.body()
            return nil
        }, context)
        if result != 0 {
            Unmanaged<Start>.fromOpaque(context).release()
            return false
        }
        return true
    }

    /// Runs blocking `body` on a thread of its own and returns its result (runs it on the caller's thread when
    /// the system refuses a thread).
    public static func run<T: Sendable>(
        name: String, stackSize: Int = 8 << 20, _ body: @escaping @Sendable () -> T
    ) async -> T {
        await withCheckedContinuation { continuation in
            let started = start(name: name, stackSize: stackSize) { continuation.resume(returning: body()) }
            if !started { continuation.resume(returning: body()) }
        }
    }
}

/// The running program's own file.
public enum CurrentExecutable {
    /// The path of the running executable (from `/proc/self/exe`, else `argv[0]` when it names a file).
    public static var path: String? {
        var buffer = [CChar](repeating: 0, count: 4096)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        if count > 0 {
            return String(decoding: buffer.prefix(count).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        if let first = CommandLine.arguments.first, first.contains("/"), access(first, X_OK) == 0 { return first }
        return nil
    }
}
