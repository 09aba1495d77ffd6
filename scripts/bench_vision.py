#!/usr/bin/env python3
"""Time to first token of a request with an image: `orchard serve` against
mlx-vlm, on the same model and machine, in one run.

    .deps/venv/bin/python scripts/bench_vision.py [--orchard target/release/orchard]
        [--rounds 5] [--model DIR]

The model is the vision tests' small random-weight Gemma 3 (built by
scripts/vision_reference.py unless --model names another Gemma 3 folder).
Each request is one user turn, "Describe this image." and a 64x48 PNG, and
asks for one token; the time is from sending it to having that token:

- cold: a new image each time, so the vision tower and the whole prompt run;
- cached: the same image and text as the request before, so a prompt cache
  can hold all of it (Orchard's is keyed by the pixels and skips the tower).

Orchard is timed over HTTP (chat completions, the image as a data URL).
mlx-vlm 0.6.17 is timed in-process (no HTTP), through `stream_generate` with
the same image as a data URL; cached, with its `PromptCacheState` and
`VisionFeatureCache`, the way its own server reuses work. The medians of
`--rounds` requests are printed as a Markdown table for docs/benchmarks.md.
Build first: `cargo build --release --bin orchard`.
"""

import argparse
import base64
import io
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import requests
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "Describe this image."
KEY = "orch-bench-vision"


def png_url(seed: int) -> str:
    pixels = np.random.default_rng(seed).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def orchard(binary: Path, model: Path, rounds: int) -> dict:
    home = tempfile.mkdtemp(prefix="orchard-bench-vision-")
    env = dict(os.environ, ORCHARD_HOME=home, HF_HUB_CACHE=os.path.join(home, "hub"), RUST_LOG="warn")
    process = subprocess.Popen(
        [str(binary), "serve", "--port", "0", "--model", str(model), "--api-key", KEY],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    try:
        base = None
        for line in process.stdout:
            match = re.search(r"serving on (http://\S+)/v1", line)
            if match:
                base = match.group(1)
                break
        if base is None:
            sys.exit("orchard serve did not start")

        def ask(url: str) -> tuple:
            body = {
                "model": model.name,
                "max_tokens": 1,
                "temperature": 0,
                "messages": [{"role": "user", "content": [
                    {"type": "text", "text": PROMPT},
                    {"type": "image_url", "image_url": {"url": url}},
                ]}],
            }
            started = time.perf_counter()
            reply = requests.post(base + "/v1/chat/completions", json=body, timeout=300,
                                  headers={"Authorization": f"Bearer {KEY}"})
            elapsed = time.perf_counter() - started
            reply.raise_for_status()
            return elapsed, reply.json()["usage"]

        ask(png_url(999))  # loads the model
        cold = [ask(png_url(i))[0] for i in range(rounds)]
        ask(png_url(500))
        cached = []
        for _ in range(rounds):
            elapsed, usage = ask(png_url(500))
            if usage["prompt_tokens_details"]["cached_tokens"] != usage["prompt_tokens"] - 1:
                sys.exit(f"orchard: the repeated request was not a cache hit: {usage}")
            cached.append(elapsed)
        return {"cold": statistics.median(cold), "cached": statistics.median(cached)}
    finally:
        process.terminate()
        process.wait(timeout=60)


def mlx_vlm(model: Path, rounds: int) -> dict:
    from mlx_vlm import PromptCacheState, VisionFeatureCache, apply_chat_template, load, stream_generate

    network, processor = load(str(model))
    prompt = apply_chat_template(processor, network.config, PROMPT, num_images=1)

    def ask(url: str, **caches) -> float:
        started = time.perf_counter()
        for _ in stream_generate(network, processor, prompt, image=[url], max_tokens=1, **caches):
            pass
        return time.perf_counter() - started

    ask(png_url(999))
    cold = [ask(png_url(i)) for i in range(rounds)]
    caches = {"prompt_cache_state": PromptCacheState(), "vision_cache": VisionFeatureCache()}
    ask(png_url(500), **caches)
    cached = [ask(png_url(500), **caches) for _ in range(rounds)]
    return {"cold": statistics.median(cold), "cached": statistics.median(cached)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orchard", type=Path, default=ROOT / "target/release/orchard")
    parser.add_argument("--model", type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-vision-"))
    model = args.model
    if model is None:
        model = work / "Tiny-Gemma3-Vision"
        subprocess.run([sys.executable, str(ROOT / "scripts/vision_reference.py"), "model", str(model)],
                       check=True, capture_output=True)
    ours = orchard(args.orchard, model, args.rounds)
    theirs = mlx_vlm(model, args.rounds)
    print(f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, model {model.name}, "
          f"median of {args.rounds}\n")
    print("| | Orchard (HTTP) | mlx-vlm (in-process) | mlx-vlm / Orchard |")
    print("|---|---|---|---|")
    for kind in ("cold", "cached"):
        print(f"| {kind} | {ours[kind] * 1000:.1f} ms | {theirs[kind] * 1000:.1f} ms | "
              f"{theirs[kind] / ours[kind]:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
