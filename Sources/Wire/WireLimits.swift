/// The largest frame, string and collection a decoder accepts.
///
/// Every length in a frame is checked against these limits, and against the bytes actually left in the
/// frame, before anything is allocated: a forged count can make `WireCodec.decode` throw, never allocate
/// gigabytes. The encoder does not enforce them; a sender that exceeds one produces a frame every peer
/// rejects with `WireError.oversized` or `WireError.countOverLimit`.
public struct WireLimits: Sendable {
    /// The largest frame accepted: 16 MiB (a replay of `maxReplayTokens` tokens fits in a quarter of it).
    public static let maxFrameBytes = 16 << 20
    /// The largest string accepted, in UTF-8 bytes: 1 MiB (prompts, chat turns, generated text, reasons).
    public static let maxStringBytes = 1 << 20
    /// The most top-k entries in a `dist` or an `ExpertTrace` (`ids` and `logProbs` each).
    public static let maxTopK = 4096
    /// The most tokens in a `replay`.
    public static let maxReplayTokens = 1 << 20
    /// The most turns in a chat request.
    public static let maxChatTurns = 4096
    /// The most experts in a traced `token` event, the most lost experts a `done` lists, and the most experts
    /// a `statusReply` lists.
    public static let maxExperts = 256
    /// The most end-of-sequence token ids a `hello` lists.
    public static let maxEOSTokens = 256
    /// The most stop strings a `generate` lists.
    public static let maxStopStrings = 256
    /// The most entries of a `generate`'s preference schedule.
    public static let maxScheduleEntries = 1024
    /// The most workers one expert of a `statusReply` lists.
    public static let maxStatusWorkers = 4096
}
