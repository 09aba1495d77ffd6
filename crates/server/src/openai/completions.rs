//! `/v1/completions`: raw text continued, streamed or not, with log-probabilities
//! in the legacy layout.

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use orchard_core::{GenerationRequest, Output, TokenLogprobs};
use serde_json::{Map, Value, json};

use crate::AppState;
use crate::error::{ApiError, parse_body};
use crate::sse::{self, Step};

use super::types::CompletionRequest;
use super::{Reply, check_n, finish_reason, refuse_unknown, stream_error, usage};

pub async fn completions(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let arrived = Instant::now();
    let mut request: CompletionRequest = parse_body(body)?;
    let profile = state.manager.profile(&request.model);
    if let Some(profile) = &profile {
        super::profile_sampling(profile, &mut request.sampling);
    }
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
        .options(Some(request.max_tokens.unwrap_or_else(|| {
            profile
                .as_ref()
                .and_then(|p| p.max_tokens)
                .map_or(16, u64::from)
        })))?;
    if let Some(profile) = &profile {
        options.max_context = profile.context_length.map_or(0, |c| c as usize);
    }
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
            Step::Output(Output::Started { .. }) => Vec::new(),
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
            Output::Started { .. } => {}
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
pub(super) fn text_logprobs(tokens: &[TokenLogprobs]) -> Value {
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
