import Foundation
import Testing
import ZeroMQ

/// Exchanges with `mope-zmq-peer` processes over loopback tcp and ipc.
@Suite("ZeroMQ between processes", .serialized)
struct MultiProcessTests {
    enum Transport: String, CaseIterable, Sendable {
        case tcp, ipc
    }

    /// Binds a ROUTER with `routerMandatory` on `transport`; returns it, its endpoint and an ipc file to remove.
    func boundRouter(_ transport: Transport) throws -> (ZMQSocket, String, String?) {
        let router = try ZMQSocket(.router)
        try router.set(.routerMandatory, true)
        switch transport {
        case .tcp:
            try router.bind("tcp://127.0.0.1:*")
            return (router, try router.lastEndpoint, nil)
        case .ipc:
            let (endpoint, path) = temporaryIPCEndpoint()
            try router.bind(endpoint)
            return (router, endpoint, path)
        }
    }

    /// Waits for the peer's "ready" and returns its routing id.
    func awaitReady(_ router: ZMQSocket) throws -> [UInt8] {
        let ready = try #require(try router.receiveMultipart(timeout: generous), "the peer never said ready")
        try #require(ready.count == 2)
        #expect(ready[1] == .of("ready"))
        return ready[0]
    }

    @Test("a ROUTER and a DEALER in another process exchange multipart messages, empty and 1 MB frames included",
          arguments: Transport.allCases)
    func routerDealerRoundTrip(transport: Transport) throws {
        let (router, endpoint, ipcPath) = try boundRouter(transport)
        defer {
            router.close()
            if let ipcPath { unlink(ipcPath) }
        }
        #expect(endpoint.hasPrefix(transport.rawValue + "://"))
        try withPeer(["echo-dealer", endpoint, "--idle-seconds", "60"]) { _ in
            let peer = try awaitReady(router)
            let big = patternBytes(1 << 20)
            let messages: [[[UInt8]]] = [
                [.of("hello")],
                [[], .of("middle"), []],
                [big, [], .of("tail")],
                [.of("head"), patternBytes(1 << 20, seed: 7)],
            ]
            for message in messages {
                try router.send([peer] + message)
                let reply = try #require(try router.receiveMultipart(timeout: generous), "no echo")
                #expect(reply.first == peer)
                #expect(Array(reply.dropFirst()) == message)
            }
            try router.send([peer, .of("quit")])
            #expect(try router.receiveMultipart(timeout: generous) == [peer, .of("bye")])
        }
    }

    @Test("a REQ socket gets its request echoed by a REP socket in another process")
    func requestReply() throws {
        let request = try ZMQSocket(.req)
        defer { request.close() }
        try request.bind("tcp://127.0.0.1:*")
        try withPeer(["echo-rep", try request.lastEndpoint]) { _ in
            try request.send([.of("question"), [], patternBytes(1000)])
            let reply = try #require(try request.receiveMultipart(timeout: generous))
            #expect(reply == [.of("question"), [], patternBytes(1000)])
        }
    }

    @Test("with ROUTER_MANDATORY, sending to a peer process that was killed fails with EHOSTUNREACH")
    func sendToKilledPeerFails() throws {
        let (router, endpoint, _) = try boundRouter(.tcp)
        defer { router.close() }
        try withPeer(["echo-dealer", endpoint]) { peer in
            let id = try awaitReady(router)
            try router.send([id, .of("ping")])
            #expect(try router.receiveMultipart(timeout: generous) == [id, .of("ping")])

            peer.kill()
            // The ROUTER learns of the lost connection in the background; until then sends are queued.
            let clock = ContinuousClock()
            let deadline = clock.now.advanced(by: generous)
            var failure: ZMQError?
            while failure == nil && clock.now < deadline {
                do throws(ZMQError) {
                    try router.send([id, .of("ping")])
                    Thread.sleep(forTimeInterval: 0.02)
                } catch {
                    failure = error
                }
            }
            let error = try #require(failure, "sends to the killed peer kept succeeding")
            #expect(error.isHostUnreachable)
            #expect(error.function == "zmq_send")
        }
    }

    @Test("with ROUTER_MANDATORY, sending to a routing id that never connected fails at once")
    func sendToUnknownPeerFails() throws {
        let (router, _, _) = try boundRouter(.tcp)
        defer { router.close() }
        let error = #expect(throws: ZMQError.self) { try router.send([.of("nobody"), .of("ping")]) }
        #expect(error?.isHostUnreachable == true)
    }

    @Test("a CURVE client that knows the server's public key exchanges messages with the server")
    func curveWithRightKey() throws {
        let serverKeys = try CurveKeyPair.generate()
        let router = try curveServer(serverKeys)
        defer { router.close() }
        try withPeer(["echo-dealer", try router.lastEndpoint, "--curve-server-key", serverKeys.publicKey]) { _ in
            let id = try awaitReady(router)
            try router.send([id, .of("secret")])
            #expect(try router.receiveMultipart(timeout: generous) == [id, .of("secret")])
        }
    }

    @Test("a CURVE client with the wrong server key cannot get a message through")
    func curveWithWrongKey() throws {
        let serverKeys = try CurveKeyPair.generate()
        let impostorKeys = try CurveKeyPair.generate()
        let router = try curveServer(serverKeys)
        defer { router.close() }
        try withPeer(["echo-dealer", try router.lastEndpoint, "--curve-server-key", impostorKeys.publicKey]) { _ in
            // The peer sends "ready" as soon as it connects; the handshake fails, so it never arrives.
            let message = try router.receiveMultipart(timeout: .seconds(2))
            #expect(message == nil)
        }
    }

    func curveServer(_ keys: CurveKeyPair) throws -> ZMQSocket {
        let router = try ZMQSocket(.router)
        try router.set(.curveServer, true)
        try router.set(.curvePublicKey, keys.publicKey)
        try router.set(.curveSecretKey, keys.secretKey)
        try router.bind("tcp://127.0.0.1:*")
        return router
    }
}
