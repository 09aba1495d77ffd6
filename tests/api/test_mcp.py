"""Orchard's MCP port with real MCP servers: the official `mcp` SDK's client
talks to /mcp, which aggregates PyPI's mcp-server-time and npm's reference
"everything" server (stdio children), a server written here with the SDK's
MCPServer (streamable HTTP), and the built-in orchard-tools. Also the
breaker, the call timeout, imports, the audit log, `orchard mcp serve
--stdio`, and the official conformance suite."""

import asyncio
import contextlib
import json
import os
import pathlib
import re
import socket
import sqlite3
import subprocess
import sys
import threading
import time

import httpx2
import pytest
import requests
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import ResourceUpdated, ToolsListChanged
from mcp_types import PromptReference, ResourceUpdatedNotification, ToolListChangedNotification

from conftest import MODEL, ROOT, serve

BINARY = os.environ.get("ORCHARD_BIN", str(ROOT / "target" / "debug" / "orchard"))
VENV_BIN = ROOT / ".deps" / "venv" / "bin"
EVERYTHING = ROOT / ".deps" / "mcp" / "node_modules" / ".bin" / "mcp-server-everything"
FIXTURE = pathlib.Path(__file__).with_name("mcp_fixture_server.py")
# The call timeout the tests' Orchard runs with, so the hanging tool ends fast.
CALL_TIMEOUT = 3


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Fixture:
    """The MCPServer fixture over streamable HTTP, restartable on its port."""

    def __init__(self, folder):
        self.port = free_port()
        self.hang_log = folder / "hang.log"
        self.process = None

    def start(self):
        self.process = subprocess.Popen(
            [sys.executable, str(FIXTURE), "--port", str(self.port), "--hang-log", str(self.hang_log)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("the fixture MCP server did not start")

    def kill(self):
        self.process.kill()
        self.process.wait(timeout=10)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/mcp"


def orchard(home, *args, check=True, input=None):
    env = dict(os.environ, ORCHARD_HOME=str(home), RUST_LOG="warn")
    done = subprocess.run(
        [BINARY, *args], env=env, capture_output=True, text=True, timeout=120, input=input
    )
    if check:
        assert done.returncode == 0, f"orchard {' '.join(args)}: {done.stdout}{done.stderr}"
    return done


def claude_desktop_file(fixture):
    """The servers as Claude Desktop's claude_desktop_config.json keeps them."""
    return {
        "mcpServers": {
            "time": {
                "command": str(VENV_BIN / "mcp-server-time"),
                "args": ["--local-timezone", "${env:ORCHARD_TEST_TZ}"],
            },
            "everything": {"command": str(EVERYTHING), "args": ["stdio"]},
            "fixture": {"url": fixture.url, "headers": {"Authorization": "Bearer fixture-secret"}},
            "local": {"command": sys.executable, "args": [str(FIXTURE), "--hang-log", str(fixture.hang_log)]},
        }
    }


def client(server):
    """An SDK client of the server's /mcp, with its key in a header."""
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {server.key}"}, timeout=60)
    return Client(streamable_http_client(server.base_url + "/mcp", http_client=http))


def text_of(result):
    return "".join(block.text for block in result.content if getattr(block, "type", "") == "text")


@pytest.fixture(scope="module")
def mcp_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mcp")
    fixture = Fixture(folder)
    fixture.start()
    home = folder / "home"
    home.mkdir()
    config = folder / "claude_desktop_config.json"
    config.write_text(json.dumps(claude_desktop_file(fixture)))
    os.environ["ORCHARD_TEST_TZ"] = "UTC"
    # The database exists once something opened it: set the call timeout
    # before the server reads its settings.
    orchard(home, "mcp", "list", "--json", "--no-probe")
    with sqlite3.connect(home / "orchard.db") as db:
        db.execute(
            "INSERT INTO settings (key, value) VALUES ('mcp_call_timeout_seconds', ?)", (str(CALL_TIMEOUT),)
        )
    with serve([ROOT / ".deps" / "models" / MODEL], home=str(home)) as server:
        # Imported while the server runs: its hub must pick the servers up.
        done = orchard(home, "mcp", "import", str(config))
        assert "4 servers imported" in done.stdout, done.stdout
        server.fixture = fixture
        yield server
    if fixture.process.poll() is None:
        fixture.kill()


def test_the_sdk_lists_and_calls_every_backend_through_one_endpoint(mcp_server):
    async def run():
        async with client(mcp_server) as c:
            tools = {tool.name: tool for tool in (await c.list_tools()).tools}
            for name in tools:
                assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name), name
            for name in [
                "orchard-tools__calculate",
                "orchard-tools__get_weather",
                "time__get_current_time",
                "everything__echo",
                "fixture__add",
                "fixture__hang",
            ]:
                assert name in tools, sorted(tools)
            assert tools["fixture__add"].input_schema["required"] == ["a", "b"]

            calc = await c.call_tool("orchard-tools__calculate", {"expression": "0.1 + 0.2 * 10"})
            assert (calc.is_error, text_of(calc)) == (False, "2.1")
            now = await c.call_tool("time__get_current_time", {"timezone": "UTC"})
            assert not now.is_error, now
            assert json.loads(text_of(now))["timezone"] == "UTC"
            echo = await c.call_tool("everything__echo", {"message": "through orchard"})
            assert "through orchard" in text_of(echo), echo
            added = await c.call_tool("fixture__add", {"a": 2, "b": 40})
            assert (added.is_error, text_of(added)) == (False, "42")

            resources = [str(r.uri) for r in (await c.list_resources()).resources]
            assert "fixture://greeting" in resources, resources
            read = await c.read_resource("fixture://greeting")
            assert read.contents[0].text == "Hello from the fixture server."

            prompts = [p.name for p in (await c.list_prompts()).prompts]
            assert "fixture__review" in prompts, prompts
            prompt = await c.get_prompt("fixture__review", {"code": "x = 1", "language": "rust"})
            assert "rust code:\nx = 1" in prompt.messages[0].content.text
            # Argument completion goes to the prompt's own server.
            done = await c.complete(
                PromptReference(type="ref/prompt", name="fixture__review"), {"name": "language", "value": "r"}
            )
            assert done.completion.values == ["rust", "ruby"], done

            # An unknown name is the protocol's error, naming it.
            with pytest.raises(MCPError, match="no tool named"):
                await c.call_tool("nobody__nothing", {})

    asyncio.run(run())
    # The audit log has each call, with how it ended.
    with sqlite3.connect(pathlib.Path(mcp_server.home) / "orchard.db") as db:
        rows = db.execute("SELECT tool, outcome, duration_ms FROM mcp_calls").fetchall()
    outcomes = {tool: outcome for tool, outcome, _ in rows}
    for tool in ["orchard-tools__calculate", "time__get_current_time", "everything__echo", "fixture__add"]:
        assert outcomes.get(tool) == "ok", rows
    # /metrics counts them per server and tool.
    metrics = requests.get(
        mcp_server.base_url + "/metrics", headers={"Authorization": f"Bearer {mcp_server.key}"}, timeout=30
    ).text
    assert 'orchard_mcp_tool_calls_total{server="fixture",tool="add"} 1' in metrics, metrics
    assert 'orchard_mcp_server_up{server="time"} 1' in metrics, metrics


def test_the_mcp_port_needs_the_key_and_refuses_foreign_origins(mcp_server):
    body = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    headers = {"Accept": "application/json, text/event-stream"}
    no_key = requests.post(mcp_server.base_url + "/mcp", json=body, headers=headers, timeout=30)
    assert no_key.status_code == 401, no_key.text
    foreign = requests.post(
        mcp_server.base_url + "/mcp",
        json=body,
        headers={**headers, "Authorization": f"Bearer {mcp_server.key}", "Origin": "http://evil.example"},
        timeout=30,
    )
    assert foreign.status_code == 403, foreign.text


def test_a_hanging_tool_times_out_once_and_is_not_retried(mcp_server):
    async def run():
        async with client(mcp_server) as c:
            started = time.monotonic()
            result = await c.call_tool("fixture__hang", {})
            return result, time.monotonic() - started

    result, took = asyncio.run(run())
    assert result.is_error, result
    assert f"did not answer within {CALL_TIMEOUT} s" in text_of(result), text_of(result)
    assert CALL_TIMEOUT - 0.5 < took < CALL_TIMEOUT + 20, took
    time.sleep(1)
    log = mcp_server.fixture.hang_log.read_text()
    assert log.count("called") == 1, log
    # The server was told to stop the call.
    assert "cancelled" in log, log


def test_a_killed_backend_opens_its_breaker_and_comes_back_after_a_restart(mcp_server):
    fixture = mcp_server.fixture
    headers = {"Authorization": f"Bearer {mcp_server.key}"}

    def metric(name):
        text = requests.get(mcp_server.base_url + "/metrics", headers=headers, timeout=30).text
        match = re.search(rf'^{name}{{server="fixture"}} (\d+)$', text, re.M)
        return int(match.group(1)) if match else None

    async def add(c):
        return await c.call_tool("fixture__add", {"a": 1, "b": 1})

    async def run():
        async with client(mcp_server) as c:
            assert text_of(await add(c)) == "2"
            fixture.kill()
            failures = [await add(c) for _ in range(3)]
            assert all(r.is_error for r in failures), failures
            # Open now: the next call fails at once and says when it tries again.
            started = time.monotonic()
            refused = await add(c)
            assert refused.is_error and "trying again in" in text_of(refused), text_of(refused)
            assert time.monotonic() - started < 1
            assert metric("orchard_mcp_breaker_state") == 2
            assert metric("orchard_mcp_server_up") == 0
            # The CLI, asking for itself, sees it down too.
            listed = orchard(mcp_server.home, "mcp", "list", "--json", check=False)
            states = {s["name"]: s["state"] for s in json.loads(listed.stdout)}
            assert states["fixture"] == "down" and states["time"] == "up", states

            fixture.start()
            deadline = time.monotonic() + 30
            while True:
                back = await add(c)
                if not back.is_error or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
            assert (back.is_error, text_of(back)) == (False, "2"), text_of(back)
            assert metric("orchard_mcp_breaker_state") == 0
            assert metric("orchard_mcp_server_up") == 1

    asyncio.run(run())


def test_a_stdio_server_whose_process_ends_is_started_again_on_the_next_call(mcp_server):
    async def run():
        async with client(mcp_server) as c:
            assert text_of(await c.call_tool("local__add", {"a": 1, "b": 2})) == "3"
            crashed = await c.call_tool("local__crash", {})
            assert crashed.is_error, crashed
            again = await c.call_tool("local__add", {"a": 2, "b": 2})
            assert (again.is_error, text_of(again)) == (False, "4"), text_of(again)

    asyncio.run(run())
    metrics = requests.get(
        mcp_server.base_url + "/metrics", headers={"Authorization": f"Bearer {mcp_server.key}"}, timeout=30
    ).text
    assert 'orchard_mcp_server_up{server="local"} 1' in metrics, metrics
    assert 'orchard_mcp_tool_errors_total{server="local",tool="crash"} 1' in metrics, metrics


@pytest.mark.parametrize("server", ["local", "fixture"])
def test_a_server_that_says_its_tools_changed_is_listed_again(mcp_server, server):
    async def run():
        async with client(mcp_server) as c:
            before = [t.name for t in (await c.list_tools()).tools]
            assert f"{server}__grown" not in before
            assert text_of(await c.call_tool(f"{server}__grow", {})) == "grown"
            deadline = time.monotonic() + 10
            while True:
                after = [t.name for t in (await c.list_tools()).tools]
                if f"{server}__grown" in after or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            assert f"{server}__grown" in after, after
            assert text_of(await c.call_tool(f"{server}__grown", {})) == "I am new"

    asyncio.run(run())


async def next_event(events, kind, timeout=15):
    """The next event of `kind` from a listen stream or a queue of notices."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"no {kind.__name__} within {timeout} s"
        get = events.get() if isinstance(events, asyncio.Queue) else events.__anext__()
        event = await asyncio.wait_for(get, left)
        if isinstance(event, kind):
            return event


def test_templates_subscriptions_and_list_changes_reach_a_listening_client(mcp_server):
    """A 2026-07-28 client (the SDK's default against Orchard): resource
    templates route to their server, and one subscriptions/listen stream
    carries a backend's resource update and its tool-list change."""

    async def run():
        async with client(mcp_server) as c:
            assert c.protocol_version == "2026-07-28", c.protocol_version
            capabilities = c.server_capabilities
            assert capabilities.tools.list_changed and capabilities.resources.subscribe, capabilities
            templates = [t.uri_template for t in (await c.list_resource_templates()).resource_templates]
            assert "fixture://notes/{name}" in templates, templates
            read = await c.read_resource("fixture://notes/today")
            assert read.contents[0].text == "Note today."
            with pytest.raises(MCPError, match="no server lists a resource"):
                await c.read_resource("nowhere://at/all")

            async with c.listen(tools_list_changed=True, resource_subscriptions=["fixture://notes/today"]) as sub:
                events = sub.__aiter__()
                assert text_of(await c.call_tool("fixture__touch", {"uri": "fixture://notes/today"})) == "touched"
                updated = await next_event(events, ResourceUpdated)
                assert updated.uri == "fixture://notes/today"
                # Another URI is not what this stream asked for: it must not
                # arrive before the list change that follows it.
                await c.call_tool("fixture__touch", {"uri": "fixture://notes/other"})
                assert text_of(await c.call_tool("fixture__sprout", {"name": "listen"})) == "sprout_listen"
                between = []
                while not isinstance(event := await asyncio.wait_for(events.__anext__(), 15), ToolsListChanged):
                    between.append(event)
                assert between == [], between
            tools = [t.name for t in (await c.list_tools()).tools]
            assert "fixture__sprout_listen" in tools, tools

    asyncio.run(run())


# The 2025 protocol's subscribe and setLevel are what this test is about.
@pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")
def test_a_2025_session_gets_list_changes_resource_updates_and_log_messages(mcp_server):
    """A client on the 2025 protocol (initialize, a session): the same
    notices arrive on its session's stream, `resources/subscribe` reaches
    the server that owns the URI, and `logging/setLevel` brings the
    servers' log messages, named by server."""
    notices = asyncio.Queue()
    logs = asyncio.Queue()

    async def on_message(message):
        if not isinstance(message, Exception):
            await notices.put(message)

    async def on_log(params):
        await logs.put(params)

    async def run():
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {mcp_server.key}"}, timeout=60)
        transport = streamable_http_client(mcp_server.base_url + "/mcp", http_client=http)
        async with Client(transport, mode="legacy", message_handler=on_message, logging_callback=on_log) as c:
            assert c.protocol_version != "2026-07-28", c.protocol_version
            await c.subscribe_resource("fixture://notes/today")
            await c.call_tool("fixture__touch", {"uri": "fixture://notes/today"})
            updated = await next_event(notices, ResourceUpdatedNotification)
            assert str(updated.params.uri) == "fixture://notes/today"

            assert text_of(await c.call_tool("fixture__sprout", {"name": "session"})) == "sprout_session"
            await next_event(notices, ToolListChangedNotification)

            await c.set_logging_level("info")
            assert text_of(await c.call_tool("fixture__log", {"text": "hello from the fixture"})) == "logged"
            while True:
                message = await asyncio.wait_for(logs.get(), 15)
                if message.data == "hello from the fixture":
                    break
            assert message.logger.startswith("fixture"), message

            await c.unsubscribe_resource("fixture://notes/today")
            # A resource no server offers cannot be subscribed to.
            with pytest.raises(MCPError, match="no server lists a resource"):
                await c.subscribe_resource("nowhere://at/all")

    asyncio.run(run())


def test_claude_desktop_and_vs_code_files_import_as_the_same_servers(tmp_path):
    fixture = Fixture(tmp_path)
    claude = claude_desktop_file(fixture)
    vscode_servers = {}
    for name, entry in claude["mcpServers"].items():
        kind = {"type": "http"} if "url" in entry else {"type": "stdio"}
        vscode_servers[name] = {**kind, **entry}
    # VS Code's .vscode/mcp.json: "servers", comments and trailing commas.
    vscode = "// VS Code\n" + json.dumps({"servers": vscode_servers}, indent=2)[:-2] + ",\n}\n"
    listed = []
    for name, text in [("claude.json", json.dumps(claude)), ("mcp.json", vscode)]:
        home = tmp_path / name.replace(".", "-")
        home.mkdir()
        (tmp_path / name).write_text(text)
        os.environ["ORCHARD_TEST_TZ"] = "UTC"
        orchard(home, "mcp", "import", str(tmp_path / name))
        listed.append(json.loads(orchard(home, "mcp", "list", "--json", "--no-probe").stdout))
    assert listed[0] == listed[1]
    assert [s["name"] for s in listed[0]] == ["everything", "fixture", "local", "orchard-tools", "time"]
    # The header's value is a secret: not in the database.
    db = (tmp_path / "claude-json" / "orchard.db").read_bytes()
    assert b"fixture-secret" not in db
    # A file with a variable that is not set is refused, naming it.
    del os.environ["ORCHARD_TEST_TZ"]
    home = tmp_path / "unset"
    home.mkdir()
    refused = orchard(home, "mcp", "import", str(tmp_path / "claude.json"), check=False)
    assert refused.returncode != 0 and "ORCHARD_TEST_TZ is not set" in refused.stderr, refused.stderr


def test_the_cli_calls_a_tool_and_serves_the_aggregate_over_stdio(tmp_path):
    done = orchard(tmp_path, "mcp", "call", "orchard-tools", "calculate", '{"expression": "1/3"}')
    assert done.stdout.strip() == "1/3 ≈ 0.33333333333333333333", done.stdout
    bad = orchard(tmp_path, "mcp", "call", "orchard-tools", "calculate", '{"expression": "1/0"}', check=False)
    assert bad.returncode == 1 and "division by zero" in bad.stdout, bad

    async def run():
        params = StdioServerParameters(
            command=BINARY, args=["mcp", "serve", "--stdio"], env={**os.environ, "ORCHARD_HOME": str(tmp_path)}
        )
        async with Client(params) as c:
            names = [tool.name for tool in (await c.list_tools()).tools]
            assert names == ["orchard-tools__calculate", "orchard-tools__get_weather"], names
            weather = await c.call_tool("orchard-tools__get_weather", {"location": "Lisbon"})
            assert text_of(weather).startswith("DEMO DATA"), weather

    asyncio.run(run())


def test_the_conformance_suite_passes_all_but_its_baseline(tmp_path):
    """The official conformance runner against /mcp (keys off: it sends none).
    It fails on a scenario that fails and is not in the baseline, and on one
    in the baseline that passes, so the baseline stays exact."""
    nodes = sorted((ROOT / ".deps" / "mcp" / "node_modules").glob("node-*/bin/node"))
    assert nodes, "Node 22 for the conformance runner is missing: run `make setup`"
    runner = ROOT / ".deps" / "mcp" / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
    baseline = pathlib.Path(__file__).with_name("mcp_conformance_baseline.yml")
    with serve_without_keys(tmp_path) as base_url:
        done = subprocess.run(
            [str(nodes[0]), str(runner), "server", "--url", base_url + "/mcp", "--expected-failures", str(baseline)],
            capture_output=True,
            text=True,
            timeout=600,
        )
    summary = done.stdout[done.stdout.find("=== SUMMARY ===") :]
    assert done.returncode == 0, summary + done.stderr[-2000:]
    assert "Baseline check passed" in done.stdout, summary
    for scenario in ["server-initialize", "ping", "tools-list", "dns-rebinding-protection"]:
        assert f"✓ {scenario}:" in summary, summary


@contextlib.contextmanager
def serve_without_keys(home):
    env = dict(os.environ, ORCHARD_HOME=str(home), HF_HUB_CACHE=str(home / "hub"), RUST_LOG="warn")
    env["HF_ENDPOINT"] = "http://127.0.0.1:9"
    model = ROOT / ".deps" / "models" / MODEL
    process = subprocess.Popen(
        [BINARY, "serve", "--port", "0", "--no-auth", "--model", str(model)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        for line in process.stdout:
            match = re.search(r"serving on (http://\S+)/v1", line)
            if match:
                break
        else:
            raise AssertionError("orchard serve did not start")
        threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()
        yield match.group(1)
    finally:
        process.terminate()
        process.wait(timeout=60)


def test_the_benchmark_reports_both_paths_for_each_level(tmp_path):
    """`orchard mcp bench`, briefly: each level has calls on both paths, and
    the overhead is the difference of the percentiles."""
    done = orchard(tmp_path, "mcp", "bench", "--seconds", "0.3", "--clients", "1,2", "--json")
    levels = json.loads(done.stdout)
    assert [level["clients"] for level in levels] == [1, 2]
    for level in levels:
        for path in ["direct", "orchard"]:
            assert level[path]["calls"] > 0 and level[path]["calls_per_second"] > 0, level
        for p in ["p50", "p90", "p99"]:
            expected = level["orchard"]["latency_ms"][p] - level["direct"]["latency_ms"][p]
            assert abs(level["overhead_ms"][p] - expected) < 1e-9, level
    refused = orchard(tmp_path, "mcp", "bench", "--clients", "0", check=False)
    assert refused.returncode == 1 and "--clients" in refused.stderr, refused.stderr
