import CLI
import ZeroMQ

/// The client side of CURVE from `--curve-server-key` and `--curve-secret-key` (worker and generate).
enum CurveOptions {
    /// Nil without `--curve-server-key`; the key pair of `--curve-secret-key`, or a fresh one.
    /// - Throws: `UsageError` when a secret key comes without the server's key; `ZMQError` for a bad key.
    static func clientKeys(_ arguments: ParsedArguments) throws -> CurveClientKeys? {
        let serverKey = arguments.value("curve-server-key")
        let secretKey = arguments.value("curve-secret-key")
        if secretKey != nil && serverKey == nil {
            throw UsageError.invalidValue(
                option: "curve-secret-key", value: "…", expected: "to be used with --curve-server-key"
            )
        }
        return try CurveClientKeys.from(serverKey: serverKey, secretKey: secretKey)
    }
}
