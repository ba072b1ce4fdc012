// Writes a seed corpus of valid frames, one file per message, into the directory given as the argument.
// Compiled together with Sources/Wire/*.swift by Scripts/fuzz-wire.sh.
import Foundation

let arguments = CommandLine.arguments
guard arguments.count == 2 else {
    FileHandle.standardError.write(Data("usage: wire-seeds <directory>\n".utf8))
    exit(2)
}
let directory = URL(fileURLWithPath: arguments[1], isDirectory: true)

let unicode = "héllo, 世界 🌍\u{0}"
let ids64 = (0..<64).map { UInt32($0 * 131) }
let logProbs64 = (0..<64).map { $0 == 63 ? -Float.infinity : -Float($0) * 0.1 }
let seeds: [Message] = [
    .hello(Hello(
        workerID: "w-1", expert: "concise", modelFingerprint: "sha256:ab", vocabSize: 49_152, vocabHash: 0xDEAD_BEEF,
        eosTokenIDs: [2, 0], contextLimit: 2048, sessionCapacity: 16
    )),
    .welcome(Welcome(heartbeatIntervalMs: 1000)),
    .reject(Reject(reason: "vocabulary hash differs")),
    .heartbeat,
    .goodbye(Goodbye(reason: "SIGTERM")),
    .open(Open(
        session: 42, request: .chat([ChatTurn(role: "system", content: ""), ChatTurn(role: "user", content: unicode)]),
        topK: 64, maxNewTokens: 128
    )),
    .open(Open(session: 7, request: .raw("The capital of France is"), topK: 8, maxNewTokens: 4)),
    .step(Step(session: 42, step: 1, token: 1234)),
    .replay(Replay(session: 42, request: .raw("x"), topK: 64, maxNewTokens: 128, tokens: [1, 2, 3, 4, 5])),
    .dist(Dist(
        session: 42, step: 3, ids: ids64, logProbs: logProbs64, tailMass: 0.125,
        timing: WorkerTiming(queueMicros: 12, computeMicros: 3456, batchSize: 4)
    )),
    .dist(Dist(session: 1, step: 1, ids: [9], logProbs: [-0.0], tailMass: 1)),
    .close(Close(session: 42)),
    .error(ErrorReply(session: 42, code: .desync, text: "expected step 4")),
    .generate(Generate(
        request: 9, prompt: unicode, preference: "concise, friendly", maxNewTokens: 64,
        sampling: SamplingRequest(temperature: 0.7, topP: 0.9, topK: 40, seed: 1), merge: .logit,
        stop: ["\n\n", "</s>"], trace: true
    )),
    .token(TokenEvent(
        request: 9, step: 2, token: 77, text: "wor",
        experts: [
            ExpertTrace(expert: "concise", weight: 0.75, ids: [1, 2], logProbs: [-0.1, -2.5]),
            ExpertTrace(expert: "friendly", weight: 0.25, ids: [], logProbs: []),
        ]
    )),
    .done(Done(
        request: 9, finish: .stopString, tokens: 12, text: "Paris", lostExperts: ["humor"], failovers: 2,
        elapsedMicros: 987_654
    )),
    .status(StatusRequest(request: 5)),
    .statusReply(StatusReply(request: 5, status: ClusterStatus(
        draining: false, sessionsRunning: 3, sessionsQueued: 0,
        experts: [
            ExpertStatus(name: "concise", replicas: 2, workers: [
                WorkerStatus(id: "concise-1", sessions: 2, capacity: 8, draining: false, registrations: 1),
                WorkerStatus(id: "concise-2", sessions: 0, capacity: 8, draining: true, registrations: 2),
            ]),
            ExpertStatus(name: "friendly", replicas: 1, workers: []),
        ]
    ))),
]

do {
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    for (index, message) in seeds.enumerated() {
        let url = directory.appendingPathComponent("seed-\(index)-\(message.kind)")
        try Data(message.encoded()).write(to: url)
    }
} catch {
    FileHandle.standardError.write(Data("wire-seeds: \(error)\n".utf8))
    exit(1)
}
