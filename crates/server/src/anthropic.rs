//! The Anthropic Messages API: `/v1/messages` and `/v1/messages/count_tokens`.
//! Errors here answer in Anthropic's format.

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use orchard_core::chat::{ToolCall, ToolChoice};
use orchard_core::{
    ChatMessage, Finish, GenerateOptions, GenerationRequest, GenerationStats, Output,
    SamplingParams,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::auth::Authorized;
use crate::error::{ApiError, parse_body};
use crate::sse::{self, Step};
use crate::{AppState, new_id};

#[derive(Debug, Deserialize)]
struct MessagesRequest {
    model: String,
    max_tokens: u64,
    messages: Vec<InMessage>,
    system: Option<Value>,
    stop_sequences: Option<Vec<String>>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<usize>,
    #[serde(default)]
    stream: bool,
    tools: Option<Vec<Tool>>,
    tool_choice: Option<Value>,
    thinking: Option<Value>,
    metadata: Option<Value>,
    #[serde(flatten)]
    other: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
struct CountRequest {
    model: String,
    messages: Vec<InMessage>,
    system: Option<Value>,
    tools: Option<Vec<Tool>>,
    #[serde(flatten)]
    other: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
struct InMessage {
    role: String,
    content: Value,
}

#[derive(Debug, Deserialize)]
struct Tool {
    name: String,
    description: Option<String>,
    input_schema: Value,
}

impl Tool {
    /// The OpenAI-style definition templates take.
    fn as_function(&self) -> Value {
        json!({
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.input_schema},
        })
    }
}

/// Anthropic tool definitions as OpenAI-style functions.
fn functions(tools: Option<Vec<Tool>>) -> Vec<Value> {
    tools
        .unwrap_or_default()
        .iter()
        .map(Tool::as_function)
        .collect()
}

/// Text of a `system` field: a string or text blocks.
fn system_text(system: Option<Value>) -> Result<Option<String>, ApiError> {
    match system {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(Value::Array(blocks)) => {
            let mut text = String::new();
            for block in blocks {
                text.push_str(block_text(&block, "system")?);
            }
            Ok(Some(text))
        }
        Some(_) => Err(ApiError::invalid(
            "system",
            "system must be a string or text blocks",
        )),
    }
}

fn block_text<'a>(block: &'a Value, param: &str) -> Result<&'a str, ApiError> {
    if block.get("type").and_then(Value::as_str) != Some("text") {
        return Err(ApiError::invalid(param, "expected a text block"));
    }
    block
        .get("text")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid(param, "a text block needs `text`"))
}

/// Anthropic messages as template messages: `tool_use` blocks become
/// assistant tool calls, `tool_result` blocks become `tool` messages.
fn chat_messages(
    system: Option<String>,
    messages: Vec<InMessage>,
) -> Result<Vec<ChatMessage>, ApiError> {
    if messages.is_empty() {
        return Err(ApiError::invalid("messages", "messages must not be empty"));
    }
    let mut out = Vec::new();
    if let Some(system) = system {
        out.push(ChatMessage::text("system", &system));
    }
    for (index, message) in messages.into_iter().enumerate() {
        let param = format!("messages.{index}.content");
        let role = message.role.as_str();
        if role != "user" && role != "assistant" {
            return Err(ApiError::invalid(
                &format!("messages.{index}.role"),
                format!("role must be user or assistant, not {role:?}"),
            ));
        }
        let blocks = match message.content {
            Value::String(text) => vec![json!({"type": "text", "text": text})],
            Value::Array(blocks) => blocks,
            _ => {
                return Err(ApiError::invalid(
                    &param,
                    "content must be a string or a list of blocks",
                ));
            }
        };
        let mut text = String::new();
        let mut calls = Vec::new();
        for block in &blocks {
            match block.get("type").and_then(Value::as_str) {
                Some("text") => text.push_str(block_text(block, &param)?),
                Some("tool_use") if role == "assistant" => {
                    let id = block.get("id").and_then(Value::as_str).unwrap_or_default();
                    let name = block.get("name").and_then(Value::as_str).ok_or_else(|| {
                        ApiError::invalid(&param, "a tool_use block needs `name`")
                    })?;
                    let input = block.get("input").cloned().unwrap_or_else(|| json!({}));
                    calls.push(json!({"id": id, "type": "function", "function": {"name": name, "arguments": input.to_string()}}));
                }
                Some("tool_result") if role == "user" => {
                    let id = block
                        .get("tool_use_id")
                        .and_then(Value::as_str)
                        .ok_or_else(|| {
                            ApiError::invalid(&param, "a tool_result block needs `tool_use_id`")
                        })?;
                    let content = match block.get("content") {
                        None | Some(Value::Null) => String::new(),
                        Some(Value::String(s)) => s.clone(),
                        Some(Value::Array(parts)) => {
                            let mut s = String::new();
                            for part in parts {
                                s.push_str(block_text(part, &param)?);
                            }
                            s
                        }
                        Some(_) => {
                            return Err(ApiError::invalid(
                                &param,
                                "tool_result content must be a string or text blocks",
                            ));
                        }
                    };
                    let mut result = ChatMessage::text("tool", &content);
                    result
                        .extra
                        .insert("tool_call_id".into(), Value::String(id.to_string()));
                    out.push(result);
                }
                // Earlier reasoning is not fed back, as Anthropic's own models do.
                Some("thinking" | "redacted_thinking") if role == "assistant" => {}
                Some("image" | "document") => {
                    return Err(ApiError::unsupported(&param, "image and document blocks"));
                }
                other => {
                    return Err(ApiError::invalid(
                        &param,
                        format!("a {role} message cannot hold a block of type {other:?}"),
                    ));
                }
            }
        }
        if role == "user"
            && text.is_empty()
            && blocks
                .iter()
                .all(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
        {
            continue;
        }
        let mut chat = ChatMessage::text(role, &text);
        if !calls.is_empty() {
            chat.extra.insert("tool_calls".into(), Value::Array(calls));
        }
        out.push(chat);
    }
    Ok(out)
}

fn refuse_unknown(other: &Map<String, Value>) -> Result<(), ApiError> {
    for (key, value) in other {
        if value.is_null() || key == "service_tier" {
            continue;
        }
        return Err(ApiError::unsupported(
            key,
            &format!("the parameter `{key}`"),
        ));
    }
    Ok(())
}

fn tool_choice(value: Option<Value>) -> Result<ToolChoice, ApiError> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(ToolChoice::Auto);
    };
    match value.get("type").and_then(Value::as_str) {
        Some("auto") => Ok(ToolChoice::Auto),
        Some("any") => Ok(ToolChoice::Required),
        Some("none") => Ok(ToolChoice::None),
        Some("tool") => value
            .get("name")
            .and_then(Value::as_str)
            .map(|n| ToolChoice::Function(n.to_string()))
            .ok_or_else(|| {
                ApiError::invalid("tool_choice", "tool_choice of type tool needs `name`")
            }),
        _ => Err(ApiError::invalid(
            "tool_choice",
            "tool_choice.type must be auto, any, tool or none",
        )),
    }
}

fn thinking(value: Option<Value>) -> Result<Option<bool>, ApiError> {
    match value
        .as_ref()
        .and_then(|v| v.get("type"))
        .and_then(Value::as_str)
    {
        None => Ok(None),
        Some("enabled") => Ok(Some(true)),
        Some("disabled") => Ok(Some(false)),
        Some(other) => Err(ApiError::invalid(
            "thinking",
            format!("thinking.type must be enabled or disabled, not {other:?}"),
        )),
    }
}

pub async fn messages(
    State(state): State<AppState>,
    _auth: Authorized,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    handle_messages(state, body)
        .await
        .map_err(ApiError::anthropic)
}

async fn handle_messages(
    state: AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let arrived = Instant::now();
    let request: MessagesRequest = parse_body(body)?;
    refuse_unknown(&request.other)?;
    let _ = request.metadata;
    if request.max_tokens == 0 {
        return Err(ApiError::invalid(
            "max_tokens",
            "max_tokens must be at least 1",
        ));
    }
    let tools = functions(request.tools);
    let choice = tool_choice(request.tool_choice)?;
    if tools.is_empty() && matches!(choice, ToolChoice::Required | ToolChoice::Function(_)) {
        return Err(ApiError::invalid(
            "tool_choice",
            "tool_choice requires tools",
        ));
    }
    let enable_thinking = thinking(request.thinking)?;
    let messages = chat_messages(system_text(request.system)?, request.messages)?;
    let defaults = SamplingParams::default();
    let stop = request.stop_sequences.unwrap_or_default();
    if stop.iter().any(String::is_empty) {
        return Err(ApiError::invalid(
            "stop_sequences",
            "stop sequences must not be empty",
        ));
    }
    let options = GenerateOptions {
        max_tokens: usize::try_from(request.max_tokens).unwrap_or(usize::MAX),
        sampling: SamplingParams {
            // Anthropic's default temperature is 1.
            temperature: request.temperature.unwrap_or(1.0),
            top_p: request.top_p.unwrap_or(defaults.top_p),
            top_k: request.top_k.unwrap_or(defaults.top_k),
            ..defaults
        },
        stop,
        ..GenerateOptions::default()
    };
    let model = state.manager.get(&request.model).await?;
    let mut generation = orchard_core::start(
        model,
        GenerationRequest::Chat {
            messages,
            tools,
            tool_choice: choice,
            enable_thinking,
            options,
            logprobs: false,
        },
    )
    .await?;
    let id = new_id("msg_");
    let model_id = generation.model.id.clone();
    let prompt_tokens = generation.prompt_tokens;
    let metrics = state.metrics.clone();
    let record_model = model_id.clone();
    let record = move |stats: &GenerationStats| {
        metrics.generation("/v1/messages", &record_model, stats, arrived.elapsed());
    };

    if !request.stream {
        let mut blocks = Blocks::default();
        let mut first = true;
        while let Some(output) = generation.next().await {
            match output? {
                Output::Delta(delta) => {
                    if std::mem::take(&mut first) {
                        state.metrics.first_token(arrived.elapsed());
                    }
                    blocks.add(&delta.reasoning, &delta.content, &delta.tool_calls);
                }
                Output::Done { stats, finish } => {
                    record(&stats);
                    return Ok(Json(json!({
                        "id": id,
                        "type": "message",
                        "role": "assistant",
                        "model": model_id,
                        "content": blocks.into_json(),
                        "stop_reason": stop_reason(finish, &stats),
                        "stop_sequence": stats.stop_sequence.clone(),
                        "usage": usage(&stats),
                    }))
                    .into_response());
                }
            }
        }
        return Err(ApiError::internal("the generation ended without a result"));
    }

    let metrics = state.metrics.clone();
    let mut blocks = StreamBlocks::default();
    let mut started = false;
    let mut first = true;
    let events = sse::stream(generation, move |step| {
        let event = sse_event;
        let mut events = Vec::new();
        if !std::mem::replace(&mut started, true) {
            events.push(event(
                "message_start",
                json!({
                    "type": "message_start",
                    "message": {
                        "id": id, "type": "message", "role": "assistant", "model": model_id,
                        "content": [], "stop_reason": null, "stop_sequence": null,
                        "usage": {"input_tokens": prompt_tokens, "output_tokens": 0},
                    },
                }),
            ));
        }
        match step {
            Step::Output(Output::Delta(delta)) => {
                if std::mem::take(&mut first) {
                    metrics.first_token(arrived.elapsed());
                }
                if !delta.reasoning.is_empty() {
                    let index = blocks.switch("thinking", None, &mut events);
                    events.push(event("content_block_delta", json!({"type": "content_block_delta", "index": index, "delta": {"type": "thinking_delta", "thinking": delta.reasoning}})));
                }
                if !delta.content.is_empty() {
                    let index = blocks.switch("text", None, &mut events);
                    events.push(event("content_block_delta", json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": delta.content}})));
                }
                for call in &delta.tool_calls {
                    let start = json!({"type": "tool_use", "id": tool_use_id(call), "name": call.name, "input": {}});
                    let index = blocks.switch("tool_use", Some(start), &mut events);
                    events.push(event("content_block_delta", json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": call.arguments}})));
                }
            }
            Step::Output(Output::Done { stats, finish }) => {
                record(&stats);
                blocks.close(&mut events);
                events.push(event(
                    "message_delta",
                    json!({
                        "type": "message_delta",
                        "delta": {"stop_reason": stop_reason(finish, &stats), "stop_sequence": stats.stop_sequence.clone()},
                        "usage": {"output_tokens": stats.generated_tokens},
                    }),
                ));
                events.push(event("message_stop", json!({"type": "message_stop"})));
            }
            Step::Error(error) => {
                let api: ApiError = error.into();
                events.push(event("error", api.anthropic().body()));
            }
            Step::End => {}
        }
        events
    });
    Ok(events.into_response())
}

fn sse_event(name: &str, data: Value) -> Event {
    Event::default().event(name).data(data.to_string())
}

/// The content block a stream has open.
#[derive(Debug, Default)]
struct StreamBlocks {
    open: Option<&'static str>,
    index: usize,
}

impl StreamBlocks {
    /// Makes the open block one of `kind` (a new one when `start` is given);
    /// returns its index.
    fn switch(
        &mut self,
        kind: &'static str,
        start: Option<Value>,
        events: &mut Vec<Event>,
    ) -> usize {
        if self.open.is_some() && (self.open != Some(kind) || start.is_some()) {
            self.close(events);
        }
        if self.open.is_none() {
            let block = start.unwrap_or_else(|| match kind {
                "thinking" => json!({"type": "thinking", "thinking": "", "signature": ""}),
                _ => json!({"type": "text", "text": ""}),
            });
            events.push(sse_event(
                "content_block_start",
                json!({"type": "content_block_start", "index": self.index, "content_block": block}),
            ));
            self.open = Some(kind);
        }
        self.index
    }

    fn close(&mut self, events: &mut Vec<Event>) {
        if self.open.take().is_some() {
            events.push(sse_event(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": self.index}),
            ));
            self.index += 1;
        }
    }
}

/// Content blocks of a whole reply, in order, merging runs of one kind.
#[derive(Debug, Default)]
struct Blocks(Vec<Value>);

impl Blocks {
    fn add(&mut self, reasoning: &str, text: &str, calls: &[ToolCall]) {
        self.push_text("thinking", reasoning);
        self.push_text("text", text);
        for call in calls {
            let input: Value = serde_json::from_str(&call.arguments).unwrap_or_else(|_| json!({}));
            self.0.push(json!({"type": "tool_use", "id": tool_use_id(call), "name": call.name, "input": input}));
        }
    }

    fn push_text(&mut self, kind: &str, text: &str) {
        if text.is_empty() {
            return;
        }
        if let Some(last) = self.0.last_mut().filter(|b| b["type"] == kind) {
            let joined = format!("{}{text}", last[kind].as_str().unwrap_or_default());
            last[kind] = Value::String(joined);
            return;
        }
        let mut block = json!({"type": kind, kind: text});
        if kind == "thinking" {
            block["signature"] = json!("");
        }
        self.0.push(block);
    }

    fn into_json(self) -> Value {
        Value::Array(self.0)
    }
}

/// Anthropic's ids start with `toolu_`; the call's own random part is kept.
fn tool_use_id(call: &ToolCall) -> String {
    format!("toolu_{}", call.id.trim_start_matches("call_"))
}

fn stop_reason(finish: Finish, stats: &GenerationStats) -> Value {
    match finish {
        Finish::Stop if stats.stop_sequence.is_some() => json!("stop_sequence"),
        Finish::Stop => json!("end_turn"),
        Finish::Length => json!("max_tokens"),
        Finish::ToolCalls => json!("tool_use"),
        Finish::Cancelled => Value::Null,
    }
}

fn usage(stats: &GenerationStats) -> Value {
    json!({
        "input_tokens": stats.prompt_tokens - stats.cached_prompt_tokens,
        "output_tokens": stats.generated_tokens,
        "cache_read_input_tokens": stats.cached_prompt_tokens,
        "cache_creation_input_tokens": 0,
    })
}

pub async fn count_tokens(
    State(state): State<AppState>,
    _auth: Authorized,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    async {
        let request: CountRequest = parse_body(body)?;
        refuse_unknown(&request.other)?;
        let tools = functions(request.tools);
        let messages = chat_messages(system_text(request.system)?, request.messages)?;
        let model = state.manager.get(&request.model).await?;
        let count = tokio::task::spawn_blocking(move || model.count_chat_tokens(messages, &tools))
            .await
            .map_err(ApiError::internal)??;
        Ok(Json(json!({"input_tokens": count})))
    }
    .await
    .map_err(ApiError::anthropic)
}
