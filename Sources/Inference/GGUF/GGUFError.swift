/// Why a GGUF model file cannot be read or used.
///
/// Every case names what was wrong and where, so a user can tell a damaged or partial download from a
/// file of an unsupported kind. Reading a file never traps: each count and length in it is checked
/// against the bytes that are left before anything is allocated.
import CPUKernels

public enum GGUFError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The file could not be opened, inspected or mapped; `reason` is the system's error text.
    case unreadable(path: String, reason: String)
    /// The file ends in the middle of a structure: `needed` bytes were wanted at byte `offset`, but the
    /// file has `fileSize` bytes.
    case truncated(offset: Int, needed: Int, fileSize: Int)
    /// The first four bytes are not "GGUF"; `found` holds them as a little-endian number.
    case badMagic(found: UInt32)
    /// The format version is not one this reader understands (1, 2 and 3 are).
    case unsupportedVersion(UInt32)
    /// A metadata value has a type id that the format does not define.
    case unknownValueType(key: String, type: UInt32)
    /// A count or length in the file is larger than the file could hold (`what` says which).
    case implausibleCount(what: String, count: UInt64)
    /// A string in the file is not valid UTF-8.
    case invalidString(offset: Int)
    /// `general.alignment` is zero or not a power of two.
    case badAlignment(UInt64)
    /// A tensor's type id is not a GGML type this reader knows.
    case unknownTensorType(tensor: String, type: UInt32)
    /// A tensor's type is known, but the compute kernels cannot read it.
    case unsupportedTensorType(tensor: String, type: GGMLType)
    /// A tensor's data lies (partly) outside the file: data section offset `offset`, `size` bytes.
    case tensorOutOfBounds(tensor: String, offset: UInt64, size: UInt64, fileSize: Int)
    /// A tensor's offset is not a multiple of the file's alignment.
    case misalignedTensor(tensor: String, offset: UInt64, alignment: Int)
    /// Two tensors share one name.
    case duplicateTensor(String)
    /// A tensor the model needs is not in the file.
    case missingTensor(String)
    /// A metadata key the model needs is not in the file.
    case missingMetadata(key: String)
    /// A metadata key holds a value of another type (or out of the expected range) than the model needs.
    case wrongMetadataType(key: String, expected: String, found: String)
    /// A tensor's shape is invalid or does not fit the model.
    case badShape(tensor: String, shape: [Int], expected: String)

    /// The error in words, for logs and users.
    public var description: String {
        switch self {
        case .unreadable(let path, let reason):
            "cannot read model file \(path): \(reason)"
        case .truncated(let offset, let needed, let fileSize):
            "model file is truncated: \(needed) bytes needed at offset \(offset), but the file has \(fileSize) bytes "
                + "(incomplete download?)"
        case .badMagic(let found):
            "not a GGUF file: the first four bytes are 0x\(String(found, radix: 16)), expected \"GGUF\""
        case .unsupportedVersion(let v):
            "GGUF version \(v) is not supported (versions 1, 2 and 3 are)"
        case .unknownValueType(let key, let type):
            "metadata key \(key) has unknown value type \(type): the file is damaged or from a newer format"
        case .implausibleCount(let what, let count):
            "the file claims \(count) \(what), more than it could hold: the file is damaged"
        case .invalidString(let offset):
            "the string at offset \(offset) is not valid UTF-8: the file is damaged"
        case .badAlignment(let a):
            "general.alignment is \(a); it must be a positive power of two"
        case .unknownTensorType(let name, let type):
            "tensor \(name) has unknown type id \(type)"
        case .unsupportedTensorType(let name, let type):
            "tensor \(name) has type \(type.name), which this engine cannot compute with (supported: "
                + Kernels.supportedTypes.map(\.name).sorted().joined(separator: ", ") + "); use another quantisation"
        case .tensorOutOfBounds(let name, let offset, let size, let fileSize):
            "tensor \(name) (\(size) bytes at data offset \(offset)) lies past the end of the \(fileSize)-byte file "
                + "(incomplete download?)"
        case .misalignedTensor(let name, let offset, let alignment):
            "tensor \(name) starts at data offset \(offset), not a multiple of the alignment \(alignment)"
        case .duplicateTensor(let name):
            "tensor \(name) appears twice in the tensor table"
        case .missingTensor(let name):
            "the model file has no tensor \(name): it is not a complete model of the expected architecture"
        case .missingMetadata(let key):
            "the model file has no metadata key \(key)"
        case .wrongMetadataType(let key, let expected, let found):
            "metadata key \(key) holds \(found), expected \(expected)"
        case .badShape(let name, let shape, let expected):
            "tensor \(name) has shape \(shape), expected \(expected)"
        }
    }
}
