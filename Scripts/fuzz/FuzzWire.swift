// libFuzzer entry point for the Wire codec, compiled together with Sources/Wire/*.swift by
// Scripts/fuzz-wire.sh. A crash (or a sanitizer report) is a bug in the codec.
//
// Properties checked on every input:
// - decoding never traps, overflows, reads out of bounds or leaks (AddressSanitizer);
// - a frame that decodes re-encodes to exactly the same bytes (the encoding is canonical), through every
//   encoder entry point, and the re-encoded frame decodes to an equal message (decode → encode → decode);
// - `WireCodec.kind(of:)` agrees with the decoded message; every error has a description.

/// Stops the fuzzer with a finding; libFuzzer saves the input that caused it.
private func finding(_ what: String) -> Never {
    fatalError("wire fuzz finding: \(what)")
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzWireFrame(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: size == 0 ? nil : data, count: size)
    let message: Message
    do throws(WireError) {
        message = try WireCodec.decode(bytes)
    } catch {
        if error.description.isEmpty { finding("empty description for \(error)") }
        return 0
    }

    let size = WireCodec.encodedSize(of: message)
    let encoded = WireCodec.encode(message)
    if encoded.count != size { finding("encodedSize \(size) but encode wrote \(encoded.count) bytes") }
    if !encoded.elementsEqual(bytes) { finding("\(message.kind) re-encoded to different bytes") }

    var reused: [UInt8] = [0xAA]
    WireCodec.encode(message, into: &reused)
    if reused != encoded { finding("encode(_:into:) differs from encode(_:)") }

    do throws(WireError) {
        let again = try WireCodec.decode(encoded)
        // NaN fields (sampling parameters, weights) are never equal to themselves; compare bytes then.
        if again != message && again.encoded() != encoded { finding("decode → encode → decode is unstable") }
        if try WireCodec.kind(of: bytes) != message.kind { finding("kind(of:) disagrees with decode") }
    } catch {
        finding("a re-encoded \(message.kind) frame fails to decode: \(error)")
    }
    return 0
}
