"""`orchard bench --server`: the real `orchard serve` and the peer
`mlx_lm.server` (a server without Orchard's /metrics) measured with the same
command, as JSON and as a table."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

from conftest import MODEL, ROOT

BINARY = os.environ.get("ORCHARD_BIN", str(ROOT / "target" / "debug" / "orchard"))


def bench(*args):
    return subprocess.run([BINARY, "bench", *args], capture_output=True, text=True, timeout=600)


def test_bench_measures_orchard_with_percentiles_and_peak_memory(server):
    run = bench("--server", server.base_url, "--api-key", server.key, "--requests", "4",
                "--concurrency", "2", "--max-tokens", "8", "--json")
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads(run.stdout)
    assert (report["model"], report["completed"], report["failed"]) == (MODEL, 4, 0), report
    assert 4 <= report["output_tokens"] <= 32
    ttft, latency = report["time_to_first_token_ms"], report["latency_ms"]
    assert 0 < ttft["p50"] <= ttft["p90"] <= ttft["p99"]
    assert latency["p50"] >= ttft["p50"] and report["gap_between_tokens_ms"]["p50"] > 0
    assert report["aggregate_tokens_per_second"] > 0
    # Orchard's /metrics: the process holds the model, so well over 10 MB.
    assert report["peak_resident_bytes"] > 10_000_000 and report["mlx_peak_bytes"] > 0

    table = bench("--server", server.base_url + "/v1", "--api-key", server.key, "--requests", "2", "--max-tokens", "4")
    assert table.returncode == 0, table.stderr
    for line in ("time to first token", "gap between tokens", "request latency", "throughput:", "peak memory:"):
        assert line in table.stdout, table.stdout

    refused = bench("--server", server.base_url, "--api-key", "orch-wrong", "--requests", "1")
    assert refused.returncode == 1 and "401" in refused.stderr, refused.stderr


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_bench_measures_mlx_lm_server_too():
    port = free_port()
    model = ROOT / ".deps" / "models" / MODEL
    peer = subprocess.Popen([sys.executable, "-m", "mlx_lm", "server", "--model", str(model), "--port", str(port),
                             "--log-level", "WARNING"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        run = bench("--server", f"http://127.0.0.1:{port}", "--requests", "2", "--max-tokens", "4",
                    "--model-name", str(model), "--json")
        assert run.returncode == 0, run.stdout + run.stderr
        report = json.loads(run.stdout)
        assert report["completed"] == 2 and report["output_tokens"] > 0
        # No Orchard /metrics there: no memory figures, rather than wrong ones.
        assert report["peak_resident_bytes"] is None and report["mlx_peak_bytes"] is None
    finally:
        peer.terminate()
        peer.wait(timeout=60)
