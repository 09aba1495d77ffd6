"""Thinking on the Anthropic API, against a copy of the SmolLM2 fixture whose
chat template works like Qwen3's: it opens a `<think>` block after the
assistant header unless `enable_thinking` is false, and writes earlier
reasoning (`reasoning_content`) back into assistant turns."""

import json
import os

import anthropic
import pytest

from conftest import MODEL, ROOT, serve

NAME = "Thinking-SmolLM2"
TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n"
    "{% if m.role == 'assistant' and m.reasoning_content %}<think>\n{{ m.reasoning_content }}\n</think>\n\n{% endif %}"
    "{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% else %}<think>\n{% endif %}"
    "{% endif %}"
)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    source = ROOT / ".deps" / "models" / MODEL
    target = tmp_path_factory.mktemp("models") / NAME
    target.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer.json", "generation_config.json"):
        os.symlink(source / name, target / name)
    config = json.loads((source / "tokenizer_config.json").read_text())
    config["chat_template"] = TEMPLATE
    (target / "tokenizer_config.json").write_text(json.dumps(config))
    with serve([target]) as server:
        yield anthropic.Anthropic(base_url=server.base_url, api_key=server.key, max_retries=0, timeout=300)


def ask(client, **kwargs):
    return client.messages.create(
        model=NAME, max_tokens=16, extra_body={"temperature": 0}, messages=[{"role": "user", "content": "Is 7 prime?"}], **kwargs
    )


def test_adaptive_thinking_thinks_unless_effort_is_low(client):
    high = ask(client, thinking={"type": "adaptive"}, output_config={"effort": "high"})
    assert high.content[0].type == "thinking" and high.content[0].thinking.strip(), high
    low = ask(client, thinking={"type": "adaptive"}, output_config={"effort": "low"})
    assert [block.type for block in low.content] == ["text"], low


def test_omitted_thinking_keeps_the_block_without_its_text(client):
    shown = ask(client, thinking={"type": "adaptive", "display": "summarized"})
    omitted = ask(client, thinking={"type": "adaptive", "display": "omitted"})
    assert shown.content[0].type == "thinking" and shown.content[0].thinking
    assert omitted.content[0].type == "thinking" and omitted.content[0].thinking == ""
    assert omitted.usage.output_tokens == shown.usage.output_tokens

    kinds = []
    with client.messages.stream(
        model=NAME, max_tokens=16, extra_body={"temperature": 0}, messages=[{"role": "user", "content": "Is 7 prime?"}],
        thinking={"type": "adaptive", "display": "omitted"},
    ) as stream:
        for event in stream:
            kinds.append(event.type if event.type != "content_block_delta" else event.delta.type)
        final = stream.get_final_message()
    assert "thinking_delta" not in kinds and "signature_delta" in kinds
    assert final.content[0].type == "thinking" and final.content[0].thinking == ""
    assert final.content[0].signature == omitted.content[0].signature


def test_omitted_thinking_goes_back_through_its_signature(client):
    # Claude Code asks for omitted thinking and keeps all of it in context.
    shown = ask(client, thinking={"type": "adaptive"})
    omitted = ask(client, thinking={"type": "adaptive", "display": "omitted"})

    def count(reply, keep):
        messages = [
            {"role": "user", "content": "Is 7 prime?"},
            {"role": "assistant", "content": [block.model_dump() for block in reply.content]},
            {"role": "user", "content": "And 9?"},
        ]
        extra = {"context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": keep}]}}
        return client.messages.count_tokens(model=NAME, messages=messages, extra_body=extra).input_tokens

    assert count(omitted, "all") == count(shown, "all")
    assert count(omitted, "all") > count(omitted, {"type": "thinking_turns", "value": 0})


def test_clear_thinking_decides_which_reasoning_goes_back(client):
    messages = [
        {"role": "user", "content": "Is 7 prime?"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "Seven has no divisors but one and itself.", "signature": ""},
            {"type": "text", "text": "Yes."},
        ]},
        {"role": "user", "content": "Is 9 prime?"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "Nine is three times three.", "signature": ""},
            {"type": "text", "text": "No."},
        ]},
        {"role": "user", "content": "Is 11 prime?"},
    ]

    def count(keep=None):
        extra = {}
        if keep is not None:
            extra["context_management"] = {"edits": [{"type": "clear_thinking_20251015", "keep": keep}]}
        return client.messages.count_tokens(model=NAME, messages=messages, extra_body=extra).input_tokens

    dropped, last, both = count(), count({"type": "thinking_turns", "value": 1}), count("all")
    assert dropped < last < both


def test_budget_tokens_closes_the_think_block(client):
    free = ask(client, thinking={"type": "enabled", "budget_tokens": 1024})
    assert [block.type for block in free.content] == ["thinking"], free
    limited = client.messages.create(
        model=NAME, max_tokens=40, extra_body={"temperature": 0}, messages=[{"role": "user", "content": "Is 7 prime?"}],
        thinking={"type": "enabled", "budget_tokens": 4},
    )
    kinds = [block.type for block in limited.content]
    assert kinds[0] == "thinking" and "text" in kinds, limited
    budgeted = client.messages.count_tokens(
        model=NAME, messages=[{"role": "assistant", "content": limited.content[0].thinking}]
    ).input_tokens
    empty = client.messages.count_tokens(model=NAME, messages=[{"role": "assistant", "content": ""}]).input_tokens
    assert budgeted - empty <= 6
