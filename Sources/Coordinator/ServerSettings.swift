import ClusterCore
import Decoding
import Foundation
import Logging
import Preference
import Wire
import ZeroMQ

// MARK: - Errors

/// Why the coordinator process cannot start or keep serving.
public enum CoordinatorError: Error, Sendable, CustomStringConvertible {
    /// The cluster config is unusable.
    case config(ConfigError)
    /// The tokenizer of the model named by the config could not be loaded.
    case tokenizer(path: String, reason: String)
    /// The ROUTER socket could not be set up or bound, or ZeroMQ failed while serving.
    case socket(ZMQError)
    /// A setting is out of range.
    case invalidSetting(name: String, reason: String)
    /// The PCM file named by the config cannot be used.
    case pcm(PCMError)

    /// A message a user can act on.
    public var description: String {
        switch self {
        case let .config(error): error.description
        case let .tokenizer(path, reason):
            "cannot load the tokenizer from \(path) (the config's tokenizer, else its first expert's model): \(reason)"
        case let .socket(error):
            if error.isBadEndpoint || error.errno == EADDRINUSE {
                "cannot bind the coordinator's endpoint: \(error.message); pick a free port with --endpoint"
            } else {
                "ZeroMQ failed in the coordinator: \(error)"
            }
        case let .invalidSetting(name, reason): "invalid coordinator setting \(name): \(reason)"
        case let .pcm(error): "cannot use the config's PCM: \(error.description)"
        }
    }
}

// MARK: - Settings

/// The coordinator process's settings: the cluster config plus the shell's own knobs.
public struct CoordinatorSettings: Sendable {
    /// The cluster config (experts, deadlines, heartbeat interval, defaults).
    public var config: ClusterConfig
    /// The workers' ROUTER endpoint to bind (defaults to `config.coordinator`).
    public var endpoint: String
    /// The clients' ROUTER endpoint to bind (defaults to `config.clientEndpoint`).
    public var clientEndpoint: String
    /// How long a drain (SIGTERM) lets running sessions finish before they are failed.
    public var drainGrace: Duration = .seconds(30)
    /// Send and receive high-water marks of the ROUTER (messages).
    public var highWaterMark: Int32 = 100_000
    /// How long queued replies may take to leave when the socket closes.
    public var linger: Duration = .milliseconds(500)
    /// The largest message a peer may send, in bytes (`ZMQ_MAXMSGSIZE`): a peer that sends a larger one is
    /// disconnected before the message is buffered. Default: the largest frame the codec accepts.
    public var maxMessageBytes: Int = WireLimits.maxFrameBytes
    /// The most sessions in flight; a `generate` beyond it gets `error unavailable`.
    public var maxSessions: Int = 4096
    /// Which experts take part in a request.
    public var expertSelection: ExpertSelection = .namedByPreference
    /// The CURVE key pair of the coordinator; nil for plain connections. Workers and clients then need the
    /// public key.
    public var curve: CurveKeyPair?
    /// With `curve`: only clients whose CURVE public key is listed may connect to the client endpoint (checked
    /// by a ZAP handler in the coordinator's loop, domain "clients"). Nil: any peer that knows the coordinator's
    /// public key may.
    public var curveAllowList: CurveAllowList?
    /// Where the coordinator's events go (label `coordinator`, info and above on standard error unless the caller
    /// gives another). Registrations are also always written as lines of their own for `mope cluster`.
    public var logger = Logger(label: "coordinator")
    /// With `curve`: only workers whose CURVE public key is listed may connect to the worker endpoint (ZAP
    /// domain "workers"). Nil: any peer that knows the coordinator's public key may.
    public var curveWorkerAllowList: CurveAllowList?
    /// Allow plain (unencrypted) connections on an endpoint other peers can reach. Without it, a coordinator
    /// without `curve` binds only loopback tcp addresses and ipc paths.
    public var insecure = false

    /// Settings for `config`, binding its endpoint.
    public init(config: ClusterConfig) {
        self.config = config
        endpoint = config.coordinator
        clientEndpoint = config.clientEndpoint
    }

    /// Checks the shell's settings.
    func validate() throws(CoordinatorError) {
        guard !endpoint.isEmpty else {
            throw .invalidSetting(name: "endpoint", reason: "give an endpoint such as tcp://0.0.0.0:5555")
        }
        guard highWaterMark > 0 else { throw .invalidSetting(name: "highWaterMark", reason: "must be positive") }
        guard maxMessageBytes > 0 else { throw .invalidSetting(name: "maxMessageBytes", reason: "must be positive") }
        guard maxSessions > 0 else { throw .invalidSetting(name: "maxSessions", reason: "must be positive") }
        guard drainGrace >= .zero else { throw .invalidSetting(name: "drainGrace", reason: "must not be negative") }
        guard !clientEndpoint.isEmpty, clientEndpoint != endpoint else {
            throw .invalidSetting(name: "clientEndpoint", reason: "give an endpoint other than the workers' \(endpoint)")
        }
        for endpoint in [endpoint, clientEndpoint] where curve == nil && !insecure && !Self.isLocal(endpoint) {
            throw .invalidSetting(
                name: "endpoint",
                reason: "\(endpoint) is reachable from other machines; encrypt it with CURVE "
                    + "(--curve-secret-key-file, see mope keygen) or accept plain connections with --insecure"
            )
        }
        if (curveAllowList != nil || curveWorkerAllowList != nil) && curve == nil {
            throw .invalidSetting(name: "curveAllowList", reason: "an allow-list needs CURVE: give the secret key too")
        }
    }
}

extension CoordinatorSettings {
    /// Whether only this machine can reach `endpoint`: ipc and inproc paths, and tcp on 127.0.0.0/8, ::1 or
    /// localhost. Wildcards (`*`, `0.0.0.0`, `::`), other addresses and interface names are not local.
    public static func isLocal(_ endpoint: String) -> Bool {
        if endpoint.hasPrefix("ipc://") || endpoint.hasPrefix("inproc://") { return true }
        guard endpoint.hasPrefix("tcp://") else { return false }
        var host = Substring(endpoint.dropFirst("tcp://".count))
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { return false }
            host = host[host.index(after: host.startIndex)..<close]
            return host == "::1"
        }
        if let colon = host.lastIndex(of: ":") { host = host[..<colon] }
        if host == "localhost" { return true }
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4, parts.allSatisfy({ UInt8($0) != nil }) else { return false }
        return parts[0] == "127"
    }
}
