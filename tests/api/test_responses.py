"""The Responses API (/v1/responses) with the official `openai` SDK against
`orchard serve` and SmolLM2: streamed and not, the SDK's own stream
accumulator, function and custom tools, stored responses and
previous_response_id, and the errors."""

import json

import openai
import pytest

from conftest import MODEL

QUESTION = "What is the capital of France?"
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Get the current weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "description": "The city"}},
        "required": ["city"],
    },
}


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key=server.key, max_retries=0, timeout=300)


def test_streamed_equals_not_streamed_with_events_in_openais_order(client):
    whole = client.responses.create(model=MODEL, input=QUESTION, max_output_tokens=12, temperature=0)
    assert whole.object == "response" and whole.id.startswith("resp_")
    assert whole.status in ("completed", "incomplete")
    assert "Paris" in whole.output_text
    [message] = whole.output
    assert message.type == "message" and message.role == "assistant" and message.status == "completed"
    usage = whole.usage
    assert 0 < usage.output_tokens <= 12
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert usage.output_tokens_details.reasoning_tokens == 0

    events = list(client.responses.create(model=MODEL, input=QUESTION, max_output_tokens=12, temperature=0, stream=True))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    kinds = [e.type for e in events]
    deltas = kinds.count("response.output_text.delta")
    assert deltas > 0
    assert kinds == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        *["response.output_text.delta"] * deltas,
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.completed" if whole.status == "completed" else "response.incomplete",
    ]
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == whole.output_text
    final = events[-1].response
    assert final.output_text == text and final.id == events[0].response.id
    # The same prompt again comes from the prompt cache.
    assert final.usage.input_tokens_details.cached_tokens > 0


def test_the_sdks_stream_helper_accumulates_the_same_response(client):
    # responses.stream() rebuilds the response from the events and checks
    # that each delta lands in an item it was told about.
    with client.responses.stream(model=MODEL, input=QUESTION, max_output_tokens=12, temperature=0) as stream:
        texts = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert final.output_text == "".join(texts)
    assert "Paris" in final.output_text


def test_a_function_tool_round_trip_with_function_call_output(client):
    question = [{"role": "user", "content": "What is the weather in Paris?"}]
    called = client.responses.create(
        model=MODEL, input=question, tools=[WEATHER, {"type": "web_search"}], max_output_tokens=40,
        temperature=0, tool_choice={"type": "function", "name": "get_weather"},
    )
    assert called.status == "completed"
    [call] = [item for item in called.output if item.type == "function_call"]
    assert call.name == "get_weather" and call.call_id and call.id.startswith("fc_")
    assert isinstance(json.loads(call.arguments), dict)

    def answer(weather):
        follow_up = question + [item.model_dump(exclude_none=True) for item in called.output] + [
            {"type": "function_call_output", "call_id": call.call_id, "output": json.dumps({"weather": weather})},
        ]
        return client.responses.create(
            model=MODEL, input=follow_up, tools=[WEATHER], tool_choice="none", max_output_tokens=30, temperature=0,
        )

    answered = answer("sunny, 21 C")
    assert answered.output_text and not [i for i in answered.output if i.type == "function_call"]
    # The tool's output is in the prompt: a longer one makes a longer prompt.
    longer = answer("sunny, 21 C" + ", then windy" * 10)
    assert longer.usage.input_tokens >= answered.usage.input_tokens + 10


def test_tool_calls_stream_as_argument_deltas(client):
    events = list(client.responses.create(
        model=MODEL, input="Weather in Oslo?", tools=[WEATHER], tool_choice="required",
        max_output_tokens=40, temperature=0, stream=True,
    ))
    kinds = [e.type for e in events]
    assert "response.function_call_arguments.delta" in kinds, kinds
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    items = [e.item for e in events if e.type == "response.output_item.done" and e.item.type == "function_call"]
    assert len(done) == 1 and len(items) == 1
    assert done[0].arguments == items[0].arguments and items[0].name == "get_weather"
    assert isinstance(json.loads(done[0].arguments), dict)
    assert kinds[-1] == "response.completed"


def test_a_custom_tool_answers_with_its_free_form_input(client):
    note = {"type": "custom", "name": "take_note", "description": "Write a note down."}
    reply = client.responses.create(
        model=MODEL, input="Take a note: buy milk.", tools=[note],
        tool_choice={"type": "custom", "name": "take_note"}, max_output_tokens=40, temperature=0,
    )
    [call] = [item for item in reply.output if item.type == "custom_tool_call"]
    assert call.name == "take_note" and "milk" in call.input, call


def test_previous_response_id_continues_a_stored_response(client, server):
    first = client.responses.create(
        model=MODEL, input="My name is Ada.", instructions="Answer in one sentence.", max_output_tokens=16, temperature=0,
    )
    assert first.store is True
    assert client.responses.retrieve(first.id).output_text == first.output_text

    second = client.responses.create(
        model=MODEL, previous_response_id=first.id, input="What is my name?", max_output_tokens=16, temperature=0,
    )
    assert second.previous_response_id == first.id
    # The first exchange, its answer included, is the start of this prompt
    # (without the first's instructions, as OpenAI does): longer than the
    # first prompt and its answer, and mostly from the prompt cache.
    assert second.usage.input_tokens > first.usage.input_tokens - 10 + first.usage.output_tokens
    assert second.usage.input_tokens_details.cached_tokens > 0

    # Deleted, it can no longer be continued or read.
    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)
    with pytest.raises(openai.BadRequestError) as error:
        client.responses.create(model=MODEL, previous_response_id=first.id, input="Again?", max_output_tokens=4)
    assert error.value.body["param"] == "previous_response_id"

    unstored = client.responses.create(model=MODEL, input="Hi", store=False, max_output_tokens=4, temperature=0)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unstored.id)


def test_bad_requests_are_400s_naming_the_field(client):
    cases = [
        ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "data:image/png;base64,AA=="}]}]}, "input[0].content[0]"),
        ({"input": "Hi", "reasoning": {"effort": "enormous"}}, "reasoning.effort"),
        ({"input": "Hi", "text": {"format": {"type": "yaml"}}}, "text.format"),
        ({"input": [{"type": "function_call_output", "output": "x"}]}, "input[0].call_id"),
        ({"input": "Hi", "tool_choice": "required"}, "tool_choice"),
        ({"input": "Hi", "conversation": "conv_1"}, "conversation"),
    ]
    for extra, param in cases:
        with pytest.raises(openai.BadRequestError) as error:
            client.responses.create(model=MODEL, max_output_tokens=4, **extra)
        assert error.value.body["param"] == param, (extra, error.value.body)


def test_a_prompt_over_the_context_fails_as_context_length_exceeded(client):
    long_input = "word " * 9000
    with pytest.raises(openai.BadRequestError) as error:
        client.responses.create(model=MODEL, input=long_input, max_output_tokens=4)
    assert error.value.body["code"] == "context_length_exceeded"
    assert error.value.body["param"] == "input"

    events = list(client.responses.create(model=MODEL, input=long_input, max_output_tokens=4, stream=True))
    assert [e.type for e in events] == ["response.created", "response.in_progress", "response.failed"]
    failed = events[-1].response
    assert failed.status == "failed" and failed.error.code == "context_length_exceeded"
