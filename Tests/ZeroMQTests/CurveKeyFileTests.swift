import Foundation
import Testing
import ZeroMQ

#if canImport(Glibc)
import Glibc
#endif

@Suite("CURVE key files")
struct CurveKeyFileTests {
    func write(_ text: String, mode: mode_t) throws -> String {
        let path = NSTemporaryDirectory() + "mope-key-\(UUID().uuidString)"
        try text.write(toFile: path, atomically: false, encoding: .utf8)
        chmod(path, mode)
        return path
    }

    @Test("a private secret key file gives its key pair, and a public key file its key")
    func readsKeys() throws {
        let pair = try CurveKeyPair.generate()
        let secret = try write(pair.secretKey + "\n", mode: 0o600)
        let public_ = try write("# the coordinator\n" + pair.publicKey + "\n", mode: 0o644)
        defer { unlink(secret); unlink(public_) }
        #expect(try CurveKeyFile.readSecret(secret) == pair)
        #expect(try CurveKeyFile.readPublic(public_) == pair.publicKey)
    }

    @Test("a secret key file readable by group or others is refused, naming the file but not the key")
    func refusesOpenSecret() throws {
        let pair = try CurveKeyPair.generate()
        let path = try write(pair.secretKey + "\n", mode: 0o640)
        defer { unlink(path) }
        #expect(throws: CurveKeyFileError.tooOpen(path: path, mode: 0o640)) { try CurveKeyFile.readSecret(path) }
        let error = CurveKeyFileError.tooOpen(path: path, mode: 0o640)
        #expect(error.description.contains("chmod 600"))
        #expect(!error.description.contains(pair.secretKey))
    }

    @Test("a missing file and a file without a key are typed errors")
    func badFiles() throws {
        #expect(throws: CurveKeyFileError.self) { try CurveKeyFile.readPublic("/nonexistent/mope.pub") }
        let path = try write("not a key\n", mode: 0o600)
        defer { unlink(path) }
        #expect(throws: CurveKeyFileError.notAKey(path: path)) { try CurveKeyFile.readSecret(path) }
        #expect(throws: CurveKeyFileError.notAKey(path: path)) { try CurveKeyFile.readPublic(path) }
    }
}
