#!/usr/bin/env python3
"""Converts a PEFT LoRA adapter of a Llama-family model (adapter_config.json + adapter_model.safetensors) into
the GGUF adapter layout that mope's --lora and llama.cpp's --lora read.

  Scripts/lora-to-gguf.py ADAPTER_DIR BASE.gguf OUT.gguf [--type f16|f32]

Names: base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight -> blk.N.attn_q.weight.lora_a, and so
on for k, v, o, gate, up and down. lora_A (rank x in) is stored as numpy (rank, in) = GGUF [in, rank], lora_B
(out x rank) as (out, rank) = GGUF [rank, out]. GGUF files of the llama architecture keep the rows of the query
and key projections in the order of llama.cpp's rotary embedding (the pairs of each head interleaved), while
Hugging Face checkpoints split each head in halves; the rows of lora_B of q_proj and k_proj are permuted the
same way the base weights were. adapter.lora.alpha is the adapter's lora_alpha (so the scale is alpha / rank).
"""
import argparse
import json
import os
import re
import sys

import numpy as np
import gguf

NAMES = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
KEY = re.compile(r"^(?:base_model\.model\.)?model\.layers\.(\d+)\.(.+)\.lora_([AB])(?:\.default)?\.weight$")


def field(reader, key):
    f = reader.fields.get(key)
    if f is None:
        return None
    value = f.parts[f.data[0]]
    if f.types and f.types[0] == gguf.GGUFValueType.STRING:
        return bytes(value).decode()
    return value.tolist()[0]


def interleave_heads(rows: np.ndarray, heads: int) -> np.ndarray:
    """Hugging Face's half-split rotary layout of each head's rows -> GGUF's interleaved pairs."""
    shape = rows.shape
    return rows.reshape(heads, 2, shape[0] // heads // 2, *shape[1:]).swapaxes(1, 2).reshape(shape)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("adapter")
    p.add_argument("base")
    p.add_argument("out")
    p.add_argument("--type", choices=["f16", "f32"], default="f16")
    args = p.parse_args()
    try:
        from safetensors.numpy import load_file
    except ImportError:
        print("lora-to-gguf: needs the safetensors package (pip install safetensors)", file=sys.stderr)
        return 1
    config_path = os.path.join(args.adapter, "adapter_config.json")
    weights_path = os.path.join(args.adapter, "adapter_model.safetensors")
    for path in (config_path, weights_path):
        if not os.path.exists(path):
            print(f"lora-to-gguf: {path} is missing (a PEFT adapter directory has both files)", file=sys.stderr)
            return 1
    config = json.load(open(config_path))
    if config.get("peft_type", "LORA") != "LORA":
        print(f"lora-to-gguf: {args.adapter} is a {config.get('peft_type')} adapter, not LoRA", file=sys.stderr)
        return 1
    reader = gguf.GGUFReader(args.base)
    arch = field(reader, "general.architecture")
    if arch not in ("llama", "qwen2"):
        print(f"lora-to-gguf: base architecture {arch!r} is not llama or qwen2", file=sys.stderr)
        return 1
    heads = field(reader, f"{arch}.attention.head_count")
    kv_heads = field(reader, f"{arch}.attention.head_count_kv") or heads
    tensors = load_file(weights_path)
    pairs = {}
    for key, value in tensors.items():
        m = KEY.match(key)
        if not m:
            print(f"lora-to-gguf: unexpected tensor {key}", file=sys.stderr)
            return 1
        layer, module, half = int(m.group(1)), m.group(2), m.group(3)
        if module not in NAMES:
            print(f"lora-to-gguf: {key} adapts {module}, which mope does not adapt", file=sys.stderr)
            return 1
        pairs.setdefault((layer, module), {})[half] = value.astype(np.float32)
    if not pairs:
        print(f"lora-to-gguf: {weights_path} has no LoRA tensors", file=sys.stderr)
        return 1
    writer = gguf.GGUFWriter(args.out, arch)
    writer.add_string("general.type", "adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", float(config.get("lora_alpha", config.get("r", 8))))
    dtype = np.float16 if args.type == "f16" else np.float32
    for (layer, module), half in sorted(pairs.items()):
        if set(half) != {"A", "B"}:
            print(f"lora-to-gguf: layer {layer} {module} lacks lora_{'B' if 'A' in half else 'A'}", file=sys.stderr)
            return 1
        a, b = half["A"], half["B"]
        # Only llama GGUF files interleave the rotary pairs (qwen2 keeps Hugging Face's order).
        if arch == "llama" and module == "self_attn.q_proj":
            b = interleave_heads(b, heads)
        elif arch == "llama" and module == "self_attn.k_proj":
            b = interleave_heads(b, kv_heads)
        name = f"blk.{layer}.{NAMES[module]}.weight"
        writer.add_tensor(name + ".lora_a", np.ascontiguousarray(a.astype(dtype)))
        writer.add_tensor(name + ".lora_b", np.ascontiguousarray(b.astype(dtype)))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    print(f"wrote {args.out}: {len(pairs)} adapted weights, rank {config.get('r')}, alpha {config.get('lora_alpha')}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
