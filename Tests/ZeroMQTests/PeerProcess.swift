import Foundation
import ProcessSupport
import TestKit
import Testing

/// A running `mope-zmq-peer` child process. `withPeer` guarantees it is killed and reaped.
final class PeerProcess {
    private let group = ProcessGroup()

    /// Starts the peer binary with `arguments`; its standard error goes to the test's, its output is dropped.
    init(_ arguments: [String]) throws {
        try group.spawn(try PeerProcess.binary().path, arguments, standardOutput: .discard)
    }

    /// Kills the process (SIGKILL) and waits until it is gone. Safe to call more than once.
    func kill() { group.killAll() }

    /// The peer binary (`$MOPE_ZMQ_PEER`, else where `swift test` built it).
    static func binary() throws -> URL {
        try BuiltProduct.executable(named: "mope-zmq-peer", environmentVariable: "MOPE_ZMQ_PEER")
    }
}

/// Runs `body` with a started peer process and kills the process afterwards, whether `body` returns or throws.
func withPeer<Result>(_ arguments: [String], _ body: (PeerProcess) throws -> Result) throws -> Result {
    let peer = try PeerProcess(arguments)
    defer { peer.kill() }
    return try body(peer)
}

/// A fresh ipc endpoint in the temporary directory, and its file, which the caller removes.
func temporaryIPCEndpoint() -> (endpoint: String, path: String) {
    let path = "/tmp/mope-zmq-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
    return ("ipc://" + path, path)
}

/// `count` bytes in a fixed pseudo-random pattern.
func patternBytes(_ count: Int, seed: UInt64 = 0x9E37_79B9_7F4A_7C15) -> [UInt8] {
    var state = seed
    return [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
        for index in 0..<count {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            buffer[index] = UInt8(truncatingIfNeeded: state >> 33)
        }
        initialized = count
    }
}

extension [UInt8] {
    /// The UTF-8 bytes of `text`.
    static func of(_ text: String) -> [UInt8] { Array(text.utf8) }
}

/// A generous wait for messages between processes: the machine may be busy with other builds.
let generous: Duration = .seconds(30)
