//! The Anthropic Messages API: `/v1/messages` and `/v1/messages/count_tokens`.
//! Errors here answer in Anthropic's format. What each accepted parameter
//! does is written down in docs/anthropic.md; anything else is refused.
//!
//! `types` holds the wire types, `params` and `tools` read the parameters,
//! `clearing` applies the `clear_tool_uses` context edit,
//! `convert` turns messages into the template's, `reply` and `stream` write
//! the answer, whole or as server-sent events, and `signature` lets thinking
//! blocks carry their reasoning back.

mod clearing;
mod convert;
mod params;
mod reply;
mod signature;
mod stream;
mod tools;
mod types;

use crate::images::Fetched;
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use orchard_core::chat::ToolChoice;
use orchard_core::manager::Prompter;
use orchard_core::{GenerateOptions, GenerationRequest, GenerationStats, Output, SamplingParams};
use serde_json::{Value, json};

use crate::error::{ApiError, parse_body};
use crate::sse::{self, Step};
use crate::{AppState, new_id};

use convert::Conversation;
use reply::Blocks;
use tools::Tools;
use types::{CountRequest, InMessage, MessagesRequest};

/// The request fields that shape the prompt, besides `messages`.
#[derive(Debug, Clone, Copy)]
struct PromptFields<'a> {
    system: Option<&'a Value>,
    tools: Option<&'a [Value]>,
    tool_choice: Option<&'a Value>,
    thinking: Option<&'a Value>,
    context_management: Option<&'a Value>,
    output_config: Option<&'a Value>,
}

/// Everything that shapes a request's prompt, read and checked.
#[derive(Debug)]
struct Prompt {
    conversation: Conversation,
    tools: Vec<Value>,
    tool_choice: ToolChoice,
    thinking: params::Thinking,
    context: params::ContextManagement,
}

impl Prompt {
    fn read(
        fields: PromptFields<'_>,
        messages: &[InMessage],
        fetched: &Fetched,
    ) -> Result<Prompt, ApiError> {
        let effort = params::effort(fields.output_config)?;
        let thinking = params::thinking(fields.thinking, effort)?;
        let context = params::context_management(fields.context_management)?;
        let tools = Tools::read(fields.tools)?;
        let tool_choice = params::tool_choice(fields.tool_choice)?;
        let conversation =
            convert::conversation(fields.system, messages, context.keep_thinking, fetched)?;
        let tools = tools.offered(&conversation.referenced_tools);
        if tools.is_empty() && matches!(tool_choice, ToolChoice::Required | ToolChoice::Function(_))
        {
            return Err(ApiError::invalid(
                "tool_choice",
                "tool_choice any or tool needs at least one tool in `tools`",
            ));
        }
        Ok(Prompt {
            conversation,
            tools,
            tool_choice,
            thinking,
            context,
        })
    }

    /// Its length in tokens, as the model will run it.
    async fn count(&self, prompter: &Arc<Prompter>) -> Result<usize, ApiError> {
        let prompter = Arc::clone(prompter);
        let (messages, tools) = (self.conversation.messages.clone(), self.tools.clone());
        let (choice, enable) = (self.tool_choice.clone(), self.thinking.enable);
        tokio::task::spawn_blocking(move || {
            prompter
                .chat_prompt(messages, &tools, &choice, enable)
                .map(|(tokens, _)| tokens.len())
        })
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::from)
    }
}

/// Reads the prompt and applies `clear_tool_uses_20250919` when the prompt
/// is past its trigger. Returns the prompt and, when the request has
/// `context_management`, the reply's report of the edits applied.
async fn prepare(
    state: &AppState,
    model: &str,
    fields: PromptFields<'_>,
    messages: &[InMessage],
) -> Result<(Prompt, Option<Value>), ApiError> {
    let fetched = crate::images::fetch(&state.store, convert::remote_images(messages)).await?;
    let prompt = Prompt::read(fields, messages, &fetched)?;
    let asked = fields.context_management.is_some_and(|c| !c.is_null());
    let report = |edits: Value| asked.then(|| json!({"applied_edits": edits}));
    let Some(rule) = prompt.context.clear_tool_uses.clone() else {
        return Ok((prompt, report(json!([]))));
    };
    // The tokenizer and template only: no weights are loaded to measure.
    let prompter = state.manager.prompter(model).await?;
    let before = prompt.count(&prompter).await?;
    if !rule.triggered(before, messages) {
        return Ok((prompt, report(json!([]))));
    }
    let (cleared, uses) = rule.apply(messages);
    if uses == 0 {
        return Ok((prompt, report(json!([]))));
    }
    let candidate = Prompt::read(fields, &cleared, &fetched)?;
    let freed = before.saturating_sub(candidate.count(&prompter).await?);
    if freed < rule.clear_at_least {
        return Ok((prompt, report(json!([]))));
    }
    let edit = json!({
        "type": "clear_tool_uses_20250919",
        "cleared_tool_uses": uses,
        "cleared_input_tokens": freed,
    });
    Ok((candidate, report(json!([edit]))))
}

pub async fn messages(
    State(state): State<AppState>,
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
    let mut request: MessagesRequest = parse_body(body)?;
    params::refuse_unknown(&request.other)?;
    params::check_metadata(request.metadata.as_ref())?;
    params::check_service_tier(request.service_tier.as_ref())?;
    params::check_cache_control(request.cache_control.as_ref())?;
    if request.max_tokens == 0 {
        return Err(ApiError::invalid(
            "max_tokens",
            "max_tokens must be at least 1",
        ));
    }
    // A profile's name: its system prompt and defaults fill what the
    // request leaves unset.
    let profile = state.manager.profile(&request.model);
    if let Some(profile) = &profile {
        if request.system.is_none() {
            request.system = profile.system().map(|s| Value::String(s.to_string()));
        }
        request.temperature = request.temperature.or(profile.temperature);
        request.top_p = request.top_p.or(profile.top_p);
        request.top_k = request.top_k.or(profile
            .top_k
            .map(|k| usize::try_from(k).unwrap_or(usize::MAX)));
    }
    let single_tool_call = params::single_tool_call(request.tool_choice.as_ref());
    let fields = PromptFields {
        system: request.system.as_ref(),
        tools: request.tools.as_deref(),
        tool_choice: request.tool_choice.as_ref(),
        thinking: request.thinking.as_ref(),
        context_management: request.context_management.as_ref(),
        output_config: request.output_config.as_ref(),
    };
    let (prompt, context_report) =
        prepare(&state, &request.model, fields, &request.messages).await?;
    let defaults = SamplingParams::default();
    let options = GenerateOptions {
        // An upper bound: generation also stops where the context ends.
        max_tokens: usize::try_from(request.max_tokens).unwrap_or(usize::MAX),
        sampling: SamplingParams {
            // Anthropic's default temperature is 1.
            temperature: request.temperature.unwrap_or(1.0),
            top_p: request.top_p.unwrap_or(defaults.top_p),
            top_k: request.top_k.unwrap_or(defaults.top_k),
            ..defaults
        },
        stop: params::stop_sequences(request.stop_sequences.clone())?,
        max_context: profile
            .as_ref()
            .and_then(|p| p.context_length)
            .map_or(0, |c| c as usize),
        ..GenerateOptions::default()
    };
    let omit_thinking = prompt.thinking.omit;
    let model = state.manager.get(&request.model).await?;
    let mut generation = orchard_core::start(
        model,
        GenerationRequest::Chat {
            messages: prompt.conversation.messages,
            tools: prompt.tools,
            tool_choice: prompt.tool_choice,
            enable_thinking: prompt.thinking.enable,
            reasoning_budget: prompt.thinking.budget,
            single_tool_call,
            options,
            logprobs: false,
            json_output: None,
            images: prompt.conversation.images,
        },
    )
    .await?;
    let id = new_id("msg_");
    let model_id = generation.model.id.clone();
    let metrics = state.metrics.clone();
    let record_model = model_id.clone();
    let record = move |stats: &GenerationStats| {
        metrics.generation("/v1/messages", &record_model, stats, arrived.elapsed());
    };

    if !request.stream {
        let mut blocks = Blocks::new(omit_thinking);
        let mut first = true;
        while let Some(output) = generation.next().await {
            match output? {
                Output::Started { .. } => {}
                Output::Delta(delta) => {
                    if std::mem::take(&mut first) {
                        state.metrics.first_token(arrived.elapsed());
                    }
                    blocks.add(&delta.reasoning, &delta.content, &delta.tool_calls);
                }
                Output::Done { stats, finish } => {
                    record(&stats);
                    let mut message = json!({
                        "id": id,
                        "type": "message",
                        "role": "assistant",
                        "model": model_id,
                        "content": blocks.into_json(),
                        "stop_reason": reply::stop_reason(finish, &stats),
                        "stop_sequence": stats.stop_sequence.clone(),
                        "usage": reply::usage(&stats),
                    });
                    if let Some(report) = context_report {
                        message["context_management"] = report;
                    }
                    return Ok(Json(message).into_response());
                }
            }
        }
        return Err(ApiError::internal("the generation ended without a result"));
    }

    let metrics = state.metrics.clone();
    let mut encoder = stream::Encoder::new(id, model_id, generation.prompt_tokens, omit_thinking)
        .with_context_report(context_report);
    let mut first = true;
    let events = sse::stream(generation, state.keep_alive, move |step| {
        match &step {
            Step::Output(Output::Delta(_)) if std::mem::take(&mut first) => {
                metrics.first_token(arrived.elapsed());
            }
            Step::Output(Output::Done { stats, .. }) => record(stats),
            _ => {}
        }
        encoder.encode(step)
    });
    Ok(events.into_response())
}

pub async fn count_tokens(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    async {
        let mut request: CountRequest = parse_body(body)?;
        params::refuse_unknown(&request.other)?;
        // Counted as it will run: with the profile's system prompt.
        if request.system.is_none()
            && let Some(profile) = state.manager.profile(&request.model)
        {
            request.system = profile.system().map(|s| Value::String(s.to_string()));
        }
        let fields = PromptFields {
            system: request.system.as_ref(),
            tools: request.tools.as_deref(),
            tool_choice: request.tool_choice.as_ref(),
            thinking: request.thinking.as_ref(),
            context_management: request.context_management.as_ref(),
            output_config: request.output_config.as_ref(),
        };
        let (prompt, _) = prepare(&state, &request.model, fields, &request.messages).await?;
        // The tokenizer and template only: counting never loads weights.
        let prompter = state.manager.prompter(&request.model).await?;
        Ok(Json(
            json!({"input_tokens": prompt.count(&prompter).await?}),
        ))
    }
    .await
    .map_err(ApiError::anthropic)
}
