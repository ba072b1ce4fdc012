#!/usr/bin/env python3
"""An independent numpy forward pass of Llama-family GGUF models, to check the Swift engine against.

Weights come from the gguf package's own dequantisation (gguf.quants.dequantize); activations are float32
(attention softmax in float64). It handles the llama layout (RoPE on adjacent pairs) and the qwen2 layout
(Q/K/V biases, RoPE on split halves). It writes Tests/Fixtures/reference-*.json:

- reference-tiny.json: for each tiny model, a few token sequences and the full logits of the last position;
- reference-smollm2.json (when the real model is found): ChatML prompts' token ids and the top-20 ids and
  logits at the last position.

    python3 Scripts/reference-forward.py [--model models/SmolLM2-135M-Instruct.Q4_1.gguf]
"""

import argparse
import json
import os

import numpy as np
import gguf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "Tests", "Fixtures")
TINY = ["tiny-a.gguf", "tiny-b.gguf", "tiny-c.gguf", "tiny-f32.gguf", "tiny-q4_0.gguf", "tiny-qwen2.gguf"]
TINY_SEQUENCES = [[1], [1, 57, 300, 12, 99, 2, 1, 400], [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]]
SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "List three uses of a paperclip.",
    "Explain why the sky is blue in one sentence.",
]


def field_value(reader, key):
    f = reader.fields.get(key)
    if f is None:
        return None
    if f.types[0] == gguf.GGUFValueType.STRING:
        return bytes(f.parts[f.data[0]]).decode("utf-8")
    if f.types[0] == gguf.GGUFValueType.ARRAY:
        if f.types[1] == gguf.GGUFValueType.STRING:
            return [bytes(f.parts[i]).decode("utf-8") for i in f.data]
        return [f.parts[i][0].item() for i in f.data]
    return f.parts[f.data[0]][0].item()


def q8_blocks(x):
    """x rounded as llama.cpp's 8-bit activation blocks do: per 32 values, scale max|x|/127, round to nearest."""
    shape = x.shape
    b = x.reshape(-1, 32).astype(np.float32)
    d = np.abs(b).max(axis=1, keepdims=True) / 127
    q = np.trunc(b / np.where(d == 0, 1, d) + np.copysign(0.5, b))  # round half away from zero, like roundf
    return (q * d).astype(np.float32).reshape(shape)


class Model:
    def __init__(self, path, q8_activations=False):
        r = gguf.GGUFReader(path)
        self.q8 = q8_activations
        self.types = {t.name: t.tensor_type for t in r.tensors}
        self.reader = r
        arch = field_value(r, "general.architecture")
        assert arch in ("llama", "qwen2"), arch
        self.arch = arch
        g = lambda k, d=None: field_value(r, f"{arch}.{k}") if field_value(r, f"{arch}.{k}") is not None else d
        self.layers = g("block_count")
        self.dim = g("embedding_length")
        self.heads = g("attention.head_count")
        self.kv_heads = g("attention.head_count_kv", self.heads)
        self.head_dim = self.dim // self.heads
        self.rope_dim = g("rope.dimension_count", self.head_dim)
        self.base = g("rope.freq_base", 10000.0)
        self.eps = g("attention.layer_norm_rms_epsilon")
        self.w = {}
        for t in r.tensors:
            a = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
            shape = [int(x) for x in reversed(t.shape)]  # numpy order: rows, columns
            self.w[t.name] = a.reshape(shape)
        self.out_name = "output.weight" if "output.weight" in self.w else "token_embd.weight"
        self.out = self.w[self.out_name]

    def mm(self, x, name):
        """x @ W.T, with x first rounded to 8-bit blocks for quantised weights when emulating llama.cpp."""
        w = self.w[name]
        quantised = self.types[name] not in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16)
        if self.q8 and quantised:
            x = q8_blocks(x)
        return x @ w.T

    def rms(self, x, weight):
        return (x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps)) * weight

    def rope(self, x, positions):
        # x: [T, heads, head_dim]
        half = self.rope_dim // 2
        inv = self.base ** (-2.0 * np.arange(half, dtype=np.float64) / self.rope_dim)
        ang = positions[:, None].astype(np.float64) * inv[None, :]
        cos = np.cos(ang).astype(np.float32)[:, None, :]
        sin = np.sin(ang).astype(np.float32)[:, None, :]
        y = x.copy()
        if self.arch == "llama":
            a, b = x[..., 0:2 * half:2], x[..., 1:2 * half:2]
            y[..., 0:2 * half:2] = a * cos - b * sin
            y[..., 1:2 * half:2] = a * sin + b * cos
        else:
            a, b = x[..., :half], x[..., half:2 * half]
            y[..., :half] = a * cos - b * sin
            y[..., half:2 * half] = a * sin + b * cos
        return y

    def last_logits(self, tokens):
        T = len(tokens)
        pos = np.arange(T)
        x = self.w["token_embd.weight"][np.array(tokens)]
        group = self.heads // self.kv_heads
        mask = np.triu(np.full((T, T), -np.inf), k=1)
        for n in range(self.layers):
            p = f"blk.{n}."
            h = self.rms(x, self.w[p + "attn_norm.weight"])
            q = self.mm(h, p + "attn_q.weight")
            k = self.mm(h, p + "attn_k.weight")
            v = self.mm(h, p + "attn_v.weight")
            if self.arch == "qwen2":
                q = q + self.w[p + "attn_q.bias"]
                k = k + self.w[p + "attn_k.bias"]
                v = v + self.w[p + "attn_v.bias"]
            q = self.rope(q.reshape(T, self.heads, self.head_dim), pos)
            k = self.rope(k.reshape(T, self.kv_heads, self.head_dim), pos)
            v = v.reshape(T, self.kv_heads, self.head_dim)
            att = np.zeros((T, self.heads, self.head_dim), dtype=np.float32)
            for hd in range(self.heads):
                kh, vh = k[:, hd // group], v[:, hd // group]
                s = (q[:, hd].astype(np.float64) @ kh.T.astype(np.float64)) / np.sqrt(self.head_dim) + mask
                s = np.exp(s - s.max(axis=-1, keepdims=True))
                s /= s.sum(axis=-1, keepdims=True)
                att[:, hd] = (s @ vh.astype(np.float64)).astype(np.float32)
            x = x + self.mm(att.reshape(T, -1), p + "attn_output.weight")
            h = self.rms(x, self.w[p + "ffn_norm.weight"])
            gt = self.mm(h, p + "ffn_gate.weight")
            up = self.mm(h, p + "ffn_up.weight")
            x = x + self.mm((gt / (1 + np.exp(-gt))) * up, p + "ffn_down.weight")
        last = self.rms(x[-1:], self.w["output_norm.weight"])
        return self.mm(last, self.out_name)[0]


def chatml_ids(reader, prompt):
    """Token ids of the prompt under the SmolLM2 ChatML template, from the file's own vocabulary and merges."""
    from tokenizers import Tokenizer, models, pre_tokenizers, AddedToken

    tokens = field_value(reader, "tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ", 1)) for m in field_value(reader, "tokenizer.ggml.merges")]
    types = field_value(reader, "tokenizer.ggml.token_type")
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.add_special_tokens([AddedToken(t, special=True) for t, ty in zip(tokens, types) if ty == 3])
    text = (f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{prompt}<|im_end|>\n"
            f"<|im_start|>assistant\n")
    return tok.encode(text, add_special_tokens=False).ids


def centered_max_diff(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs((a - a.mean()) - (b - b.mean())).max())


def compare_q8(model_path):
    """How far 8-bit activation rounding alone moves logits from the f32 fixtures (mean-centred)."""
    with open(os.path.join(FIXTURES, "reference-tiny.json")) as f:
        tiny = json.load(f)
    for name in TINY:
        m = Model(os.path.join(FIXTURES, name), q8_activations=True)
        diffs = [centered_max_diff(m.last_logits(c["tokens"]), c["logits"]) for c in tiny[name]]
        print(f"{name}: centred max |dlogit| {max(diffs):.4f}")
    path = os.path.join(FIXTURES, "reference-smollm2.json")
    if os.path.exists(model_path) and os.path.exists(path):
        m = Model(model_path, q8_activations=True)
        with open(path) as f:
            for c in json.load(f):
                logits = m.last_logits(c["tokens"])
                d = centered_max_diff([logits[i] for i in c["top_ids"]], c["top_logits"])
                print(f"{c['prompt']!r}: centred max |dlogit| over the top 20 {d:.4f}, "
                      f"top-1 {int(np.argmax(logits))} (f32 {c['top_ids'][0]})")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_model = os.environ.get("MOPE_MODEL", os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--model", default=default_model)
    ap.add_argument("--q8-activations", action="store_true",
                    help="compare a llama.cpp-style run (activations rounded to 8-bit blocks before quantised "
                         "matmuls) with the stored f32 fixtures, and write nothing")
    args = ap.parse_args()
    if args.q8_activations:
        compare_q8(args.model)
        return

    tiny = {}
    for name in TINY:
        m = Model(os.path.join(FIXTURES, name))
        tiny[name] = [
            {"tokens": seq, "logits": [round(float(v), 6) for v in m.last_logits(seq)]} for seq in TINY_SEQUENCES
        ]
        greedy = [int(np.argmax(m.last_logits(seq))) for seq in TINY_SEQUENCES]
        print(f"{name}: argmax per sequence {greedy}")
    with open(os.path.join(FIXTURES, "reference-tiny.json"), "w") as f:
        json.dump(tiny, f, separators=(",", ":"))

    if os.path.exists(args.model):
        m = Model(args.model)
        cases = []
        for prompt in PROMPTS:
            ids = chatml_ids(m.reader, prompt)
            logits = m.last_logits(ids)
            top = np.argsort(-logits, kind="stable")[:20]
            cases.append({"prompt": prompt, "tokens": ids, "top_ids": [int(i) for i in top],
                          "top_logits": [round(float(logits[i]), 5) for i in top]})
            print(f"{prompt!r}: {len(ids)} tokens, top-3 {[int(i) for i in top[:3]]}, "
                  f"margin {logits[top[0]] - logits[top[1]]:.3f}")
        with open(os.path.join(FIXTURES, "reference-smollm2.json"), "w") as f:
            json.dump(cases, f, indent=1)
    else:
        print(f"{args.model} not found: skipping the real model's reference")


if __name__ == "__main__":
    main()
