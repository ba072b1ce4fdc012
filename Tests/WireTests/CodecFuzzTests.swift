import Testing
import Wire

/// Random and mutated frames, in-process: decoding never traps, and whatever decodes re-encodes to the
/// very bytes it came from (the encoding is canonical).
@Suite struct CodecFuzzTests {
    /// Counts that sit at the edges of the limits, spliced into length fields.
    static let interesting: [UInt32] = [
        0, 1, 2, 3, 4, 7, 8, 64, 255, 256, 4095, 4096, 4097, UInt32(WireLimits.maxStringBytes),
        UInt32(WireLimits.maxStringBytes + 1), UInt32(WireLimits.maxReplayTokens), 0x7FFF_FFFF, 0x8000_0000,
        0xFFFF_FFFE, 0xFFFF_FFFF,
    ]

    @Test("a million random and mutated frames decode or throw, and what decodes re-encodes to the input")
    func millionInputs() {
        var rng = SplitMix64(seed: 0x6D6F_7065)
        let seeds = Samples.small.map { $0.encoded() }
        var input: [UInt8] = []
        input.reserveCapacity(4096)
        var decoded = 0
        var reencoded: [UInt8] = []
        let iterations = 1_000_000
        for iteration in 0..<iterations {
            mutate(&input, seeds: seeds, iteration: iteration, rng: &rng)
            let result: Message? = input.withUnsafeBytes { buffer in
                do throws(WireError) { return try WireCodec.decode(buffer) } catch { return nil }
            }
            if let result {
                decoded += 1
                WireCodec.encode(result, into: &reencoded)
                if reencoded != input {
                    Issue.record("input \(iteration) decoded to \(result.kind) but re-encoded differently: \(input)")
                    return
                }
            }
        }
        // Mutations of valid frames reach deep: a good share of them still decode.
        #expect(decoded > iterations / 20)
    }

    /// Replaces `input` with a new test input: mostly a valid frame with a few mutations, sometimes noise.
    private func mutate(_ input: inout [UInt8], seeds: [[UInt8]], iteration: Int, rng: inout SplitMix64) {
        input.removeAll(keepingCapacity: true)
        if iteration % 16 == 0 {
            // Noise behind a valid header, so it reaches the field decoders.
            input.append(WireProtocol.version)
            input.append(Message.Kind.allCases[Int(rng.next() % UInt64(Message.Kind.allCases.count))].rawValue)
            for _ in 0..<Int(rng.next() % 48) { input.append(UInt8(truncatingIfNeeded: rng.next())) }
            return
        }
        input.append(contentsOf: seeds[Int(rng.next() % UInt64(seeds.count))])
        let mutations = 1 + Int(rng.next() % 3)
        for _ in 0..<mutations {
            let position = input.isEmpty ? 0 : Int(rng.next() % UInt64(input.count))
            switch rng.next() % 8 {
            case 0 where !input.isEmpty:
                input[position] ^= UInt8(1) << (rng.next() % 8)
            case 1 where !input.isEmpty:
                input[position] = UInt8(truncatingIfNeeded: rng.next())
            case 2:
                input.insert(UInt8(truncatingIfNeeded: rng.next()), at: position)
            case 3 where !input.isEmpty:
                input.remove(at: position)
            case 4:
                input.removeLast(Int(rng.next() % UInt64(input.count + 1)))
            case 5 where input.count >= 4:
                let value = Self.interesting[Int(rng.next() % UInt64(Self.interesting.count))]
                let at = Int(rng.next() % UInt64(input.count - 3))
                for byte in 0..<4 { input[at + byte] = UInt8(truncatingIfNeeded: value >> (8 * UInt32(byte))) }
            case 6:
                let other = seeds[Int(rng.next() % UInt64(seeds.count))]
                let from = Int(rng.next() % UInt64(other.count))
                input.removeLast(input.count - position)
                input.append(contentsOf: other[from...])
            default:
                if position > 1 { input[position] = input[position] == 0 ? 1 : 0 }
            }
        }
    }
}
