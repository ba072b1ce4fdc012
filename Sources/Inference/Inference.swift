/// The inference engine: GGUF model files, quantised kernels, the Llama-family forward pass,
/// KV caches, tokenizers, chat templates and top-k extraction.
public enum Inference {}
