#!/usr/bin/env python3
"""The HTTP side of Scripts/bench-serve.sh: per-token latency of one stream, and throughput at N streams.

    Scripts/bench-serve.py latency --base URL --tokens N --requests R [--prompt TEXT] [--raw]
    Scripts/bench-serve.py load --base URL --tokens N --streams S --requests R [--prompt TEXT] [--raw]
    Scripts/bench-serve.py zmq --mope BIN --coordinator ENDPOINT --tokens N --requests R [--prompt TEXT] [--raw]

latency: R streamed requests one after another (after one warm-up); for each, the time from the first content
chunk to the last, divided by the generated tokens after the first (usage.completion_tokens - 1). Prints
`latency_ms_per_token MEAN tokens T`.

zmq: the same measurement as latency through `mope generate` (the ZeroMQ client): the time from the first
text it writes to the last, over the tokens its report counts after the first.

load: S clients at once, each sending requests until R requests in all were answered (whole answers, not
streamed); prints `requests_per_s X tokens_per_s Y requests R tokens T seconds W`.

Both use /v1/completions when --raw is given (the prompt continued as is), else /v1/chat/completions; any
OpenAI-compatible server works (mope serve, llama.cpp's llama-server). `--field NAME=JSON` adds a request field
(`cache_prompt=false` turns off llama-server's reuse of a cached identical prompt, which mope does not have).
Exits 1 when a request fails.
"""
import argparse
import http.client
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.parse


def body(args, stream):
    common = {"model": "mope", "max_tokens": args.tokens, "temperature": 0, "stream": stream}
    for field in args.field:
        name, _, value = field.partition("=")
        common[name] = json.loads(value)
    if stream:
        common["stream_options"] = {"include_usage": True}
    if args.raw:
        return "/v1/completions", dict(common, prompt=args.prompt)
    return "/v1/chat/completions", dict(common, messages=[{"role": "user", "content": args.prompt}])


def connect(base):
    url = urllib.parse.urlparse(base)
    return http.client.HTTPConnection(url.hostname, url.port, timeout=600)


def streamed(args):
    """(seconds from the first content chunk to the last, completion tokens) of one streamed request."""
    path, payload = body(args, True)
    connection = connect(args.base)
    connection.request("POST", path, json.dumps(payload), {"Content-Type": "application/json"})
    response = connection.getresponse()
    if response.status != 200:
        raise RuntimeError(f"status {response.status}: {response.read()[:300]!r}")
    first = last = None
    tokens = 0
    for line in response:
        line = line.strip()
        if not line.startswith(b"data: ") or line == b"data: [DONE]":
            continue
        event = json.loads(line[6:])
        if event.get("usage"):
            tokens = event["usage"].get("completion_tokens", tokens)
        for choice in event.get("choices") or []:
            text = (choice.get("delta") or {}).get("content") or choice.get("text") or ""
            if text:
                now = time.perf_counter()
                first = first or now
                last = now
    connection.close()
    if first is None or tokens < 2:
        raise RuntimeError(f"the answer had {tokens} tokens; ask for more")
    return last - first, tokens


def latency(args):
    streamed(args)  # warm-up
    per_token = []
    tokens = 0
    for _ in range(args.requests):
        seconds, tokens = streamed(args)
        per_token.append(seconds / (tokens - 1))
    print(f"latency_ms_per_token {1000 * sum(per_token) / len(per_token):.4f} tokens {tokens}")


def generated(args):
    """(seconds from the first text chunk to the last, tokens) of one `mope generate`."""
    command = [args.mope, "generate", "--coordinator", args.coordinator, "--max-tokens", str(args.tokens),
               "--temperature", "0"] + (["--raw"] if args.raw else []) + [args.prompt]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    chunks = []
    while True:
        data = os.read(process.stdout.fileno(), 65536)
        if not data:
            break
        chunks.append((time.perf_counter(), data))
    error = process.stderr.read().decode("utf-8", "replace")
    if process.wait() != 0:
        raise RuntimeError(f"mope generate failed: {error.strip()}")
    # The newline written after the answer ended is not a token.
    if chunks and chunks[-1][1] == b"\n":
        chunks.pop()
    match = re.search(r"(\d+) tokens in", error)
    tokens = int(match.group(1)) if match else 0
    if len(chunks) < 2 or tokens < 2:
        raise RuntimeError(f"the answer had {tokens} tokens; ask for more")
    return chunks[-1][0] - chunks[0][0], tokens


def zmq(args):
    generated(args)  # warm-up
    per_token = []
    tokens = 0
    for _ in range(args.requests):
        seconds, tokens = generated(args)
        per_token.append(seconds / (tokens - 1))
    print(f"latency_ms_per_token {1000 * sum(per_token) / len(per_token):.4f} tokens {tokens}")


def load(args):
    path, payload = body(args, False)
    data = json.dumps(payload)
    lock = threading.Lock()
    state = {"left": args.requests, "tokens": 0, "done": 0, "error": None}

    def client():
        connection = connect(args.base)
        while True:
            with lock:
                if state["left"] == 0 or state["error"]:
                    break
                state["left"] -= 1
            try:
                connection.request("POST", path, data, {"Content-Type": "application/json"})
                response = connection.getresponse()
                answer = response.read()
                if response.status != 200:
                    raise RuntimeError(f"status {response.status}: {answer[:300]!r}")
                tokens = json.loads(answer)["usage"]["completion_tokens"]
            except Exception as error:  # noqa: BLE001 - reported below
                with lock:
                    state["error"] = state["error"] or error
                break
            with lock:
                state["tokens"] += tokens
                state["done"] += 1
        connection.close()

    # One warm-up request, then the timed run.
    warm = connect(args.base)
    warm.request("POST", path, data, {"Content-Type": "application/json"})
    warm.getresponse().read()
    warm.close()
    threads = [threading.Thread(target=client) for _ in range(args.streams)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    if state["error"]:
        raise RuntimeError(state["error"])
    print(f"requests_per_s {state['done'] / seconds:.4f} tokens_per_s {state['tokens'] / seconds:.4f} "
          f"requests {state['done']} tokens {state['tokens']} seconds {seconds:.3f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["latency", "load", "zmq"])
    parser.add_argument("--base")
    parser.add_argument("--mope")
    parser.add_argument("--coordinator")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--requests", type=int, default=5)
    parser.add_argument("--streams", type=int, default=1)
    parser.add_argument("--prompt", default="Tell me a story about a lighthouse keeper.")
    parser.add_argument("--raw", action="store_true")
    parser.add_argument("--field", action="append", default=[], metavar="NAME=JSON",
                        help="an extra request field, e.g. cache_prompt=false for llama-server")
    args = parser.parse_args()
    try:
        {"latency": latency, "load": load, "zmq": zmq}[args.mode](args)
    except Exception as error:  # noqa: BLE001 - one line for the shell script
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
