"""The official `openai` SDK against `orchard serve` with SmolLM2."""

import json

import openai
import pytest

from conftest import MODEL, sse_data

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "The city"}},
            "required": ["city"],
        },
    },
}
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key=server.key, max_retries=0, timeout=300)


def test_models_lists_the_fixture(client):
    ids = [m.id for m in client.models.list()]
    assert MODEL in ids


def test_chat_streamed_equals_not_streamed_and_reports_usage(client):
    whole = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=12, temperature=0)
    assert whole.object == "chat.completion"
    text = whole.choices[0].message.content
    assert "Paris" in text
    assert whole.choices[0].finish_reason in ("stop", "length")
    assert whole.usage.completion_tokens <= 12
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + whole.usage.completion_tokens

    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=QUESTION, max_tokens=12, temperature=0, stream=True,
            stream_options={"include_usage": True},
        )
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    # The same prompt again comes from the prompt cache.
    assert chunks[-1].usage.prompt_tokens_details.cached_tokens > 0


def test_a_seed_makes_sampling_reproducible(client):
    def sample(seed):
        reply = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Tell me a story."}],
            max_tokens=16, temperature=1.0, seed=seed,
        )
        return reply.choices[0].message.content

    first = sample(7)
    assert sample(7) == first
    assert len({first, sample(8), sample(9)}) > 1, "different seeds should sample differently"


def test_stop_strings_end_the_text_before_them(client):
    full = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=12, temperature=0)
    text = full.choices[0].message.content
    stop = "France"
    assert stop in text, text
    cut = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=12, temperature=0, stop=[stop, "zzz"])
    assert cut.choices[0].message.content == text[: text.index(stop)]
    assert cut.choices[0].finish_reason == "stop"


def test_logprobs_with_alternatives(client):
    reply = client.chat.completions.create(
        model=MODEL, messages=QUESTION, max_tokens=5, temperature=0, logprobs=True, top_logprobs=3,
    )
    tokens = reply.choices[0].logprobs.content
    assert len(tokens) == reply.usage.completion_tokens
    for token in tokens:
        assert token.logprob <= 0
        assert len(token.top_logprobs) == 3
        # Greedy decoding picks the most likely token.
        assert token.top_logprobs[0].token == token.token
        assert abs(token.top_logprobs[0].logprob - token.logprob) < 1e-4
    assert "".join(t.token for t in tokens) == reply.choices[0].message.content


def test_a_tool_round_trip(client):
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    call_reply = client.chat.completions.create(
        model=MODEL, messages=messages, tools=[WEATHER], max_tokens=40, temperature=0,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    choice = call_reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments), dict)
    assert call.id.startswith("call_")

    messages.append(choice.message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps({"city": "Paris", "weather": "sunny, 21 C"})})
    # The answer turn: the tool's result is in, no further calls wanted.
    final = client.chat.completions.create(
        model=MODEL, messages=messages, tools=[WEATHER], tool_choice="none", max_tokens=30, temperature=0,
    )
    answer = final.choices[0]
    assert answer.finish_reason in ("stop", "length")
    assert answer.message.content and not answer.message.tool_calls


def test_tool_calls_stream_as_deltas(client):
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Weather in Oslo?"}], tools=[WEATHER],
        tool_choice="required", max_tokens=40, temperature=0, stream=True,
    )
    name, arguments, finish, ids = "", "", None, set()
    for chunk in stream:
        choice = chunk.choices[0]
        for delta in choice.delta.tool_calls or []:
            assert delta.index == 0
            if delta.id:
                ids.add(delta.id)
            if delta.function and delta.function.name:
                name += delta.function.name
            if delta.function and delta.function.arguments:
                arguments += delta.function.arguments
        finish = choice.finish_reason or finish
    assert name == "get_weather" and len(ids) == 1
    assert isinstance(json.loads(arguments), dict)
    assert finish == "tool_calls"


def test_completions_streamed_and_not(client):
    whole = client.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=6, temperature=0)
    assert whole.object == "text_completion"
    text = whole.choices[0].text
    assert text
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model=MODEL, prompt="The capital of France is", max_tokens=6, temperature=0, stream=True) if c.choices)
    assert streamed == text


def test_errors_are_sdk_exceptions_with_the_right_status(client, server):
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="no-such-model", messages=QUESTION)
    assert missing.value.status_code == 404
    assert missing.value.code == "model_not_found"

    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=MODEL, messages=QUESTION, n=2)
    assert bad.value.param == "n"

    with pytest.raises(openai.BadRequestError) as schema:
        client.chat.completions.create(model=MODEL, messages=QUESTION, response_format={"type": "yaml"})
    assert schema.value.param == "response_format"

    stranger = openai.OpenAI(base_url=server.base_url + "/v1", api_key="orch-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        stranger.models.list()


def test_sigterm_lets_a_stream_in_flight_finish(tmp_path):
    """A second server: SIGTERM arrives mid-stream; the stream still ends with
    [DONE] and the process exits 0."""
    import os
    import re
    import signal
    import subprocess

    import requests

    from conftest import ROOT

    binary = os.environ.get("ORCHARD_BIN", str(ROOT / "target" / "debug" / "orchard"))
    model = ROOT / ".deps" / "models" / MODEL
    env = dict(os.environ, ORCHARD_HOME=str(tmp_path), HF_HUB_CACHE=str(tmp_path / "hub"), RUST_LOG="warn")
    process = subprocess.Popen([binary, "serve", "--port", "0", "--no-auth", "--model", str(model)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        base = None
        for line in process.stdout:
            match = re.search(r"serving on (http://\S+)/v1", line)
            if match:
                base = match.group(1)
                break
        assert base
        body = {"model": MODEL, "messages": [{"role": "user", "content": "Count to twenty."}],
                "max_tokens": 20, "temperature": 0, "stream": True}
        with requests.post(base + "/v1/chat/completions", json=body, stream=True, timeout=300) as response:
            events = sse_data(response)
            first = next(events)
            assert first
            process.send_signal(signal.SIGTERM)
            rest = list(events)
        assert rest[-1] == "[DONE]"
        assert process.wait(timeout=60) == 0
        output = process.stdout.read()
        assert "Shutting down" in output and "Stopped." in output, output
    finally:
        if process.poll() is None:
            process.kill()
