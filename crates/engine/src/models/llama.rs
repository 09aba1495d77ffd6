//! Llama (Llama 2/3, SmolLM2; and Mistral, which mlx-lm also runs as Llama):
//! the keys of `config.json` that mlx-lm's `mlx_lm/models/llama.py` reads.

use serde::Deserialize;

use super::LanguageModel;
use super::transformer::{self, Spec};
use crate::config::ModelConfig;
use crate::error::Result;
use crate::weights::Weights;

fn default_rope_theta() -> f32 {
    10_000.0
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
struct Config {
    hidden_size: i32,
    num_hidden_layers: i32,
    intermediate_size: i32,
    num_attention_heads: i32,
    num_key_value_heads: Option<i32>,
    head_dim: Option<i32>,
    rms_norm_eps: f32,
    vocab_size: i32,
    #[serde(default = "default_rope_theta")]
    rope_theta: f32,
    #[serde(default)]
    rope_traditional: bool,
    rope_scaling: Option<serde_json::Value>,
    #[serde(default = "default_true")]
    tie_word_embeddings: bool,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default)]
    mlp_bias: bool,
    max_position_embeddings: Option<i32>,
}

/// Builds a Llama model from its config and weights.
pub fn load(config: &ModelConfig, weights: &mut Weights) -> Result<Box<dyn LanguageModel>> {
    let c: Config = config.parse()?;
    let spec = Spec {
        hidden_size: c.hidden_size,
        num_hidden_layers: c.num_hidden_layers,
        intermediate_size: c.intermediate_size,
        num_attention_heads: c.num_attention_heads,
        num_key_value_heads: c.num_key_value_heads.unwrap_or(c.num_attention_heads),
        head_dim: c
            .head_dim
            .unwrap_or(c.hidden_size / c.num_attention_heads.max(1)),
        rms_norm_eps: c.rms_norm_eps,
        vocab_size: c.vocab_size,
        rope_theta: c.rope_theta,
        rope_traditional: c.rope_traditional,
        rope_scaling: c.rope_scaling,
        tie_word_embeddings: c.tie_word_embeddings,
        qkv_bias: c.attention_bias,
        o_bias: c.attention_bias,
        mlp_bias: c.mlp_bias,
        qk_norm: false,
        max_position_embeddings: c.max_position_embeddings,
        experts: None,
        windows: Vec::new(),
        attention_sinks: false,
    };
    transformer::build(&spec, config, weights)
}
