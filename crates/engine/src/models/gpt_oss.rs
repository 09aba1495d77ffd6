//! gpt-oss, following mlx-lm's `mlx_lm/models/gpt_oss.py`: layers alternate
//! sliding-window and full attention (`layer_types`), attention has biases
//! and a learned sink logit per head, rotary embeddings use YaRN scaling, and
//! every layer's feed-forward part is a mixture of experts with biases, a
//! top-k-then-softmax router and the clamped SwiGLU. All of it is switches of
//! the shared decoder ([`transformer::Spec`]).

use serde::Deserialize;

use super::LanguageModel;
use super::moe::{Activation, MoeNames, MoeSpec, Routing};
use super::transformer::{self, Experts, Spec};
use crate::config::ModelConfig;
use crate::error::{EngineError, Result};
use crate::weights::Weights;

/// The clamped SwiGLU's constants (mlx-lm's `SwigluOAI` defaults).
const ALPHA: f32 = 1.702;
const LIMIT: f32 = 7.0;

fn default_context() -> i32 {
    131_072
}

/// The keys of `config.json` this architecture reads.
#[derive(Debug, Clone, Deserialize)]
struct Config {
    hidden_size: i32,
    num_hidden_layers: i32,
    intermediate_size: i32,
    num_attention_heads: i32,
    num_key_value_heads: i32,
    head_dim: i32,
    num_local_experts: i32,
    num_experts_per_tok: i32,
    rms_norm_eps: f32,
    vocab_size: i32,
    sliding_window: i32,
    rope_theta: f32,
    rope_scaling: Option<serde_json::Value>,
    /// "sliding_attention" or "full_attention" per layer; alternating,
    /// sliding first, when absent.
    layer_types: Option<Vec<String>>,
    #[serde(default = "default_context")]
    max_position_embeddings: i32,
}

/// Builds a gpt-oss model from its config and weights.
pub fn load(config: &ModelConfig, weights: &mut Weights) -> Result<Box<dyn LanguageModel>> {
    let c: Config = config.parse()?;
    let invalid = |message: String| EngineError::invalid(&config.path, message);
    let layer_types = match &c.layer_types {
        Some(types) if types.len() == c.num_hidden_layers as usize => types.clone(),
        Some(types) => {
            return Err(invalid(format!(
                "layer_types lists {} layers, but num_hidden_layers is {}",
                types.len(),
                c.num_hidden_layers
            )));
        }
        None => (0..c.num_hidden_layers)
            .map(|i| {
                if i % 2 == 0 {
                    "sliding_attention"
                } else {
                    "full_attention"
                }
                .to_string()
            })
            .collect(),
    };
    let windows = layer_types
        .iter()
        .enumerate()
        .map(|(i, kind)| match kind.as_str() {
            "sliding_attention" => Ok(Some(c.sliding_window)),
            "full_attention" => Ok(None),
            other => Err(invalid(format!(
                "layer {i} has type {other:?}; gpt-oss layers are sliding_attention or full_attention"
            ))),
        })
        .collect::<Result<Vec<_>>>()?;
    let spec = Spec {
        hidden_size: c.hidden_size,
        num_hidden_layers: c.num_hidden_layers,
        intermediate_size: c.intermediate_size,
        num_attention_heads: c.num_attention_heads,
        num_key_value_heads: c.num_key_value_heads,
        head_dim: c.head_dim,
        rms_norm_eps: c.rms_norm_eps,
        vocab_size: c.vocab_size,
        rope_theta: c.rope_theta,
        rope_traditional: false,
        rope_scaling: c.rope_scaling,
        tie_word_embeddings: false,
        qkv_bias: true,
        o_bias: true,
        mlp_bias: false,
        qk_norm: false,
        max_position_embeddings: Some(c.max_position_embeddings),
        experts: Some(Experts {
            moe: MoeSpec {
                num_experts: c.num_local_experts,
                top_k: c.num_experts_per_tok,
                intermediate_size: c.intermediate_size,
                routing: Routing::TopKThenSoftmax,
                activation: Activation::ClampedSwiGlu {
                    alpha: ALPHA,
                    limit: LIMIT,
                },
                bias: true,
                names: MoeNames {
                    router: "router",
                    experts: "experts",
                    per_expert: None,
                },
            },
            sparse_step: 1,
            dense_layers: Vec::new(),
        }),
        windows,
        attention_sinks: true,
    };
    transformer::build(&spec, config, weights)
}
