"""The official `anthropic` SDK against `orchard serve` with SmolLM2."""

import anthropic
import pytest

from conftest import MODEL

WEATHER = {
    "name": "get_weather",
    "description": "Get the current weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture(scope="module")
def client(server):
    return anthropic.Anthropic(base_url=server.base_url, api_key=server.key, max_retries=0, timeout=300)


def test_messages_not_streamed(client):
    message = client.messages.create(
        model=MODEL, max_tokens=12, extra_body={"temperature": 0}, system="You answer briefly.",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
    )
    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].type == "text" and message.content[0].text.strip()
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert message.usage.output_tokens <= 12 and message.usage.input_tokens > 0


def test_messages_streamed_match_not_streamed(client):
    kwargs = dict(model=MODEL, max_tokens=12, extra_body={"temperature": 0}, messages=[{"role": "user", "content": "Name a colour."}])
    whole = client.messages.create(**kwargs)
    kinds = []
    with client.messages.stream(**kwargs) as stream:
        for event in stream:
            kinds.append(event.type)
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    for kind in ("content_block_start", "content_block_delta", "content_block_stop", "message_delta"):
        assert kind in kinds
    assert final.content[0].text == whole.content[0].text
    assert final.usage.output_tokens == whole.usage.output_tokens


def test_tool_use_and_tool_result(client):
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    reply = client.messages.create(
        model=MODEL, max_tokens=40, extra_body={"temperature": 0}, tools=[WEATHER],
        tool_choice={"type": "tool", "name": "get_weather"}, messages=messages,
    )
    assert reply.stop_reason == "tool_use"
    use = next(block for block in reply.content if block.type == "tool_use")
    assert use.name == "get_weather" and isinstance(use.input, dict)
    assert use.id.startswith("toolu_")

    messages.append({"role": "assistant", "content": reply.content})
    messages.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny, 21 C"}]})
    # The answer turn: the tool's result is in, no further calls wanted.
    final = client.messages.create(
        model=MODEL, max_tokens=30, extra_body={"temperature": 0}, tools=[WEATHER],
        tool_choice={"type": "none"}, messages=messages,
    )
    assert final.stop_reason in ("end_turn", "max_tokens")
    assert final.content and final.content[0].type == "text"


def test_tool_use_streams(client):
    with client.messages.stream(
        model=MODEL, max_tokens=40, extra_body={"temperature": 0}, tools=[WEATHER], tool_choice={"type": "any"},
        messages=[{"role": "user", "content": "Weather in Oslo?"}],
    ) as stream:
        final = stream.get_final_message()
    use = next(block for block in final.content if block.type == "tool_use")
    assert use.name == "get_weather" and isinstance(use.input, dict)
    assert final.stop_reason == "tool_use"


def test_count_tokens(client):
    count = client.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "Hello there"}])
    message = client.messages.create(model=MODEL, max_tokens=1, messages=[{"role": "user", "content": "Hello there"}])
    assert count.input_tokens == message.usage.input_tokens + (message.usage.cache_read_input_tokens or 0)


def test_errors_are_sdk_exceptions(client, server):
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(model="no-such-model", max_tokens=5, messages=[{"role": "user", "content": "Hi"}])
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(model=MODEL, max_tokens=5, messages=[])
    stranger = anthropic.Anthropic(base_url=server.base_url, api_key="orch-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        stranger.messages.create(model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "Hi"}])


def test_a_stop_sequence_is_reported(client):
    kwargs = dict(model=MODEL, max_tokens=12, extra_body={"temperature": 0},
                  messages=[{"role": "user", "content": "What is the capital of France?"}])
    text = client.messages.create(**kwargs).content[0].text
    word = text.split()[2]
    cut = client.messages.create(stop_sequences=[word], **kwargs)
    assert cut.stop_reason == "stop_sequence" and cut.stop_sequence == word
    assert cut.content[0].text == text[: text.index(word)]


def test_stop_sequences_are_limited(client):
    kwargs = dict(model=MODEL, max_tokens=4, messages=[{"role": "user", "content": "Hi"}])
    client.messages.create(stop_sequences=[f"stop{n}" for n in range(16)], **kwargs)
    with pytest.raises(anthropic.BadRequestError) as many:
        client.messages.create(stop_sequences=[f"stop{n}" for n in range(17)], **kwargs)
    assert "stop_sequences" in many.value.body["error"]["message"]
    assert "at most 16" in many.value.body["error"]["message"]
    with pytest.raises(anthropic.BadRequestError) as long:
        client.messages.create(stop_sequences=["ok", "x" * 257], **kwargs)
    assert "stop_sequences.1" in long.value.body["error"]["message"]
    assert "256 bytes" in long.value.body["error"]["message"]


LONG_QUESTION = "Here is a list of fruits: " + ", ".join(f"fruit number {n}" for n in range(150)) + ". Which is first?"


def test_a_repeated_prompt_reports_cache_reads(client):
    kwargs = dict(model=MODEL, max_tokens=3, extra_body={"temperature": 0}, messages=[{"role": "user", "content": LONG_QUESTION}])
    total = client.messages.count_tokens(model=MODEL, messages=kwargs["messages"]).input_tokens
    client.messages.create(**kwargs)
    again = client.messages.create(**kwargs)
    # Anthropic's convention: input_tokens are computed, cache reads are not, and together they are the prompt.
    assert again.usage.cache_read_input_tokens > 0
    assert again.usage.input_tokens + again.usage.cache_read_input_tokens == total
    assert again.usage.cache_creation_input_tokens == 0


def stream_usages(client, kwargs):
    start = end = None
    with client.messages.stream(**kwargs) as stream:
        for event in stream:
            if event.type == "message_start":
                start = event.message.usage
            elif event.type == "message_delta":
                end = event.usage
    return start, end


def test_stream_usage_counts_the_whole_prompt_at_start_and_end(client):
    kwargs = dict(model=MODEL, max_tokens=3, extra_body={"temperature": 0}, messages=[{"role": "user", "content": LONG_QUESTION}])
    total = client.messages.count_tokens(model=MODEL, messages=kwargs["messages"]).input_tokens
    client.messages.create(**kwargs)
    start, end = stream_usages(client, kwargs)
    assert start.input_tokens + (start.cache_read_input_tokens or 0) == total
    assert end.input_tokens + end.cache_read_input_tokens == total
    assert end.cache_read_input_tokens > 0


def test_stream_usage_input_tokens_are_the_same_at_start_and_end(client):
    kwargs = dict(model=MODEL, max_tokens=3, extra_body={"temperature": 0}, messages=[{"role": "user", "content": LONG_QUESTION}])
    client.messages.create(**kwargs)
    start, end = stream_usages(client, kwargs)
    assert start.input_tokens == end.input_tokens
    assert start.cache_read_input_tokens == end.cache_read_input_tokens
