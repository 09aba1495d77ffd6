//! `/v1/embeddings`: text or token ids in, one vector per input out.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use base64::Engine;
use bytes::Bytes;
use orchard_core::embeddings::{EmbeddingInput, EmbeddingOptions, embed};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::AppState;
use crate::error::{ApiError, parse_body};

#[derive(Debug, Deserialize)]
struct EmbeddingsRequest {
    model: String,
    input: Value,
    dimensions: Option<u64>,
    encoding_format: Option<String>,
    /// Orchard extension: cut inputs longer than the model's context
    /// instead of refusing them.
    #[serde(default)]
    truncate: bool,
    /// Accepted and unused.
    #[allow(dead_code)]
    user: Option<String>,
    #[serde(flatten)]
    other: Map<String, Value>,
}

/// The inputs: a string, a list of strings, a list of token ids, or a list
/// of such lists.
fn inputs(input: Value) -> Result<Vec<EmbeddingInput>, ApiError> {
    let tokens = |values: &[Value]| -> Option<Vec<u32>> {
        values
            .iter()
            .map(|v| v.as_u64().and_then(|t| u32::try_from(t).ok()))
            .collect()
    };
    let bad = || {
        ApiError::invalid(
            "input",
            "input is a string, a list of strings, a list of token ids, or a list of token-id lists",
        )
    };
    match input {
        Value::String(text) => Ok(vec![EmbeddingInput::Text(text)]),
        Value::Array(items) if items.is_empty() => {
            Err(ApiError::invalid("input", "input must not be empty"))
        }
        Value::Array(items) if items.iter().all(Value::is_number) => {
            Ok(vec![EmbeddingInput::Tokens(
                tokens(&items).ok_or_else(bad)?,
            )])
        }
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::String(text) => Ok(EmbeddingInput::Text(text)),
                Value::Array(ids) => Ok(EmbeddingInput::Tokens(tokens(&ids).ok_or_else(bad)?)),
                _ => Err(bad()),
            })
            .collect(),
        _ => Err(bad()),
    }
}

pub async fn embeddings(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let request: EmbeddingsRequest = parse_body(body)?;
    super::refuse_unknown(&request.other)?;
    let base64 = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::invalid(
                "encoding_format",
                format!("unknown encoding_format {other:?}; use float or base64"),
            ));
        }
    };
    let dimensions = match request.dimensions {
        None => None,
        Some(0) => {
            return Err(ApiError::invalid(
                "dimensions",
                "dimensions must be at least 1",
            ));
        }
        Some(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
    };
    let inputs = inputs(request.input)?;
    let model = state.manager.get(&request.model).await?;
    let id = model.id.clone();
    let options = EmbeddingOptions {
        dimensions,
        truncate: request.truncate,
    };
    let result = embed(model, inputs, options).await?;
    let data: Vec<Value> = result
        .vectors
        .iter()
        .enumerate()
        .map(|(index, vector)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|v| v.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": id,
        "usage": {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens},
    })))
}
