#if canImport(Glibc)
import Glibc
#endif

/// Unbuffered writes to the standard streams, safe from any thread and from signal-driven shutdown paths.
public enum StandardStreams {
    /// Writes every byte of `text` to standard error.
    public static func writeError(_ text: String) { writeAll(STDERR_FILENO, text) }

    /// Writes every byte of `text` to standard output.
    public static func writeOutput(_ text: String) { writeAll(STDOUT_FILENO, text) }

    /// Writes every byte of `text` to `fd`, retrying after EINTR and partial writes; gives up on other errors
    /// (a closed pipe must not take the process down).
    public static func writeAll(_ fd: Int32, _ text: String) {
        var bytes = Array(text.utf8)
        var offset = 0
        bytes.withUnsafeMutableBytes { buffer in
            guard let base = buffer.baseAddress else { return }
            while offset < buffer.count {
                let n = write(fd, base + offset, buffer.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    return
                }
                offset += n
            }
        }
    }
}
