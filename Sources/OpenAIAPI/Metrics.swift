import Foundation

/// A small metrics registry that renders the Prometheus text exposition format (version 0.0.4): counters, gauges
/// and histograms (`_bucket{le=…}` cumulative, `_sum`, `_count`), each with optional labels. Thread-safe: the
/// server's connection threads record into it while `/metrics` renders it.
public final class MetricsRegistry: @unchecked Sendable {
    /// The kinds of metric.
    public enum Kind: String, Sendable {
        case counter, gauge, histogram
    }

    private struct Family {
        var kind: Kind
        var help: String
        var buckets: [Double]
        /// Per label set (rendered `{a="x",b="y"}`, or "" for none): the value, or the histogram's state.
        var values: [String: Double] = [:]
        var histograms: [String: Histogram] = [:]
    }

    private struct Histogram {
        var counts: [UInt64]
        var sum: Double = 0
        var count: UInt64 = 0
    }

    private let lock = NSLock()
    private var families: [String: Family] = [:]
    private var order: [String] = []

    /// An empty registry.
    public init() {}

    /// Declares a metric (so that it is listed, at zero, before anything is recorded). `buckets` are the upper
    /// bounds of a histogram's buckets, ascending (+Inf is added).
    public func declare(_ name: String, _ kind: Kind, help: String, buckets: [Double] = []) {
        lock.lock()
        defer { lock.unlock() }
        guard families[name] == nil else { return }
        families[name] = Family(kind: kind, help: help, buckets: buckets.sorted())
        order.append(name)
    }

    /// Adds `amount` to a counter (or a gauge).
    public func add(_ name: String, _ amount: Double = 1, labels: [(String, String)] = []) {
        let key = Self.render(labels)
        lock.lock()
        families[name]?.values[key, default: 0] += amount
        lock.unlock()
    }

    /// Sets a gauge.
    public func set(_ name: String, _ value: Double, labels: [(String, String)] = []) {
        let key = Self.render(labels)
        lock.lock()
        families[name]?.values[key] = value
        lock.unlock()
    }

    /// Records one observation in a histogram.
    public func observe(_ name: String, _ value: Double, labels: [(String, String)] = []) {
        let key = Self.render(labels)
        lock.lock()
        defer { lock.unlock() }
        guard let family = families[name], family.kind == .histogram else { return }
        var histogram = family.histograms[key] ?? Histogram(counts: Array(repeating: 0, count: family.buckets.count))
        for (index, bound) in family.buckets.enumerated() where value <= bound { histogram.counts[index] += 1 }
        histogram.sum += value
        histogram.count += 1
        families[name]?.histograms[key] = histogram
    }

    /// The current value of a counter or gauge (0 when never recorded).
    public func value(_ name: String, labels: [(String, String)] = []) -> Double {
        lock.lock()
        defer { lock.unlock() }
        return families[name]?.values[Self.render(labels)] ?? 0
    }

    /// The exposition text: `# HELP`, `# TYPE` and the samples of every metric, in declaration order.
    public func render() -> String {
        lock.lock()
        defer { lock.unlock() }
        var out = ""
        for name in order {
            guard let family = families[name] else { continue }
            out += "# HELP \(name) \(Self.escapeHelp(family.help))\n# TYPE \(name) \(family.kind.rawValue)\n"
            switch family.kind {
            case .counter, .gauge:
                if family.values.isEmpty { out += "\(name) 0\n" }
                for key in family.values.keys.sorted() {
                    out += "\(name)\(key) \(Self.format(family.values[key] ?? 0))\n"
                }
            case .histogram:
                let states = family.histograms.isEmpty
                    ? ["": Histogram(counts: Array(repeating: 0, count: family.buckets.count))] : family.histograms
                for key in states.keys.sorted() {
                    guard let histogram = states[key] else { continue }
                    for (index, bound) in family.buckets.enumerated() {
                        out += "\(name)_bucket\(Self.adding("le", Self.format(bound), to: key)) \(histogram.counts[index])\n"
                    }
                    out += "\(name)_bucket\(Self.adding("le", "+Inf", to: key)) \(histogram.count)\n"
                    out += "\(name)_sum\(key) \(Self.format(histogram.sum))\n"
                    out += "\(name)_count\(key) \(histogram.count)\n"
                }
            }
        }
        return out
    }

    /// `{a="x",b="y"}`, values escaped; "" for no labels.
    static func render(_ labels: [(String, String)]) -> String {
        guard !labels.isEmpty else { return "" }
        return "{" + labels.map { "\($0.0)=\"\(escapeLabel($0.1))\"" }.joined(separator: ",") + "}"
    }

    /// A rendered label set with one more label.
    static func adding(_ name: String, _ value: String, to key: String) -> String {
        let label = "\(name)=\"\(value)\""
        guard !key.isEmpty else { return "{\(label)}" }
        return String(key.dropLast()) + ",\(label)}"
    }

    static func escapeLabel(_ value: String) -> String {
        value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
    }

    static func escapeHelp(_ value: String) -> String {
        value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\n", with: "\\n")
    }

    /// A sample value: integers without a fraction, others in Swift's shortest round-trip form.
    static func format(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return "\(value)"
    }
}

/// The metrics `mope serve` exposes, by name.
public enum ServeMetrics {
    /// Requests by endpoint and outcome (ok, degraded, client_gone, or the error status).
    public static let requests = "mope_http_requests_total"
    /// HTTP error answers by status.
    public static let httpErrors = "mope_http_errors_total"
    /// Generations running now.
    public static let sessionsRunning = "mope_sessions_running"
    /// Seconds from the request to its first token.
    public static let timeToFirstToken = "mope_time_to_first_token_seconds"
    /// Seconds between consecutive tokens of a stream.
    public static let interTokenLatency = "mope_inter_token_latency_seconds"
    /// Seconds from the request to its end.
    public static let requestDuration = "mope_request_duration_seconds"
    /// Tokens generated.
    public static let tokens = "mope_generated_tokens_total"
    /// Answers that lost an expert on the way.
    public static let degraded = "mope_degraded_answers_total"
    /// Sessions moved to a replica.
    public static let failovers = "mope_failovers_total"
    /// Each expert's mean decoding-step compute time per answer.
    public static let expertStep = "mope_expert_step_seconds"
    /// Requests that resumed on another coordinator after theirs was lost.
    public static let coordinatorFailovers = "mope_coordinator_failovers_total"
    /// Seconds requests waited in the coordinator's admission queue.
    public static let queueWait = "mope_queue_wait_seconds"
    /// Requests waiting in the coordinator's admission queue (from its status answer at scrape time).
    public static let sessionsQueued = "mope_sessions_queued"
    /// How long the oldest queued request has waited (from the coordinator's status answer at scrape time).
    public static let oldestQueued = "mope_queue_oldest_wait_seconds"
    /// Sessions the coordinator runs (from its status answer at scrape time).
    public static let coordinatorSessions = "mope_coordinator_sessions_running"
    /// Live workers per expert (from the coordinator's status answer at scrape time).
    public static let workersLive = "mope_workers_live"

    /// A registry with every serve metric declared.
    public static func makeRegistry() -> MetricsRegistry {
        let registry = MetricsRegistry()
        registry.declare(requests, .counter, help: "HTTP API requests by endpoint and outcome.")
        registry.declare(httpErrors, .counter, help: "HTTP error answers by status code.")
        registry.declare(sessionsRunning, .gauge, help: "Generations running now.")
        registry.declare(timeToFirstToken, .histogram, help: "Seconds from a request's arrival to its first token.",
                         buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30])
        registry.declare(interTokenLatency, .histogram, help: "Seconds between consecutive tokens of an answer.",
                         buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1])
        registry.declare(requestDuration, .histogram, help: "Seconds from a request's arrival to its end.",
                         buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120])
        registry.declare(tokens, .counter, help: "Tokens generated.")
        registry.declare(degraded, .counter, help: "Answers that lost an expert and were merged without it.")
        registry.declare(failovers, .counter, help: "Sessions moved to a replica by replay.")
        registry.declare(expertStep, .histogram, help: "Each expert's mean decoding-step time per answer, by expert.",
                         buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1])
        registry.declare(coordinatorFailovers, .counter,
                         help: "Requests resumed on another coordinator after theirs was lost.")
        registry.declare(queueWait, .histogram, help: "Seconds requests waited in the coordinator's admission queue.",
                         buckets: [0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30])
        registry.declare(sessionsQueued, .gauge, help: "Requests waiting for capacity in the coordinator's queue.")
        registry.declare(coordinatorSessions, .gauge, help: "Sessions the coordinator runs.")
        registry.declare(oldestQueued, .gauge, help: "Seconds the oldest request in the admission queue has waited.")
        registry.declare(workersLive, .gauge, help: "Live workers per expert.")
        return registry
    }
}
