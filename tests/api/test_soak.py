"""A soak: 8 concurrent streaming clients for 2 minutes (ORCHARD_SOAK_SECONDS
changes it). Every stream must end with [DONE]; the only error allowed is 429;
resident memory may not grow by more than the prompt-cache budget."""

import json
import os
import re
import threading
import time

import requests

from conftest import MODEL, sse_data

CLIENTS = 8
SECONDS = float(os.environ.get("ORCHARD_SOAK_SECONDS", "120"))
# The worker's default prompt-cache budget (WorkerOptions::prompt_cache_bytes).
KV_BUDGET = 512 << 20
PROMPTS = ["Tell me about {}.", "Write a line about {}.", "What is {}?", "Describe {} briefly."]
TOPICS = ["the sea", "apples", "Paris", "winter", "a robot", "music", "trees", "the moon"]


def resident_memory(server):
    text = requests.get(server.base_url + "/metrics", headers={"Authorization": f"Bearer {server.key}"}, timeout=60).text
    return int(re.search(r"^orchard_process_resident_memory_bytes (\d+)$", text, re.M).group(1))


def test_eight_streaming_clients(server):
    headers = {"Authorization": f"Bearer {server.key}"}
    # Warm up: the model is loaded and the first caches exist before measuring.
    requests.post(server.base_url + "/v1/chat/completions", headers=headers, timeout=300,
                  json={"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}).raise_for_status()
    before = resident_memory(server)
    deadline = time.monotonic() + SECONDS
    results = {"done": 0, "rate_limited": 0, "errors": []}
    lock = threading.Lock()

    def client(number):
        turn = 0
        while time.monotonic() < deadline:
            turn += 1
            prompt = PROMPTS[turn % len(PROMPTS)].format(TOPICS[(number + turn) % len(TOPICS)])
            body = {"model": MODEL, "messages": [{"role": "user", "content": prompt}], "max_tokens": 24,
                    "temperature": 0.7, "stream": True}
            try:
                with requests.post(server.base_url + "/v1/chat/completions", headers=headers, json=body,
                                   stream=True, timeout=300) as response:
                    if response.status_code == 429:
                        assert "retry-after" in response.headers
                        with lock:
                            results["rate_limited"] += 1
                        time.sleep(float(response.headers["retry-after"]))
                        continue
                    if response.status_code != 200:
                        raise AssertionError(f"status {response.status_code}: {response.text}")
                    last = None
                    for last in sse_data(response):
                        if last != "[DONE]":
                            chunk = json.loads(last)
                            assert "error" not in chunk, chunk
                    if last != "[DONE]":
                        raise AssertionError(f"stream ended with {last!r}")
                with lock:
                    results["done"] += 1
            except Exception as error:  # collected and reported below
                with lock:
                    results["errors"].append(f"client {number}: {error!r}")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    after = resident_memory(server)
    print(f"soak: {results['done']} streams completed, {results['rate_limited']} rate-limited, "
          f"resident memory {before >> 20} -> {after >> 20} MiB")
    assert not results["errors"], "\n".join(results["errors"][:10])
    assert results["done"] >= CLIENTS
    assert after - before < KV_BUDGET, f"resident memory grew by {(after - before) >> 20} MiB"
