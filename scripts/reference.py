#!/usr/bin/env python3
"""Reference outputs from mlx-lm for Orchard's parity tests.

Orchard's Rust engine is checked against mlx-lm (0.32.2), the reference
implementation of the same models on MLX. The Rust tests run this script as a
subprocess:

    .deps/venv/bin/python scripts/reference.py REQUEST.json OUT_DIR

and compare Orchard's prompt tokens, logits and greedy generations with what
it writes.

Request (REQUEST.json):

    {
      "model": "/abs/path/to/mlx/model/folder",
      "cases": [
        {"name": "france",                  # used for file names: [A-Za-z0-9_.-]
         "prompt": "What is the capital of France?",
         "chat": true,                      # optional, default false
         "tokens": null,                    # optional explicit token ids
         "greedy_tokens": 64}               # optional, default 0 (none)
      ]
    }

Prompt tokens: "tokens", when given, are used as they are. Otherwise, with
"chat": true, the prompt becomes a single user message rendered by the
tokenizer's chat template with add_generation_prompt=True, and the rendered
text is encoded without adding special tokens (as `mlx_lm.generate` does
for chat prompts). With "chat": false the raw text is encoded the way
`mlx_lm.stream_generate` encodes a string prompt: special tokens (BOS) are
added unless the text already starts with the tokenizer's BOS token.

Output (in OUT_DIR):

    <name>.logits.f32   logits at the last prompt position from one forward
                        pass over the whole prompt with a fresh prompt cache
                        (mlx_lm's make_prompt_cache), cast to float32, raw
                        little-endian, vocab_size values.
    result.json         {"model_type": ..., "vocab_size": ...,
                         "cases": {"<name>": {"prompt_tokens": [...],
                                              "greedy": [...],
                                              "greedy_text": "...",
                                              "logits_file": "<name>.logits.f32"}}}

Greedy generation runs mlx_lm's own loop (`stream_generate`, which drives
`generate_step`) with an argmax sampler, for at most greedy_tokens tokens.
It stops early only at one of the tokenizer's EOS ids; the EOS token itself
is NOT included in "greedy". "greedy_text" is the text mlx_lm's streaming
detokenizer produced for the included tokens, exactly as mlx_lm prints it; for
BPE tokenizers that detokenizer drops one leading space, so it can differ from
tokenizer.decode(greedy) (" Paris." decodes, "Paris." is streamed).

Invalid requests or model folders print one error line to stderr and exit
with status 1.
"""

import argparse
import json
import re
import sys
from pathlib import Path

import mlx.core as mx
import numpy as np
from mlx_lm import load, stream_generate
from mlx_lm.models.cache import make_prompt_cache

import mlx_shims  # noqa: F401  (lets mlx-lm run quantized mixture-of-experts models)

CASE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class RequestError(Exception):
    """A problem with the request or the model folder, reported without a traceback."""


def greedy_sampler(logprobs: mx.array) -> mx.array:
    return mx.argmax(logprobs, axis=-1)


# ---------------------------------------------------------------- request


def read_request(path: Path) -> dict:
    try:
        request = json.loads(path.read_text())
    except OSError as e:
        raise RequestError(f"cannot read request {path}: {e.strerror}")
    except json.JSONDecodeError as e:
        raise RequestError(f"request {path} is not valid JSON: {e}")
    if not isinstance(request, dict):
        raise RequestError("request must be a JSON object")

    model = request.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError('request needs "model", the path of an MLX model folder')
    if not (Path(model) / "config.json").is_file():
        raise RequestError(f"model folder {model} does not exist or has no config.json")

    cases = request.get("cases")
    if not isinstance(cases, list) or not cases:
        raise RequestError('request needs "cases", a non-empty list')
    names = set()
    for case in cases:
        check_case(case)
        if case["name"] in names:
            raise RequestError(f"case name {case['name']!r} is used twice")
        names.add(case["name"])
    return request


def check_case(case) -> None:
    if not isinstance(case, dict):
        raise RequestError("each case must be a JSON object")
    name = case.get("name")
    if not isinstance(name, str) or not CASE_NAME.match(name):
        raise RequestError(f"case name {name!r} must match {CASE_NAME.pattern}")

    tokens = case.get("tokens")
    if tokens is not None:
        if not isinstance(tokens, list) or not tokens or not all(is_int(t) and t >= 0 for t in tokens):
            raise RequestError(f'case {name}: "tokens" must be a non-empty list of token ids')
    elif not isinstance(case.get("prompt"), str):
        raise RequestError(f'case {name}: needs "prompt" (a string) or "tokens"')

    if not isinstance(case.get("chat", False), bool):
        raise RequestError(f'case {name}: "chat" must be true or false')
    greedy = case.get("greedy_tokens") or 0
    if not is_int(greedy) or greedy < 0:
        raise RequestError(f'case {name}: "greedy_tokens" must be a non-negative integer')


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# ---------------------------------------------------------------- model


def load_model(folder: str):
    try:
        return load(folder, return_config=True)
    except Exception as e:  # mlx_lm raises many kinds; report them all the same way
        raise RequestError(f"cannot load model {folder}: {type(e).__name__}: {e}")


def prompt_tokens(tokenizer, case: dict) -> list:
    if case.get("tokens") is not None:
        return list(case["tokens"])
    text = case["prompt"]
    if case.get("chat", False):
        messages = [{"role": "user", "content": text}]
        rendered = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        return tokenizer.encode(rendered, add_special_tokens=False)
    bos = tokenizer.bos_token
    add_special_tokens = bos is None or not text.startswith(bos)
    return tokenizer.encode(text, add_special_tokens=add_special_tokens)


def last_logits(model, tokens: list) -> np.ndarray:
    cache = make_prompt_cache(model)
    logits = model(mx.array(tokens)[None], cache=cache)[0, -1].astype(mx.float32)
    mx.eval(logits)
    return np.array(logits, dtype="<f4")


def greedy_generate(model, tokenizer, tokens: list, max_tokens: int):
    """Returns (token ids, text); an EOS token that ends generation is left out."""
    if max_tokens == 0:
        return [], ""
    ids, text = [], []
    for response in stream_generate(
        model, tokenizer, mx.array(tokens), max_tokens=max_tokens, sampler=greedy_sampler
    ):
        if response.finish_reason != "stop":
            ids.append(int(response.token))
        text.append(response.text)
    return ids, "".join(text)


# ---------------------------------------------------------------- main


def run_case(model, tokenizer, config: dict, case: dict, out_dir: Path):
    tokens = prompt_tokens(tokenizer, case)
    if not tokens:
        raise RequestError(f"case {case['name']}: the prompt encodes to no tokens")
    vocab = config.get("vocab_size")
    if vocab is not None and max(tokens) >= vocab:
        raise RequestError(f"case {case['name']}: token id {max(tokens)} is not below vocab_size {vocab}")
    logits = last_logits(model, tokens)
    logits_file = f"{case['name']}.logits.f32"
    logits.tofile(out_dir / logits_file)
    greedy, text = greedy_generate(model, tokenizer, tokens, case.get("greedy_tokens") or 0)
    result = {
        "prompt_tokens": [int(t) for t in tokens],
        "greedy": greedy,
        "greedy_text": text,
        "logits_file": logits_file,
    }
    return result, logits.size


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="mlx-lm reference outputs for Orchard's parity tests")
    parser.add_argument("request", type=Path, help="request JSON file")
    parser.add_argument("out_dir", type=Path, help="folder for result.json and the logits files")
    args = parser.parse_args(argv)

    try:
        request = read_request(args.request)
        model, tokenizer, config = load_model(request["model"])
        args.out_dir.mkdir(parents=True, exist_ok=True)
        cases, vocab_size = {}, None
        for case in request["cases"]:
            cases[case["name"]], vocab_size = run_case(model, tokenizer, config, case, args.out_dir)
    except RequestError as e:
        print(f"reference.py: error: {e}", file=sys.stderr)
        return 1

    result = {"model_type": config.get("model_type"), "vocab_size": vocab_size, "cases": cases}
    (args.out_dir / "result.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
