import Foundation

/// The files of a run's output directory, shared by `Trainer` and `ExpertTuner` (nil directory: a run that
/// writes nothing).
struct RunFiles {
    /// The output directory.
    let directory: String?

    /// DIR/name, or nil without a directory.
    func path(_ name: String) -> String? {
        directory.map { URL(fileURLWithPath: $0).appendingPathComponent(name).path }
    }

    /// Writes DIR/name atomically (a reader never sees half a checkpoint); nothing without a directory.
    func write(_ name: String, _ data: Data) throws(TrainingError) {
        guard let file = path(name) else { return }
        do {
            try data.write(to: URL(fileURLWithPath: file), options: .atomic)
        } catch {
            throw .io(path: file, reason: error.localizedDescription)
        }
    }
}
