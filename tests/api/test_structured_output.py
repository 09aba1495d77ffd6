"""Structured output with the official `openai` SDK against `orchard serve`
and SmolLM2: 20 JSON schemas through `response_format`, each answer parsed
and checked with a JSON Schema validator (jsonschema_rs), streamed and not;
the SDK's own `parse` helpers with pydantic models, on chat completions and
on responses; and a schema Orchard cannot enforce refused by name."""

import json
from typing import Literal

import jsonschema_rs
import openai
import pydantic
import pytest

from conftest import MODEL


def obj(properties, required=None, **extra):
    return {"type": "object", "properties": properties, "required": required or list(properties), **extra}


NAME = {"type": "string", "maxLength": 24}
SCHEMAS = {
    "enum": obj({"color": {"enum": ["red", "green", "blue"]}}),
    "nested objects": obj({"name": NAME, "address": obj({"city": NAME, "zip": {"type": "string", "pattern": "^[0-9]{5}$"}})}),
    "array with bounds": obj({"numbers": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 4}}),
    "number range": obj({"celsius": {"type": "number", "minimum": -50, "maximum": 50}}),
    "exclusive integer range": obj({"age": {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 130}}),
    "date": obj({"day": {"type": "string", "format": "date"}}),
    "email": obj({"email": {"type": "string", "format": "email", "maxLength": 40}}),
    "uuid": obj({"id": {"type": "string", "format": "uuid"}}),
    "date-time": obj({"at": {"type": "string", "format": "date-time"}}),
    "optional field": obj({"title": NAME, "subtitle": NAME}, required=["title"]),
    "anyOf scalar": obj({"value": {"anyOf": [{"type": "integer"}, {"type": "string", "maxLength": 10}]}}),
    "boolean and null": obj({"done": {"type": "boolean"}, "note": {"type": "null"}}),
    "const": obj({"kind": {"const": "book"}, "title": NAME}),
    "array of objects": obj({"books": {"type": "array", "maxItems": 3, "items": obj({"title": NAME, "year": {"type": "integer", "minimum": 1800, "maximum": 2025}})}}),
    "pattern": obj({"code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{3}$"}}),
    "refs": {
        "$defs": {"point": obj({"x": {"type": "number"}, "y": {"type": "number"}})},
        **obj({"start": {"$ref": "#/$defs/point"}, "end": {"$ref": "#/$defs/point"}}),
    },
    "top-level array": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "minItems": 1, "maxItems": 3},
    "closed object": obj({"sku": NAME, "price": {"type": "number", "minimum": 0}, "in_stock": {"type": "boolean"}}, additionalProperties=False),
    "anyOf objects": obj({"shape": {"anyOf": [obj({"radius": {"type": "number"}}), obj({"side": {"type": "number"}})]}}),
    "string list with lengths": obj({"tags": {"type": "array", "items": {"type": "string", "minLength": 2, "maxLength": 12}, "minItems": 1, "maxItems": 5}}),
}


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key=server.key, max_retries=0, timeout=300)


def ask(name):
    return [{"role": "user", "content": f"Make up an example of {name} data and answer in JSON."}]


@pytest.mark.parametrize("name", list(SCHEMAS))
def test_every_answer_parses_and_follows_its_schema_streamed_or_not(client, name):
    schema = SCHEMAS[name]
    validator = jsonschema_rs.validator_for(schema)
    response_format = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}
    whole = client.chat.completions.create(
        model=MODEL, messages=ask(name), response_format=response_format, max_tokens=200, temperature=0,
    )
    choice = whole.choices[0]
    assert choice.finish_reason == "stop", choice
    answer = json.loads(choice.message.content)
    validator.validate(answer)

    chunks = client.chat.completions.create(
        model=MODEL, messages=ask(name), response_format=response_format, max_tokens=200, temperature=0, stream=True,
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == choice.message.content


def test_json_object_mode_and_sampled_answers_parse(client):
    finished = 0
    for seed in range(3):
        reply = client.chat.completions.create(
            model=MODEL, messages=ask("a person"), response_format={"type": "json_object"},
            max_tokens=200, temperature=0.8, seed=seed,
        )
        content = reply.choices[0].message.content
        # Even an answer cut by max_tokens is an object being written.
        assert content.startswith("{"), content
        if reply.choices[0].finish_reason == "stop":
            assert isinstance(json.loads(content), dict)
            finished += 1
    # Sampled answers may run long; not all three (seeds 0 to 2 here: one ends).
    assert finished >= 1


class Cat(pydantic.BaseModel):
    name: str = pydantic.Field(max_length=24)
    age: int = pydantic.Field(ge=0, le=40)
    mood: Literal["calm", "playful", "grumpy"]


def test_the_sdks_parse_helpers_get_pydantic_objects(client):
    question = [{"role": "user", "content": "Describe a cat."}]
    chat = client.chat.completions.parse(model=MODEL, messages=question, response_format=Cat, max_tokens=100, temperature=0)
    cat = chat.choices[0].message.parsed
    assert isinstance(cat, Cat), chat

    response = client.responses.parse(model=MODEL, input=question, text_format=Cat, max_output_tokens=100, temperature=0)
    assert isinstance(response.output_parsed, Cat), response
    assert response.text.format.type == "json_schema"

    streamed = client.responses.create(
        model=MODEL, input=question, max_output_tokens=100, temperature=0, stream=True,
        text={"format": {"type": "json_schema", "name": "cat", "schema": Cat.model_json_schema(), "strict": True}},
    )
    final = [e for e in streamed if e.type == "response.completed"][0].response
    assert Cat.model_validate_json(final.output_text)


def test_a_schema_orchard_cannot_enforce_is_a_400_naming_it(client):
    schema = obj({"a": {"type": "string"}}, dependentSchemas={"a": {"required": ["b"]}})
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(
            model=MODEL, messages=ask("x"), max_tokens=10,
            response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
        )
    assert error.value.body["param"] == "response_format"
    assert "dependentSchemas" in error.value.body["message"]
    with pytest.raises(openai.BadRequestError) as error:
        client.responses.create(
            model=MODEL, input="x", max_output_tokens=10,
            text={"format": {"type": "json_schema", "name": "x", "schema": schema}},
        )
    assert error.value.body["param"] == "text.format"


FORECAST = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 30},
        "unit": {"enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
    },
    "required": ["city", "unit", "days"],
    "additionalProperties": False,
}


def test_a_forced_tool_calls_arguments_follow_its_schema(client):
    validator = jsonschema_rs.validator_for(FORECAST)
    tool = {"type": "function", "function": {"name": "forecast", "description": "Weather forecast", "parameters": FORECAST}}
    for question in ["Weather in Paris this week?", "Will it rain in Oslo tomorrow?"]:
        reply = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": question}], tools=[tool],
            tool_choice={"type": "function", "function": {"name": "forecast"}}, max_tokens=60, temperature=0,
        )
        [call] = reply.choices[0].message.tool_calls
        validator.validate(json.loads(call.function.arguments))

    response = client.responses.create(
        model=MODEL, input="Forecast for Rome, please.", max_output_tokens=60, temperature=0,
        tools=[{"type": "function", "name": "forecast", "parameters": FORECAST}], tool_choice="required",
    )
    [call] = [item for item in response.output if item.type == "function_call"]
    validator.validate(json.loads(call.arguments))
