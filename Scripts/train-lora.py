#!/usr/bin/env python3
"""Trains one expert's LoRA adapter on its own dimension's reward, from the scored answers `mope sample` wrote,
and writes it in the GGUF adapter layout `mope worker --lora` reads.

  mope sample --model M.gguf --prompts train.json --dimension concise --count 6 --out S/concise.jsonl
  Scripts/train-lora.py --model M.gguf --samples S/concise.jsonl --out DIR [--method dpo|sft]

The base model's weights are the GGUF file's, dequantised by transformers' GGUF loading (no model hub). Each
prompt's answers are ranked by the dimension's normalised reward:
  dpo  (default) DPO (TRL's DPOTrainer) on the pair (best answer, worst answer), the LoRA-disabled model as the
       reference; pairs whose rewards differ by less than --min-margin are left out;
  sft  best-of-n fine-tuning: supervised fine-tuning (TRL's SFTTrainer) on each prompt's best answer.
The expert sees only its own dimension's system prompt (the one the samples were drawn with), as in the paper.
LoRA (PEFT) of rank --rank on every attention and feed-forward projection. Training stops after --epochs or
--max-minutes, whichever comes first. Writes DIR/peft/ (the PEFT adapter), DIR/<dimension>.lora.gguf (through
Scripts/lora-to-gguf.py) and DIR/training.json (settings, pairs, losses, time).
"""
import argparse
import json
import os
import subprocess
import sys
import time


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--model", required=True, help="the base GGUF model the experts share")
    p.add_argument("--samples", required=True, help="mope sample's JSON-lines file")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--method", choices=["dpo", "sft"], default="dpo")
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--alpha", type=float, default=16)
    # A gentle step by default: with 2 epochs at 5e-4 and β 0.1 DPO drove the concise expert's loss to 0 and its
    # answers to a few tokens of nonsense that the rule-based reward still pays for (docs/PCM.md).
    p.add_argument("--epochs", type=float, default=1)
    p.add_argument("--learning-rate", type=float, default=1e-4)
    p.add_argument("--beta", type=float, default=0.5, help="DPO's β")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--min-margin", type=float, default=0.05, help="DPO: least reward gap of a pair")
    p.add_argument("--max-minutes", type=float, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    if args.rank < 1 or args.epochs <= 0 or args.batch < 1 or args.threads < 1:
        print("train-lora: --rank, --epochs, --batch and --threads must be positive", file=sys.stderr)
        return 2

    try:
        import torch
        from datasets import Dataset
        from peft import LoraConfig
        from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
        import trl
    except ImportError as error:
        print(f"train-lora: {error}; install the training packages: pip install torch transformers peft trl "
              "datasets accelerate safetensors", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    records = []
    with open(args.samples) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                responses = record["responses"]
                assert len(responses) >= 2
                records.append(record)
            except (ValueError, KeyError, AssertionError) as error:
                print(f"train-lora: {args.samples}:{n} is not a mope sample record ({error})", file=sys.stderr)
                return 1
    if not records:
        print(f"train-lora: {args.samples} has no records", file=sys.stderr)
        return 1
    dimensions = {r["dimension"] for r in records}
    if len(dimensions) != 1:
        print(f"train-lora: {args.samples} mixes dimensions {sorted(dimensions)}: one expert, one dimension",
              file=sys.stderr)
        return 1
    dimension = dimensions.pop()

    def prompt_messages(record):
        messages = [{"role": "system", "content": record["system"]}] if record.get("system") else []
        return messages + [{"role": "user", "content": record["prompt"]}]

    rows = []
    for record in records:
        ranked = sorted(record["responses"], key=lambda r: r["reward"], reverse=True)
        best, worst = ranked[0], ranked[-1]
        if args.method == "dpo":
            if best["reward"] - worst["reward"] < args.min_margin or best["text"] == worst["text"]:
                continue
            rows.append({"prompt": prompt_messages(record),
                         "chosen": [{"role": "assistant", "content": best["text"]}],
                         "rejected": [{"role": "assistant", "content": worst["text"]}]})
        else:
            rows.append({"messages": prompt_messages(record) + [{"role": "assistant", "content": best["text"]}]})
    if not rows:
        print("train-lora: no training pair left (every prompt's answers scored alike); sample more answers",
              file=sys.stderr)
        return 1

    os.makedirs(args.out, exist_ok=True)
    folder, name = os.path.split(os.path.abspath(args.model))
    print(f"== loading {name} (dequantised from GGUF)", file=sys.stderr)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    # The weights are dequantised to float32: nothing of the GGUF quantisation is left to train around.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token

    lora = LoraConfig(r=args.rank, lora_alpha=args.alpha, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    started = time.time()
    losses = []

    class Budget(TrainerCallback):
        def on_log(self, _args, state, control, logs=None, **_):
            if logs and "loss" in logs:
                losses.append({"step": state.global_step, "loss": logs["loss"],
                               "seconds": round(time.time() - started, 1)})
                print(f"step {state.global_step}/{state.max_steps}  loss {logs['loss']:.4f}  "
                      f"{time.time() - started:.0f}s", file=sys.stderr)

        def on_step_end(self, _args, state, control, **_):
            if time.time() - started > args.max_minutes * 60:
                print(f"== stopping at the {args.max_minutes:g}-minute budget", file=sys.stderr)
                control.should_training_stop = True

    common = dict(output_dir=os.path.join(args.out, "trainer"), per_device_train_batch_size=args.batch,
                  num_train_epochs=args.epochs, learning_rate=args.learning_rate, logging_steps=1,
                  save_strategy="no", report_to=[], seed=args.seed, use_cpu=True, lr_scheduler_type="constant",
                  max_length=256)
    dataset = Dataset.from_list(rows)
    if args.method == "dpo":
        config = trl.DPOConfig(beta=args.beta, **common)
        trainer = trl.DPOTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer,
                                 peft_config=lora, callbacks=[Budget()])
    else:
        config = trl.SFTConfig(**common)
        trainer = trl.SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer,
                                 peft_config=lora, callbacks=[Budget()])
    print(f"== training the {dimension} expert: {args.method}, {len(rows)} examples, rank {args.rank}",
          file=sys.stderr)
    trainer.train()
    seconds = time.time() - started
    peft_dir = os.path.join(args.out, "peft")
    trainer.model.save_pretrained(peft_dir)
    gguf_path = os.path.join(args.out, f"{dimension}.lora.gguf")
    converter = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lora-to-gguf.py")
    subprocess.run([sys.executable, converter, peft_dir, args.model, gguf_path], check=True)
    with open(os.path.join(args.out, "training.json"), "w") as f:
        json.dump({"dimension": dimension, "method": args.method, "examples": len(rows), "rank": args.rank,
                   "alpha": args.alpha, "epochs": args.epochs, "learning_rate": args.learning_rate,
                   "beta": args.beta, "batch": args.batch, "threads": args.threads, "seed": args.seed,
                   "seconds": round(seconds, 1), "losses": losses, "samples": os.path.abspath(args.samples)},
                  f, indent=1)
    print(f"wrote {gguf_path} ({seconds / 60:.1f} min of training)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
