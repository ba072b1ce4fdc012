import Inference

/// The tokenizer's streaming decoder as a `TokenTextDecoder` (it never splits a UTF-8 character; control tokens
/// decode to nothing when it skips them): the text of `mope run`, training's stop strings and the coordinator's
/// token events.
extension StreamingDecoder: TokenTextDecoder {
    /// The text completed by appending `token`.
    public mutating func decode(_ token: UInt32) -> String { push(Int32(bitPattern: token)) }
}
