// mope-zmq-peer: a small peer process for the ZeroMQ binding's multi-process tests.
//
// It connects (or binds) one socket, echoes every message it receives back to its sender, and exits when
// a message's first frame is "quit" or when nothing arrives for the idle time. It never runs unbounded.

import ZeroMQ

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

let usage = """
    usage: mope-zmq-peer <mode> <endpoint> [options]

    Echoes every message back to its sender; exits on a message whose first frame is "quit"
    (after replying "bye") or after --idle-seconds with no message.

    modes:
      echo-dealer   DEALER: sends "ready" once connected, then echoes each message
      echo-rep      REP: echoes each request as the reply
      ping-router   ROUTER: binds, waits for an echo-dealer's "ready", times --count round trips of
                    --size bytes, prints the median and 99th percentile in microseconds, sends "quit"

    options:
      --bind                    bind the endpoint instead of connecting to it
      --identity ID             routing id to present to a ROUTER
      --curve-server-key KEY    be a CURVE client of the server with this public key (Z85, 40 characters)
      --idle-seconds N          exit after N seconds without a message (default 60)
      --count N                 ping-router: round trips to time (default 10000)
      --size B                  ping-router: bytes per message (default 64)

    Prints "connected <endpoint>" once set up and "bye" before exiting; exit codes:
    0 on "quit", 3 after the idle time, 1 on a ZeroMQ error, 2 on a usage error.
    """

/// Writes one line to standard output unbuffered, so the parent sees it even if this process is killed.
func say(_ line: String) {
    var text = line + "\n"
    text.withUTF8 { bytes in
        var rest = UnsafeRawBufferPointer(bytes)
        while let base = rest.baseAddress, !rest.isEmpty {
            let written = write(1, base, rest.count)
            if written <= 0 { return }
            rest = UnsafeRawBufferPointer(rebasing: rest[written...])
        }
    }
}

func fail(_ message: String, code: Int32) -> Never {
    var text = "mope-zmq-peer: " + message + "\n"
    text.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
    exit(code)
}

struct Options {
    var mode = ""
    var endpoint = ""
    var bind = false
    var identity: String?
    var curveServerKey: String?
    var idleSeconds = 60
    var count = 10_000
    var size = 64
}

func parse(_ arguments: [String]) -> Options {
    var options = Options()
    var positional: [String] = []
    var iterator = arguments.makeIterator()
    func value(for flag: String) -> String {
        guard let value = iterator.next() else { fail("\(flag) needs a value\n\(usage)", code: 2) }
        return value
    }
    while let argument = iterator.next() {
        switch argument {
        case "--help", "-h":
            say(usage)
            exit(0)
        case "--bind": options.bind = true
        case "--identity": options.identity = value(for: argument)
        case "--curve-server-key": options.curveServerKey = value(for: argument)
        case "--idle-seconds":
            let text = value(for: argument)
            guard let seconds = Int(text), seconds > 0 else { fail("--idle-seconds: bad number \(text)", code: 2) }
            options.idleSeconds = seconds
        case "--count", "--size":
            let text = value(for: argument)
            guard let number = Int(text), number > 0 else { fail("\(argument): bad number \(text)", code: 2) }
            if argument == "--count" { options.count = number } else { options.size = number }
        default:
            if argument.hasPrefix("--") { fail("unknown option \(argument)\n\(usage)", code: 2) }
            positional.append(argument)
        }
    }
    guard positional.count == 2 else { fail(usage, code: 2) }
    options.mode = positional[0]
    options.endpoint = positional[1]
    return options
}

func run(_ options: Options) throws(ZMQError) -> Int32 {
    let type: ZMQSocketType
    switch options.mode {
    case "echo-dealer": type = .dealer
    case "echo-rep": type = .rep
    case "ping-router": return try ping(options)
    default: fail("unknown mode \(options.mode)\n\(usage)", code: 2)
    }
    // An own context, terminated when this function returns, delivers the last reply before the exit.
    let context = try ZMQContext()
    let socket = try ZMQSocket(type, context: context)
    defer { socket.close() }
    if let identity = options.identity { try socket.set(.routingID, Array(identity.utf8)) }
    if let serverKey = options.curveServerKey {
        let keys = try CurveKeyPair.generate()
        try socket.set(.curveServerKey, serverKey)
        try socket.set(.curvePublicKey, keys.publicKey)
        try socket.set(.curveSecretKey, keys.secretKey)
    }
    if options.bind { try socket.bind(options.endpoint) } else { try socket.connect(options.endpoint) }
    say("connected \(try socket.lastEndpoint)")
    if type == .dealer { try socket.send([Array("ready".utf8)]) }

    while true {
        guard let message = try socket.receiveMultipart(timeout: .seconds(options.idleSeconds)) else {
            say("idle")
            try socket.set(.linger, .zero)  // nobody is listening: do not wait to deliver "ready"
            return 3
        }
        if message.first == Array("quit".utf8) {
            try socket.send([Array("bye".utf8)])
            say("bye")
            return 0
        }
        try socket.send(message)
    }
}

/// Times round trips from a ROUTER to one echo-dealer and prints the median and 99th percentile.
func ping(_ options: Options) throws(ZMQError) -> Int32 {
    let context = try ZMQContext()
    let router = try ZMQSocket(.router, context: context)
    defer { router.close() }
    try router.set(.routerMandatory, true)
    try router.bind(options.endpoint)
    say("connected \(try router.lastEndpoint)")
    guard let ready = try router.receiveMultipart(timeout: .seconds(options.idleSeconds)), ready.count == 2 else {
        say("idle")
        return 3
    }
    let peer = ready[0]
    let payload = [UInt8](repeating: 0x5A, count: options.size)
    let clock = ContinuousClock()
    var samples: [Duration] = []
    samples.reserveCapacity(options.count)
    let warmUp = min(1000, options.count / 10)
    for index in 0..<(warmUp + options.count) {
        let start = clock.now
        try router.send([peer, payload])
        guard try router.receiveMultipart(timeout: .seconds(options.idleSeconds)) != nil else {
            say("idle")
            return 3
        }
        if index >= warmUp { samples.append(start.duration(to: clock.now)) }
    }
    samples.sort()
    func microseconds(_ fraction: Double) -> Int {
        let duration = samples[min(samples.count - 1, Int(Double(samples.count) * fraction))]
        let (seconds, attoseconds) = duration.components
        return Int(seconds) * 1_000_000 + Int(attoseconds / 1_000_000_000_000)
    }
    say("round trips \(samples.count) size \(options.size) median_us \(microseconds(0.5)) p99_us \(microseconds(0.99))")
    try router.send([peer, Array("quit".utf8)])
    _ = try router.receiveMultipart(timeout: .seconds(5))
    return 0
}

let options = parse(Array(CommandLine.arguments.dropFirst()))
do {
    exit(try run(options))
} catch {
    fail(error.description, code: 1)
}
