#!/usr/bin/env python3
"""Writes the tiny random-weight GGUF models the tests use into Tests/Fixtures/.

Every model shares one small byte-level BPE vocabulary trained on the prompts in data/*.json
(or $MOPE_DATA) and Configs/preference_dimensions.json, with the special tokens <|endoftext|> (0), <|im_start|> (1), <|im_end|> (2) and the
SmolLM2 ChatML chat template. Output is deterministic: the same inputs give byte-identical files.

    python3 Scripts/make-test-models.py [--template-from models/SmolLM2-135M-Instruct.Q4_1.gguf]

Needs the PyPI packages gguf, numpy and tokenizers.
"""

import argparse
import glob
import json
import os
import sys

import numpy as np
import gguf
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "Tests", "Fixtures")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
VOCAB_SIZE = 448

# Shape shared by every tiny model.
DIM, LAYERS, HEADS, KV_HEADS, FFN, CTX = 64, 2, 4, 2, 128, 256

# The SmolLM2 template, used when no real model file is at hand to copy it from.
FALLBACK_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def collect_text(data_dir):
    """Every string value in the JSON files of data_dir and in Configs/preference_dimensions.json (unless data_dir
    has its own), in the order of their file names."""
    texts = []

    def walk(v):
        if isinstance(v, str):
            texts.append(v)
        elif isinstance(v, list):
            for x in v:
                walk(x)
        elif isinstance(v, dict):
            for k in sorted(v):
                walk(v[k])

    paths = glob.glob(os.path.join(data_dir, "*.json"))
    dimensions = os.path.join(ROOT, "Configs", "preference_dimensions.json")
    if "preference_dimensions.json" not in {os.path.basename(p) for p in paths}:
        paths.append(dimensions)
    for path in sorted(paths, key=os.path.basename):
        with open(path, encoding="utf-8") as f:
            walk(json.load(f))
    if not texts:
        sys.exit(f"no JSON text found in {data_dir}")
    return texts


def train_tokenizer(texts):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    spec = json.loads(tok.to_str())
    vocab = spec["model"]["vocab"]
    tokens = [None] * len(vocab)
    for text, i in vocab.items():
        tokens[i] = text
    assert all(t is not None for t in tokens)
    assert tokens[:3] == SPECIALS, tokens[:3]
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    return tokens, merges


def chat_template(path):
    if path and os.path.exists(path):
        field = gguf.GGUFReader(path).fields["tokenizer.chat_template"]
        return bytes(field.parts[field.data[0]]).decode("utf-8")
    return FALLBACK_TEMPLATE


def matrix(rng, rows, cols, scale):
    return (rng.standard_normal((rows, cols)) * scale / np.sqrt(cols)).astype(np.float32)


def add_matrix(writer, name, w, qtype):
    if qtype == gguf.GGMLQuantizationType.F32:
        writer.add_tensor(name, w)
    else:
        writer.add_tensor(name, gguf.quants.quantize(w, qtype), raw_dtype=qtype)


def write_model(name, arch, seed, tokens, merges, template, embd_type, mat_type, tied=True, bias=False):
    rng = np.random.default_rng(seed)
    path = os.path.join(FIXTURES, name)
    w = gguf.GGUFWriter(path, arch)
    w.add_name(f"mope tiny test model {name}")
    w.add_block_count(LAYERS)
    w.add_context_length(CTX)
    w.add_embedding_length(DIM)
    w.add_feed_forward_length(FFN)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(DIM // HEADS)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(tokens)
    w.add_token_types([3 if i < len(SPECIALS) else 1 for i in range(len(tokens))])
    w.add_token_merges(merges)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_pad_token_id(2)
    w.add_add_bos_token(False)
    w.add_chat_template(template)

    vocab, head_dim = len(tokens), DIM // HEADS
    q_width, kv_width = HEADS * head_dim, KV_HEADS * head_dim

    def norm(n):
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    add_matrix(w, "token_embd.weight", (rng.standard_normal((vocab, DIM)) * 0.3).astype(np.float32), embd_type)
    for n in range(LAYERS):
        p = f"blk.{n}."
        w.add_tensor(p + "attn_norm.weight", norm(DIM))
        add_matrix(w, p + "attn_q.weight", matrix(rng, q_width, DIM, 1.5), mat_type)
        add_matrix(w, p + "attn_k.weight", matrix(rng, kv_width, DIM, 1.5), mat_type)
        add_matrix(w, p + "attn_v.weight", matrix(rng, kv_width, DIM, 1.0), mat_type)
        if bias:
            w.add_tensor(p + "attn_q.bias", (0.1 * rng.standard_normal(q_width)).astype(np.float32))
            w.add_tensor(p + "attn_k.bias", (0.1 * rng.standard_normal(kv_width)).astype(np.float32))
            w.add_tensor(p + "attn_v.bias", (0.1 * rng.standard_normal(kv_width)).astype(np.float32))
        add_matrix(w, p + "attn_output.weight", matrix(rng, DIM, q_width, 2.0), mat_type)
        w.add_tensor(p + "ffn_norm.weight", norm(DIM))
        add_matrix(w, p + "ffn_gate.weight", matrix(rng, FFN, DIM, 1.0), mat_type)
        add_matrix(w, p + "ffn_up.weight", matrix(rng, FFN, DIM, 1.0), mat_type)
        add_matrix(w, p + "ffn_down.weight", matrix(rng, DIM, FFN, 3.0), mat_type)
    w.add_tensor("output_norm.weight", norm(DIM))
    if not tied:
        add_matrix(w, "output.weight", matrix(rng, vocab, DIM, 4.0), mat_type)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"{path}: {os.path.getsize(path)} bytes")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("MOPE_DATA", os.path.join(ROOT, "data")))
    default_model = os.environ.get("MOPE_MODEL", os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--template-from", default=default_model)
    args = ap.parse_args()

    os.makedirs(FIXTURES, exist_ok=True)
    tokens, merges = train_tokenizer(collect_text(args.data))
    template = chat_template(args.template_from)
    Q = gguf.GGMLQuantizationType
    write_model("tiny-a.gguf", "llama", 101, tokens, merges, template, Q.Q8_0, Q.Q4_1)
    write_model("tiny-b.gguf", "llama", 202, tokens, merges, template, Q.Q8_0, Q.Q4_1)
    write_model("tiny-c.gguf", "llama", 303, tokens, merges, template, Q.Q8_0, Q.Q8_0)
    write_model("tiny-f32.gguf", "llama", 404, tokens, merges, template, Q.F32, Q.F32)
    write_model("tiny-q4_0.gguf", "llama", 505, tokens, merges, template, Q.Q4_0, Q.Q4_0, tied=False)
    write_model("tiny-qwen2.gguf", "qwen2", 606, tokens, merges, template, Q.Q8_0, Q.Q8_0, bias=True)


if __name__ == "__main__":
    main()
