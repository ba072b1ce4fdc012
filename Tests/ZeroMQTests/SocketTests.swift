import Foundation
import ProcessSupport
import Synchronization
import Testing
import ZeroMQ

/// Single-process behaviour: deadlines, the poller, patterns over inproc, errors.
@Suite("ZeroMQ sockets")
struct SocketTests {
    @Test("a receive with a deadline on a silent socket returns nil once the deadline has passed")
    func receiveDeadline() throws {
        let pull = try ZMQSocket(.pull)
        defer { pull.close() }
        try pull.bind("tcp://127.0.0.1:*")
        let clock = ContinuousClock()
        let start = clock.now
        let message = try pull.receiveMultipart(timeout: .milliseconds(300))
        let elapsed = start.duration(to: clock.now)
        #expect(message == nil)
        #expect(elapsed >= .milliseconds(300))
        #expect(elapsed < .seconds(10))
    }

    @Test("a blocking receive honours the receive timeout option and returns nil")
    func receiveTimeoutOption() throws {
        let pull = try ZMQSocket(.pull)
        defer { pull.close() }
        try pull.set(.receiveTimeout, .milliseconds(200))
        try pull.bind("inproc://receive-timeout")
        #expect(try pull.receiveMultipart(timeout: nil) == nil)
        #expect(try pull.tryReceiveMultipart() == nil)
    }

    @Test("the poller reports only the sockets that have a message, and nothing after its timeout")
    func pollerReportsReadableSockets() throws {
        let context = try ZMQContext()
        let (a, aPeer) = try pairs("inproc://poll-a", context)
        let (b, bPeer) = try pairs("inproc://poll-b", context)
        defer { [a, aPeer, b, bPeer].forEach { $0.close() } }
        var poller = ZMQPoller()
        let aIndex = poller.register(a)
        let bIndex = poller.register(b)
        #expect(poller.count == 2)

        let clock = ContinuousClock()
        let start = clock.now
        #expect(try poller.readable(timeout: .milliseconds(200)).isEmpty)
        #expect(start.duration(to: clock.now) >= .milliseconds(200))

        try bPeer.send([.of("to b")])
        #expect(try poller.readable(timeout: generous) == [bIndex])
        #expect(try b.tryReceiveMultipart() == [.of("to b")])

        try aPeer.send([.of("to a")])
        let events = try poller.poll(timeout: generous)
        #expect(events[aIndex] == .readable)
        #expect(events[bIndex].isEmpty)
    }

    @Test("a poller over a closed socket fails with a closed-socket error instead of touching freed memory")
    func pollerWithClosedSocket() throws {
        let socket = try ZMQSocket(.pull)
        var poller = ZMQPoller()
        poller.register(socket)
        socket.close()
        let error = #expect(throws: ZMQError.self) { try poller.poll(timeout: .zero) }
        #expect(error?.isClosedSocket == true)
    }

    @Test("a subscriber receives only the messages whose first frame starts with its prefix")
    func publishSubscribe() throws {
        let context = try ZMQContext()
        let publisher = try ZMQSocket(.pub, context: context)
        let subscriber = try ZMQSocket(.sub, context: context)
        defer { publisher.close(); subscriber.close() }
        try publisher.bind("inproc://news")
        try subscriber.connect("inproc://news")
        try subscriber.subscribe(.of("mope."))
        // Subscriptions travel to the publisher asynchronously: publish until the first message arrives.
        var first: [[UInt8]]?
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: generous)
        while first == nil && clock.now < deadline {
            try publisher.send([.of("other.topic"), .of("dropped")])
            try publisher.send([.of("mope.step"), .of("kept")])
            first = try subscriber.receiveMultipart(timeout: .milliseconds(50))
        }
        #expect(first == [.of("mope.step"), .of("kept")])
        while let next = try subscriber.tryReceiveMultipart() {
            #expect(next == [.of("mope.step"), .of("kept")])
        }
    }

    @Test("PUSH to PULL delivers frames sent from raw buffers unchanged")
    func pushPullFromBuffers() throws {
        let context = try ZMQContext()
        let push = try ZMQSocket(.push, context: context)
        let pull = try ZMQSocket(.pull, context: context)
        defer { push.close(); pull.close() }
        try pull.bind("inproc://pipeline")
        try push.connect("inproc://pipeline")
        let head: [UInt8] = .of("head")
        let body = patternBytes(70_000)
        head.withUnsafeBytes { headBytes in
            body.withUnsafeBytes { bodyBytes in
                let empty = UnsafeRawBufferPointer(start: nil, count: 0)
                #expect(throws: Never.self) { try push.send(buffers: [headBytes, empty, bodyBytes]) }
            }
        }
        #expect(try pull.receiveMultipart(timeout: generous) == [head, [], body])
    }

    @Test("trySend returns false when no peer can take the message, instead of blocking")
    func trySendWithoutPeer() throws {
        let dealer = try ZMQSocket(.dealer)
        defer { dealer.close() }
        #expect(try dealer.trySend([.of("nobody listens")]) == false)
        try dealer.set(.sendTimeout, .milliseconds(100))
        let error = #expect(throws: ZMQError.self) { try dealer.send([.of("nobody listens")]) }
        #expect(error?.isTimeout == true)
    }

    @Test("shutting the context down wakes a thread blocked in a receive with a terminated error")
    func shutdownWakesBlockedReceive() throws {
        let context = try ZMQContext()
        let socket = try ZMQSocket(.pull, context: context)
        try socket.bind("inproc://shutdown")
        let outcome = Mutex<Result<[[UInt8]]?, ZMQError>?>(nil)
        let done = DispatchSemaphore(value: 0)
        Threads.start(name: "mope-test-recv") {
            let result = Result { () throws(ZMQError) in try socket.receiveMultipart(timeout: .seconds(60)) }
            outcome.withLock { $0 = result }
            done.signal()
        }
        Thread.sleep(forTimeInterval: 0.2)
        context.shutdown()
        #expect(done.wait(timeout: .now() + 30) == .success)
        socket.close()
        let result = try #require(outcome.withLock { $0 })
        #expect(throws: ZMQError.self) { try result.get() }
        if case .failure(let error) = result {
            #expect(error.isTerminated)
        }
    }

    /// A connected PAIR of sockets over `endpoint`: (the bound one, the connected one).
    func pairs(_ endpoint: String, _ context: ZMQContext) throws -> (ZMQSocket, ZMQSocket) {
        let bound = try ZMQSocket(.pair, context: context)
        let connected = try ZMQSocket(.pair, context: context)
        try bound.bind(endpoint)
        try connected.connect(endpoint)
        return (bound, connected)
    }
}
