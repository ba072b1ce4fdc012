// libFuzzer entry point for the GGUF reader and the tokenizer loader, compiled together with the Inference
// sources by Scripts/fuzz-gguf.sh. A crash (or a sanitizer report) is a bug in the reader or the loader.
//
// Every input is read as a GGUF file; what opens is then used the way the engine uses a model file:
// - every metadata value through every typed accessor, every tensor's table entry, small tensors dequantised,
//   the fingerprint;
// - the tokenizer vocabulary read from the metadata, the tokenizer built from it, text encoded (plain and as
//   template segments) and ids decoded, whole and streaming; the chat template recognised and rendered.
// Properties checked beyond "never traps, never reads out of bounds": every error has a description, every id
// the tokenizer produces lies inside its vocabulary, a control token appears in an encoding only where the
// prompt's markup spelled one.

/// Stops the fuzzer with a finding; libFuzzer saves the input that caused it.
private func finding(_ what: String) -> Never {
    fatalError("gguf fuzz finding: \(what)")
}

private func check(_ error: some Error & CustomStringConvertible) {
    if error.description.isEmpty { finding("empty description for \(error)") }
}

private let sampleTexts = [
    "Hello, world! 123 héllo 世界 🌍",
    " leading  spaces\n\ttabs and\r\nnewlines  ",
    "<|im_start|>user\nhi<|im_end|><s></s><unk>",
]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzGGUF(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size))
    let file: GGUFFile
    do throws(GGUFError) {
        file = try GGUFFile(bytes: bytes)
    } catch {
        check(error)
        return 0
    }
    exerciseFile(file)
    let vocabulary: TokenizerVocabulary
    do throws(GGUFError) {
        vocabulary = try TokenizerVocabulary(gguf: file)
    } catch {
        check(error)
        return 0
    }
    _ = vocabulary.checkedHash
    exerciseTemplate(vocabulary)
    let tokenizer: any Tokenizer
    do throws(TokenizerError) {
        tokenizer = try makeTokenizer(vocabulary)
    } catch {
        check(error)
        return 0
    }
    exerciseTokenizer(tokenizer, vocabulary)
    return 0
}

private func exerciseFile(_ file: GGUFFile) {
    _ = file.fingerprint
    for key in file.metadataKeys {
        guard let value = file.value(key) else { finding("metadata key \(key) listed but absent") }
        _ = value.typeDescription
        _ = value.intValue
        _ = value.floatValue
        do throws(GGUFError) { _ = try file.string(key) } catch { check(error) }
        do throws(GGUFError) { _ = try file.int(key) } catch { check(error) }
        do throws(GGUFError) { _ = try file.float(key) } catch { check(error) }
        do throws(GGUFError) { _ = try file.bool(key) } catch { check(error) }
        do throws(GGUFError) { _ = try file.strings(key) } catch { check(error) }
        do throws(GGUFError) { _ = try file.int32s(key) } catch { check(error) }
        do throws(GGUFError) { _ = try file.floatArray(key) } catch { check(error) }
    }
    for info in file.tensors {
        guard file.tensorInfo(info.name) == info else { finding("tensor \(info.name) not found by name") }
        guard info.offset >= 0, info.byteCount >= 0,
              file.dataOffset + info.offset + info.byteCount <= file.fileSize
        else { finding("tensor \(info.name) extends outside the file") }
        guard info.elementCount <= 1 << 16 else { continue }
        do throws(GGUFError) {
            let values = try file.floats(info.name)
            if values.count != info.elementCount { finding("floats(\(info.name)) has \(values.count) values") }
        } catch { check(error) }
        do throws(GGUFError) { _ = try file.matrix(info.name) } catch { check(error) }
    }
}

private func exerciseTemplate(_ vocabulary: TokenizerVocabulary) {
    let template: ChatTemplate
    do throws(TokenizerError) {
        template = try ChatTemplate(vocabulary: vocabulary)
    } catch {
        check(error)
        return
    }
    let messages = [ChatMessage(role: "system", content: sampleTexts[2]), ChatMessage(role: "user", content: "hi")]
    do throws(TokenizerError) {
        let segments = try template.segments(messages, addGenerationPrompt: true)
        if segments.joinedText != (try template.render(messages, addGenerationPrompt: true)) {
            finding("render differs from the joined segments")
        }
    } catch {
        check(error)
    }
}

private func exerciseTokenizer(_ tokenizer: any Tokenizer, _ vocabulary: TokenizerVocabulary) {
    let size = tokenizer.vocabSize
    if size != vocabulary.tokens.count { finding("vocabSize \(size) for \(vocabulary.tokens.count) tokens") }
    func valid(_ ids: [Int32], _ what: String) {
        if let bad = ids.first(where: { $0 < 0 || Int($0) >= size }) {
            finding("\(what) produced id \(bad) of \(size)")
        }
    }
    valid(tokenizer.eosTokenIDs, "eosTokenIDs")
    if let bos = tokenizer.bosTokenID { valid([bos], "bosTokenID") }
    // A few control and user-defined token texts of this vocabulary, to put in prompts.
    var specials: [String] = []
    for (id, type) in vocabulary.tokenTypes.enumerated() where type == 3 || type == 4 {
        if specials.count == 4 { break }
        specials.append(vocabulary.tokens[id])
    }
    let spelled = specials.joined()
    for text in sampleTexts + [spelled, vocabulary.tokens.prefix(8).joined(separator: " ")] {
        let plain = tokenizer.encode(text, parseSpecial: false)
        valid(plain, "encode(parseSpecial: false)")
        let parsed = tokenizer.encode(text, parseSpecial: true)
        valid(parsed, "encode(parseSpecial: true)")
        let asContent = tokenizer.encode([.markup(text), .text(spelled + text), .markup("")])
        valid(asContent, "encode(segments)")
        // Content never contributes a control token: the markup alone accounts for every one.
        let controls = asContent.filter { tokenizer.tokenKind($0) == .control }
        let markupControls = tokenizer.encode(text, parseSpecial: true).filter { tokenizer.tokenKind($0) == .control }
        let bos = tokenizer.addsBOS ? tokenizer.bosTokenID.map { [$0] } ?? [] : []
        if controls.count > markupControls.count + bos.count {
            finding("content added control tokens: \(controls) for markup \(markupControls)")
        }
        _ = tokenizer.decode(parsed)
        _ = tokenizer.decode(plain, skipControlTokens: true)
        var streaming = StreamingDecoder(tokenizer: tokenizer, skipControlTokens: true)
        for id in parsed { _ = streaming.push(id) }
        _ = streaming.finish()
    }
    let edges: [Int32] = [-1, 0, Int32(clamping: size - 1), Int32(clamping: size), Int32.max, Int32.min]
    _ = tokenizer.decode(edges)
    for id in edges {
        _ = tokenizer.tokenBytes(id)
        _ = tokenizer.tokenKind(id)
    }
}

extension TokenizerVocabulary {
    /// The hash, computed (it walks every token).
    fileprivate var checkedHash: String {
        let hash = vocabularyHash
        if hash.utf8.count != 16 { finding("vocabulary hash \(hash) is not 16 hex digits") }
        return hash
    }
}
