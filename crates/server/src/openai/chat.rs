//! `/v1/chat/completions`: messages and tools in, a chat completion or its
//! chunks out.

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use orchard_core::chat::{ToolCall, ToolChoice};
use orchard_core::{
    ChatMessage, Delta, Generation, GenerationRequest, ImageInput, Output, TokenLogprobs,
};
use serde_json::{Value, json};

use super::types::{ChatRequest, InMessage};
use super::{Reply, check_n, finish_reason, refuse_unknown, stream_error, usage};
use crate::AppState;
use crate::error::{ApiError, parse_body};
use crate::images::{Content, Fetched};
use crate::sse::{self, Step};

/// A message's content as the chat template takes it: its text, or, when
/// it holds images, its parts in order (`{"type": "text", "text": ...}` and
/// `{"type": "image"}`), the images' bytes added to `images`.
pub(super) fn content(
    content: Option<Value>,
    index: usize,
    images: &mut Vec<ImageInput>,
    fetched: &Fetched,
) -> Result<Value, ApiError> {
    let param = format!("messages[{index}].content");
    match content {
        None | Some(Value::Null) => Ok(Value::String(String::new())),
        Some(Value::String(text)) => Ok(Value::String(text)),
        Some(Value::Array(parts)) => {
            let mut built = Content::default();
            for (part_index, part) in parts.into_iter().enumerate() {
                match part.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        let piece = part.get("text").and_then(Value::as_str).ok_or_else(|| {
                            ApiError::invalid(&param, "a text part needs a `text` string")
                        })?;
                        built.push_text(piece);
                    }
                    Some("image_url") => {
                        let part_param = format!("{param}[{part_index}].image_url");
                        let url = crate::images::image_url(&part).ok_or_else(|| {
                            ApiError::invalid(
                                &part_param,
                                "an image_url part needs `image_url.url`",
                            )
                        })?;
                        images.push(crate::images::from_url(url, &part_param, fetched)?);
                        built.push_image();
                    }
                    Some("video") => {
                        let part_param = format!("{param}[{part_index}].video");
                        for (k, url) in video_frames(&part, &part_param)?.into_iter().enumerate() {
                            let frame = format!("{part_param}.frames[{k}]");
                            images.push(crate::images::from_url(url, &frame, fetched)?);
                            built.push_image();
                        }
                    }
                    Some("input_image") => {
                        return Err(ApiError::invalid(
                            &param,
                            "input_image parts belong to the Responses API; in chat completions send {\"type\": \"image_url\", \"image_url\": {\"url\": \"data:...\"}}",
                        ));
                    }
                    Some("input_audio" | "file") => {
                        return Err(ApiError::unsupported(&param, "audio and file input"));
                    }
                    other => {
                        return Err(ApiError::invalid(
                            &param,
                            format!(
                                "unknown content part type {other:?}; use \"text\" or \"image_url\""
                            ),
                        ));
                    }
                }
            }
            Ok(built.into_value())
        }
        Some(_) => Err(ApiError::invalid(
            &param,
            "content must be a string or a list of parts",
        )),
    }
}

/// The most frames one `video` part may hold.
pub const MAX_VIDEO_FRAMES: usize = 64;

/// The frame URLs of Orchard's `video` content part, an extension:
/// `{"type": "video", "video": {"frames": [URL, ...], "fps": 2.0}}`, each
/// frame a URL as `image_url` takes them, `fps` their rate (optional, more
/// than 0). A model that takes images sees the frames as that many images,
/// in order (docs/vision.md).
fn video_frames<'a>(part: &'a Value, param: &str) -> Result<Vec<&'a str>, ApiError> {
    let video = part.get("video").filter(|v| v.is_object()).ok_or_else(|| {
        ApiError::invalid(
            param,
            "a video part needs `video`: {\"frames\": [URLs], \"fps\": number}",
        )
    })?;
    if let Some(fps) = video.get("fps").filter(|f| !f.is_null())
        && !fps.as_f64().is_some_and(|f| f > 0.0 && f.is_finite())
    {
        return Err(ApiError::invalid(
            &format!("{param}.fps"),
            "fps must be a number of frames per second above 0",
        ));
    }
    let frames = video
        .get("frames")
        .and_then(Value::as_array)
        .filter(|f| !f.is_empty())
        .ok_or_else(|| {
            ApiError::invalid(
                &format!("{param}.frames"),
                "a video needs `frames`: a list of image URLs",
            )
        })?;
    if frames.len() > MAX_VIDEO_FRAMES {
        return Err(ApiError::invalid(
            &format!("{param}.frames"),
            format!(
                "a video may have at most {MAX_VIDEO_FRAMES} frames, not {}: sample fewer",
                frames.len()
            ),
        ));
    }
    frames
        .iter()
        .enumerate()
        .map(|(k, frame)| {
            frame.as_str().ok_or_else(|| {
                ApiError::invalid(
                    &format!("{param}.frames[{k}]"),
                    "a frame is an image URL string",
                )
            })
        })
        .collect()
}

/// The `http(s)` URLs of the messages' `image_url` parts, with the part
/// each is in, for [`crate::images::fetch`].
pub(super) fn remote_images(messages: &[InMessage]) -> Vec<(String, String)> {
    let mut urls = Vec::new();
    for (index, message) in messages.iter().enumerate() {
        let Some(Value::Array(parts)) = &message.content else {
            continue;
        };
        for (part_index, part) in parts.iter().enumerate() {
            let here = format!("messages[{index}].content[{part_index}]");
            match part.get("type").and_then(Value::as_str) {
                Some("image_url") => {
                    let url = crate::images::image_url(part);
                    if let Some(url) = url.filter(|u| crate::images::is_remote(u)) {
                        urls.push((url.to_string(), format!("{here}.image_url")));
                    }
                }
                Some("video") => {
                    // A malformed part is refused when it is read.
                    let param = format!("{here}.video");
                    for (k, url) in video_frames(part, &param)
                        .unwrap_or_default()
                        .into_iter()
                        .enumerate()
                    {
                        if crate::images::is_remote(url) {
                            urls.push((url.to_string(), format!("{param}.frames[{k}]")));
                        }
                    }
                }
                _ => {}
            }
        }
    }
    urls
}

/// The template's messages, and the images their parts carry (`fetched`
/// holds the bodies of their `http(s)` URLs).
pub(super) fn chat_messages(
    messages: Vec<InMessage>,
    fetched: &Fetched,
) -> Result<(Vec<ChatMessage>, Vec<ImageInput>), ApiError> {
    if messages.is_empty() {
        return Err(ApiError::invalid("messages", "messages must not be empty"));
    }
    let mut out = Vec::with_capacity(messages.len());
    let mut images = Vec::new();
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
        let content = content(message.content, index, &mut images, fetched)?;
        if content.is_array() && role != "user" {
            return Err(ApiError::invalid(
                &format!("messages[{index}].content"),
                "only user messages can hold images",
            ));
        }
        let mut chat = ChatMessage {
            role: role.into(),
            content,
            extra: serde_json::Map::new(),
        };
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
    Ok((out, images))
}

pub(super) fn tool_choice(value: Option<Value>, has_tools: bool) -> Result<ToolChoice, ApiError> {
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

pub(super) fn check_tools(tools: &[Value]) -> Result<(), ApiError> {
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
    let mut request: ChatRequest = parse_body(body)?;
    // A profile's name: its defaults fill what the request leaves unset.
    let profile = state.manager.profile(&request.model);
    if let Some(profile) = &profile {
        super::profile_sampling(profile, &mut request.sampling);
    }
    refuse_unknown(&request.other)?;
    check_n(request.n)?;
    let json_output = super::json_output(request.response_format.as_ref(), "response_format")?;
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
    let fetched = crate::images::fetch(&state.store, remote_images(&request.messages)).await?;
    let (mut messages, images) = chat_messages(request.messages, &fetched)?;
    let max_tokens = request.max_completion_tokens.or(request.max_tokens);
    let mut options = request
        .sampling
        .options(max_tokens.or(profile.as_ref().and_then(|p| p.max_tokens).map(u64::from)))?;
    options.top_logprobs = top_logprobs;
    if let Some(profile) = &profile {
        options.max_context = profile.context_length.map_or(0, |c| c as usize);
        if let Some(system) = profile.system()
            && !messages
                .iter()
                .any(|m| m.role == "system" || m.role == "developer")
        {
            messages.insert(0, orchard_core::ChatMessage::text("system", system));
        }
    }

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
            json_output,
            images,
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

pub(super) fn logprob_entry(t: &TokenLogprobs) -> Value {
    json!({
        "token": t.token,
        "logprob": t.logprob,
        "bytes": t.token.as_bytes(),
        "top_logprobs": t.top.iter().map(|(token, logprob)| json!({
            "token": token, "logprob": logprob, "bytes": token.as_bytes(),
        })).collect::<Vec<_>>(),
    })
}

pub(super) fn tool_call_json(index: usize, call: &ToolCall) -> Value {
    json!({
        "index": index,
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    })
}

pub(super) async fn collect_chat(
    mut generation: Generation,
    mut reply: Reply,
) -> Result<Value, ApiError> {
    let mut content = String::new();
    let mut reasoning = String::new();
    let mut calls: Vec<ToolCall> = Vec::new();
    let mut logprobs: Vec<Value> = Vec::new();
    while let Some(output) = generation.next().await {
        match output? {
            Output::Started { .. } => {}
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

pub(super) fn stream_chat(
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
            Step::Output(Output::Started { .. }) => {}
            Step::Error(error) => events.push(stream_error(error)),
            Step::End => events.push(Event::default().data("[DONE]")),
        }
        events
    })
}
