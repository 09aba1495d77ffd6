"""Codex CLI itself (npm @openai/codex, installed by `make setup` into
.deps/codex) pointed at `orchard serve` as a provider whose wire API is
`responses`, with its update check, analytics, plugins and apps turned off
in its config.toml so it reaches nothing but the port.

Codex's default request (its long instructions, skills and about a dozen
tools, about 40 KB) renders to 8,505 prompt tokens with SmolLM2's template,
over the fixture's 8192-token context: that run must end on the context window, which Codex
recognizes from `response.failed` with `context_length_exceeded`. With short
instructions and fewer tools it answers, through a profile that sets
temperature 0 (Codex sends no sampling parameters)."""

import os
import secrets
import subprocess
import urllib.request

import pytest
import requests

from conftest import MODEL, ROOT

CODEX = ROOT / ".deps" / "codex" / "node_modules" / ".bin" / "codex"
CONFIG = """model = "{model}"
model_provider = "orchard"
check_for_update_on_startup = false

[model_providers.orchard]
name = "Orchard"
base_url = "{base_url}/v1"
wire_api = "responses"
env_key = "ORCHARD_API_KEY"

[analytics]
enabled = false

[features]
plugins = false
remote_plugin = false
plugin_sharing = false
apps = false
in_app_updates = false
"""
# Short instructions and fewer tools: the request fits SmolLM2's context.
SMALL = [
    "--disable", "multi_agent", "--disable", "goals", "-c", 'web_search="disabled"',
    "-c", "include_environment_context=false", "-c", "include_permissions_instructions=false",
]


@pytest.fixture(scope="module")
def greeter(server):
    """A profile at temperature 0 with a short answer, as Codex's model."""
    headers = {"Authorization": f"Bearer {server.key}"}
    name = "codex-" + secrets.token_hex(4)
    profile = {
        "name": name, "model": MODEL, "description": "Codex test", "system_prompt": "",
        "temperature": 0.0, "top_p": None, "top_k": None, "min_p": None, "repetition_penalty": None,
        "max_tokens": 16, "context_length": None, "idle_ttl_minutes": None, "keep_loaded": False,
    }
    made = requests.post(server.base_url + "/api/profiles/create", headers=headers, json=profile, timeout=60)
    assert made.status_code == 200, made.text
    yield name
    requests.post(server.base_url + "/api/profiles/delete", headers=headers, json={"name": name}, timeout=60)


def codex(server, tmp_path, model, *args):
    assert CODEX.exists(), f"{CODEX} is missing: run `make setup`"
    home = tmp_path / "codex-home"
    home.mkdir(exist_ok=True)
    (home / "config.toml").write_text(CONFIG.format(model=model, base_url=server.base_url))
    instructions = tmp_path / "instructions.md"
    instructions.write_text("You are a terse assistant.")
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "CODEX_HOME": str(home),
        "ORCHARD_API_KEY": server.key,
    }
    return subprocess.run(
        [str(CODEX), "exec", "--skip-git-repo-check", "--sandbox", "read-only", *args, "Reply with one word: hello."],
        cwd=work, env=env, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
    )


def responses_answered(server):
    """How many /v1/responses requests the server answered with 200."""
    request = urllib.request.Request(server.base_url + "/metrics", headers={"Authorization": f"Bearer {server.key}"})
    text = urllib.request.urlopen(request, timeout=30).read().decode()
    total = 0
    for line in text.splitlines():
        if line.startswith("orchard_requests_total") and 'endpoint="/v1/responses"' in line and 'status="200"' in line:
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def test_codex_answers_a_turn_through_orchard(server, tmp_path, greeter):
    before = responses_answered(server)
    instructions = tmp_path / "instructions.md"
    run = codex(server, tmp_path, greeter, "-c", f'model_instructions_file="{instructions}"', *SMALL)
    said = run.stdout + run.stderr
    assert run.returncode == 0, said
    # `codex exec` prints the agent's last message on stdout.
    assert "hello" in run.stdout.lower(), said
    assert responses_answered(server) > before


def test_codexs_full_request_ends_on_the_context_window(server, tmp_path):
    before = responses_answered(server)
    run = codex(server, tmp_path, MODEL)
    said = run.stdout + run.stderr
    # Codex's words for `response.failed` with code context_length_exceeded.
    assert "ran out of room in the model's context window" in said, said
    assert responses_answered(server) > before
