//! Qwen3 (dense): Llama with RMSNorm over each head's queries and keys; the
//! keys of `config.json` that mlx-lm's `mlx_lm/models/qwen3.py` reads.

use serde::Deserialize;

use super::LanguageModel;
use super::transformer::{self, Spec};
use crate::config::ModelConfig;
use crate::error::{EngineError, Result};
use crate::weights::Weights;

#[derive(Debug, Clone, Deserialize)]
struct Config {
    hidden_size: i32,
    num_hidden_layers: i32,
    intermediate_size: i32,
    num_attention_heads: i32,
    num_key_value_heads: i32,
    head_dim: i32,
    rms_norm_eps: f32,
    vocab_size: i32,
    max_position_embeddings: i32,
    tie_word_embeddings: bool,
    rope_theta: Option<f32>,
    rope_scaling: Option<serde_json::Value>,
    /// transformers 5 nests `rope_theta` and the scaling here.
    rope_parameters: Option<serde_json::Value>,
}

/// Builds a Qwen3 model from its config and weights.
pub fn load(config: &ModelConfig, weights: &mut Weights) -> Result<Box<dyn LanguageModel>> {
    transformer::build(&spec(config)?, config, weights)
}

/// The decoder a Qwen3 config describes (`qwen3_moe` adds its experts).
pub(super) fn spec(config: &ModelConfig) -> Result<Spec> {
    let c: Config = config.parse()?;
    let nested_theta = c
        .rope_parameters
        .as_ref()
        .and_then(|p| p.get("rope_theta")?.as_f64())
        .map(|theta| theta as f32);
    let rope_theta = c
        .rope_theta
        .or(nested_theta)
        .ok_or_else(|| EngineError::invalid(&config.path, "no rope_theta"))?;
    Ok(Spec {
        hidden_size: c.hidden_size,
        num_hidden_layers: c.num_hidden_layers,
        intermediate_size: c.intermediate_size,
        num_attention_heads: c.num_attention_heads,
        num_key_value_heads: c.num_key_value_heads,
        head_dim: c.head_dim,
        rms_norm_eps: c.rms_norm_eps,
        vocab_size: c.vocab_size,
        rope_theta,
        rope_traditional: false,
        rope_scaling: c.rope_scaling.or(c.rope_parameters),
        tie_word_embeddings: c.tie_word_embeddings,
        qkv_bias: false,
        o_bias: false,
        mlp_bias: false,
        qk_norm: true,
        max_position_embeddings: Some(c.max_position_embeddings),
        experts: None,
        windows: Vec::new(),
        attention_sinks: false,
    })
}
