import CMicroHTTPD
import Foundation

#if canImport(Glibc)
import Glibc
#endif

// MARK: - Requests and responses

/// One HTTP request as the handler sees it: libmicrohttpd has parsed the request line, the headers and the body.
public struct HTTPRequest: Sendable {
    /// The method, e.g. "GET" or "POST".
    public var method: String
    /// The path, without the query string, e.g. "/v1/chat/completions".
    public var path: String
    /// The header fields, names lower-cased (a repeated field keeps its last value).
    public var headers: [String: String]
    /// The whole body (at most `HTTPServerLimits.maxBodyBytes`).
    public var body: [UInt8]

    /// A request (tests and the server build them).
    public init(method: String, path: String, headers: [String: String] = [:], body: [UInt8] = []) {
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
    }

    /// The value of the header `name` (any case).
    public func header(_ name: String) -> String? { headers[name.lowercased()] }
}

/// A response body that is produced while it is sent (e.g. server-sent events).
///
/// The server pulls it chunk by chunk on the connection's thread: `next` may block until the next chunk is ready
/// and returns nil at the end. `onClose` is called once when the response is done with, with `clientGone` true
/// when the client went away before the end (so that the work behind the stream can be cancelled). A client that
/// disconnects is noticed when the next chunk is written.
public final class HTTPStream: Sendable {
    let next: @Sendable () -> [UInt8]?
    let onClose: @Sendable (_ clientGone: Bool) -> Void

    /// A stream over `next`, reporting its end to `onClose`.
    public init(next: @escaping @Sendable () -> [UInt8]?, onClose: @escaping @Sendable (_ clientGone: Bool) -> Void) {
        self.next = next
        self.onClose = onClose
    }
}

/// A response body: all at once, or streamed (chunked transfer encoding).
public enum HTTPBody: Sendable {
    /// The whole body.
    case bytes([UInt8])
    /// A body pulled chunk by chunk.
    case stream(HTTPStream)
}

/// A response: status, header fields and body.
public struct HTTPResponse: Sendable {
    /// The status code, e.g. 200.
    public var status: Int
    /// Header fields, in order (Content-Length and Transfer-Encoding are set by the server).
    public var headers: [(name: String, value: String)]
    /// The body.
    public var body: HTTPBody

    /// A response.
    public init(status: Int, headers: [(name: String, value: String)] = [], body: HTTPBody = .bytes([])) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// A whole-body response with a content type.
    public init(status: Int, contentType: String, body: [UInt8], headers: [(name: String, value: String)] = []) {
        self.init(status: status, headers: [("Content-Type", contentType)] + headers, body: .bytes(body))
    }
}

/// Answers one request. Runs on the connection's own thread and may block (for the whole generation, when the
/// answer is not streamed).
public typealias HTTPHandler = @Sendable (HTTPRequest) -> HTTPResponse

/// What the server refuses before the handler sees a request.
public struct HTTPServerLimits: Sendable, Equatable {
    /// The largest request body; a larger one is answered with `tooLarge` (413) before it is read (from its
    /// Content-Length) or as soon as it grows past the limit (chunked uploads).
    public var maxBodyBytes: Int
    /// A connection idle (no byte received or sent) for this long is closed: slow or stalled clients do not hold
    /// a thread. 0 disables it.
    public var connectionTimeoutSeconds: UInt32
    /// The most connections at once; more are refused by closing them.
    public var maxConnections: UInt32

    /// Limits (defaults: 1 MiB bodies, 60 s idle connections, 256 connections).
    public init(maxBodyBytes: Int = 1 << 20, connectionTimeoutSeconds: UInt32 = 60, maxConnections: UInt32 = 256) {
        self.maxBodyBytes = maxBodyBytes
        self.connectionTimeoutSeconds = connectionTimeoutSeconds
        self.maxConnections = maxConnections
    }
}

/// Why the server could not start.
public enum HTTPServerError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The host is not an address or name this machine resolves.
    case badAddress(String)
    /// The listening socket failed (the port is taken, no permission).
    case listen(address: String, reason: String)
    /// libmicrohttpd refused to start.
    case start(String)

    /// A message a user can act on.
    public var description: String {
        switch self {
        case let .badAddress(host): "cannot resolve the listen host '\(host)'; give an IP address or a host name"
        case let .listen(address, reason): "cannot listen on \(address): \(reason)"
        case let .start(reason): "the HTTP server failed to start: \(reason)"
        }
    }
}

/// The body a limit-refused request gets, and the status codes the server itself answers with.
public enum HTTPServerStatus {
    /// The body the server sends with a 413, as a handler-independent JSON error object.
    public static func tooLargeBody(limit: Int) -> [UInt8] {
        Array(#"{"error":{"message":"the request body is larger than \#(limit) bytes","type":"invalid_request_error","param":null,"code":"request_too_large"}}"#.utf8)
    }
}

// MARK: - Server

/// An HTTP/1.1 server over libmicrohttpd (the protocol parsing is the library's; this shell owns the daemon, the
/// listening socket and the per-request state).
///
/// Threading: **one thread per connection** (`MHD_USE_THREAD_PER_CONNECTION` with an internal polling thread that
/// accepts). The handler of a request and the producer of a streamed body block — a non-streamed answer waits for
/// the whole generation, a stream waits for each next token — and a blocked callback in libmicrohttpd's single
/// polling-thread mode would stall every other connection (or need suspend/resume bookkeeping for every token).
/// With a thread per connection a blocked request holds only its own thread; `maxConnections` bounds the threads.
///
/// Draining (`drain`): the listening socket is closed (no new connections), requests that arrive on open
/// connections are answered 503, and the server waits for the requests in progress (streams included) to end.
public final class HTTPServer: @unchecked Sendable {
    /// The port the server listens on (the one the system chose, when asked for port 0).
    public let port: UInt16
    /// The host it listens on, as given.
    public let host: String
    let limits: HTTPServerLimits
    let handler: HTTPHandler
    private let lock = NSCondition()
    private var daemon: OpaquePointer?
    private var listenSocket: Int32
    private var active = 0
    private var isDraining = false

    /// Starts listening on `host:port` (port 0: any free port, see `port`) and serving with `handler`.
    public init(
        host: String, port: UInt16, limits: HTTPServerLimits = HTTPServerLimits(), handler: @escaping HTTPHandler
    ) throws(HTTPServerError) {
        self.host = host
        self.limits = limits
        self.handler = handler
        let (fd, bound) = try Self.listen(host: host, port: port)
        listenSocket = fd
        self.port = bound
        let flags = MHD_USE_THREAD_PER_CONNECTION.rawValue | MHD_USE_INTERNAL_POLLING_THREAD.rawValue
            | MHD_USE_POLL.rawValue | MHD_USE_ITC.rawValue
        let completed: MHD_RequestCompletedCallback = { cls, _, requestContext, _ in
            guard let cls else { return }
            let server = Unmanaged<HTTPServer>.fromOpaque(cls).takeUnretainedValue()
            if let requestContext, let state = requestContext.pointee {
                Unmanaged<RequestState>.fromOpaque(state).release()
                requestContext.pointee = nil
                server.requestEnded()
            }
        }
        let me = Unmanaged.passUnretained(self).toOpaque()
        var options: [MHD_OptionItem] = [
            MHD_OptionItem(option: MHD_OPTION.LISTEN_SOCKET, value: Int(fd), ptr_value: nil),
            MHD_OptionItem(option: MHD_OPTION.CONNECTION_LIMIT, value: Int(limits.maxConnections), ptr_value: nil),
            MHD_OptionItem(
                option: MHD_OPTION.CONNECTION_TIMEOUT, value: Int(limits.connectionTimeoutSeconds), ptr_value: nil
            ),
            MHD_OptionItem(
                option: MHD_OPTION.NOTIFY_COMPLETED, value: Int(bitPattern: unsafeBitCast(completed, to: UInt.self)),
                ptr_value: me
            ),
            MHD_OptionItem(option: MHD_OPTION.END, value: 0, ptr_value: nil),
        ]
        let started: OpaquePointer? = options.withUnsafeMutableBufferPointer { items in
            withVaList([Int32(bitPattern: MHD_OPTION.ARRAY.rawValue), items.baseAddress!,
                        Int32(bitPattern: MHD_OPTION.END.rawValue)]) { arguments in
                MHD_start_daemon_va(flags, 0, nil, nil, accessHandler, me, arguments)
            }
        }
        guard let started else {
            close(fd)
            throw .start("MHD_start_daemon failed (threads or file descriptors exhausted?)")
        }
        daemon = started
    }

    deinit { stop() }

    /// Requests being served right now (streams included).
    public var activeRequests: Int {
        lock.lock()
        defer { lock.unlock() }
        return active
    }

    /// Stops accepting connections, answers new requests on open connections with 503, and waits until the
    /// requests in progress have ended or `timeout` passed. Returns whether every request ended.
    @discardableResult
    public func drain(timeout: Duration) -> Bool {
        lock.lock()
        isDraining = true
        if let daemon {
            let fd = MHD_quiesce_daemon(daemon)
            if fd >= 0 { close(fd) }
            listenSocket = -1
        }
        let (seconds, attoseconds) = timeout.components
        let until = Date(timeIntervalSinceNow: Double(seconds) + Double(attoseconds) * 1e-18)
        while active > 0 {
            if !lock.wait(until: until) { break }
        }
        let ended = active == 0
        lock.unlock()
        return ended
    }

    /// Stops the server at once: open connections are closed (streams are cut off).
    public func stop() {
        lock.lock()
        let daemon = self.daemon
        self.daemon = nil
        let fd = listenSocket
        listenSocket = -1
        lock.unlock()
        if let daemon { MHD_stop_daemon(daemon) }
        if fd >= 0 { close(fd) }
    }

    // MARK: Per request

    fileprivate func requestStarted() -> Bool {
        lock.lock()
        defer { lock.unlock() }
        active += 1
        return isDraining
    }

    fileprivate func requestEnded() {
        lock.lock()
        active -= 1
        lock.broadcast()
        lock.unlock()
    }

    // MARK: Listening socket

    /// A listening TCP socket on `host:port`, and the port it got.
    private static func listen(host: String, port: UInt16) throws(HTTPServerError) -> (Int32, UInt16) {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_PASSIVE
        var found: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &found) == 0, let first = found else {
            throw .badAddress(host)
        }
        defer { freeaddrinfo(found) }
        let address = "\(host):\(port)"
        let fd = socket(first.pointee.ai_family, first.pointee.ai_socktype, first.pointee.ai_protocol)
        guard fd >= 0 else { throw .listen(address: address, reason: String(cString: strerror(errno))) }
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        guard bind(fd, first.pointee.ai_addr, first.pointee.ai_addrlen) == 0, Glibc.listen(fd, 128) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw .listen(address: address, reason: reason)
        }
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let named = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard named == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw .listen(address: address, reason: reason)
        }
        let family = storage.ss_family
        let bound: UInt16 = withUnsafePointer(to: &storage) { pointer in
            if family == sa_family_t(AF_INET6) {
                return pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin6_port) }
            }
            return pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin_port) }
        }
        return (fd, bound)
    }
}

/// What the server keeps of one request between libmicrohttpd's calls: the headers and the body so far.
final class RequestState {
    var headers: [String: String] = [:]
    var body: [UInt8] = []
    /// A response was queued (a 413 or 503 before the body was read); later calls only discard.
    var answered = false
}

/// A streamed body as the content reader sees it.
final class StreamState {
    let stream: HTTPStream
    var pending: [UInt8] = []
    var offset = 0
    var finished = false

    init(stream: HTTPStream) { self.stream = stream }
}

// MARK: - libmicrohttpd callbacks

private let headerCollector: MHD_KeyValueIterator = { cls, _, key, value in
    if let cls, let key {
        let state = Unmanaged<RequestState>.fromOpaque(cls).takeUnretainedValue()
        state.headers[String(cString: key).lowercased()] = value.map { String(cString: $0) } ?? ""
    }
    return MHD_Result.YES
}

private let accessHandler: MHD_AccessHandlerCallback = {
    cls, connection, url, method, _, uploadData, uploadSize, requestContext in
    guard let cls, let connection, let requestContext, let uploadSize else { return MHD_Result.NO }
    let server = Unmanaged<HTTPServer>.fromOpaque(cls).takeUnretainedValue()
    guard let pointer = requestContext.pointee else {
        // The first call: the headers are in, the body is not.
        let state = RequestState()
        let opaque = Unmanaged.passRetained(state).toOpaque()
        requestContext.pointee = opaque
        let draining = server.requestStarted()
        MHD_get_connection_values(connection, MHD_ValueKind.HEADER_KIND, headerCollector, opaque)
        if draining {
            state.answered = true
            return queue(HTTPResponse(
                status: 503, contentType: "application/json",
                body: Array(#"{"error":{"message":"the server is shutting down","type":"unavailable","param":null,"code":"draining"}}"#.utf8),
                headers: [("Connection", "close")]
            ), on: connection)
        }
        if let length = state.headers["content-length"].flatMap({ Int($0) }), length > server.limits.maxBodyBytes {
            state.answered = true
            return queue(tooLarge(server), on: connection)
        }
        return MHD_Result.YES
    }
    let state = Unmanaged<RequestState>.fromOpaque(pointer).takeUnretainedValue()
    if uploadSize.pointee > 0 {
        let count = uploadSize.pointee
        uploadSize.pointee = 0
        if state.answered { return MHD_Result.YES }
        guard state.body.count + count <= server.limits.maxBodyBytes else {
            state.answered = true
            state.body = []
            return queue(tooLarge(server), on: connection)
        }
        if let uploadData {
            uploadData.withMemoryRebound(to: UInt8.self, capacity: count) {
                state.body.append(contentsOf: UnsafeBufferPointer(start: $0, count: count))
            }
        }
        return MHD_Result.YES
    }
    if state.answered { return MHD_Result.YES }
    state.answered = true
    let request = HTTPRequest(
        method: method.map { String(cString: $0) } ?? "",
        path: url.map { String(cString: $0) } ?? "/",
        headers: state.headers, body: state.body
    )
    state.body = []
    return queue(server.handler(request), on: connection)
}

private func tooLarge(_ server: HTTPServer) -> HTTPResponse {
    HTTPResponse(
        status: 413, contentType: "application/json",
        body: HTTPServerStatus.tooLargeBody(limit: server.limits.maxBodyBytes), headers: [("Connection", "close")]
    )
}

private let streamReader: MHD_ContentReaderCallback = { cls, _, buffer, max in
    guard let cls, let buffer else { return -2 }
    let state = Unmanaged<StreamState>.fromOpaque(cls).takeUnretainedValue()
    while state.offset >= state.pending.count {
        guard let chunk = state.stream.next() else {
            state.finished = true
            return -1  // MHD_CONTENT_READER_END_OF_STREAM
        }
        state.pending = chunk
        state.offset = 0
    }
    let count = min(max, state.pending.count - state.offset)
    state.pending.withUnsafeBytes { bytes in
        UnsafeMutableRawPointer(buffer).copyMemory(from: bytes.baseAddress! + state.offset, byteCount: count)
    }
    state.offset += count
    return count
}

private let streamFreed: MHD_ContentReaderFreeCallback = { cls in
    guard let cls else { return }
    let state = Unmanaged<StreamState>.fromOpaque(cls).takeRetainedValue()
    state.stream.onClose(!state.finished)
}

/// Queues `response` on `connection` (libmicrohttpd sends it when the connection's thread gets to it).
private func queue(_ response: HTTPResponse, on connection: OpaquePointer) -> MHD_Result {
    let made: OpaquePointer?
    switch response.body {
    case let .bytes(bytes):
        made = bytes.withUnsafeBytes { raw in
            MHD_create_response_from_buffer(
                raw.count, UnsafeMutableRawPointer(mutating: raw.baseAddress), MHD_ResponseMemoryMode.RESPMEM_MUST_COPY
            )
        }
    case let .stream(stream):
        let state = Unmanaged.passRetained(StreamState(stream: stream)).toOpaque()
        made = MHD_create_response_from_callback(UInt64.max, 4096, streamReader, state, streamFreed)
        if made == nil { Unmanaged<StreamState>.fromOpaque(state).release() }
    }
    guard let made else { return MHD_Result.NO }
    for header in response.headers { MHD_add_response_header(made, header.name, header.value) }
    let result = MHD_queue_response(connection, UInt32(response.status), made)
    MHD_destroy_response(made)
    return result
}
