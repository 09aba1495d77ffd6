//! The OpenAI API: `/v1/models`, `/v1/chat/completions`, `/v1/completions`.

use std::collections::HashMap;
use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use orchard_core::chat::{ToolCall, ToolChoice};
use orchard_core::{
    ChatMessage, CoreError, Delta, Finish, GenerateOptions, Generation, GenerationRequest,
    GenerationStats, Output, SamplingParams, TokenLogprobs,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::error::{ApiError, parse_body};
use crate::sse::{self, Step};
use crate::{AppState, new_id, unix_now};

/// Fields OpenAI clients send that change nothing here.
const IGNORED_FIELDS: [&str; 5] = [
    "user",
    "metadata",
    "store",
    "service_tier",
    "stream_options",
];

/// The longest stop string, in bytes: each is searched for after every token.
pub const MAX_STOP_BYTES: usize = 256;

pub async fn models(State(state): State<AppState>) -> Json<Value> {
    let loaded: Vec<String> = state
        .manager
        .loaded()
        .iter()
        .map(|m| m.id.clone())
        .collect();
    let data: Vec<Value> = state
        .manager
        .entries()
        .into_iter()
        .map(|entry| {
            json!({
                "id": entry.id,
                "object": "model",
                "created": 0,
                "owned_by": "orchard",
                "loaded": loaded.contains(&entry.id),
                "source": entry.source,
            })
        })
        .collect();
    Json(json!({"object": "list", "data": data}))
}

/// `stop`: a string or a list of strings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

impl Stop {
    fn into_vec(self) -> Vec<String> {
        match self {
            Stop::One(s) => vec![s],
            Stop::Many(v) => v,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

/// The sampling fields both endpoints share.
#[derive(Debug, Default, Deserialize)]
struct Sampling {
    temperature: Option<f32>,
    top_p: Option<f32>,
    /// Extensions beyond OpenAI, as mlx-lm's server takes them.
    top_k: Option<usize>,
    min_p: Option<f32>,
    repetition_penalty: Option<f32>,
    frequency_penalty: Option<f32>,
    presence_penalty: Option<f32>,
    logit_bias: Option<HashMap<String, f32>>,
    seed: Option<i64>,
    stop: Option<Stop>,
}

impl Sampling {
    fn options(self, max_tokens: Option<u64>) -> Result<GenerateOptions, ApiError> {
        let defaults = SamplingParams::default();
        let mut logit_bias = HashMap::new();
        for (token, bias) in self.logit_bias.unwrap_or_default() {
            let id = token.parse::<u32>().map_err(|_| {
                ApiError::invalid(
                    "logit_bias",
                    format!("logit_bias keys are token ids; {token:?} is not one"),
                )
            })?;
            if !(-100.0..=100.0).contains(&bias) {
                return Err(ApiError::invalid(
                    "logit_bias",
                    "logit_bias values must be between -100 and 100",
                ));
            }
            logit_bias.insert(id, bias);
        }
        let stop = self.stop.map(Stop::into_vec).unwrap_or_default();
        if stop.len() > 4
            || stop
                .iter()
                .any(|s| s.is_empty() || s.len() > MAX_STOP_BYTES)
        {
            return Err(ApiError::invalid(
                "stop",
                format!(
                    "stop takes up to 4 non-empty strings of at most {MAX_STOP_BYTES} bytes each"
                ),
            ));
        }
        let max_tokens = match max_tokens {
            Some(0) => {
                return Err(ApiError::invalid(
                    "max_tokens",
                    "max_tokens must be at least 1",
                ));
            }
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
            None => 0,
        };
        Ok(GenerateOptions {
            max_tokens,
            sampling: SamplingParams {
                // OpenAI's default temperature is 1.
                temperature: self.temperature.unwrap_or(1.0),
                top_p: self.top_p.unwrap_or(defaults.top_p),
                top_k: self.top_k.unwrap_or(defaults.top_k),
                min_p: self.min_p.unwrap_or(defaults.min_p),
                repetition_penalty: self
                    .repetition_penalty
                    .unwrap_or(defaults.repetition_penalty),
                presence_penalty: self.presence_penalty.unwrap_or(defaults.presence_penalty),
                frequency_penalty: self.frequency_penalty.unwrap_or(defaults.frequency_penalty),
                logit_bias,
                // Negative seeds are valid in OpenAI's API; keep their bits.
                seed: self.seed.map(|s| s as u64),
            },
            stop,
            ..GenerateOptions::default()
        })
    }
}

#[derive(Debug, Deserialize)]
struct ChatRequest {
    model: String,
    messages: Vec<InMessage>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    #[serde(flatten)]
    sampling: Sampling,
    logprobs: Option<bool>,
    top_logprobs: Option<usize>,
    tools: Option<Vec<Value>>,
    tool_choice: Option<Value>,
    n: Option<u32>,
    response_format: Option<Value>,
    /// Orchard extension: switch reasoning on or off where the template allows.
    enable_thinking: Option<bool>,
    /// `false`: at most one tool call per answer.
    parallel_tool_calls: Option<bool>,
    /// Everything else: refused unless known to be harmless.
    #[serde(flatten)]
    other: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
struct InMessage {
    role: String,
    #[serde(default)]
    content: Option<Value>,
    name: Option<String>,
    tool_calls: Option<Vec<Value>>,
    tool_call_id: Option<String>,
}

fn refuse_unknown(other: &Map<String, Value>) -> Result<(), ApiError> {
    for (key, value) in other {
        if IGNORED_FIELDS.contains(&key.as_str()) || value.is_null() {
            continue;
        }
        return Err(ApiError::unsupported(
            key,
            &format!("the parameter `{key}`"),
        ));
    }
    Ok(())
}

fn check_n(n: Option<u32>) -> Result<(), ApiError> {
    match n {
        None | Some(1) => Ok(()),
        Some(0) => Err(ApiError::invalid("n", "n must be 1")),
        Some(_) => Err(ApiError::unsupported(
            "n",
            "more than one choice per request (n > 1)",
        )),
    }
}

/// Text of a message's content: a string, or text parts.
fn content_text(content: Option<Value>, index: usize) -> Result<String, ApiError> {
    let param = format!("messages[{index}].content");
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(text)) => Ok(text),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for part in parts {
                match part.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        let piece = part.get("text").and_then(Value::as_str).ok_or_else(|| {
                            ApiError::invalid(&param, "a text part needs a `text` string")
                        })?;
                        text.push_str(piece);
                    }
                    Some("image_url" | "input_image") => {
                        return Err(ApiError::unsupported(&param, "image input"));
                    }
                    Some("input_audio" | "file") => {
                        return Err(ApiError::unsupported(&param, "audio and file input"));
                    }
                    other => {
                        return Err(ApiError::invalid(
                            &param,
                            format!("unknown content part type {other:?}; use \"text\""),
                        ));
                    }
                }
            }
            Ok(text)
        }
        Some(_) => Err(ApiError::invalid(
            &param,
            "content must be a string or a list of parts",
        )),
    }
}

fn chat_messages(messages: Vec<InMessage>) -> Result<Vec<ChatMessage>, ApiError> {
    if messages.is_empty() {
        return Err(ApiError::invalid("messages", "messages must not be empty"));
    }
    let mut out = Vec::with_capacity(messages.len());
    for (index, message) in messages.into_iter().enumerate() {
        let role = match message.role.as_str() {
            "developer" => "system",
            role @ ("system" | "user" | "assistant" | "tool") => role,
            other => {
                return Err(ApiError::invalid(
                    &format!("messages[{index}].role"),
                    format!(
                        "unknown role {other:?}; use system, developer, user, assistant or tool"
                    ),
                ));
            }
        };
        let mut chat = ChatMessage::text(role, &content_text(message.content, index)?);
        if let Some(calls) = message.tool_calls.filter(|c| !c.is_empty()) {
            if role != "assistant" {
                return Err(ApiError::invalid(
                    &format!("messages[{index}].tool_calls"),
                    "only assistant messages have tool_calls",
                ));
            }
            chat.extra.insert("tool_calls".into(), Value::Array(calls));
        }
        if role == "tool" {
            let id = message.tool_call_id.ok_or_else(|| {
                ApiError::invalid(
                    &format!("messages[{index}].tool_call_id"),
                    "a tool message needs the tool_call_id it answers",
                )
            })?;
            chat.extra.insert("tool_call_id".into(), Value::String(id));
        }
        if let Some(name) = message.name {
            chat.extra.insert("name".into(), Value::String(name));
        }
        out.push(chat);
    }
    Ok(out)
}

fn tool_choice(value: Option<Value>, has_tools: bool) -> Result<ToolChoice, ApiError> {
    let choice = match value {
        None | Some(Value::Null) => ToolChoice::Auto,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            other => {
                return Err(ApiError::invalid(
                    "tool_choice",
                    format!(
                        "unknown tool_choice {other:?}; use auto, none, required or a function"
                    ),
                ));
            }
        },
        Some(object) => {
            let name = object
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(|| ApiError::invalid("tool_choice", "tool_choice must be {\"type\": \"function\", \"function\": {\"name\": ...}}"))?;
            ToolChoice::Function(name.to_string())
        }
    };
    if !has_tools && matches!(choice, ToolChoice::Required | ToolChoice::Function(_)) {
        return Err(ApiError::invalid(
            "tool_choice",
            "tool_choice requires tools",
        ));
    }
    Ok(choice)
}

fn check_tools(tools: &[Value]) -> Result<(), ApiError> {
    for (index, tool) in tools.iter().enumerate() {
        let param = format!("tools[{index}]");
        if tool.get("type").and_then(Value::as_str) != Some("function") {
            return Err(ApiError::invalid(
                &param,
                "only tools of type \"function\" are supported",
            ));
        }
        let name = tool
            .get("function")
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str);
        if name.is_none_or(str::is_empty) {
            return Err(ApiError::invalid(&param, "a tool needs function.name"));
        }
    }
    Ok(())
}

pub async fn chat_completions(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let arrived = Instant::now();
    let request: ChatRequest = parse_body(body)?;
    refuse_unknown(&request.other)?;
    check_n(request.n)?;
    if let Some(format) = &request.response_format
        && format.get("type").and_then(Value::as_str) != Some("text")
    {
        return Err(ApiError::unsupported(
            "response_format",
            "structured output (response_format other than text)",
        ));
    }
    let top_logprobs = request.top_logprobs.unwrap_or(0);
    if top_logprobs > 20 {
        return Err(ApiError::invalid(
            "top_logprobs",
            "top_logprobs must be between 0 and 20",
        ));
    }
    let logprobs = request.logprobs.unwrap_or(false);
    if top_logprobs > 0 && !logprobs {
        return Err(ApiError::invalid(
            "top_logprobs",
            "top_logprobs needs logprobs: true",
        ));
    }
    let tools = request.tools.unwrap_or_default();
    check_tools(&tools)?;
    let choice = tool_choice(request.tool_choice, !tools.is_empty())?;
    let messages = chat_messages(request.messages)?;
    let mut options = request
        .sampling
        .options(request.max_completion_tokens.or(request.max_tokens))?;
    options.top_logprobs = top_logprobs;

    let model = state.manager.get(&request.model).await?;
    let generation = orchard_core::start(
        model,
        GenerationRequest::Chat {
            messages,
            tools,
            tool_choice: choice,
            enable_thinking: request.enable_thinking,
            reasoning_budget: None,
            single_tool_call: request.parallel_tool_calls == Some(false),
            options,
            logprobs,
        },
    )
    .await?;
    let reply = Reply::new(
        "chatcmpl-",
        &generation,
        arrived,
        "/v1/chat/completions",
        &state,
    );
    if request.stream {
        let include_usage = request.stream_options.unwrap_or_default().include_usage;
        Ok(stream_chat(generation, reply, include_usage, state.keep_alive).into_response())
    } else {
        Ok(Json(collect_chat(generation, reply).await?).into_response())
    }
}

/// What every chunk of one response shares, and the metrics to record at its end.
#[derive(Debug, Clone)]
struct Reply {
    id: String,
    created: u64,
    model: String,
    arrived: Instant,
    endpoint: &'static str,
    state: AppState,
    first_output: bool,
}

impl Reply {
    fn new(
        prefix: &str,
        generation: &Generation,
        arrived: Instant,
        endpoint: &'static str,
        state: &AppState,
    ) -> Self {
        Reply {
            id: new_id(prefix),
            created: unix_now(),
            model: generation.model.id.clone(),
            arrived,
            endpoint,
            state: state.clone(),
            first_output: true,
        }
    }

    fn saw_output(&mut self) {
        if std::mem::take(&mut self.first_output) {
            self.state.metrics.first_token(self.arrived.elapsed());
        }
    }

    fn done(&self, stats: &GenerationStats) {
        self.state
            .metrics
            .generation(self.endpoint, &self.model, stats, self.arrived.elapsed());
    }
}

fn finish_reason(finish: Finish) -> Value {
    match finish {
        Finish::Stop => json!("stop"),
        Finish::Length => json!("length"),
        Finish::ToolCalls => json!("tool_calls"),
        Finish::Cancelled => Value::Null,
    }
}

fn usage(stats: &GenerationStats) -> Value {
    json!({
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.generated_tokens,
        "total_tokens": stats.prompt_tokens + stats.generated_tokens,
        "prompt_tokens_details": {"cached_tokens": stats.cached_prompt_tokens},
    })
}

fn logprob_entry(t: &TokenLogprobs) -> Value {
    json!({
        "token": t.token,
        "logprob": t.logprob,
        "bytes": t.token.as_bytes(),
        "top_logprobs": t.top.iter().map(|(token, logprob)| json!({
            "token": token, "logprob": logprob, "bytes": token.as_bytes(),
        })).collect::<Vec<_>>(),
    })
}

fn tool_call_json(index: usize, call: &ToolCall) -> Value {
    json!({
        "index": index,
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    })
}

async fn collect_chat(mut generation: Generation, mut reply: Reply) -> Result<Value, ApiError> {
    let mut content = String::new();
    let mut reasoning = String::new();
    let mut calls: Vec<ToolCall> = Vec::new();
    let mut logprobs: Vec<Value> = Vec::new();
    while let Some(output) = generation.next().await {
        match output? {
            Output::Delta(delta) => {
                reply.saw_output();
                content.push_str(&delta.content);
                reasoning.push_str(&delta.reasoning);
                calls.extend(delta.tool_calls);
                logprobs.extend(delta.logprobs.iter().map(logprob_entry));
            }
            Output::Done { stats, finish } => {
                reply.done(&stats);
                let mut message = json!({
                    "role": "assistant",
                    "content": if content.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(content) },
                });
                if !reasoning.is_empty() {
                    message["reasoning_content"] = Value::String(reasoning);
                }
                if !calls.is_empty() {
                    let calls: Vec<Value> = calls
                        .iter()
                        .enumerate()
                        .map(|(i, c)| {
                            let mut v = tool_call_json(i, c);
                            v.as_object_mut().map(|o| o.remove("index"));
                            v
                        })
                        .collect();
                    message["tool_calls"] = Value::Array(calls);
                }
                let has_logprobs = !logprobs.is_empty();
                return Ok(json!({
                    "id": reply.id,
                    "object": "chat.completion",
                    "created": reply.created,
                    "model": reply.model,
                    "system_fingerprint": null,
                    "choices": [{
                        "index": 0,
                        "message": message,
                        "logprobs": if has_logprobs { json!({"content": logprobs}) } else { Value::Null },
                        "finish_reason": finish_reason(finish),
                    }],
                    "usage": usage(&stats),
                }));
            }
        }
    }
    Err(ApiError::internal("the generation ended without a result"))
}

fn stream_error(error: CoreError) -> Event {
    let api: ApiError = error.into();
    Event::default().data(api.body().to_string())
}

fn stream_chat(
    generation: Generation,
    mut reply: Reply,
    include_usage: bool,
    keep_alive: std::time::Duration,
) -> axum::response::sse::Sse<
    impl futures_util::Stream<Item = Result<Event, std::convert::Infallible>>,
> {
    let mut sent_role = false;
    let mut calls = 0usize;
    sse::stream(generation, keep_alive, move |step| {
        let chunk = |delta: Value, logprobs: Value, finish: Value, reply: &Reply| {
            let mut chunk = json!({
                "id": reply.id,
                "object": "chat.completion.chunk",
                "created": reply.created,
                "model": reply.model,
                "system_fingerprint": null,
                "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}],
            });
            if include_usage {
                chunk["usage"] = Value::Null;
            }
            Event::default().data(chunk.to_string())
        };
        let mut events = Vec::new();
        if !sent_role {
            sent_role = true;
            events.push(chunk(
                json!({"role": "assistant", "content": ""}),
                Value::Null,
                Value::Null,
                &reply,
            ));
        }
        match step {
            Step::Output(Output::Delta(delta)) => {
                reply.saw_output();
                let Delta {
                    content,
                    reasoning,
                    tool_calls,
                    logprobs,
                } = delta;
                let logprobs = if logprobs.is_empty() {
                    Value::Null
                } else {
                    json!({"content": logprobs.iter().map(logprob_entry).collect::<Vec<_>>()})
                };
                if !reasoning.is_empty() {
                    events.push(chunk(
                        json!({"reasoning_content": reasoning}),
                        Value::Null,
                        Value::Null,
                        &reply,
                    ));
                }
                if !content.is_empty() || !logprobs.is_null() {
                    events.push(chunk(
                        json!({"content": content}),
                        logprobs,
                        Value::Null,
                        &reply,
                    ));
                }
                for call in tool_calls {
                    // As OpenAI streams them: id and name first, then the arguments.
                    let mut opening = tool_call_json(calls, &call);
                    opening["function"]["arguments"] = json!("");
                    events.push(chunk(
                        json!({"tool_calls": [opening]}),
                        Value::Null,
                        Value::Null,
                        &reply,
                    ));
                    let arguments =
                        json!({"index": calls, "function": {"arguments": call.arguments}});
                    events.push(chunk(
                        json!({"tool_calls": [arguments]}),
                        Value::Null,
                        Value::Null,
                        &reply,
                    ));
                    calls += 1;
                }
            }
            Step::Output(Output::Done { stats, finish }) => {
                reply.done(&stats);
                events.push(chunk(json!({}), Value::Null, finish_reason(finish), &reply));
                if include_usage {
                    events.push(
                        Event::default().data(
                            json!({
                                "id": reply.id,
                                "object": "chat.completion.chunk",
                                "created": reply.created,
                                "model": reply.model,
                                "system_fingerprint": null,
                                "choices": [],
                                "usage": usage(&stats),
                            })
                            .to_string(),
                        ),
                    );
                }
            }
            Step::Error(error) => events.push(stream_error(error)),
            Step::End => events.push(Event::default().data("[DONE]")),
        }
        events
    })
}

#[derive(Debug, Deserialize)]
struct CompletionRequest {
    model: String,
    prompt: Value,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    max_tokens: Option<u64>,
    #[serde(flatten)]
    sampling: Sampling,
    logprobs: Option<usize>,
    echo: Option<bool>,
    suffix: Option<String>,
    best_of: Option<u32>,
    n: Option<u32>,
    #[serde(flatten)]
    other: Map<String, Value>,
}

pub async fn completions(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let arrived = Instant::now();
    let request: CompletionRequest = parse_body(body)?;
    refuse_unknown(&request.other)?;
    check_n(request.n)?;
    if request.echo == Some(true) {
        return Err(ApiError::unsupported("echo", "echoing the prompt"));
    }
    if request.suffix.is_some() {
        return Err(ApiError::unsupported("suffix", "insertion (suffix)"));
    }
    if request.best_of.is_some_and(|b| b > 1) {
        return Err(ApiError::unsupported("best_of", "best_of > 1"));
    }
    let prompt = match request.prompt {
        Value::String(text) => text,
        Value::Array(items) if items.len() == 1 && items[0].is_string() => {
            items[0].as_str().unwrap_or_default().to_string()
        }
        Value::Array(_) => {
            return Err(ApiError::unsupported(
                "prompt",
                "more than one prompt per request, or token-id prompts",
            ));
        }
        _ => return Err(ApiError::invalid("prompt", "prompt must be a string")),
    };
    let top = request.logprobs.unwrap_or(0);
    if top > 5 {
        return Err(ApiError::invalid(
            "logprobs",
            "logprobs must be between 0 and 5",
        ));
    }
    // OpenAI's default for this endpoint is 16 tokens.
    let mut options = request
        .sampling
        .options(Some(request.max_tokens.unwrap_or(16)))?;
    options.top_logprobs = top;
    let model = state.manager.get(&request.model).await?;
    let generation = orchard_core::start(
        model,
        GenerationRequest::Text {
            prompt,
            options,
            logprobs: request.logprobs.is_some(),
        },
    )
    .await?;
    let mut reply = Reply::new("cmpl-", &generation, arrived, "/v1/completions", &state);
    let completion = |reply: &Reply,
                      text: &str,
                      logprobs: Value,
                      finish: Value,
                      usage: Option<Value>| {
        let mut body = json!({
            "id": reply.id,
            "object": "text_completion",
            "created": reply.created,
            "model": reply.model,
            "system_fingerprint": null,
            "choices": [{"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish}],
        });
        if let Some(usage) = usage {
            body["usage"] = usage;
        }
        body
    };
    if request.stream {
        let include_usage = request.stream_options.unwrap_or_default().include_usage;
        let events = sse::stream(generation, state.keep_alive, move |step| match step {
            Step::Output(Output::Delta(delta)) => {
                reply.saw_output();
                let logprobs = text_logprobs(&delta.logprobs);
                vec![
                    Event::default().data(
                        completion(
                            &reply,
                            &delta.content,
                            logprobs,
                            Value::Null,
                            include_usage.then_some(Value::Null),
                        )
                        .to_string(),
                    ),
                ]
            }
            Step::Output(Output::Done { stats, finish }) => {
                reply.done(&stats);
                let mut events = vec![
                    Event::default().data(
                        completion(
                            &reply,
                            "",
                            Value::Null,
                            finish_reason(finish),
                            include_usage.then_some(Value::Null),
                        )
                        .to_string(),
                    ),
                ];
                if include_usage {
                    let mut last =
                        completion(&reply, "", Value::Null, Value::Null, Some(usage(&stats)));
                    last["choices"] = json!([]);
                    events.push(Event::default().data(last.to_string()));
                }
                events
            }
            Step::Error(error) => vec![stream_error(error)],
            Step::End => vec![Event::default().data("[DONE]")],
        });
        return Ok(events.into_response());
    }
    let mut generation = generation;
    let mut text = String::new();
    let mut tokens = Vec::new();
    while let Some(output) = generation.next().await {
        match output? {
            Output::Delta(delta) => {
                reply.saw_output();
                text.push_str(&delta.content);
                tokens.extend(delta.logprobs);
            }
            Output::Done { stats, finish } => {
                reply.done(&stats);
                let logprobs = if request.logprobs.is_some() {
                    text_logprobs(&tokens)
                } else {
                    Value::Null
                };
                return Ok(Json(completion(
                    &reply,
                    &text,
                    logprobs,
                    finish_reason(finish),
                    Some(usage(&stats)),
                ))
                .into_response());
            }
        }
    }
    Err(ApiError::internal("the generation ended without a result"))
}

/// The completions API's log-probability layout.
fn text_logprobs(tokens: &[TokenLogprobs]) -> Value {
    if tokens.is_empty() {
        return Value::Null;
    }
    let mut offset = 0;
    let mut offsets = Vec::new();
    for t in tokens {
        offsets.push(offset);
        offset += t.token.len();
    }
    json!({
        "tokens": tokens.iter().map(|t| &t.token).collect::<Vec<_>>(),
        "token_logprobs": tokens.iter().map(|t| t.logprob).collect::<Vec<_>>(),
        "top_logprobs": tokens.iter().map(|t| t.top.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<Map<String, Value>>()).collect::<Vec<_>>(),
        "text_offset": offsets,
    })
}
