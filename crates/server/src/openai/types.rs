//! The OpenAI requests' wire types, and the sampling options they carry.

use std::collections::HashMap;

use orchard_core::{GenerateOptions, SamplingParams};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::MAX_STOP_BYTES;
use crate::error::ApiError;

/// `stop`: a string or a list of strings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum Stop {
    One(String),
    Many(Vec<String>),
}

impl Stop {
    pub(super) fn into_vec(self) -> Vec<String> {
        match self {
            Stop::One(s) => vec![s],
            Stop::Many(v) => v,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct StreamOptions {
    #[serde(default)]
    pub(super) include_usage: bool,
}

/// The sampling fields both endpoints share.
#[derive(Debug, Default, Deserialize)]
pub(super) struct Sampling {
    pub(super) temperature: Option<f32>,
    pub(super) top_p: Option<f32>,
    /// Extensions beyond OpenAI, as mlx-lm's server takes them.
    pub(super) top_k: Option<usize>,
    pub(super) min_p: Option<f32>,
    pub(super) repetition_penalty: Option<f32>,
    pub(super) frequency_penalty: Option<f32>,
    pub(super) presence_penalty: Option<f32>,
    pub(super) logit_bias: Option<HashMap<String, f32>>,
    pub(super) seed: Option<i64>,
    pub(super) stop: Option<Stop>,
}

impl Sampling {
    pub(super) fn options(self, max_tokens: Option<u64>) -> Result<GenerateOptions, ApiError> {
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
pub(super) struct ChatRequest {
    pub(super) model: String,
    pub(super) messages: Vec<InMessage>,
    #[serde(default)]
    pub(super) stream: bool,
    pub(super) stream_options: Option<StreamOptions>,
    pub(super) max_tokens: Option<u64>,
    pub(super) max_completion_tokens: Option<u64>,
    #[serde(flatten)]
    pub(super) sampling: Sampling,
    pub(super) logprobs: Option<bool>,
    pub(super) top_logprobs: Option<usize>,
    pub(super) tools: Option<Vec<Value>>,
    pub(super) tool_choice: Option<Value>,
    pub(super) n: Option<u32>,
    pub(super) response_format: Option<Value>,
    /// Orchard extension: switch reasoning on or off where the template allows.
    pub(super) enable_thinking: Option<bool>,
    /// `false`: at most one tool call per answer.
    pub(super) parallel_tool_calls: Option<bool>,
    /// Everything else: refused unless known to be harmless.
    #[serde(flatten)]
    pub(super) other: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
pub(super) struct InMessage {
    pub(super) role: String,
    #[serde(default)]
    pub(super) content: Option<Value>,
    pub(super) name: Option<String>,
    pub(super) tool_calls: Option<Vec<Value>>,
    pub(super) tool_call_id: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct CompletionRequest {
    pub(super) model: String,
    pub(super) prompt: Value,
    #[serde(default)]
    pub(super) stream: bool,
    pub(super) stream_options: Option<StreamOptions>,
    pub(super) max_tokens: Option<u64>,
    #[serde(flatten)]
    pub(super) sampling: Sampling,
    pub(super) logprobs: Option<usize>,
    pub(super) echo: Option<bool>,
    pub(super) suffix: Option<String>,
    pub(super) best_of: Option<u32>,
    pub(super) n: Option<u32>,
    #[serde(flatten)]
    pub(super) other: Map<String, Value>,
}
