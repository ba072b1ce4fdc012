import CZeroMQ

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A CURVE key pair (Curve25519), each key as 40 Z85 characters, for encrypted, authenticated connections.
///
/// The server socket sets `curveServer`, its `curveSecretKey` and `curvePublicKey`; each client sets its
/// own key pair and the server's public key as `curveServerKey`. A client with the wrong server key
/// never completes the handshake, so no message passes in either direction.
///
/// ```swift
/// let server = try CurveKeyPair.generate()
/// try router.set(.curveServer, true)
/// try router.set(.curveSecretKey, server.secretKey)
/// ```
public struct CurveKeyPair: Sendable, Hashable {
    /// The public key: give it to peers (clients use the server's as `curveServerKey`).
    public let publicKey: String
    /// The secret key: keep it private.
    public let secretKey: String

    /// Creates a key pair from keys already held, e.g. read from a key file. Nothing is checked here;
    /// a bad key fails when set on a socket.
    public init(publicKey: String, secretKey: String) {
        self.publicKey = publicKey
        self.secretKey = secretKey
    }

    /// Rebuilds the key pair of `secretKey` by deriving its public key (`zmq_curve_public`).
    ///
    /// - Throws: `ZMQError` from `zmq_curve_public`: `EINVAL` if the key is not 40 valid Z85 characters,
    ///   `ENOTSUP` if libzmq was built without CURVE.
    public init(secretKey: String) throws(ZMQError) {
        guard secretKey.utf8.count == 40 else {
            throw ZMQError(errno: EINVAL, function: "zmq_curve_public", detail: "a Z85 key has 40 characters")
        }
        var publicKey = [CChar](repeating: 0, count: 41)
        _ = try zmqCall("zmq_curve_public") { zmq_curve_public(&publicKey, secretKey) }
        self.init(publicKey: Z85.string(publicKey), secretKey: secretKey)
    }

    /// Generates a new random key pair (`zmq_curve_keypair`).
    ///
    /// - Throws: `ZMQError` from `zmq_curve_keypair` (`ENOTSUP` if libzmq was built without CURVE).
    public static func generate() throws(ZMQError) -> CurveKeyPair {
        var publicKey = [CChar](repeating: 0, count: 41)
        var secretKey = [CChar](repeating: 0, count: 41)
        _ = try zmqCall("zmq_curve_keypair") { zmq_curve_keypair(&publicKey, &secretKey) }
        return CurveKeyPair(publicKey: Z85.string(publicKey), secretKey: Z85.string(secretKey))
    }

    /// Whether this libzmq supports CURVE (`zmq_has("curve")`).
    public static var isSupported: Bool { zmq_has("curve") != 0 }
}

/// The client side of a CURVE connection: the server's public key and the client's own key pair.
public struct CurveClientKeys: Sendable, Equatable {
    /// The server's public key (40 Z85 characters).
    public var serverPublicKey: String
    /// The client's own key pair.
    public var keyPair: CurveKeyPair

    /// Client keys.
    public init(serverPublicKey: String, keyPair: CurveKeyPair) {
        self.serverPublicKey = serverPublicKey
        self.keyPair = keyPair
    }

    /// The keys of command-line options: nil without a server key; the key pair of `secretKey`, or a fresh
    /// one without it.
    /// - Throws: `ZMQError` when the secret key is not a Z85 key or CURVE is unsupported.
    public static func from(serverKey: String?, secretKey: String?) throws(ZMQError) -> CurveClientKeys? {
        guard let serverKey else { return nil }
        let pair = if let secretKey { try CurveKeyPair(secretKey: secretKey) } else { try CurveKeyPair.generate() }
        return CurveClientKeys(serverPublicKey: serverKey, keyPair: pair)
    }

    /// Sets the server key and the key pair on a socket (before it connects).
    public func apply(to socket: ZMQSocket) throws(ZMQError) {
        try socket.set(.curveServerKey, serverPublicKey)
        try socket.set(.curvePublicKey, keyPair.publicKey)
        try socket.set(.curveSecretKey, keyPair.secretKey)
    }
}

/// Z85, ZeroMQ's text encoding of binary data (RFC 32): 4 bytes become 5 printable characters.
public enum Z85 {
    /// Encodes `bytes`, whose count must be a multiple of 4 (a 32-byte CURVE key gives 40 characters).
    ///
    /// - Returns: the Z85 text, or `nil` if the count is not a multiple of 4.
    public static func encode(_ bytes: [UInt8]) -> String? {
        guard bytes.count % 4 == 0 else { return nil }
        var text = [CChar](repeating: 0, count: bytes.count / 4 * 5 + 1)
        let result = bytes.withUnsafeBufferPointer { zmq_z85_encode(&text, $0.baseAddress, $0.count) }
        guard result != nil else { return nil }
        return string(text)
    }

    /// Decodes Z85 `text`, whose length must be a multiple of 5.
    ///
    /// - Returns: the bytes, or `nil` if the length is not a multiple of 5 or a character is not Z85.
    public static func decode(_ text: String) -> [UInt8]? {
        let count = text.utf8.count
        guard count % 5 == 0 else { return nil }
        var bytes = [UInt8](repeating: 0, count: count / 5 * 4)
        if count == 0 { return bytes }
        let result = bytes.withUnsafeMutableBufferPointer { zmq_z85_decode($0.baseAddress, text) }
        return result == nil ? nil : bytes
    }

    /// The text of a NUL-terminated C buffer.
    static func string(_ buffer: [CChar]) -> String {
        let end = buffer.firstIndex(of: 0) ?? buffer.endIndex
        return String(decoding: buffer[..<end].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
