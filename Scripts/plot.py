#!/usr/bin/env python3
"""Plots for mope's PCM training and evaluation.

  plot.py train DIR/rewards.csv OUT.png   mean reward per step (and its running mean) against the step
  plot.py tune  DIR/tuning.csv OUT.png    each tuned expert's own-dimension reward (running mean) per step
  plot.py eval  DIR/results.csv OUT.png   mean combined reward of each method with its 95% interval
  plot.py diagnose DIR/diagnosis.jsonl OUT.md   tables of `mope eval --diagnose`: each expert's reward on
                                               every dimension, and each fixed weighting's combined reward
"""
import csv
import json
import math
import random
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def train(path, out):
    rows = list(csv.DictReader(open(path)))
    steps = [int(r["step"]) for r in rows]
    reward = [float(r["mean_reward"]) for r in rows]
    window = 10
    running = [sum(reward[max(0, i - window + 1):i + 1]) / len(reward[max(0, i - window + 1):i + 1])
               for i in range(len(reward))]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, reward, ".", alpha=0.4, label="mean reward of the step")
    ax.plot(steps, running, "-", label=f"running mean ({window} steps)")
    ax.set_xlabel("REBEL step")
    ax.set_ylabel("combined normalised reward")
    ax.set_title("PCM training")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def tune(path, out):
    rows = list(csv.DictReader(open(path)))
    steps = [int(r["step"]) for r in rows]
    window = 10
    fig, ax = plt.subplots(figsize=(7, 4))
    for key in [k for k in rows[0] if k.startswith("reward_")] if rows else []:
        values = [float(r[key]) for r in rows]
        running = [sum(values[max(0, i - window + 1):i + 1]) / len(values[max(0, i - window + 1):i + 1])
                   for i in range(len(values))]
        ax.plot(steps, running, "-", label=key[len("reward_"):])
    ax.set_xlabel("REBEL step")
    ax.set_ylabel(f"own-dimension normalised reward ({window}-step running mean)")
    ax.set_title("Expert tuning")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def evaluate(path, out):
    rows = [r for r in csv.DictReader(open(path)) if r.get("combination") == "all"]
    names = [r["method"] for r in rows]
    mean = [float(r["mean"]) for r in rows]
    low = [m - float(r["low"]) for m, r in zip(mean, rows)]
    high = [float(r["high"]) - m for m, r in zip(mean, rows)]
    fig, ax = plt.subplots(figsize=(7, 4))
    colors = ["tab:red"] + ["tab:gray"] * (len(names) - 1)
    ax.bar(range(len(names)), mean, yerr=[low, high], capsize=4, color=colors)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=20, ha="right")
    ax.set_ylabel("combined normalised reward (all 8 combinations)")
    ax.set_ylim(min(mean) - 0.1, max(mean) + 0.1)
    ax.set_title("PCM vs baselines (95% bootstrap intervals)")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


DIMS = ["elementary", "knowledgeable", "concise", "informative", "friendly", "unfriendly"]
IDS = ["P1A", "P1B", "P2A", "P2B", "P3A", "P3B"]


def mean_se(values):
    n = len(values)
    if n == 0:
        return float("nan"), float("nan")
    m = sum(values) / n
    var = sum((v - m) ** 2 for v in values) / max(n - 1, 1)
    return m, math.sqrt(var / n)


def bootstrap(values, resamples=2000, seed=1):
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    return sum(values) / n, means[int(0.025 * resamples)], means[int(0.975 * resamples)]


def combo_dims(label):
    return [IDS.index(part) for part in label.split("+")]


def diagnose(path, out):
    records = [json.loads(line) for line in open(path)]
    limit = max(r["tokens"] for r in records)
    lines = [f"# Diagnosis\n\n{len(records)} responses, token limit {limit}.\n",
             "## Each expert alone: mean normalised reward R_j on every dimension (± standard error)\n",
             "| method | " + " | ".join(DIMS) + " | tokens | at limit |", "|---" * (len(DIMS) + 3) + "|"]
    methods = ["base"] + [f"only {d}" for d in DIMS]
    for m in methods:
        rs = [r for r in records if r["method"] == m]
        if not rs:
            continue
        cells = []
        for j in range(6):
            mu, se = mean_se([r["normalised"][j] for r in rs])
            cells.append(f"{mu:.3f} ±{se:.3f}")
        tok = sum(r["tokens"] for r in rs) / len(rs)
        at = sum(r["tokens"] >= limit for r in rs) / len(rs)
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {tok:.1f} | {100 * at:.0f}% |")
    lines.append("\nRaw rewards (mean): " + "; ".join(
        f"{m}: " + ", ".join(f"{sum(r['raw'][j] for r in records if r['method'] == m) / max(1, sum(r['method'] == m for r in records)):.2f}" for j in range(6))
        for m in methods))
    # Combined reward of each fixed weighting, per combination.
    combos = sorted({r.get("combination") for r in records if r.get("combination")},
                    key=lambda c: [IDS.index(x) for x in c.split("+")])
    keys = {}
    for r in records:
        keys.setdefault((r["prompt"], r["sample"]), {})[(r["method"], r.get("combination"))] = r
    if not combos:  # --experts-only: no mixtures, nothing to combine
        open(out, "w").write("\n".join(lines) + "\n")
        print("\n".join(lines))
        return
    kinds = ["prompting", "uniform", "uniform logit", "only axis 1", "only axis 2", "only axis 3"]
    if any(r["method"].startswith("tilt ") for r in records):  # --tilt X > 0
        kinds += ["tilt axis 1", "tilt axis 2", "tilt axis 3"]
    if any(r["method"] == "prompting unguided" for r in records):  # a run with prompt guidance
        kinds.insert(1, "prompting unguided")
    if any(r["method"] == "soup" for r in records):  # tuned experts
        kinds.insert(1, "soup")
    if any(r["method"].startswith("opener ") for r in records):  # --opener N
        kinds += ["opener axis 1", "opener axis 2", "opener axis 3"]
    lines += ["\n## Combined reward per combination (mean over prompts × samples)\n",
              "| combination | " + " | ".join(kinds) + " | best of these per item (oracle) |",
              "|---" * (len(kinds) + 2) + "|"]
    per_kind = {k: [] for k in kinds}
    oracle_all = []
    for c in combos:
        dims = combo_dims(c)
        vals = {k: [] for k in kinds}
        oracle = []
        for group in keys.values():
            row = {}
            for k in kinds:
                if k in ("prompting", "prompting unguided", "soup", "uniform", "uniform logit"):
                    rec = group.get((k, c))
                elif k.startswith("only"):
                    rec = group.get((f"only {DIMS[dims[int(k[-1]) - 1]]}", None))
                else:  # "tilt axis i", "opener axis i"
                    rec = group.get((f"{k.split()[0]} {DIMS[dims[int(k[-1]) - 1]]}", c))
                if rec is None:
                    continue
                row[k] = sum(rec["normalised"][j] for j in dims) / 3
                vals[k].append(row[k])
            if row:
                oracle.append(max(row.values()))
        for k in kinds:
            per_kind[k] += vals[k]
        oracle_all += oracle
        lines.append(f"| {c} | " + " | ".join(f"{mean_se(vals[k])[0]:.3f}" for k in kinds)
                     + f" | {mean_se(oracle)[0]:.3f} |")
    lines.append("| **all** | " + " | ".join(f"{mean_se(per_kind[k])[0]:.3f} ±{mean_se(per_kind[k])[1]:.3f}"
                                             for k in kinds) + f" | {mean_se(oracle_all)[0]:.3f} |")
    sd = [math.sqrt(sum((v - mean_se(per_kind[k])[0]) ** 2 for v in per_kind[k]) / max(len(per_kind[k]) - 1, 1))
          for k in kinds]
    lines.append("\nStandard deviation of one response's combined reward: "
                 + ", ".join(f"{k} {s:.3f}" for k, s in zip(kinds, sd)))
    open(out, "w").write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("train", "tune", "eval", "diagnose"):
        sys.exit(__doc__)
    {"train": train, "tune": tune, "eval": evaluate, "diagnose": diagnose}[sys.argv[1]](sys.argv[2], sys.argv[3])
