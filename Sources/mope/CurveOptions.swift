import CLI
import Foundation
import ZeroMQ

/// CURVE keys from files named by options or environment variables, never from the command line itself.
///
/// | option                      | environment variable           | holds                                       |
/// |-----------------------------|--------------------------------|---------------------------------------------|
/// | `--curve-secret-key-file`   | `MOPE_CURVE_SECRET_KEY_FILE`   | this process's secret key (mode 0600)       |
/// | `--curve-server-key-file`   | `MOPE_CURVE_SERVER_KEY_FILE`   | the coordinator's public key                |
/// | `--curve-authorized-keys`   | `MOPE_CURVE_AUTHORIZED_KEYS`   | the clients' public keys the coordinator admits |
/// | `--curve-worker-keys`       | `MOPE_CURVE_WORKER_KEYS`       | the workers' public keys the coordinator admits |
///
/// An option wins over its variable.
enum CurveOptions {
    static let secretKeyFile = "curve-secret-key-file"
    static let serverKeyFile = "curve-server-key-file"
    static let authorizedKeys = "curve-authorized-keys"
    static let workerKeys = "curve-worker-keys"

    /// The environment variable naming the same file as `option`.
    static func variable(for option: String) -> String {
        switch option {
        case secretKeyFile: "MOPE_CURVE_SECRET_KEY_FILE"
        case serverKeyFile: "MOPE_CURVE_SERVER_KEY_FILE"
        case workerKeys: "MOPE_CURVE_WORKER_KEYS"
        default: "MOPE_CURVE_AUTHORIZED_KEYS"
        }
    }

    /// The path given by `option`, else by its environment variable (an empty variable counts as unset).
    static func path(_ arguments: ParsedArguments, _ option: String) -> String? {
        if let value = arguments.value(option) { return value }
        let value = ProcessInfo.processInfo.environment[variable(for: option)]
        return value?.isEmpty == false ? value : nil
    }

    /// The options' help lines for a worker or a client.
    static func clientOptions(role: String) -> [Option] {
        [
            .value(serverKeyFile, "file", help: "The coordinator's CURVE public key (a .pub file): encrypt the "
                + "connection (or MOPE_CURVE_SERVER_KEY_FILE)."),
            .value(secretKeyFile, "file", help: "This \(role)'s CURVE secret key (a .key file, mode 0600; or "
                + "MOPE_CURVE_SECRET_KEY_FILE; default: a fresh key pair)."),
        ]
    }

    /// Nil without a server key file; the server's key and the key pair of the secret key file, or a fresh one.
    /// - Throws: `UsageError` when a secret key comes without the server's key; `CurveKeyFileError` for a bad
    ///   or too open file; `ZMQError` when CURVE is unsupported.
    static func clientKeys(_ arguments: ParsedArguments) throws -> CurveClientKeys? {
        let serverPath = path(arguments, serverKeyFile)
        let secretPath = path(arguments, secretKeyFile)
        guard let serverPath else {
            if let secretPath {
                throw UsageError.invalidValue(
                    option: secretKeyFile, value: secretPath, expected: "to be used with --\(serverKeyFile)"
                )
            }
            return nil
        }
        let serverKey = try CurveKeyFile.readPublic(serverPath)
        let pair = if let secretPath { try CurveKeyFile.readSecret(secretPath) } else { try CurveKeyPair.generate() }
        return CurveClientKeys(serverPublicKey: serverKey, keyPair: pair)
    }

    /// The coordinator's key pair, when a secret key file is named.
    static func serverKeys(_ arguments: ParsedArguments) throws -> CurveKeyPair? {
        try path(arguments, secretKeyFile).map { path throws(CurveKeyFileError) in try CurveKeyFile.readSecret(path) }
    }

    /// The allow-list in the file named by `option` (or its variable), nil when none is named.
    static func allowList(_ arguments: ParsedArguments, _ option: String = authorizedKeys) throws -> (CurveAllowList, String)? {
        guard let path = path(arguments, option) else { return nil }
        let text = try CurveKeyFile.readText(path)
        do {
            return (try CurveAllowList(text: text), path)
        } catch {
            throw AllowListFileError(path: path, error: error)
        }
    }
}

/// An allow-list file that does not parse.
struct AllowListFileError: Error, CustomStringConvertible {
    let path: String
    let error: ZAPListError
    var description: String { "\(path): \(error.description)" }
}
