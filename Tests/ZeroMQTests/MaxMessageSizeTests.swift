import Testing
import ZeroMQ

/// `ZMQ_MAXMSGSIZE` as mope's sockets use it against untrusted peers.
@Suite struct MaxMessageSizeTests {
    @Test("a peer sending a message over the maximum size is cut off and the message never arrives")
    func oversizedMessageIsDropped() throws {
        let context = try ZMQContext()
        let router = try ZMQSocket(.router, context: context)
        let dealer = try ZMQSocket(.dealer, context: context)
        defer {
            dealer.close()
            router.close()
        }
        try router.set(.maxMessageSize, 1024)
        try router.set(.linger, .zero)
        try dealer.set(.linger, .zero)
        try dealer.set(.routingID, .of("peer"))
        try router.bind("tcp://127.0.0.1:*")
        try dealer.connect(try router.get(.lastEndpoint))

        try dealer.send([[UInt8](repeating: 0x41, count: 4096)])
        // The connection carrying the oversized message is dropped; the dealer reconnects and later messages
        // arrive. The first thing the router receives is one of those, never the oversized one.
        let clock = ContinuousClock()
        let end = clock.now.advanced(by: generous)
        var received: [[UInt8]]?
        var sent = 0
        while received == nil && clock.now < end {
            try dealer.send([.of("ping \(sent)")])
            sent += 1
            received = try router.receiveMultipart(timeout: .milliseconds(100))
        }
        let frames = try #require(received)
        #expect(frames.count == 2)
        #expect(frames.first == .of("peer"))
        #expect(frames.last.map { String(decoding: $0, as: UTF8.self).hasPrefix("ping ") } == true)
    }
}
