// swift-tools-version:6.0
import PackageDescription

// Release builds target the build machine's CPU (AVX2 or AVX-512); the default baseline x86-64 turns vector FMAs into
// library calls. Set MOPE_PORTABLE=1 for a binary that runs on any x86-64.
let portable = Context.environment["MOPE_PORTABLE"] != nil
let cpuFlags = portable ? [] : ["-target-cpu", "native"]
// Only the hot kernels drop Swift's bounds and overflow checks (`-Ounchecked`); everything that reads outside input
// (the GGUF reader, tokenizers, configs, the protocol) keeps them in release builds. Debug builds optimise the
// numeric targets too (testability stays on): unoptimised, the kernels are one to two orders of magnitude slower
// and the model tests would crawl.
let kernelFlags: [SwiftSetting] = [
    .unsafeFlags(["-O"] + cpuFlags, .when(configuration: .debug)),
    .unsafeFlags(["-Ounchecked"] + cpuFlags, .when(configuration: .release)),
]
let numericFlags: [SwiftSetting] = [
    .unsafeFlags(["-O"] + cpuFlags, .when(configuration: .debug)),
    .unsafeFlags(cpuFlags, .when(configuration: .release)),
]

let package = Package(
    name: "mope",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "mope", targets: ["mope"]),
    ],
    targets: [
        // MARK: ZeroMQ
        .systemLibrary(
            name: "CZeroMQ",
            pkgConfig: "libzmq",
            providers: [.apt(["libzmq3-dev"])]
        ),
        .target(name: "ZeroMQ", dependencies: ["CZeroMQ"]),

        // MARK: HTTP
        .systemLibrary(
            name: "CMicroHTTPD",
            pkgConfig: "libmicrohttpd",
            providers: [.apt(["libmicrohttpd-dev"])]
        ),
        .target(name: "HTTPServer", dependencies: ["CMicroHTTPD"]),
        // The OpenAI-compatible API: request/response types, errors, SSE, metrics. Pure.
        .target(name: "OpenAIAPI", dependencies: ["Wire", "Preference"]),

        // MARK: Protocol and engine
        .target(name: "Wire"),
        // The packed-weight kernels in C with AVX2 intrinsics (chosen at run time by CPUID; MOPE_PORTABLE builds
        // leave them out). Optimised in every configuration, as the Swift kernels are.
        .target(name: "CKernels", cSettings: [.unsafeFlags(["-O3"])] + (portable ? [.define("MOPE_PORTABLE")] : [])),
        .target(name: "CPUKernels", dependencies: ["CKernels"], swiftSettings: kernelFlags),
        .target(name: "Inference", dependencies: ["CPUKernels"], swiftSettings: numericFlags),
        .target(name: "Preference", dependencies: ["Inference", "CPUKernels"], swiftSettings: numericFlags),
        .target(name: "Decoding", dependencies: ["Wire", "Inference", "Preference"], swiftSettings: numericFlags),

        // MARK: Pure cores (no sockets, no processes)
        .target(name: "ClusterCore", dependencies: ["Wire", "Preference", "Decoding", "Logging"]),
        .target(name: "WorkerCore", dependencies: ["Wire", "Inference"]),

        // MARK: Shells (ZeroMQ, threads, processes)
        // Levels, a sink protocol and the standard-error writer; no dependencies.
        .target(name: "Logging"),
        .target(name: "ProcessSupport", dependencies: ["Logging"]),
        .target(name: "Coordinator", dependencies: [
            "ClusterCore", "Decoding", "Wire", "ZeroMQ", "Inference", "Preference", "ProcessSupport", "Logging",
        ]),
        .target(name: "Expert", dependencies: [
            "WorkerCore", "Wire", "ZeroMQ", "Inference", "ProcessSupport", "Logging",
        ]),
        .target(name: "CLI", dependencies: ["ProcessSupport", "Logging"]),

        // MARK: Training and evaluation (in-process experts: the pure modules only)
        .target(name: "Training", dependencies: ["Inference", "Preference", "Decoding", "Wire"],
                swiftSettings: numericFlags),

        // MARK: Executables
        .executableTarget(
            name: "mope",
            dependencies: [
                "CLI", "Wire", "ZeroMQ", "HTTPServer", "OpenAIAPI", "CPUKernels", "Inference", "Decoding", "ClusterCore", "WorkerCore", "Expert",
                "Coordinator", "Preference", "Training", "ProcessSupport", "Logging",
            ]
        ),
        // A tiny peer process for the ZeroMQ binding's multi-process tests.
        .executableTarget(name: "mope-zmq-peer", dependencies: ["ZeroMQ"]),

        // MARK: Tests
        .testTarget(name: "WireTests", dependencies: ["Wire"]),
        .testTarget(name: "HTTPServerTests", dependencies: ["HTTPServer"]),
        .testTarget(name: "OpenAIAPITests", dependencies: ["OpenAIAPI", "Wire", "Preference"]),
        // Helpers shared by the test targets that run the package's executables as child processes.
        .target(name: "TestKit", dependencies: ["ProcessSupport", "Inference"], path: "Tests/TestKit"),
        .testTarget(name: "ZeroMQTests", dependencies: ["ZeroMQ", "mope-zmq-peer", "ProcessSupport", "TestKit"]),
        .testTarget(name: "InferenceTests", dependencies: ["Inference", "CPUKernels", "Decoding", "Wire", "TestKit"]),
        .testTarget(name: "WorkerCoreTests", dependencies: ["WorkerCore", "Wire", "Inference"]),
        .testTarget(name: "ExpertTests", dependencies: [
            "Expert", "WorkerCore", "Wire", "Inference", "ProcessSupport", "Logging", "TestKit",
        ]),
        .testTarget(name: "DecodingTests", dependencies: ["Decoding", "Wire", "Preference"]),
        .testTarget(name: "ClusterCoreTests", dependencies: ["ClusterCore", "Decoding", "Wire", "Preference", "TestKit"]),
        .testTarget(name: "CoordinatorTests", dependencies: [
            "Coordinator", "ClusterCore", "Decoding", "Wire", "Preference", "Inference", "ProcessSupport", "Logging", "TestKit",
        ]),
        .testTarget(name: "PreferenceTests", dependencies: ["Preference", "Inference", "TestKit"]),
        .testTarget(name: "TrainingTests", dependencies: [
            "Training", "Decoding", "Wire", "Preference", "ClusterCore", "TestKit",
        ]),
        .testTarget(name: "CLITests", dependencies: ["CLI"]),
        .testTarget(name: "ProcessSupportTests", dependencies: ["ProcessSupport"]),
        .testTarget(name: "LoggingTests", dependencies: ["Logging"]),
        .testTarget(name: "ClusterTests", dependencies: [
            "mope", "Wire", "ZeroMQ", "ClusterCore", "Decoding", "Coordinator", "Preference", "Inference", "Expert",
            "ProcessSupport", "TestKit",
        ]),
        .testTarget(name: "BenchEngineTests", dependencies: ["mope", "Inference", "CLI", "TestKit"]),
        // The deploy targets in Deploy/ (systemd, Kubernetes, Slurm, ssh, containers), each run as far as this machine allows.
        .testTarget(name: "DeployTests", dependencies: ["mope", "ProcessSupport", "TestKit"]),
    ]
)
