#!/usr/bin/env python3
"""Chat prompts as `transformers` renders them, for Orchard's template parity tests.

mlx-lm (Orchard's reference) renders chat prompts with `transformers`'
`apply_chat_template`; Orchard renders the same templates with minijinja. The
Rust tests run this script as a subprocess:

    .deps/venv/bin/python scripts/chat_template_reference.py REQUEST.json OUT.json

and compare Orchard's prompt text and token ids with what it writes.

Request (REQUEST.json):

    {
      "cases": [
        {"name": "qwen3_tools",                 # any string, unique
         "tokenizer": "/abs/path/to/folder",     # tokenizer.json + tokenizer_config.json
         "messages": [{"role": "user", "content": "Hi"}, ...],
         "tools": [...],                         # optional, default null
         "template_kwargs": {"enable_thinking": true}}   # optional extra variables
      ]
    }

Every case is rendered with add_generation_prompt=True; the messages and tools
are passed as they are (no mlx-lm server processing). The prompt's token ids are
the rendered text encoded without adding special tokens, as
`apply_chat_template(tokenize=True)` does.

Output (OUT.json):

    {"<name>": {"text": "...", "tokens": [...]}          # rendered
     "<name>": {"error": "TemplateError: ..."}}          # the template refused

Invalid requests print one error line to stderr and exit with status 1.
"""

import argparse
import json
import sys
from pathlib import Path

from transformers import AutoTokenizer


class RequestError(Exception):
    """A problem with the request, reported without a traceback."""


def read_request(path: Path) -> list:
    try:
        request = json.loads(path.read_text())
    except OSError as e:
        raise RequestError(f"cannot read request {path}: {e.strerror}")
    except json.JSONDecodeError as e:
        raise RequestError(f"request {path} is not valid JSON: {e}")
    cases = request.get("cases") if isinstance(request, dict) else None
    if not isinstance(cases, list) or not cases:
        raise RequestError('request needs "cases", a non-empty list')
    names = set()
    for case in cases:
        if not isinstance(case, dict):
            raise RequestError("each case must be a JSON object")
        name = case.get("name")
        if not isinstance(name, str) or not name or name in names:
            raise RequestError(f"case name {name!r} must be a unique non-empty string")
        names.add(name)
        folder = case.get("tokenizer")
        if not isinstance(folder, str) or not (Path(folder) / "tokenizer.json").is_file():
            raise RequestError(f"case {name}: tokenizer {folder!r} is not a folder with tokenizer.json")
        if not isinstance(case.get("messages"), list):
            raise RequestError(f'case {name}: "messages" must be a list')
        if not isinstance(case.get("template_kwargs", {}), dict):
            raise RequestError(f'case {name}: "template_kwargs" must be an object')
    return cases


def render(tokenizer, case: dict) -> dict:
    try:
        text = tokenizer.apply_chat_template(
            case["messages"],
            tools=case.get("tools"),
            add_generation_prompt=True,
            tokenize=False,
            **case.get("template_kwargs", {}),
        )
    except Exception as e:  # the template's raise_exception, or its own type errors
        return {"error": f"{type(e).__name__}: {e}"}
    tokens = tokenizer.encode(text, add_special_tokens=False)
    return {"text": text, "tokens": [int(t) for t in tokens]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="transformers' chat prompts for Orchard's parity tests")
    parser.add_argument("request", type=Path, help="request JSON file")
    parser.add_argument("out", type=Path, help="where to write the results (JSON)")
    args = parser.parse_args(argv)
    try:
        cases = read_request(args.request)
        tokenizers = {}
        results = {}
        for case in cases:
            folder = case["tokenizer"]
            if folder not in tokenizers:
                try:
                    tokenizers[folder] = AutoTokenizer.from_pretrained(folder)
                except Exception as e:
                    raise RequestError(f"cannot load the tokenizer in {folder}: {type(e).__name__}: {e}")
            results[case["name"]] = render(tokenizers[folder], case)
    except RequestError as e:
        print(f"chat_template_reference.py: error: {e}", file=sys.stderr)
        return 1
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
