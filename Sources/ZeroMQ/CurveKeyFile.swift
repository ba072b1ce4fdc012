#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// CURVE keys read from files (as `mope keygen --out PREFIX` writes them: one Z85 key and a newline), so that keys
/// never appear on a command line, where `ps` and `/proc/PID/cmdline` show them to every user.
///
/// A secret key file must be readable by its owner only (no group or other permission bits): a looser file is
/// refused rather than trusted.
public enum CurveKeyFile {
    /// Reads the secret key in `path` and derives its key pair.
    /// - Throws: `CurveKeyFileError` when the file cannot be read, is readable by group or others, or does not
    ///   hold a CURVE secret key.
    public static func readSecret(_ path: String) throws(CurveKeyFileError) -> CurveKeyPair {
        var info = stat()
        guard stat(path, &info) == 0 else { throw .unreadable(path: path, reason: errnoText(errno)) }
        guard info.st_mode & 0o077 == 0 else {
            throw .tooOpen(path: path, mode: UInt32(info.st_mode & 0o777))
        }
        let key = try readKey(path)
        do {
            return try CurveKeyPair(secretKey: key)
        } catch {
            throw .notAKey(path: path)
        }
    }

    /// Reads the public key in `path` (40 Z85 characters encoding 32 bytes).
    /// - Throws: `CurveKeyFileError` when the file cannot be read or does not hold a CURVE public key.
    public static func readPublic(_ path: String) throws(CurveKeyFileError) -> String {
        let key = try readKey(path)
        guard Z85.decode(key)?.count == 32 else { throw .notAKey(path: path) }
        return key
    }

    /// Reads a whole small text file (at most 64 KiB: an allow-list or a key).
    /// - Throws: `CurveKeyFileError.unreadable`.
    public static func readText(_ path: String) throws(CurveKeyFileError) -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .unreadable(path: path, reason: errnoText(errno)) }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw .unreadable(path: path, reason: errnoText(errno))
            }
            if n == 0 { break }
            bytes += buffer[..<n]
            guard bytes.count <= 65_536 else { throw .unreadable(path: path, reason: "larger than 64 KiB") }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The file's first non-blank, non-comment line, trimmed.
    private static func readKey(_ path: String) throws(CurveKeyFileError) -> String {
        let text = try readText(path)
        for line in text.split(whereSeparator: \.isNewline) {
            let trimmed = line.trimmingSpaces
            guard !trimmed.isEmpty, !trimmed.hasPrefix("#") else { continue }
            return trimmed
        }
        throw .notAKey(path: path)
    }

    private static func errnoText(_ code: Int32) -> String { String(cString: strerror(code)) }
}

extension Substring {
    fileprivate var trimmingSpaces: String {
        String(drop { $0 == " " || $0 == "\t" || $0 == "\r" }.reversed().drop { $0 == " " || $0 == "\t" || $0 == "\r" }
            .reversed())
    }
}

/// Why a key file cannot be used. The messages name the file, never its content.
public enum CurveKeyFileError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The file cannot be opened or read.
    case unreadable(path: String, reason: String)
    /// A secret key file that group or others may access (its permission bits).
    case tooOpen(path: String, mode: UInt32)
    /// The file does not hold a key of the expected kind.
    case notAKey(path: String)

    /// A message a user can act on.
    public var description: String {
        switch self {
        case let .unreadable(path, reason): "cannot read the key file \(path): \(reason)"
        case let .tooOpen(path, mode):
            "the secret key file \(path) is accessible by others (mode \(String(mode, radix: 8))); "
                + "run chmod 600 \(path)"
        case let .notAKey(path):
            "\(path) does not hold a CURVE key (40 Z85 characters, as `mope keygen --out PREFIX` writes)"
        }
    }
}
