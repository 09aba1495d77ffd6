//! The request bodies of `/v1/messages` and `/v1/messages/count_tokens` as
//! they arrive. Fields whose shape needs a clear error (thinking, tools,
//! context management, ...) stay as JSON here and are read in `params.rs`,
//! `tools.rs` and `convert.rs`; anything not named lands in `other` and is
//! refused, so no parameter is silently ignored.

use serde::Deserialize;
use serde_json::{Map, Value};

/// `POST /v1/messages`.
#[derive(Debug, Deserialize)]
pub struct MessagesRequest {
    pub model: String,
    pub max_tokens: u64,
    pub messages: Vec<InMessage>,
    pub system: Option<Value>,
    pub stop_sequences: Option<Vec<String>>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<usize>,
    #[serde(default)]
    pub stream: bool,
    pub tools: Option<Vec<Value>>,
    pub tool_choice: Option<Value>,
    pub thinking: Option<Value>,
    pub metadata: Option<Value>,
    pub context_management: Option<Value>,
    pub output_config: Option<Value>,
    /// Accepted with no effect: there is one tier on a local port.
    pub service_tier: Option<Value>,
    /// Automatic caching; accepted with no effect, since Orchard's prompt
    /// cache always reuses the longest matching prefix.
    pub cache_control: Option<Value>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// `POST /v1/messages/count_tokens`: the parts of a request that shape its prompt.
#[derive(Debug, Deserialize)]
pub struct CountRequest {
    pub model: String,
    pub messages: Vec<InMessage>,
    pub system: Option<Value>,
    pub tools: Option<Vec<Value>>,
    pub tool_choice: Option<Value>,
    pub thinking: Option<Value>,
    pub context_management: Option<Value>,
    pub output_config: Option<Value>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// One entry of `messages`: `user`, `assistant`, or `system` (Claude Code
/// sends system turns mid-conversation; they are folded into the system prompt).
#[derive(Debug, Clone, Deserialize)]
pub struct InMessage {
    pub role: String,
    pub content: Value,
}
