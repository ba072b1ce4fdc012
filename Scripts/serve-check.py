#!/usr/bin/env python3
"""Checks a running `mope serve` with real clients: the `openai` package, curl and prometheus_client's parser.

    Scripts/serve-check.py --base http://127.0.0.1:8000 [--model mope] [--streams 16]

Exits 0 when every check passes, 1 at the first failure (the failure is printed), 2 on a usage error.
The cluster behind the server must serve the experts "concise" and "friendly".
"""
import argparse
import concurrent.futures
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import openai
from prometheus_client.parser import text_string_to_metric_families


class CheckFailed(Exception):
    pass


def expect(condition, message):
    if not condition:
        raise CheckFailed(message)


def http(base, method, path, body=None, headers=None):
    """(status, parsed JSON or text) of one request."""
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method, headers=headers or {})
    if data is not None and "Content-Type" not in (headers or {}):
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode("utf-8", "replace")


def check_error(base, body, status, param=None, code=None, path="/v1/chat/completions", method="POST"):
    got, answer = http(base, method, path, body)
    expect(got == status, f"{method} {path} {body!r:.80}: status {got}, wanted {status}: {answer}")
    expect(isinstance(answer, dict) and "error" in answer, f"{path}: no error object: {answer}")
    error = answer["error"]
    expect(set(error) >= {"message", "type", "param", "code"}, f"error object fields: {error}")
    if param is not None:
        expect(error["param"] == param, f"{body!r:.80}: param {error['param']!r}, wanted {param!r}")
    if code is not None:
        expect(error["code"] == code, f"{body!r:.80}: code {error['code']!r}, wanted {code!r}")


def huge_body_status(base, size):
    """Announces a body of `size` bytes and sends none of it: the server must answer 413 at once."""
    url = urllib.parse.urlparse(base)
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall((f"POST /v1/chat/completions HTTP/1.1\r\nHost: {url.hostname}\r\n"
                      f"Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n").encode())
        reply = b""
        while b"\r\n" not in reply:
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    return int(reply.split(b" ")[1]) if reply.startswith(b"HTTP/") else None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the server's URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("--model", default="mope")
    parser.add_argument("--streams", type=int, default=16, help="concurrent streams to run")
    args = parser.parse_args()
    base = args.base.rstrip("/")
    client = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=120)

    # Models.
    models = client.models.list()
    expect([m.id for m in models.data] == [args.model], f"models: {models}")
    try:
        client.models.retrieve("no-such-model")
        raise CheckFailed("GET /v1/models/no-such-model did not fail")
    except openai.NotFoundError:
        pass

    # Chat, whole and streamed (greedy: both give the same text).
    messages = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi."},
        {"role": "user", "content": "Tell me about the sea."},
    ]
    whole = client.chat.completions.create(model=args.model, messages=messages, max_tokens=12, temperature=0)
    choice = whole.choices[0]
    expect(whole.object == "chat.completion", f"object {whole.object}")
    expect(isinstance(choice.message.content, str), f"content {choice.message.content!r}")
    expect(choice.finish_reason in ("stop", "length"), f"finish_reason {choice.finish_reason}")
    expect(0 < whole.usage.completion_tokens <= 12, f"usage {whole.usage}")
    expect(whole.usage.prompt_tokens > 0, f"usage {whole.usage}")
    mope = whole.model_dump()["mope"]
    expect(sorted(e["name"] for e in mope["experts"]) == ["concise", "friendly"], f"mope {mope}")
    expect(mope["degraded"] is False and mope["lost_experts"] == [], f"mope {mope}")

    chunks = list(client.chat.completions.create(
        model=args.model, messages=messages, max_tokens=12, temperature=0, stream=True,
        stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    expect(all(c.object == "chat.completion.chunk" for c in chunks), "chunk objects")
    expect(chunks[0].choices[0].delta.role == "assistant", f"first chunk {chunks[0]}")
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    expect(finishes == [choice.finish_reason], f"finish reasons {finishes}")
    expect(text == choice.message.content, f"streamed {text!r} != whole {choice.message.content!r}")
    expect(chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens,
           f"usage chunk {chunks[-1]}")

    # mope's fields: a preference object and a merge mode.
    named = client.chat.completions.create(
        model=args.model, messages=[{"role": "user", "content": "Hi"}], max_tokens=4,
        extra_body={"preference": {"concise": 1}, "merge": "logit"})
    experts = named.model_dump()["mope"]["experts"]
    expect([e["name"] for e in experts] == ["concise"], f"preference object: experts {experts}")

    # Completions (raw prompt).
    completion = client.completions.create(model=args.model, prompt="Once upon a time", max_tokens=5)
    expect(completion.object == "text_completion", f"completion object {completion.object}")
    expect(isinstance(completion.choices[0].text, str) and completion.usage.completion_tokens <= 5,
           f"completion {completion}")
    streamed = list(client.completions.create(model=args.model, prompt="Once upon a time", max_tokens=5,
                                              stream=True))
    expect("".join(c.choices[0].text for c in streamed) == completion.choices[0].text, "streamed completion text")

    # Errors through the openai client.
    try:
        client.chat.completions.create(model=args.model, messages=[{"role": "tool", "content": "x"}])
        raise CheckFailed("a tool role was accepted")
    except openai.BadRequestError as error:
        expect(error.body and error.body.get("param") == "messages[0].role", f"bad role: {error.body}")

    # Errors as raw HTTP.
    check_error(base, b"{not json", 400, code="invalid_json")
    check_error(base, {"messages": "hi"}, 400, param="messages")
    check_error(base, {"messages": [{"role": "user", "content": "x"}], "max_tokens": "ten"}, 400, param="max_tokens")
    check_error(base, {"messages": [{"role": "user", "content": "x"}], "temperature": True}, 400, param="temperature")
    check_error(base, {"messages": [{"role": "user", "content": "x"}], "stop": [1]}, 400, param="stop[0]")
    check_error(base, {"messages": [{"role": "user", "content": "x"}], "preference": "concise, informative"}, 400,
                param="preference")
    check_error(base, {"prompt": 5}, 400, param="prompt", path="/v1/completions")
    check_error(base, None, 404, code="not_found", path="/v1/nothing", method="GET")
    check_error(base, None, 405, path="/v1/chat/completions", method="GET")
    status = huge_body_status(base, 64 << 20)
    expect(status == 413, f"a 64 MiB body: status {status}, wanted 413")

    # Raw SSE with curl -N.
    sse = subprocess.run(
        ["curl", "-sS", "-N", base + "/v1/chat/completions", "-H", "Content-Type: application/json",
         "-d", json.dumps({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, "stream": True})],
        capture_output=True, text=True, timeout=60)
    expect(sse.returncode == 0, f"curl exited {sse.returncode}: {sse.stderr}")
    events = [line for line in sse.stdout.split("\n") if line]
    expect(events and all(line.startswith("data: ") for line in events), f"SSE lines: {sse.stdout[:300]}")
    expect(events[-1] == "data: [DONE]", f"last SSE event {events[-1]!r}")
    for line in events[:-1]:
        expect(json.loads(line[6:])["object"] == "chat.completion.chunk", f"SSE event {line[:120]}")

    # Many streams at once.
    def one_stream(index):
        stream = client.chat.completions.create(
            model=args.model, messages=[{"role": "user", "content": f"Story number {index}"}], max_tokens=16,
            temperature=0.8, seed=index, stream=True)
        reasons = [c.choices[0].finish_reason for c in stream if c.choices and c.choices[0].finish_reason]
        return reasons
    with concurrent.futures.ThreadPoolExecutor(args.streams) as pool:
        results = list(pool.map(one_stream, range(args.streams)))
    expect(all(r in (["stop"], ["length"]) for r in results), f"concurrent streams' finish reasons: {results}")

    # A client that goes away mid-stream: the server serves on and no session stays behind.
    request = urllib.request.Request(
        base + "/v1/chat/completions", method="POST", headers={"Content-Type": "application/json"},
        data=json.dumps({"messages": [{"role": "user", "content": "Go on"}], "max_tokens": 64,
                         "stream": True}).encode())
    with urllib.request.urlopen(request, timeout=60) as response:
        response.readline()
    deadline = time.monotonic() + 30
    while True:
        status, health = http(base, "GET", "/health")
        if status == 200 and health["sessions"]["running"] == 0:
            break
        expect(time.monotonic() < deadline, f"sessions still running after a disconnect: {health}")
        time.sleep(0.1)

    # Health and readiness.
    status, health = http(base, "GET", "/health")
    expect(status == 200 and health["ready"] is True, f"/health: {status} {health}")
    status, ready = http(base, "GET", "/ready")
    expect(status == 200, f"/ready: {status} {ready}")

    # Metrics parse with Prometheus' own parser.
    with urllib.request.urlopen(base + "/metrics", timeout=30) as response:
        expect(response.headers["Content-Type"].startswith("text/plain"), "metrics content type")
        families = {f.name: f for f in text_string_to_metric_families(response.read().decode())}
    for name, kind in [("mope_http_requests", "counter"), ("mope_http_errors", "counter"),
                       ("mope_time_to_first_token_seconds", "histogram"),
                       ("mope_inter_token_latency_seconds", "histogram"), ("mope_sessions_running", "gauge")]:
        expect(name in families and families[name].type == kind, f"metric {name} ({kind}) missing: {sorted(families)}")
    errors = {s.labels.get("code"): s.value for s in families["mope_http_errors"].samples}
    expect(errors.get("400", 0) >= 6 and errors.get("404", 0) >= 1 and errors.get("413", 0) >= 0, f"errors {errors}")
    ttft = {s.name: s.value for s in families["mope_time_to_first_token_seconds"].samples if not s.labels.get("le")}
    expect(ttft.get("mope_time_to_first_token_seconds_count", 0) >= args.streams, f"ttft {ttft}")
    ok = sum(s.value for s in families["mope_http_requests"].samples
             if s.name.endswith("_total") and s.labels.get("outcome") == "ok")
    expect(ok >= args.streams, f"requests ok {ok}")
    print(f"serve-check: every check passed ({args.streams} concurrent streams)")


if __name__ == "__main__":
    try:
        main()
    except CheckFailed as failure:
        print(f"serve-check: FAILED: {failure}", file=sys.stderr)
        sys.exit(1)
