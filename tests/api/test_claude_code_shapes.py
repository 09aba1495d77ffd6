"""Requests shaped like Claude Code 2.1's, sent with the official SDK's beta
client (with `anthropic-beta` and, as Claude Code, `?beta=true`) to `orchard serve`: a
system prompt in cache-controlled blocks, tools (one deferred), a system turn
inside `messages`, adaptive thinking, context management, effort,
`metadata.user_id` and `max_tokens: 32000`, far above the model's context.

The model is a copy of the SmolLM2 fixture whose config says its context is
1024 tokens, so that prompts which fill the context are quick to compute on
a CPU (Claude Code's own prompt, ~20k tokens, is in test_claude_code.py)."""

import json
import os

import anthropic
import pytest

from conftest import MODEL, ROOT, serve

SHORT = "SmolLM2-1k"
CONTEXT = 1024
BETAS = [
    "claude-code-20250219",
    "interleaved-thinking-2025-05-14",
    "context-management-2025-06-27",
    "effort-2025-11-24",
]
GUIDANCE = "\n".join(
    f"- Rule {n}: keep answers short, read files before editing them, and say what you changed."
    for n in range(1, 9)
)


def tool(name, description, **properties):
    return {
        "name": name,
        "description": description,
        "input_schema": {"type": "object", "properties": {k: {"type": v} for k, v in properties.items()}},
    }


TOOLS = [
    tool("Bash", "Run a shell command and return its output.", command="string", timeout="number"),
    tool("Read", "Read a file from the local filesystem.", file_path="string", offset="number"),
    dict(tool("Edit", "Replace a string in a file.", file_path="string", old_string="string", new_string="string"),
         cache_control={"type": "ephemeral"}),
    dict(tool("CronCreate", "Schedule a prompt to run later.", schedule="string"), defer_loading=True),
]


def claude_code_request(padding=0, question="What is the capital of France?"):
    """Claude Code's request, its system prompt padded by `padding` words."""
    return dict(
        model=SHORT,
        max_tokens=32000,
        extra_body={"temperature": 0},
        extra_query={"beta": "true"},
        betas=BETAS,
        system=[
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.328; cc_entrypoint=sdk-cli;"},
            {"type": "text", "text": "You are a coding agent.", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": GUIDANCE + " note" * padding, "cache_control": {"type": "ephemeral"}},
        ],
        messages=[
            {"role": "user", "content": [
                {"type": "text", "text": "<system-reminder>\nBe concise.\n</system-reminder>\n"},
                {"type": "text", "text": question, "cache_control": {"type": "ephemeral"}},
            ]},
            {"role": "system", "content": [{"type": "text", "text": "# Environment\n - Platform: linux\n - Shell: bash"}]},
        ],
        tools=TOOLS,
        thinking={"type": "adaptive", "display": "omitted"},
        context_management={"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        output_config={"effort": "high"},
        metadata={"user_id": json.dumps({"device_id": "0" * 64, "account_uuid": "", "session_id": "test"})},
    )


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    source = ROOT / ".deps" / "models" / MODEL
    target = tmp_path_factory.mktemp("models") / SHORT
    target.mkdir()
    for name in ("model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        os.symlink(source / name, target / name)
    config = json.loads((source / "config.json").read_text())
    config["max_position_embeddings"] = CONTEXT
    (target / "config.json").write_text(json.dumps(config))
    with serve([target]) as server:
        yield anthropic.Anthropic(base_url=server.base_url, api_key=server.key, max_retries=0, timeout=300)


def counted(client, request):
    """The prompt's tokens, as count_tokens sees it."""
    fields = {k: request[k] for k in ("model", "system", "messages", "tools", "thinking", "context_management", "betas",
                                      "extra_query")}
    return client.beta.messages.count_tokens(**fields).input_tokens


def near_the_limit(client, room, question="What is the capital of France?"):
    """A Claude Code request whose prompt leaves `room` tokens of context."""
    padding = CONTEXT - room - counted(client, claude_code_request(0, question))
    for _ in range(8):
        request = claude_code_request(padding, question)
        missing = CONTEXT - room - counted(client, request)
        if missing == 0:
            return request
        padding += missing
    pytest.fail("could not pad the prompt to the context limit")


def test_the_claude_code_request_is_answered(client):
    request = near_the_limit(client, room=48)
    message = client.beta.messages.create(**request)
    assert message.type == "message" and message.role == "assistant"
    text = [block for block in message.content if block.type == "text"]
    assert text and text[0].text.strip(), message
    assert message.stop_reason in ("end_turn", "max_tokens")
    usage = message.usage
    prompt = usage.input_tokens + (usage.cache_read_input_tokens or 0)
    assert prompt == CONTEXT - 48
    assert 0 < usage.output_tokens <= 48


def test_the_claude_code_request_streams_the_same_answer(client):
    request = near_the_limit(client, room=48)
    whole = client.beta.messages.create(**request)
    kinds = []
    with client.beta.messages.stream(**request) as stream:
        for event in stream:
            kinds.append(event.type)
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "content_block_delta" in kinds and "message_delta" in kinds
    assert [b.text for b in final.content if b.type == "text"] == [b.text for b in whole.content if b.type == "text"]
    assert final.stop_reason == whole.stop_reason


def test_max_tokens_above_the_context_stops_at_the_context(client):
    # 32000 is only an upper bound: the reply ends where the context does.
    request = near_the_limit(client, room=6, question="Count from 1 to 100, one number per line.")
    message = client.beta.messages.create(**request)
    assert message.stop_reason == "max_tokens"
    usage = message.usage
    assert usage.input_tokens + (usage.cache_read_input_tokens or 0) + usage.output_tokens == CONTEXT


def test_a_system_turn_joins_the_system_prompt(client):
    turns = client.messages.count_tokens(
        model=SHORT, system="Be brief.",
        messages=[{"role": "user", "content": "Hi"}, {"role": "system", "content": "Today is Monday."}],
    ).input_tokens
    folded = client.messages.count_tokens(
        model=SHORT, system="Be brief.\n\nToday is Monday.", messages=[{"role": "user", "content": "Hi"}],
    ).input_tokens
    assert turns == folded


def test_a_deferred_tool_waits_for_a_tool_reference(client):
    read, cron = TOOLS[1], TOOLS[3]
    plain_cron = {k: v for k, v in cron.items() if k != "defer_loading"}
    hello = [{"role": "user", "content": "Hi"}]

    def count(tools, messages):
        return client.messages.count_tokens(model=SHORT, tools=tools, messages=messages).input_tokens

    assert count([read, cron], hello) == count([read], hello)
    loaded = [
        {"role": "user", "content": "Schedule a reminder."},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "ToolSearch", "input": {"query": "cron"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                      "content": [{"type": "tool_reference", "tool_name": "CronCreate"}]}]},
    ]
    assert count([read, cron], loaded) == count([read, plain_cron], loaded)
    assert count([read, cron], loaded) > count([read], loaded)


def agent_session(uses=4):
    """A conversation of `uses` Read calls and their (long) results."""
    messages = [{"role": "user", "content": "Look at the files."}]
    for n in range(uses):
        messages.append({"role": "assistant", "content": [
            {"type": "tool_use", "id": f"toolu_{n}", "name": "Read", "input": {"file_path": f"/src/m{n}.py"}}]})
        messages.append({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": f"toolu_{n}", "content": f"# m{n}.py\n" + "x = 1\n" * 30}]})
    return messages


def clear_tool_uses(trigger, keep=1):
    return {"edits": [{"type": "clear_tool_uses_20250919", "trigger": {"type": "input_tokens", "value": trigger},
                       "keep": {"type": "tool_uses", "value": keep}}]}


def test_clear_tool_uses_clears_older_results_past_the_trigger(client):
    messages, tools = agent_session(), [TOOLS[1]]

    def count(context_management=None):
        extra = {"context_management": context_management} if context_management else {}
        return client.messages.count_tokens(model=SHORT, messages=messages, tools=tools, extra_body=extra).input_tokens

    whole = count()
    assert count(clear_tool_uses(trigger=whole)) == whole  # not past the trigger
    cleared = count(clear_tool_uses(trigger=100))
    assert cleared < whole

    reply = client.beta.messages.create(
        model=SHORT, max_tokens=4, messages=messages, tools=tools, betas=BETAS,
        context_management=clear_tool_uses(trigger=100), extra_body={"temperature": 0},
    )
    [edit] = reply.context_management.applied_edits
    assert edit.type == "clear_tool_uses_20250919" and edit.cleared_tool_uses == 3
    assert edit.cleared_input_tokens == whole - cleared
    assert reply.usage.input_tokens + (reply.usage.cache_read_input_tokens or 0) == cleared


@pytest.mark.parametrize(
    "field, value, param",
    [
        ("output_config", {"effort": "extreme"}, "output_config.effort"),
        ("output_config", {"format": {"type": "json_schema", "schema": {}}}, "output_config.format"),
        ("context_management", {"edits": [{"type": "forget_everything"}]}, "context_management.edits.0.type"),
        ("thinking", {"type": "adaptive", "display": "verbose"}, "thinking.display"),
        ("metadata", {"user_id": "u", "team": "x"}, "metadata.team"),
        ("tools", [{"type": "web_search_20250305", "name": "web_search"}], "tools.0.type"),
    ],
)
def test_what_is_not_honoured_is_refused_by_name(client, field, value, param):
    request = dict(model=SHORT, max_tokens=4, messages=[{"role": "user", "content": "Hi"}])
    with pytest.raises(anthropic.BadRequestError) as raised:
        client.messages.create(**request, extra_body={field: value})
    assert raised.value.body["type"] == "error"
    assert param in raised.value.body["error"]["message"]
