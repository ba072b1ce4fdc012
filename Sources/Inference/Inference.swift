/// The inference engine: GGUF model files, quantised kernels, the Llama-family forward pass,
/// KV caches, tokenizers, chat templates and top-k extraction.
///
/// The front type is `LanguageModel`: it opens a GGUF file (`GGUFFile`, memory-mapped), reads its
/// `LlamaConfiguration` and `TokenizerVocabulary`, and runs `forward` over a batch of sessions, each with
/// its own `KVCache`. All new tokens of a batch are stacked into one activation matrix so every weight
/// matrix is read once per call (`Kernels.matmul` with `batch` = the number of new tokens); attention runs
/// per session and head on the `ThreadPool`. `TopK` turns a logits row into the top-k log-probabilities
/// and the tail mass that experts report to the coordinator. A worker checks that experts agree with
/// `LanguageModel.fingerprint` (same model file) and `LanguageModel.vocabularyHash` (same tokens).
public enum Inference {}
