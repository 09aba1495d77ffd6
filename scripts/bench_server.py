#!/usr/bin/env python3
"""`orchard serve` against `mlx_lm.server` on the same model and machine, in one run.

    .deps/venv/bin/python scripts/bench_server.py [--model DIR] [--orchard BIN]
        [--max-tokens 32] [--rounds 2] [--concurrency 1 4 8]

Each round starts one server, measures it, stops it, then does the same with
the other, so the two never share the CPU. For each server it measures, over
HTTP with streaming chat completions at temperature 0:

- time to first token (request sent -> first content chunk) and decode
  tokens/s ((completion tokens - 1) / (last chunk - first chunk)) of a single
  stream, the median of 3 requests;
- aggregate tokens/s with 1, 4 and 8 concurrent streams (all completion tokens
  over the wall time of the batch).

It also runs `orchard bench --json` (the engine without HTTP) with the same
generation length and reports Orchard's streamed decode tokens/s over the
engine's own. It prints a Markdown table for docs/benchmarks.md. Build first:
`cargo build --release --bin orchard`.
"""

import argparse
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = [
    "Write a short story about a lighthouse keeper.",
    "Explain how rain forms, step by step.",
    "Describe a walk through a forest in autumn.",
    "List some facts about the planet Mars.",
    "Write a letter to a friend about a trip to the sea.",
    "Explain why the sky is blue.",
    "Tell me about the history of bread.",
    "Describe how a bicycle works.",
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(base, process, seconds=300):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited early with {process.returncode}")
        try:
            if requests.get(base + "/v1/models", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise SystemExit("server did not come up")


def start(kind, args, home):
    port = free_port()
    if kind == "orchard":
        env = dict(os.environ, ORCHARD_HOME=home, HF_HUB_CACHE=os.path.join(home, "hub"), RUST_LOG="warn")
        command = [args.orchard, "serve", "--port", str(port), "--no-auth", "--model", args.model]
        model = Path(args.model).name
    else:
        env = dict(os.environ)
        command = [sys.executable, "-m", "mlx_lm", "server", "--model", args.model, "--port", str(port),
                   "--log-level", "WARNING"]
        model = args.model
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    base = f"http://127.0.0.1:{port}"
    wait_ready(base, process)
    return process, base, model


def stream_once(base, model, question, max_tokens, extra=None):
    """One streamed chat completion at temperature 0 (`extra` adds fields):
    time to first token, decode tokens/s, completion tokens and the text."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": question}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
        **(extra or {}),
    }
    sent = time.perf_counter()
    first = last = None
    chunks = 0
    usage = None
    text = ""
    with requests.post(base + "/v1/chat/completions", json=body, stream=True, timeout=600) as response:
        response.raise_for_status()
        for line in response.iter_lines(decode_unicode=True):
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                usage = chunk["usage"]
            for choice in chunk.get("choices", []):
                if choice.get("delta", {}).get("content"):
                    now = time.perf_counter()
                    first = first or now
                    last = now
                    chunks += 1
                    text += choice["delta"]["content"]
    tokens = usage["completion_tokens"] if usage else chunks
    decode = (tokens - 1) / (last - first) if tokens > 1 and last > first else float("nan")
    return {"ttft": first - sent, "decode_tps": decode, "tokens": tokens, "text": text}


def measure(base, model, args):
    stream_once(base, model, "Hello!", 4)  # warm-up
    singles = [stream_once(base, model, QUESTIONS[i], args.max_tokens) for i in range(3)]
    result = {
        "ttft": statistics.median(s["ttft"] for s in singles),
        "decode_tps": statistics.median(s["decode_tps"] for s in singles),
    }
    for n in args.concurrency:
        outputs = [None] * n

        def client(i):
            outputs[i] = stream_once(base, model, QUESTIONS[i % len(QUESTIONS)], args.max_tokens)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
        began = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - began
        result[f"aggregate_{n}"] = sum(o["tokens"] for o in outputs) / wall
    return result


def engine_decode(args):
    out = subprocess.run([args.orchard, "bench", "--model", args.model, "--prompt-tokens", "32",
                          "--gen-tokens", str(args.max_tokens), "--trials", "2", "--json"],
                         capture_output=True, text=True, check=True).stdout
    report = json.loads(out)
    return report["generation_tps"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / ".deps/models/SmolLM2-135M-Instruct-4bit"))
    parser.add_argument("--orchard", default=str(ROOT / "target/release/orchard"))
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8])
    args = parser.parse_args()

    runs = {"orchard": [], "mlx_lm.server": []}
    engine = []
    with tempfile.TemporaryDirectory() as home:
        for round_number in range(args.rounds):
            for kind in ("orchard", "mlx_lm.server"):
                process, base, model = start(kind, args, home)
                try:
                    runs[kind].append(measure(base, model, args))
                finally:
                    process.terminate()
                    process.wait(timeout=60)
                print(f"round {round_number + 1} {kind}: {runs[kind][-1]}", file=sys.stderr)
            engine.append(engine_decode(args))
            print(f"round {round_number + 1} engine decode: {engine[-1]:.3f} tok/s", file=sys.stderr)

    mean = lambda kind, key: statistics.mean(r[key] for r in runs[kind])
    rows = [("time to first token, single stream (s)", "ttft"), ("decode tokens/s, single stream", "decode_tps")]
    rows += [(f"aggregate tokens/s, {n} concurrent streams", f"aggregate_{n}") for n in args.concurrency]
    print(f"Model `{Path(args.model).name}`; {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{platform.system()}; {args.rounds} rounds, {args.max_tokens} tokens per request, temperature 0.\n")
    print("| metric | Orchard | mlx_lm.server | Orchard / mlx_lm.server |")
    print("|---|---|---|---|")
    for label, key in rows:
        o, m = mean("orchard", key), mean("mlx_lm.server", key)
        print(f"| {label} | {o:.3f} | {m:.3f} | {o / m:.3f} |")
    http = mean("orchard", "decode_tps")
    print(f"\nOrchard's decode over HTTP / its engine's (`orchard bench`): {http:.3f} / "
          f"{statistics.mean(engine):.3f} = {http / statistics.mean(engine):.3f}")


if __name__ == "__main__":
    main()
