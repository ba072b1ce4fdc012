#!/usr/bin/env python3
"""The merged job as a user would write it with llama-cpp-python: three experts of one model file in one process.

Each expert is its own `Llama` (its own KV cache) under its own system prompt (the Personalized Soups prompts of
Configs/preference_dimensions.json). At every step each expert evaluates the last token, its top-k log-probabilities
are merged as mope merges them ("probability": pi(y) = sum_i a_i pi_i(y) over the union of the lists, a token
missing from a list estimated from that expert's tail mass), the argmax is taken (greedy) and fed to every expert.
Prints one JSON line: requests, tokens, seconds, tokens per second.

    merged-reference.py --model FILE [--threads 2] [--max-tokens 64] [--top-k 64] PROMPT...
"""
import argparse
import json
import os
import sys
import time

import numpy as np
from llama_cpp import Llama

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXPERTS = ["concise", "friendly", "knowledgeable"]


def system_prompts():
    with open(os.path.join(ROOT, "Configs", "preference_dimensions.json")) as f:
        table = {d["pole"]: d["prompt"] for d in json.load(f)["dimensions"]}
    return [table[name] for name in EXPERTS]


def top_k(logits, k):
    """The k most likely ids, their log-probabilities and the probability mass outside them."""
    shifted = logits - logits.max()
    log_z = np.log(np.exp(shifted).sum())
    ids = np.argpartition(-logits, k)[:k]
    logp = shifted[ids] - log_z
    return ids, logp, max(0.0, 1.0 - float(np.exp(logp).sum()))


def merge(lists, vocabulary, weights):
    """mope's probability merge: the argmax of sum_i a_i pi_i(y) over the union of the experts' lists."""
    union = np.unique(np.concatenate([ids for ids, _, _ in lists]))
    total = np.zeros(len(union))
    for (ids, logp, tail), a in zip(lists, weights):
        probs = np.exp(logp)
        estimate = min(tail / max(vocabulary - len(ids), 1), float(probs.min()))
        p = np.full(len(union), estimate)
        p[np.searchsorted(union, ids)] = probs
        total += a * p
    best = np.flatnonzero(total == total.max())
    return int(union[best].min())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--top-k", type=int, default=64)
    parser.add_argument("prompts", nargs="+")
    args = parser.parse_args()

    experts = [Llama(model_path=args.model, n_ctx=1024, n_threads=args.threads, n_threads_batch=args.threads,
                     verbose=False) for _ in EXPERTS]
    vocabulary = experts[0].n_vocab()
    end = experts[0].token_eos()
    im_end = experts[0].tokenize(b"<|im_end|>", add_bos=False, special=True)
    stops = {end} | set(im_end)
    weights = [1 / len(EXPERTS)] * len(EXPERTS)
    systems = system_prompts()

    tokens = 0
    start = time.perf_counter()
    for prompt in args.prompts:
        for llm, system in zip(experts, systems):
            llm.reset()
            text = (f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{prompt}<|im_end|>\n"
                    "<|im_start|>assistant\n")
            llm.eval(llm.tokenize(text.encode(), add_bos=False, special=True))
        for _ in range(args.max_tokens):
            lists = [top_k(np.asarray(llm.scores[llm.n_tokens - 1]), args.top_k) for llm in experts]
            token = merge(lists, vocabulary, weights)
            tokens += 1
            if token in stops:
                break
            for llm in experts:
                llm.eval([token])
    seconds = time.perf_counter() - start
    print(json.dumps({"requests": len(args.prompts), "tokens": tokens, "seconds": round(seconds, 3),
                      "tokens_per_second": round(tokens / seconds, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
