#!/usr/bin/env python3
"""The cost of structured output: decode tokens/s of `orchard serve` with and
without a JSON schema, same model, prompts and answer lengths, in one run.

    .deps/venv/bin/python scripts/bench_structured.py [--model DIR] [--orchard BIN]
        [--items 40] [--rounds 3]

The schema asks for a list of exactly `--items` integers, a long answer of a
known shape; the free answer is given the same number of tokens as the
constrained one took (`max_tokens`), so both decode as long. Each request
streams at temperature 0; decode tokens/s is (completion tokens - 1) over the
time from the first content chunk to the last. It prints the medians as a
Markdown table for docs/benchmarks.md. Build first:
`cargo build --release --bin orchard`.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import tempfile
from pathlib import Path

from bench_server import ROOT, free_port, stream_once, wait_ready

PROMPTS = [
    "Write down some numbers.",
    "List the scores of the last games.",
    "Give me the page counts of some books.",
]


def stream(base, model, prompt, max_tokens, schema):
    """Completion tokens, decode tokens/s and text of one streamed answer."""
    extra = None
    if schema is not None:
        extra = {"response_format": {"type": "json_schema", "json_schema": {"name": "numbers", "schema": schema}}}
    result = stream_once(base, model, prompt, max_tokens, extra)
    return result["tokens"], result["decode_tps"], result["text"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / ".deps/models/SmolLM2-135M-Instruct-4bit"))
    parser.add_argument("--orchard", default=str(ROOT / "target/release/orchard"))
    parser.add_argument("--items", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    schema = {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 999},
              "minItems": args.items, "maxItems": args.items}

    home = tempfile.mkdtemp(prefix="orchard-bench-")
    port = free_port()
    env = dict(os.environ, ORCHARD_HOME=home, HF_HUB_CACHE=os.path.join(home, "hub"), RUST_LOG="warn")
    process = subprocess.Popen(
        [args.orchard, "serve", "--port", str(port), "--no-auth", "--model", args.model],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )
    base = f"http://127.0.0.1:{port}"
    model = Path(args.model).name
    try:
        wait_ready(base, process)
        stream(base, model, "Hello!", 4, None)  # warm-up: load, and build the grammar's token trie
        stream(base, model, "Hello!", 4, schema)
        free, constrained = [], []
        for _ in range(args.rounds):
            for prompt in PROMPTS:
                tokens, tps, text = stream(base, model, prompt, 400, schema)
                assert len(json.loads(text)) == args.items, text
                constrained.append(tps)
                _, free_tps, _ = stream(base, model, prompt, tokens, None)
                free.append(free_tps)
    finally:
        process.terminate()
        process.wait(timeout=60)

    free_median, constrained_median = statistics.median(free), statistics.median(constrained)
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores; model {model}; "
          f"{len(free)} requests each; a list of {args.items} integers (about {tokens} tokens)\n")
    print("| decode | tokens/s (median) | ratio |")
    print("|---|---|---|")
    print(f"| without a schema | {free_median:.1f} | 1.00 |")
    print(f"| with the JSON schema | {constrained_median:.1f} | {constrained_median / free_median:.2f} |")


if __name__ == "__main__":
    main()
