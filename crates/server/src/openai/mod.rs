//! The OpenAI API: `/v1/models` here, `/v1/chat/completions` in `chat`,
//! `/v1/completions` in `completions`, `/v1/responses` in `responses`,
//! `/v1/embeddings` in `embeddings`,
//! their wire types in `types`, and what
//! both generation endpoints share (the reply's identity and metrics, usage,
//! finish reasons, refusing unknown fields).

mod chat;
mod completions;
mod embeddings;
pub mod responses;
mod types;

pub use chat::chat_completions;
pub use completions::completions;
pub use embeddings::embeddings;

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::response::sse::Event;
use orchard_core::profiles::Profile;
use orchard_core::{CoreError, Finish, Generation, GenerationStats};
use serde_json::{Map, Value, json};

use crate::error::ApiError;
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
                // Answers /v1/embeddings, not chat.
                "embedding": is_embedding_model(&entry.dir),
                // Takes images in chat messages.
                "vision": orchard_core::takes_images(&entry.dir),
            })
        })
        .collect();
    let mut data = data;
    // A profile is a model name too.
    for profile in state.manager.profiles() {
        data.push(json!({
            "id": profile.name,
            "object": "model",
            "created": 0,
            "owned_by": "orchard",
            "loaded": loaded.contains(&profile.model),
            "source": "profile",
            "model": profile.model,
        }));
    }
    Json(json!({"object": "list", "data": data}))
}

/// Whether the model in `dir` is an embedding model (sentence-transformers
/// files with a pooling module).
fn is_embedding_model(dir: &std::path::Path) -> bool {
    orchard_core::EmbeddingSpec::read(dir).is_ok_and(|spec| spec.is_some())
}

pub(super) fn refuse_unknown(other: &Map<String, Value>) -> Result<(), ApiError> {
    refuse_unknown_except(other, &[])
}

/// As [`refuse_unknown`], with `also_ignored` accepted too (an endpoint's
/// own harmless fields).
pub(super) fn refuse_unknown_except(
    other: &Map<String, Value>,
    also_ignored: &[&str],
) -> Result<(), ApiError> {
    for (key, value) in other {
        let key_str = key.as_str();
        if IGNORED_FIELDS.contains(&key_str) || also_ignored.contains(&key_str) || value.is_null() {
            continue;
        }
        return Err(ApiError::unsupported(
            key,
            &format!("the parameter `{key}`"),
        ));
    }
    Ok(())
}

pub(super) fn check_n(n: Option<u32>) -> Result<(), ApiError> {
    match n {
        None | Some(1) => Ok(()),
        Some(0) => Err(ApiError::invalid("n", "n must be 1")),
        Some(_) => Err(ApiError::unsupported(
            "n",
            "more than one choice per request (n > 1)",
        )),
    }
}

/// What every chunk of one response shares, and the metrics to record at its end.
#[derive(Debug, Clone)]
pub(super) struct Reply {
    pub(super) id: String,
    pub(super) created: u64,
    pub(super) model: String,
    pub(super) arrived: Instant,
    pub(super) endpoint: &'static str,
    pub(super) state: AppState,
    pub(super) first_output: bool,
}

impl Reply {
    pub(super) fn new(
        prefix: &str,
        generation: &Generation,
        arrived: Instant,
        endpoint: &'static str,
        state: &AppState,
    ) -> Self {
        Self::for_model(prefix, &generation.model.id, arrived, endpoint, state)
    }

    /// A reply from `model`, before its generation starts.
    pub(super) fn for_model(
        prefix: &str,
        model: &str,
        arrived: Instant,
        endpoint: &'static str,
        state: &AppState,
    ) -> Self {
        Reply {
            id: new_id(prefix),
            created: unix_now(),
            model: model.to_string(),
            arrived,
            endpoint,
            state: state.clone(),
            first_output: true,
        }
    }

    pub(super) fn saw_output(&mut self) {
        if std::mem::take(&mut self.first_output) {
            self.state.metrics.first_token(self.arrived.elapsed());
        }
    }

    pub(super) fn done(&self, stats: &GenerationStats) {
        self.state
            .metrics
            .generation(self.endpoint, &self.model, stats, self.arrived.elapsed());
    }
}

pub(super) fn finish_reason(finish: Finish) -> Value {
    match finish {
        Finish::Stop => json!("stop"),
        Finish::Length => json!("length"),
        Finish::ToolCalls => json!("tool_calls"),
        Finish::Cancelled => Value::Null,
    }
}

pub(super) fn usage(stats: &GenerationStats) -> Value {
    json!({
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.generated_tokens,
        "total_tokens": stats.prompt_tokens + stats.generated_tokens,
        "prompt_tokens_details": {"cached_tokens": stats.cached_prompt_tokens},
    })
}

pub(super) fn stream_error(error: CoreError) -> Event {
    let api: ApiError = error.into();
    Event::default().data(api.body().to_string())
}

/// Structured output from `response_format` (chat completions: the schema
/// under `json_schema`) or `text.format` (responses: the schema beside
/// `type`): None for plain text.
pub(super) fn json_output(
    format: Option<&Value>,
    param: &'static str,
) -> Result<Option<orchard_core::JsonOutput>, ApiError> {
    let Some(format) = format.filter(|f| !f.is_null()) else {
        return Ok(None);
    };
    let schema = match format.get("type").and_then(Value::as_str) {
        Some("text") => return Ok(None),
        Some("json_object") => json!({"type": "object"}),
        Some("json_schema") => {
            let holder = format.get("json_schema").unwrap_or(format);
            let mut schema = match holder.get("schema") {
                Some(schema @ (Value::Object(_) | Value::Bool(true))) => schema.clone(),
                _ => {
                    return Err(ApiError::invalid(
                        param,
                        "a json_schema format needs `schema`, a JSON Schema object",
                    ));
                }
            };
            if holder.get("strict") == Some(&Value::Bool(true)) {
                close_objects(&mut schema);
            }
            schema
        }
        other => {
            return Err(ApiError::invalid(
                param,
                format!("unknown format type {other:?}; use text, json_object or json_schema"),
            ));
        }
    };
    Ok(Some(orchard_core::JsonOutput { schema, param }))
}

/// Strict mode, as OpenAI defines it, allows no properties beyond those an
/// object schema lists: `additionalProperties` is false wherever the schema
/// leaves it unset (OpenAI refuses such schemas; Orchard fills it in).
fn close_objects(schema: &mut Value) {
    let Value::Object(map) = schema else {
        if let Value::Array(items) = schema {
            items.iter_mut().for_each(close_objects);
        }
        return;
    };
    let is_object =
        map.contains_key("properties") || map.get("type").and_then(Value::as_str) == Some("object");
    if is_object && !map.contains_key("additionalProperties") {
        map.insert("additionalProperties".into(), Value::Bool(false));
    }
    for key in ["items", "prefixItems", "anyOf", "oneOf", "allOf", "not"] {
        if let Some(inner) = map.get_mut(key) {
            close_objects(inner);
        }
    }
    for key in ["properties", "$defs", "definitions"] {
        if let Some(Value::Object(inner)) = map.get_mut(key) {
            inner.values_mut().for_each(close_objects);
        }
    }
}

/// A profile's defaults for what the request leaves unset.
fn profile_sampling(profile: &Profile, sampling: &mut types::Sampling) {
    sampling.temperature = sampling.temperature.or(profile.temperature);
    sampling.top_p = sampling.top_p.or(profile.top_p);
    sampling.top_k = sampling.top_k.or(profile
        .top_k
        .map(|k| usize::try_from(k).unwrap_or(usize::MAX)));
    sampling.min_p = sampling.min_p.or(profile.min_p);
    sampling.repetition_penalty = sampling.repetition_penalty.or(profile.repetition_penalty);
}
