#!/usr/bin/env python3
"""Plots for mope's PCM training and evaluation.

  plot.py train DIR/rewards.csv OUT.png   mean reward per step (and its running mean) against the step
  plot.py eval  DIR/results.csv OUT.png   mean combined reward of each method with its 95% interval
"""
import csv
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


def evaluate(path, out):
    rows = [r for r in csv.DictReader(open(path)) if r["combination"] == "all"]
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


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("train", "eval"):
        sys.exit(__doc__)
    (train if sys.argv[1] == "train" else evaluate)(sys.argv[2], sys.argv[3])
