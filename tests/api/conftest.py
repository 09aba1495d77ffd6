"""Starts the real `orchard serve` on a free port with the SmolLM2 fixture,
for tests that talk to it with the official SDKs, schemathesis and a soak.

The binary is target/debug/orchard (or $ORCHARD_BIN); `make test` builds it.
"""

import os
import pathlib
import re
import secrets
import signal
import subprocess
import tempfile
import threading

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODEL = "SmolLM2-135M-Instruct-4bit"


class Server:
    def __init__(self, process, base_url, key, output, home=None):
        self.process = process
        self.base_url = base_url
        self.key = key
        self.output = output
        self.home = home


def sse_data(response):
    """The data of each `data:` line of a streamed `requests` response, in order.

    Lines end only at CR, LF or CRLF, as the event-stream format says. A JSON
    payload may hold U+2028 or U+0085 unescaped, which `str.splitlines` (and so
    `iter_lines(decode_unicode=True)`) would take for line breaks."""
    pending = b""
    for chunk in response.iter_content(chunk_size=None):
        *lines, pending = re.split(rb"\r\n|\r|\n", pending + chunk)
        for line in lines:
            if line.startswith(b"data:"):
                data = line[len(b"data:"):].decode("utf-8")
                yield data[1:] if data.startswith(" ") else data


@pytest.fixture(scope="session")
def server():
    binary = os.environ.get("ORCHARD_BIN", str(ROOT / "target" / "debug" / "orchard"))
    model = ROOT / ".deps" / "models" / MODEL
    assert model.is_dir(), f"{model} is missing: run `make setup`"
    key = "orch-test-" + secrets.token_hex(16)
    home = tempfile.mkdtemp(prefix="orchard-api-test-")
    env = dict(os.environ, ORCHARD_HOME=home, HF_HUB_CACHE=os.path.join(home, "hub"), RUST_LOG="warn")
    # The management API (/api) asks the Hub for searches, details and
    # downloads: point it at the discard port, which nothing listens on (and
    # only root could), never at the real Hub, so those calls are refused
    # (502 hub_unreachable) whatever the machine's network or HF_ENDPOINT.
    env["HF_ENDPOINT"] = "http://127.0.0.1:9"
    process = subprocess.Popen(
        [binary, "serve", "--port", "0", "--model", str(model), "--api-key", key],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    output = []
    base_url = None
    for line in process.stdout:
        output.append(line)
        match = re.search(r"serving on (http://\S+)/v1", line)
        if match:
            base_url = match.group(1)
            break
    assert base_url, "orchard serve did not start:\n" + "".join(output)

    # Keep reading so the pipe never fills.
    reader = threading.Thread(target=lambda: output.extend(process.stdout), daemon=True)
    reader.start()
    yield Server(process, base_url, key, output)

    # Graceful shutdown on SIGTERM: exit 0 after saying so.
    process.send_signal(signal.SIGTERM)
    code = process.wait(timeout=60)
    reader.join(timeout=5)
    text = "".join(output)
    assert code == 0, f"orchard serve exited with {code}:\n{text}"
    assert "Stopped." in text, text


# --- A second server on other model folders (the Anthropic and Claude Code tests) ---

import contextlib  # noqa: E402


@contextlib.contextmanager
def serve(models, home=None):
    """Runs `orchard serve` on the folders in `models` with its own key and
    home (a new one unless given), as the `server` fixture does, and stops it
    on leaving."""
    binary = os.environ.get("ORCHARD_BIN", str(ROOT / "target" / "debug" / "orchard"))
    key = "orch-test-" + secrets.token_hex(16)
    home = home or tempfile.mkdtemp(prefix="orchard-api-test-")
    env = dict(os.environ, ORCHARD_HOME=home, HF_HUB_CACHE=os.path.join(home, "hub"), RUST_LOG="warn")
    args = [binary, "serve", "--port", "0", "--api-key", key]
    for model in models:
        args += ["--model", str(model)]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    output = []
    base_url = None
    for line in process.stdout:
        output.append(line)
        match = re.search(r"serving on (http://\S+)/v1", line)
        if match:
            base_url = match.group(1)
            break
    assert base_url, "orchard serve did not start:\n" + "".join(output)
    reader = threading.Thread(target=lambda: output.extend(process.stdout), daemon=True)
    reader.start()
    try:
        yield Server(process, base_url, key, output, home)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        reader.join(timeout=5)
