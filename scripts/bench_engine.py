#!/usr/bin/env python3
"""Orchard's engine against mlx-lm on the same model and machine, in one run.

    .deps/venv/bin/python scripts/bench_engine.py [--model DIR] [--orchard BIN]
        [--prompt-tokens 512] [--gen-tokens 128] [--rounds 3] [--trials 2]

Each round runs `orchard bench --json` and then `python -m mlx_lm.benchmark`
(after `scripts/mlx_shims.py`)
with the same prompt length, generation length and number of timed trials
(each tool also does one untimed warm-up). Alternating the two spreads any
drift of the machine (heat, other load) over both.

Both measure prompt speed as prompt tokens over the time to the first token.
For decode speed, mlx-lm divides all G generated tokens by the time after
the first one, which holds only G - 1 steps; Orchard divides G - 1. The
script scales mlx-lm's figure by (G - 1) / G so both count the same steps,
and prints the raw figure too. The script prints a
Markdown table of the means over the rounds and the ratios Orchard / mlx-lm,
ready for docs/benchmarks.md. Build Orchard in release mode first:
`cargo build --release --bin orchard`.
"""

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = ROOT / ".deps/models/SmolLM2-135M-Instruct-4bit"
DEFAULT_ORCHARD = ROOT / "target/release/orchard"
METRICS = ("prompt_tps", "generation_tps", "peak_memory_gb")


def run(command: list) -> str:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"bench_engine: {' '.join(map(str, command))} failed:\n{result.stderr}")
    return result.stdout


def orchard_round(args) -> dict:
    out = run([args.orchard, "bench", "--model", args.model, "--json",
               "--prompt-tokens", str(args.prompt_tokens), "--gen-tokens", str(args.gen_tokens),
               "--trials", str(args.trials)])
    result = json.loads(out)
    return {key: result[key] for key in METRICS}


# `python -m mlx_lm.benchmark`, after scripts/mlx_shims.py (which lets mlx-lm
# run quantized mixture-of-experts models).
MLX_LM_BENCHMARK = (
    "import runpy, sys; sys.path.insert(0, sys.argv.pop(1)); import mlx_shims; "
    "sys.argv[0] = 'mlx_lm.benchmark'; runpy.run_module('mlx_lm.benchmark', run_name='__main__')"
)


def mlx_lm_round(args) -> dict:
    out = run([sys.executable, "-c", MLX_LM_BENCHMARK, ROOT / "scripts", "--model", args.model,
               "-p", str(args.prompt_tokens), "-g", str(args.gen_tokens), "-n", str(args.trials)])
    line = next((l for l in out.splitlines() if l.startswith("Averages:")), None)
    if line is None:
        sys.exit(f"bench_engine: no 'Averages:' line from mlx_lm.benchmark:\n{out}")
    values = dict(re.findall(r"(\w+)=([0-9.]+)", line))
    raw_tps = float(values["generation_tps"])
    return {"prompt_tps": float(values["prompt_tps"]),
            "generation_tps": raw_tps * (args.gen_tokens - 1) / args.gen_tokens,
            "raw_generation_tps": raw_tps,
            "peak_memory_gb": float(values["peak_memory"])}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--orchard", type=Path, default=DEFAULT_ORCHARD)
    parser.add_argument("--prompt-tokens", type=int, default=512)
    parser.add_argument("--gen-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=2)
    args = parser.parse_args()
    if not args.orchard.is_file():
        sys.exit(f"bench_engine: {args.orchard} not found: cargo build --release --bin orchard")
    if not (args.model / "config.json").is_file():
        sys.exit(f"bench_engine: {args.model} is not a model folder (make setup builds the fixtures)")

    results = {"orchard": [], "mlx-lm": []}
    for i in range(args.rounds):
        results["orchard"].append(orchard_round(args))
        results["mlx-lm"].append(mlx_lm_round(args))
        print(f"round {i + 1}/{args.rounds}: orchard {results['orchard'][-1]}, "
              f"mlx-lm {results['mlx-lm'][-1]}", file=sys.stderr)

    mean = {name: {k: statistics.mean(r[k] for r in rounds) for k in METRICS}
            for name, rounds in results.items()}
    labels = {"prompt_tps": f"prompt tokens/s ({args.prompt_tokens} tokens)",
              "generation_tps": f"decode tokens/s ({args.gen_tokens} tokens)",
              "peak_memory_gb": "peak memory (GB)"}
    print(f"Model `{args.model.name}`; {cpu_name()}, {os.cpu_count()} cores, {platform.system()}; "
          f"{args.rounds} alternating rounds of {args.trials} timed trials each.\n")
    print("| metric | Orchard | mlx-lm | Orchard / mlx-lm |")
    print("|---|---|---|---|")
    for key in METRICS:
        o, m = mean["orchard"][key], mean["mlx-lm"][key]
        print(f"| {labels[key]} | {o:.3f} | {m:.3f} | {o / m:.3f} |")
    raw = statistics.mean(r["raw_generation_tps"] for r in results["mlx-lm"])
    print(f"\nmlx-lm's own decode figure, before scaling by {args.gen_tokens - 1}/{args.gen_tokens}: {raw:.3f} tokens/s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
