#!/usr/bin/env python3
"""Writes a LoRA adapter with seeded pseudo-random values for a GGUF model, in the GGUF adapter layout that
llama.cpp's --lora and mope's --lora read (general.type = adapter, adapter.type = lora, adapter.lora.alpha,
tensors NAME.lora_a [in, rank] and NAME.lora_b [rank, out]).

The values come from integer hashing of each element's index, so the same arguments give the same file
whatever the numpy version: the logit checks of the engine against llama.cpp regenerate it instead of
storing it.

  Scripts/make-test-lora.py MODEL OUT [--rank 8] [--alpha 16] [--seed 1] [--type f16|f32] [--scale 0.5]
"""
import argparse
import sys

import numpy as np
import gguf

TARGETS = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"]


def values(seed: int, salt: int, count: int) -> np.ndarray:
    """count uniform values in [-1, 1), a hash of (seed, salt, index)."""
    i = np.arange(count, dtype=np.uint64)
    x = i * np.uint64(0x9E3779B97F4A7C15) + np.uint64((seed * 1_000_003 + salt) & 0xFFFFFFFFFFFFFFFF)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return ((x >> np.uint64(40)).astype(np.float64) / float(1 << 24) * 2 - 1).astype(np.float32)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model")
    p.add_argument("out")
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--alpha", type=float, default=16)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--type", choices=["f16", "f32"], default="f16")
    p.add_argument("--scale", type=float, default=0.5, help="size of B's values relative to A's 1/sqrt(in)")
    args = p.parse_args()
    if args.rank < 1:
        print("make-test-lora: --rank must be at least 1", file=sys.stderr)
        return 2
    try:
        reader = gguf.GGUFReader(args.model)
    except Exception as error:  # noqa: BLE001 - any unreadable file is the user's error to see
        print(f"make-test-lora: cannot read {args.model}: {error}", file=sys.stderr)
        return 1
    arch_field = reader.fields["general.architecture"]
    arch = bytes(arch_field.parts[arch_field.data[0]]).decode()
    writer = gguf.GGUFWriter(args.out, arch)
    writer.add_string("general.type", "adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", args.alpha)
    dtype = np.float16 if args.type == "f16" else np.float32
    salt = 0
    for tensor in reader.tensors:
        base = tensor.name[: -len(".weight")] if tensor.name.endswith(".weight") else None
        if base is None or not base.startswith("blk.") or base.split(".", 2)[2] not in TARGETS:
            continue
        columns, rows = int(tensor.shape[0]), int(tensor.shape[1])  # ne: [in, out]
        a = values(args.seed, salt, args.rank * columns).reshape(args.rank, columns) / np.sqrt(columns)
        b = values(args.seed, salt + 1, rows * args.rank).reshape(rows, args.rank) * args.scale / np.sqrt(args.rank)
        salt += 2
        writer.add_tensor(tensor.name + ".lora_a", a.astype(dtype))  # numpy (rank, in) = ne [in, rank]
        writer.add_tensor(tensor.name + ".lora_b", b.astype(dtype))  # numpy (out, rank) = ne [rank, out]
    if salt == 0:
        print(f"make-test-lora: {args.model} has none of the weights an adapter changes", file=sys.stderr)
        return 1
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    print(f"wrote {args.out}: {salt // 2} adapted weights, rank {args.rank}, {args.type}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
