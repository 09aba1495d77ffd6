//! The Responses API: `POST /v1/responses`, streamed or not, and
//! `GET` / `DELETE /v1/responses/{id}` for stored responses.
//!
//! `input` reads the items into the chat template's conversation, `tools`
//! the tools and `tool_choice`, and `encode` writes the output items and
//! their events. What each field does is written down in docs/responses.md.

mod encode;
mod input;
mod tools;

use std::time::Instant;

use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use orchard_core::{CoreError, GenerationRequest};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::types::Sampling;
use super::{Reply, refuse_unknown_except};
use crate::AppState;
use crate::error::{ApiError, parse_body};
use crate::sse::{self, Step};
use encode::{Encoder, Saver};
use tools::Tools;

/// Fields that are accepted and change nothing here: metadata kept by the
/// client, hints for OpenAI's own caches and tiers, and `include` (extra
/// data of hosted tools and encrypted reasoning, none of which Orchard has).
const IGNORED_FIELDS: [&str; 9] = [
    "metadata",
    "user",
    "safety_identifier",
    "service_tier",
    "stream_options",
    "client_metadata",
    "prompt_cache_key",
    "prompt_cache_retention",
    "include",
];

#[derive(Debug, Deserialize)]
struct ResponsesRequest {
    model: String,
    input: Option<Value>,
    instructions: Option<String>,
    #[serde(default)]
    stream: bool,
    tools: Option<Vec<Value>>,
    tool_choice: Option<Value>,
    parallel_tool_calls: Option<bool>,
    reasoning: Option<Reasoning>,
    max_output_tokens: Option<u64>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    text: Option<TextOptions>,
    store: Option<bool>,
    previous_response_id: Option<String>,
    truncation: Option<String>,
    background: Option<bool>,
    top_logprobs: Option<u32>,
    #[serde(flatten)]
    other: Map<String, Value>,
}

#[derive(Debug, Default, Deserialize)]
struct Reasoning {
    effort: Option<String>,
    /// Summaries are not written: the reasoning itself is returned.
    summary: Option<String>,
    /// The older name of `summary`.
    generate_summary: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct TextOptions {
    format: Option<Value>,
    /// A hint to OpenAI's models about length; the chat templates have no such switch.
    #[allow(dead_code)]
    verbosity: Option<String>,
}

/// `reasoning.effort` as the template's thinking switch: "none" and
/// "minimal" turn thinking off, the others on; unset leaves the template's default.
fn thinking(effort: Option<&str>) -> Result<Option<bool>, ApiError> {
    match effort {
        None => Ok(None),
        Some("none" | "minimal") => Ok(Some(false)),
        Some("low" | "medium" | "high" | "xhigh") => Ok(Some(true)),
        Some(other) => Err(ApiError::invalid(
            "reasoning.effort",
            format!(
                "unknown reasoning effort {other:?}; use none, minimal, low, medium, high or xhigh"
            ),
        )),
    }
}

/// The request's parameters Orchard cannot honour, refused by name.
fn refuse_unsupported(request: &ResponsesRequest) -> Result<(), ApiError> {
    refuse_unknown_except(&request.other, &IGNORED_FIELDS)?;
    match request.truncation.as_deref() {
        None | Some("disabled") => {}
        Some("auto") => {
            return Err(ApiError::unsupported(
                "truncation",
                "truncation \"auto\" (dropping the start of the conversation)",
            ));
        }
        Some(other) => {
            return Err(ApiError::invalid(
                "truncation",
                format!("unknown truncation {other:?}; use \"disabled\""),
            ));
        }
    }
    if request.background == Some(true) {
        return Err(ApiError::unsupported("background", "background responses"));
    }
    if request.top_logprobs.is_some_and(|n| n > 0) {
        return Err(ApiError::unsupported(
            "top_logprobs",
            "log-probabilities on responses",
        ));
    }
    if request.max_output_tokens == Some(0) {
        return Err(ApiError::invalid(
            "max_output_tokens",
            "max_output_tokens must be at least 1",
        ));
    }
    Ok(())
}

pub async fn create(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let arrived = Instant::now();
    let request: ResponsesRequest = parse_body(body)?;
    refuse_unsupported(&request)?;
    let reasoning = request.reasoning.unwrap_or_default();
    let enable_thinking = thinking(reasoning.effort.as_deref())?;
    let format = request.text.as_ref().and_then(|t| t.format.clone());
    let json_output = super::json_output(format.as_ref(), "text.format")?;
    let mut tools = Tools::read(request.tools.as_deref())?;
    let tool_choice = tools.choice(request.tool_choice.as_ref())?;

    // The conversation: a stored response's items, then this input.
    let mut items = match &request.previous_response_id {
        Some(id) => {
            let stored = state.store.response(id).map_err(ApiError::internal)?;
            stored
                .ok_or_else(|| {
                    ApiError::invalid(
                        "previous_response_id",
                        format!(
                            "there is no stored response {id:?}: it was made with store: false, deleted, or older than the responses_retention_days setting"
                        ),
                    )
                })?
                .items
        }
        None => Vec::new(),
    };
    let stored = items.len();
    items.extend(input::items(request.input)?);
    let profile = state.manager.profile(&request.model);
    let fetched = crate::images::fetch(&state.store, input::remote_images(&items, stored)).await?;
    let (mut messages, images) =
        input::messages(request.instructions.as_deref(), &items, stored, &fetched)?;

    let mut sampling = Sampling {
        temperature: request.temperature,
        top_p: request.top_p,
        ..Sampling::default()
    };
    if let Some(profile) = &profile {
        super::profile_sampling(profile, &mut sampling);
    }
    let (temperature, top_p) = (sampling.temperature, sampling.top_p);
    let max_output_tokens = request
        .max_output_tokens
        .or(profile.as_ref().and_then(|p| p.max_tokens).map(u64::from));
    let mut options = sampling.options(max_output_tokens)?;
    if let Some(profile) = &profile {
        options.max_context = profile.context_length.map_or(0, |c| c as usize);
        if let Some(system) = profile.system()
            && !messages.iter().any(|m| m.role == "system")
        {
            messages.insert(0, orchard_core::ChatMessage::text("system", system));
        }
    }

    let model = state.manager.get(&request.model).await?;
    let reply = Reply::for_model("resp_", &model.id, arrived, "/v1/responses", &state);
    let store = request.store.unwrap_or(true);
    let response = json!({
        "id": reply.id,
        "object": "response",
        "created_at": reply.created,
        "status": "in_progress",
        "background": false,
        "error": null,
        "incomplete_details": null,
        "instructions": request.instructions,
        "max_output_tokens": max_output_tokens,
        "model": reply.model,
        "output": [],
        "parallel_tool_calls": request.parallel_tool_calls.unwrap_or(true),
        "previous_response_id": request.previous_response_id,
        "reasoning": {
            "effort": reasoning.effort,
            "summary": reasoning.summary.or(reasoning.generate_summary),
        },
        "store": store,
        "temperature": temperature.unwrap_or(1.0),
        "text": {"format": format.unwrap_or_else(|| json!({"type": "text"}))},
        "tool_choice": request.tool_choice.unwrap_or_else(|| json!("auto")),
        "tools": request.tools.unwrap_or_default(),
        "top_p": top_p.unwrap_or(1.0),
        "truncation": "disabled",
        "usage": null,
        "metadata": request.other.get("metadata").cloned().filter(Value::is_object).unwrap_or_else(|| json!({})),
        "user": null,
    });
    let saver = store.then(|| Saver {
        store: state.store.clone(),
        items,
        retention_days: state
            .store
            .settings()
            .map(|s| s.responses_retention_days)
            .unwrap_or(30),
    });
    let offered = std::mem::take(&mut tools.offered);
    let mut encoder = Encoder::new(response, reply, tools, saver);

    let started = orchard_core::start(
        model,
        GenerationRequest::Chat {
            messages,
            tools: offered,
            tool_choice,
            enable_thinking,
            reasoning_budget: None,
            single_tool_call: request.parallel_tool_calls == Some(false),
            options,
            logprobs: false,
            json_output,
            images,
        },
    )
    .await;
    let mut generation = match started {
        Ok(generation) => generation,
        // A stream tells a client such as Codex that the conversation
        // outgrew the context the way OpenAI does, so it can compact it.
        Err(error @ CoreError::PromptTooLong { .. }) if request.stream => {
            let events = encoder.failed_before_start(error);
            let stream = futures_util::stream::iter(
                events
                    .into_iter()
                    .map(Ok::<Event, std::convert::Infallible>),
            );
            return Ok(Sse::new(stream)
                .keep_alive(KeepAlive::default())
                .into_response());
        }
        Err(error) => {
            let mut api: ApiError = error.into();
            if api.code == Some("context_length_exceeded") {
                // The conversation arrived as `input` here, not `messages`.
                api.param = Some("input".into());
            }
            return Err(api);
        }
    };
    if request.stream {
        let stream = sse::stream(generation, state.keep_alive, move |step| {
            encoder.encode(step)
        });
        return Ok(stream.into_response());
    }
    while let Some(output) = generation.next().await {
        let output = output?;
        encoder.encode(Step::Output(output));
        if encoder.finished() {
            break;
        }
    }
    if !encoder.finished() {
        return Err(ApiError::internal("the generation ended without a result"));
    }
    Ok(Json(encoder.response().clone()).into_response())
}

/// `GET /v1/responses/{id}`: a stored response.
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    match state.store.response(&id).map_err(ApiError::internal)? {
        Some(stored) => Ok(Json(stored.body)),
        None => Err(not_stored(&id)),
    }
}

/// `DELETE /v1/responses/{id}`: forgets a stored response.
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if state
        .store
        .delete_response(&id)
        .map_err(ApiError::internal)?
    {
        Ok(Json(
            json!({"id": id, "object": "response", "deleted": true}),
        ))
    } else {
        Err(not_stored(&id))
    }
}

fn not_stored(id: &str) -> ApiError {
    ApiError::not_found(format!(
        "there is no stored response {id:?}; responses are kept when made with store: true, for the responses_retention_days setting"
    ))
}
