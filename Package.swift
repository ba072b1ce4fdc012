// swift-tools-version:6.0
import PackageDescription

// Release builds target the build machine's CPU (AVX-512 here); the default baseline x86-64 turns vector FMAs into
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

        // MARK: Protocol and engine
        .target(name: "Wire"),
        .target(name: "CPUKernels", swiftSettings: kernelFlags),
        .target(name: "Inference", dependencies: ["CPUKernels"], swiftSettings: numericFlags),
        .target(name: "Preference", dependencies: ["Inference", "CPUKernels"], swiftSettings: numericFlags),
        .target(name: "Decoding", dependencies: ["Wire", "Preference"], swiftSettings: numericFlags),

        // MARK: Pure cores (no sockets, no processes)
        .target(name: "ClusterCore", dependencies: ["Wire", "Preference", "Decoding"]),
        .target(name: "WorkerCore", dependencies: ["Wire", "Inference"]),

        // MARK: Shells (ZeroMQ, threads, processes)
        .target(name: "ProcessSupport"),
        .target(name: "Coordinator", dependencies: [
            "ClusterCore", "Decoding", "Wire", "ZeroMQ", "Inference", "Preference", "ProcessSupport",
        ]),
        .target(name: "Expert", dependencies: ["WorkerCore", "Wire", "ZeroMQ", "Inference", "ProcessSupport"]),
        .target(name: "CLI", dependencies: ["ProcessSupport"]),

        // MARK: Training and evaluation (in-process experts: the pure modules only)
        .target(name: "Training", dependencies: ["Inference", "Preference", "Decoding", "Wire"],
                swiftSettings: numericFlags),

        // MARK: Executables
        .executableTarget(
            name: "mope",
            dependencies: [
                "CLI", "Wire", "ZeroMQ", "CPUKernels", "Inference", "Decoding", "ClusterCore", "WorkerCore", "Expert",
                "Coordinator", "Preference", "Training", "ProcessSupport",
            ]
        ),
        // A tiny peer process for the ZeroMQ binding's multi-process tests.
        .executableTarget(name: "mope-zmq-peer", dependencies: ["ZeroMQ"]),

        // MARK: Tests
        .testTarget(name: "WireTests", dependencies: ["Wire"]),
        // Helpers shared by the test targets that run the package's executables as child processes.
        .target(name: "TestKit", path: "Tests/TestKit"),
        .testTarget(name: "ZeroMQTests", dependencies: ["ZeroMQ", "mope-zmq-peer", "TestKit"]),
        .testTarget(name: "InferenceTests", dependencies: ["Inference", "CPUKernels"]),
        .testTarget(name: "WorkerCoreTests", dependencies: ["WorkerCore", "Wire", "Inference"]),
        .testTarget(name: "ExpertTests", dependencies: ["Expert", "WorkerCore", "Wire", "Inference"]),
        .testTarget(name: "DecodingTests", dependencies: ["Decoding", "Wire", "Preference"]),
        .testTarget(name: "ClusterCoreTests", dependencies: ["ClusterCore", "Decoding", "Wire", "Preference"]),
        .testTarget(name: "CoordinatorTests", dependencies: [
            "Coordinator", "ClusterCore", "Decoding", "Wire", "Preference", "Inference",
        ]),
        .testTarget(name: "PreferenceTests", dependencies: ["Preference", "Inference"]),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "Decoding", "Wire"]),
        .testTarget(name: "CLITests", dependencies: ["CLI"]),
        .testTarget(name: "ProcessSupportTests", dependencies: ["ProcessSupport"]),
        .testTarget(name: "ClusterTests", dependencies: [
            "mope", "Wire", "ZeroMQ", "ClusterCore", "Decoding", "Coordinator", "Preference", "Inference", "Expert",
            "TestKit",
        ]),
        .testTarget(name: "BenchEngineTests", dependencies: ["mope", "Inference", "CLI"]),
    ]
)
