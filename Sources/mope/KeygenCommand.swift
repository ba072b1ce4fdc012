import CLI
import ZeroMQ

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `mope keygen`: a new CURVE key pair for configurations that encrypt coordinator–worker traffic.
///
/// Without `--out` both keys are printed, one per line (`public-key: …`, `secret-key: …`). With
/// `--out PREFIX` the secret key goes to `PREFIX.key` (mode 0600) and the public key to `PREFIX.pub`
/// (mode 0644), each as 40 Z85 characters and a newline; existing files are kept unless `--force`. With
/// `--cluster DIR` it writes a whole cluster's key files into DIR (mode 0700), the layout `mope cluster --keys`
/// uses and the deploy scripts read: `coordinator`, `worker` and `client` key pairs and the two allow-lists
/// `worker-keys` and `authorized-keys`.
enum Keygen: ParsableCommand {
    static let configuration = CommandConfiguration(
        name: "keygen",
        abstract: "Generate a CURVE key pair (Z85) for encrypted coordinator–worker traffic.",
        discussion: """
            Prints the public and secret key, or with --out PREFIX writes PREFIX.key (the secret key,
            readable only by its owner) and PREFIX.pub (the public key). Give the coordinator's public key
            to every worker; keep secret keys private.

            With --cluster DIR: every key file of one cluster, in DIR (created, mode 0700): coordinator.key/.pub,
            worker.key/.pub, client.key/.pub, worker-keys (the workers' endpoint allow-list) and authorized-keys
            (the clients'), the layout mope cluster --keys and the scripts in Deploy/ use.
            """,
        options: [
            .value("out", "PREFIX", help: "Write PREFIX.key and PREFIX.pub instead of printing the keys."),
            .value("cluster", "DIR", help: "Write a whole cluster's key files and allow-lists into DIR."),
            .flag("force", help: "Overwrite existing key files."),
        ]
    )

    static func run(_ arguments: ParsedArguments) async throws -> Int32 {
        guard CurveKeyPair.isSupported else { throw KeygenError.curveUnsupported }
        if let directory = arguments.value("cluster") {
            guard arguments.value("out") == nil else {
                throw UsageError.other("give either --cluster or --out, not both")
            }
            guard !directory.isEmpty else {
                throw UsageError.invalidValue(option: "cluster", value: directory, expected: "a directory")
            }
            if !arguments.flag("force") && access(directory + "/coordinator.key", F_OK) == 0 {
                throw KeygenError.fileExists(directory + "/coordinator.key")
            }
            let keys = try ClusterKeys.create(in: directory)
            CLI.writeOut("wrote the cluster's keys to \(keys.directory): coordinator, worker and client key pairs, "
                         + "worker-keys, authorized-keys\n")
            return CLI.success
        }
        let keys: CurveKeyPair
        do {
            keys = try CurveKeyPair.generate()
        } catch {
            throw KeygenError.generationFailed(error)
        }
        guard let prefix = arguments.value("out") else {
            CLI.writeOut("public-key: \(keys.publicKey)\nsecret-key: \(keys.secretKey)\n")
            return CLI.success
        }
        guard !prefix.isEmpty else {
            throw UsageError.invalidValue(option: "out", value: prefix, expected: "a path prefix")
        }
        let force = arguments.flag("force")
        let secretPath = prefix + ".key"
        let publicPath = prefix + ".pub"
        if !force {
            for path in [secretPath, publicPath] where access(path, F_OK) == 0 {
                throw KeygenError.fileExists(path)
            }
        }
        try writeKey(keys.secretKey + "\n", to: secretPath, mode: 0o600)
        try writeKey(keys.publicKey + "\n", to: publicPath, mode: 0o644)
        CLI.writeOut("wrote \(secretPath) (secret) and \(publicPath) (public)\npublic-key: \(keys.publicKey)\n")
        return CLI.success
    }

    /// Writes `text` to `path` with `mode`, replacing the file.
    static func writeKey(_ text: String, to path: String, mode: mode_t) throws {
        // Remove first so a replaced secret key never keeps an older, looser mode.
        if unlink(path) != 0 && errno != ENOENT { throw KeygenError.writeFailed(path, errno: errno) }
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else { throw KeygenError.writeFailed(path, errno: errno) }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw KeygenError.writeFailed(path, errno: errno)
            }
            offset += n
        }
        guard fsync(fd) == 0 else { throw KeygenError.writeFailed(path, errno: errno) }
    }
}

/// Why `mope keygen` failed.
enum KeygenError: Error, CustomStringConvertible {
    /// The libzmq in use was built without CURVE.
    case curveUnsupported
    /// libzmq could not generate a key pair.
    case generationFailed(ZMQError)
    /// A key file exists and `--force` was not given.
    case fileExists(String)
    /// A key file could not be written.
    case writeFailed(String, errno: Int32)

    var description: String {
        switch self {
        case .curveUnsupported:
            "this libzmq was built without CURVE support; install a libzmq with libsodium (libzmq3-dev does)"
        case .generationFailed(let error):
            "cannot generate a key pair: \(error)"
        case .fileExists(let path):
            "\(path) exists; choose another --out prefix or pass --force to replace it"
        case .writeFailed(let path, let code):
            "cannot write \(path): \(String(cString: strerror(code)))"
        }
    }
}
