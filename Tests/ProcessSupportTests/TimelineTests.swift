import Foundation
import ProcessSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite(.serialized) struct TimelineTests {
    @Test("events go to ROLE-PID.tsv as tab-separated lines with rising monotonic times; none after stop")
    func writesEvents() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("timeline-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        #expect(!Timeline.isOn)
        Timeline.record("ignored", worker: "w", session: 1, step: 1)  // off: writes nothing anywhere

        let path = try #require(Timeline.start(role: "worker concise/1", directory: directory.path))
        #expect(path == directory.appendingPathComponent("worker_concise_1-\(getpid()).tsv").path)
        #expect(Timeline.isOn)
        Timeline.record("step-sent", worker: "timeline-test", session: 7, step: 3)
        Timeline.record("dist-read", worker: "timeline-test", session: 7, step: 3)
        Timeline.stop()
        Timeline.record("late", worker: "timeline-test", session: 7, step: 4)
        #expect(!Timeline.isOn)

        // Other tests in this process may run a coordinator or a worker meanwhile, whose events land here too.
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
            .filter { $0.contains("\ttimeline-test\t") }
        #expect(lines.count == 2)
        let fields = lines.map { $0.split(separator: "\t", omittingEmptySubsequences: false).map(String.init) }
        #expect(fields.map { Array($0.dropFirst()) } == [["step-sent", "timeline-test", "7", "3"],
                                                          ["dist-read", "timeline-test", "7", "3"]])
        let times = try fields.map { try #require(UInt64($0[0])) }
        #expect(times[0] <= times[1])
    }

    @Test("an unwritable directory leaves the timeline off")
    func unwritable() {
        #expect(Timeline.start(role: "coordinator", directory: "/nonexistent/timeline") == nil)
        #expect(Timeline.start(role: "coordinator", directory: "") == nil)
        #expect(!Timeline.isOn)
    }
}
