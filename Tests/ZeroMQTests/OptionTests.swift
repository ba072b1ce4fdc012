import Foundation
import Testing
import ZeroMQ

/// Options read back what was set; bad input gives a `ZMQError` that names the failing call.
@Suite("ZeroMQ options, keys and errors")
struct OptionTests {
    @Test("integer and flag options read back the values set")
    func integerOptions() throws {
        let socket = try ZMQSocket(.dealer)
        defer { socket.close() }
        try socket.set(.sendHighWaterMark, 1234)
        try socket.set(.receiveHighWaterMark, 42)
        try socket.set(.immediate, true)
        try socket.set(.maxMessageSize, 1 << 20)
        #expect(try socket.get(.sendHighWaterMark) == 1234)
        #expect(try socket.get(.receiveHighWaterMark) == 42)
        #expect(try socket.get(.immediate) == true)
        #expect(try socket.get(.maxMessageSize) == 1 << 20)
        try socket.set(.maxMessageSize, nil)
        #expect(try socket.get(.maxMessageSize) == nil)
    }

    @Test("time options read back the durations set", arguments: [
        (ZMQOption<Duration>.heartbeatInterval, Duration.seconds(1)),
        (.heartbeatTimeout, .seconds(3)),
        (.heartbeatTTL, .seconds(6)),
        (.reconnectInterval, .milliseconds(250)),
        (.reconnectIntervalMax, .seconds(5)),
    ])
    func timeOptions(option: ZMQOption<Duration>, value: Duration) throws {
        let socket = try ZMQSocket(.dealer)
        defer { socket.close() }
        try socket.set(option, value)
        #expect(try socket.get(option) == value, "\(option.name)")
    }

    @Test("optional time options use nil for no limit", arguments: [
        ZMQOption<Duration?>.linger, .sendTimeout, .receiveTimeout,
    ])
    func optionalTimeOptions(option: ZMQOption<Duration?>) throws {
        let socket = try ZMQSocket(.router)
        defer { socket.close() }
        for value in [nil, .zero, .milliseconds(1500)] as [Duration?] {
            try socket.set(option, value)
            #expect(try socket.get(option) == value, "\(option.name)")
        }
    }

    @Test("a new socket lingers for the default one second, not forever")
    func defaultLinger() throws {
        let socket = try ZMQSocket(.push)
        defer { socket.close() }
        #expect(try socket.get(.linger) == ZMQSocket.defaultLinger)
    }

    @Test("a routing id and CURVE keys read back as set")
    func identityAndKeys() throws {
        let socket = try ZMQSocket(.dealer)
        defer { socket.close() }
        try socket.set(.routingID, .of("worker-7"))
        #expect(try socket.get(.routingID) == .of("worker-7"))

        let keys = try CurveKeyPair.generate()
        let server = try CurveKeyPair.generate()
        try socket.set(.curveServerKey, server.publicKey)
        try socket.set(.curvePublicKey, keys.publicKey)
        try socket.set(.curveSecretKey, keys.secretKey)
        #expect(try socket.get(.curveServerKey) == server.publicKey)
        #expect(try socket.get(.curvePublicKey) == keys.publicKey)
        #expect(try socket.get(.curveSecretKey) == keys.secretKey)

        let router = try ZMQSocket(.router)
        defer { router.close() }
        try router.set(.curveServer, true)
        #expect(try router.get(.curveServer) == true)
    }

    @Test("binding tcp://127.0.0.1:* resolves the port in lastEndpoint")
    func ephemeralPort() throws {
        let socket = try ZMQSocket(.router)
        defer { socket.close() }
        #expect(try socket.lastEndpoint == "")
        try socket.bind("tcp://127.0.0.1:*")
        let endpoint = try socket.lastEndpoint
        let port = try #require(Int(endpoint.split(separator: ":").last ?? ""))
        #expect(endpoint.hasPrefix("tcp://127.0.0.1:"))
        #expect(port > 0)
        try socket.unbind(endpoint)
    }

    @Test("a bad bind endpoint gives a ZMQError naming zmq_bind and the endpoint", arguments: [
        "tcp://127.0.0.1", "nonsense://somewhere", "tcp://not a host:1", "",
    ])
    func badBindEndpoint(endpoint: String) throws {
        let socket = try ZMQSocket(.router)
        defer { socket.close() }
        let error = try #require(throws: ZMQError.self) { try socket.bind(endpoint) }
        #expect(error.function == "zmq_bind")
        #expect(error.detail == endpoint)
        #expect(error.isBadEndpoint || error.errno == ENODEV)
        #expect(error.description.contains("zmq_bind(\(endpoint)) failed: "))
    }

    @Test("a bad connect endpoint gives a ZMQError naming zmq_connect", arguments: [
        "tcp://127.0.0.1", "nonsense://somewhere", "",
    ])
    func badConnectEndpoint(endpoint: String) throws {
        let socket = try ZMQSocket(.dealer)
        defer { socket.close() }
        let error = try #require(throws: ZMQError.self) { try socket.connect(endpoint) }
        #expect(error.function == "zmq_connect")
        #expect(error.isBadEndpoint)
    }

    @Test("binding a port already in use fails with EADDRINUSE")
    func addressInUse() throws {
        let first = try ZMQSocket(.router)
        let second = try ZMQSocket(.router)
        defer { first.close(); second.close() }
        try first.bind("tcp://127.0.0.1:*")
        let error = try #require(throws: ZMQError.self) { try second.bind(try first.lastEndpoint) }
        #expect(error.errno == EADDRINUSE)
    }

    @Test("unbinding or disconnecting an endpoint that is not in use fails with ENOENT")
    func unknownEndpoint() throws {
        let socket = try ZMQSocket(.dealer)
        defer { socket.close() }
        let unbind = try #require(throws: ZMQError.self) { try socket.unbind("tcp://127.0.0.1:1") }
        #expect(unbind.function == "zmq_unbind" && unbind.errno == ENOENT)
        let disconnect = try #require(throws: ZMQError.self) { try socket.disconnect("tcp://127.0.0.1:1") }
        #expect(disconnect.function == "zmq_disconnect" && disconnect.errno == ENOENT)
    }

    @Test("invalid option values and write-only reads fail with EINVAL naming the option")
    func invalidOptions() throws {
        let socket = try ZMQSocket(.router)
        defer { socket.close() }
        let shortKey = try #require(throws: ZMQError.self) { try socket.set(.curveServerKey, "too short") }
        #expect(shortKey.errno == EINVAL && shortKey.function == "zmq_setsockopt")
        #expect(shortKey.detail == "ZMQ_CURVE_SERVERKEY")
        let emptyID = try #require(throws: ZMQError.self) { try socket.set(.routingID, []) }
        #expect(emptyID.errno == EINVAL)
        let writeOnly = try #require(throws: ZMQError.self) { try socket.get(.routerMandatory) }
        #expect(writeOnly.errno == EINVAL && writeOnly.function == "zmq_getsockopt")
        let notSub = try #require(throws: ZMQError.self) { try socket.subscribe() }
        #expect(notSub.errno == EINVAL)
    }

    @Test("a closed socket refuses every call with a closed-socket error")
    func closedSocket() throws {
        let socket = try ZMQSocket(.dealer)
        socket.close()
        socket.close()
        #expect(socket.isClosed)
        let send = try #require(throws: ZMQError.self) { try socket.send([.of("x")]) }
        #expect(send.isClosedSocket && send.function == "zmq_send")
        let receive = try #require(throws: ZMQError.self) { try socket.receiveMultipart(timeout: .zero) }
        #expect(receive.isClosedSocket)
        #expect(throws: ZMQError.self) { try socket.connect("tcp://127.0.0.1:1") }
        #expect(throws: ZMQError.self) { try socket.get(.linger) }
    }

    @Test("sending a message of no frames is refused")
    func emptyMessage() throws {
        let socket = try ZMQSocket(.dealer)
        defer { socket.close() }
        let error = try #require(throws: ZMQError.self) { try socket.send([]) }
        #expect(error.errno == EINVAL)
    }

    @Test("Z85 encodes the RFC 32 example and decodes it back")
    func z85() throws {
        let bytes: [UInt8] = [0x86, 0x4F, 0xD2, 0x6F, 0xB5, 0x59, 0xF7, 0x5B]
        #expect(Z85.encode(bytes) == "HelloWorld")
        #expect(Z85.decode("HelloWorld") == bytes)
        #expect(Z85.encode([1, 2, 3]) == nil)
        #expect(Z85.decode("Hello!") == nil)
        let key = patternBytes(32)
        let text = try #require(Z85.encode(key))
        #expect(text.count == 40)
        #expect(Z85.decode(text) == key)
    }

    @Test("a CURVE key pair has 40-character Z85 keys and its public key derives from its secret key")
    func curveKeyPair() throws {
        #expect(CurveKeyPair.isSupported)
        #expect(ZMQLibrary.has("curve"))
        let keys = try CurveKeyPair.generate()
        #expect(keys.publicKey.count == 40 && keys.secretKey.count == 40)
        #expect(Z85.decode(keys.publicKey)?.count == 32)
        #expect(try CurveKeyPair(secretKey: keys.secretKey) == keys)
        #expect(try CurveKeyPair.generate() != keys)
        #expect(throws: ZMQError.self) { try CurveKeyPair(secretKey: "short") }
    }

    @Test("errors describe the failing call in words")
    func errorText() {
        let error = ZMQError(errno: EHOSTUNREACH, function: "zmq_send")
        #expect(error.isHostUnreachable && !error.isTimeout)
        #expect(error.description == "zmq_send failed: Host unreachable (errno \(EHOSTUNREACH))")
        let detailed = ZMQError(errno: EINVAL, function: "zmq_bind", detail: "tcp://x")
        #expect(detailed.description == "zmq_bind(tcp://x) failed: Invalid argument (errno \(EINVAL))")
        #expect(ZMQError(errno: EAGAIN, function: "zmq_msg_recv").isTimeout)
        #expect(ZMQLibrary.version.major == 4)
    }
}

@Suite struct ZAPTests {
    func request(mechanism: String = "CURVE", key: [UInt8]) -> [[UInt8]] {
        [Array("1.0".utf8), [7], [], Array("127.0.0.1".utf8), [], Array(mechanism.utf8), key]
    }

    @Test("a listed CURVE key is accepted with the key as user id; others are refused with the reason")
    func allowList() throws {
        let listed = try CurveKeyPair.generate()
        let other = try CurveKeyPair.generate()
        let list = try CurveAllowList(keys: [listed.publicKey])
        let listedKey = try #require(Z85.decode(listed.publicKey))
        let otherKey = try #require(Z85.decode(other.publicKey))
        let ok = try #require(ZAPRequest(frames: request(key: listedKey)))
        #expect(ok.curveClientKey == listed.publicKey)
        let accepted = list.answer(ok)
        #expect(accepted.accepted && accepted.userID == listed.publicKey)
        #expect(accepted.frames[1] == [7] && accepted.frames[2] == Array("200".utf8))
        let no = try #require(ZAPRequest(frames: request(key: otherKey)))
        let refused = list.answer(no)
        #expect(!refused.accepted && refused.frames[2] == Array("400".utf8) && refused.text.contains("not authorized"))
        let plain = try #require(ZAPRequest(frames: request(mechanism: "NULL", key: [])))
        #expect(!list.answer(plain).accepted)
        #expect(ZAPRequest(frames: [Array("2.0".utf8), [], [], [], [], []]) == nil)
    }

    @Test("an allow-list file skips comments and names the line of a bad key")
    func listFile() throws {
        let key = try CurveKeyPair.generate().publicKey
        let list = try CurveAllowList(text: "# workers\n\n\(key) worker-1\n")
        #expect(list.keys == [key])
        #expect(throws: ZAPListError.badKey(line: 2, key: "not-a-key")) {
            try CurveAllowList(text: "# x\nnot-a-key\n")
        }
        #expect(throws: ZAPListError.empty) { try CurveAllowList(text: "# nothing\n") }
    }
}
