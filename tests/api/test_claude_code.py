"""Claude Code itself (npm @anthropic-ai/claude-code, installed by
`make setup` into .deps/claude-code) pointed at `orchard serve` through
ANTHROPIC_BASE_URL, with its network features off: it reaches nothing but
the port.

Its default request (a long system prompt and its built-in tools) is about
20k tokens with SmolLM2's tokenizer, over the fixture's 8192-token context,
so the full run must fail on the prompt's length and nothing else; with no
tools and a short system prompt it answers."""

import os
import re
import subprocess
import urllib.request

import pytest

from conftest import MODEL, ROOT

CLAUDE = ROOT / ".deps" / "claude-code" / "node_modules" / ".bin" / "claude"


def claude(server, tmp_path, *args):
    assert CLAUDE.exists(), f"{CLAUDE} is missing: run `make setup`"
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": server.base_url,
        "ANTHROPIC_API_KEY": server.key,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_ERROR_REPORTING": "1",
        # A reply that ends is one Claude Code accepts: at temperature 0
        # SmolLM2 answers the prompt below in a word, and 64 tokens bound a
        # run that goes wrong (Claude Code's own max_tokens is 32000).
        "CLAUDE_CODE_EXTRA_BODY": '{"temperature": 0}',
        "CLAUDE_CODE_MAX_OUTPUT_TOKENS": "64",
    }
    return subprocess.run(
        [str(CLAUDE), "-p", "Reply with one word: hello.", "--model", MODEL, *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
    )


def messages_answered(server, status):
    """How many /v1/messages requests the server answered with `status`."""
    request = urllib.request.Request(server.base_url + "/metrics", headers={"Authorization": f"Bearer {server.key}"})
    text = urllib.request.urlopen(request, timeout=30).read().decode()
    total = 0
    for line in text.splitlines():
        if line.startswith("orchard_requests_total") and 'endpoint="/v1/messages"' in line \
                and f'status="{status}"' in line:
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def test_claude_code_answers_through_orchard(server, tmp_path):
    before = messages_answered(server, 200)
    run = claude(server, tmp_path, "--tools", "", "--system-prompt", "You are terse.")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "hello" in run.stdout.lower(), run.stdout + run.stderr
    assert messages_answered(server, 200) > before


def test_claude_codes_full_request_fails_only_on_the_context_length(server, tmp_path):
    before = messages_answered(server, 400)
    run = claude(server, tmp_path)
    said = run.stdout + run.stderr
    assert run.returncode != 0, said
    assert re.search(r"the prompt has \d+ tokens but the model's context holds 8192", said), said
    assert messages_answered(server, 400) > before


@pytest.fixture(autouse=True)
def _metrics_name_is_known(server):
    # The counter this file reads must exist, or the checks above prove nothing.
    request = urllib.request.Request(server.base_url + "/metrics", headers={"Authorization": f"Bearer {server.key}"})
    assert "orchard_requests_total" in urllib.request.urlopen(request, timeout=30).read().decode()
