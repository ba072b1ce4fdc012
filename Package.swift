// swift-tools-version:6.0
import PackageDescription

// Release builds of the hot kernels target the build machine's CPU (AVX-512 here); the default baseline
// x86-64 turns vector FMAs into library calls. Set MOPE_PORTABLE=1 for a binary that runs on any x86-64.
let portable = Context.environment["MOPE_PORTABLE"] != nil
// Debug builds optimise these targets too (testability stays on): unoptimised, or for the baseline CPU (where
// `addingProduct` becomes a library call per lane), the kernels are one to two orders of magnitude slower and the
// model tests would crawl.
let cpuFlags = portable ? [] : ["-target-cpu", "native"]
let fastFlags: [SwiftSetting] = [
    .unsafeFlags(["-O"] + cpuFlags, .when(configuration: .debug)),
    .unsafeFlags(["-Ounchecked"] + cpuFlags, .when(configuration: .release)),
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

        // MARK: Protocol, engine, roles
        .target(name: "Wire"),
        .target(name: "Inference", swiftSettings: fastFlags),
        .target(name: "Expert", dependencies: ["Wire", "ZeroMQ", "Inference", "ProcessSupport"]),
        .target(name: "Preference", dependencies: ["Inference"], swiftSettings: fastFlags),
        .target(name: "Coordinator", dependencies: ["Wire", "ZeroMQ", "Inference", "Preference", "ProcessSupport"]),
        .target(name: "ProcessSupport"),
        .target(name: "CLI", dependencies: ["ProcessSupport"]),
        .target(name: "Training", dependencies: ["Inference", "Preference", "Coordinator"], swiftSettings: fastFlags),

        // MARK: Executables
        .executableTarget(
            name: "mope",
            dependencies: [
                "CLI", "Wire", "ZeroMQ", "Inference", "Expert", "Coordinator", "Preference", "Training",
                "ProcessSupport",
            ]
        ),
        // A tiny peer process for the ZeroMQ binding's multi-process tests.
        .executableTarget(name: "mope-zmq-peer", dependencies: ["ZeroMQ"]),

        // MARK: Tests
        .testTarget(name: "WireTests", dependencies: ["Wire"]),
        .testTarget(name: "HTTPServerTests", dependencies: ["HTTPServer"]),
        .testTarget(name: "OpenAIAPITests", dependencies: ["OpenAIAPI", "Wire", "Preference"]),
        // Helpers shared by the test targets that run the package's executables as child processes.
        .target(name: "TestKit", path: "Tests/TestKit"),
        .testTarget(name: "ZeroMQTests", dependencies: ["ZeroMQ", "mope-zmq-peer", "TestKit"]),
        .testTarget(name: "InferenceTests", dependencies: ["Inference"]),
        .testTarget(name: "ExpertTests", dependencies: ["Expert", "Wire", "Inference"]),
        .testTarget(name: "CoordinatorTests", dependencies: ["Coordinator", "Wire", "Preference", "Inference"]),
        .testTarget(name: "PreferenceTests", dependencies: ["Preference", "Inference"]),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "Wire"]),
        .testTarget(name: "CLITests", dependencies: ["CLI"]),
        .testTarget(name: "ProcessSupportTests", dependencies: ["ProcessSupport"]),
        .testTarget(name: "ClusterTests", dependencies: [
            "mope", "Wire", "ZeroMQ", "Coordinator", "Preference", "Inference", "Expert", "TestKit",
        ]),
        .testTarget(name: "BenchEngineTests", dependencies: ["mope", "Inference", "CLI"]),
    ]
)
