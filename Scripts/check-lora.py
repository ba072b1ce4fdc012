#!/usr/bin/env python3
"""Checks a converted adapter: PyTorch's last-position logits for the prompts of
Tests/Fixtures/reference-smollm2.json with the PEFT adapter (on the GGUF model's dequantised weights), written as
a top-20 fixture, then compared with mope's engine running the GGUF adapter unmerged (Scripts/compare-logits.swift
--lora). A wrong conversion (e.g. the rotary row order of q_proj/k_proj) shows as a large difference.

  Scripts/check-lora.py --model M.gguf --peft DIR/peft --gguf DIR/<dimension>.lora.gguf
  Scripts/check-lora.py --model M.gguf --random      # a random PEFT adapter, converted by Scripts/lora-to-gguf.py

With --random both halves of every pair are random (PEFT's init_lora_weights=False), so every weight's update
is large and a conversion error in any of them cannot hide; a freshly trained adapter is close to zero.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--peft")
    p.add_argument("--gguf")
    p.add_argument("--random", action="store_true")
    p.add_argument("--tolerance", type=float, default=0.5, help="largest centred |Δlogit| over the top 20")
    p.add_argument("--prompts", default="Tests/Fixtures/reference-smollm2.json")
    args = p.parse_args()
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    folder, name = os.path.split(os.path.abspath(args.model))
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if args.random:
        from peft import LoraConfig, get_peft_model
        torch.manual_seed(1)
        config = LoraConfig(r=8, lora_alpha=16, init_lora_weights=False, target_modules=[
            "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
        model = get_peft_model(model, config).eval()
        work = tempfile.mkdtemp()
        args.peft, args.gguf = os.path.join(work, "peft"), os.path.join(work, "random.lora.gguf")
        model.save_pretrained(args.peft)
        subprocess.run([sys.executable, os.path.join(root, "Scripts/lora-to-gguf.py"), args.peft, args.model,
                        args.gguf, "--type", "f32"], check=True)
    elif args.peft and args.gguf:
        model = PeftModel.from_pretrained(model, args.peft).eval()
    else:
        p.error("give --peft and --gguf, or --random")
    cases = json.load(open(args.prompts))
    rows = []
    with torch.no_grad():
        for c in cases:
            logits = model(torch.tensor([c["tokens"]])).logits[0, -1]
            top = torch.topk(logits, 20)
            rows.append({"prompt": c["prompt"], "tokens": c["tokens"], "top_ids": top.indices.tolist(),
                         "top_logits": [round(v, 5) for v in top.values.tolist()]})
    fixture = os.path.join(tempfile.mkdtemp(), "torch-lora.json")
    json.dump(rows, open(fixture, "w"))
    print(f"PyTorch's logits with the adapter: {fixture}", file=sys.stderr)
    binary = subprocess.run([os.path.join(root, "Scripts/lib/build-compare-logits.sh")], check=True,
                            capture_output=True, text=True).stdout.strip()
    compared = subprocess.run([binary, "--lora", args.gguf, args.model, fixture], capture_output=True, text=True)
    print(compared.stdout, end="")
    if compared.returncode != 0:
        print(compared.stderr, file=sys.stderr)
        return 1
    worst = float(compared.stdout.rsplit("centred", 1)[1].strip())
    if worst >= args.tolerance:
        print(f"check-lora: mope's logits with the adapter differ from PyTorch's by {worst:.3f} (centred) over the "
              f"top 20, more than {args.tolerance}", file=sys.stderr)
        return 1
    print(f"check-lora: ok, worst centred difference {worst:.3f} < {args.tolerance}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
