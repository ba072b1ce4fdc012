import Decoding

// The Inference module has its own `TokenSampler` (over logits); this file sees only the Coordinator's one, the
// sampler the cluster uses on merged distributions.

/// The coordinator's sampler over merged distributions.
typealias MergedSampler = Decoding.TokenSampler
