//! Qwen3 with mixtures of experts (Qwen3-30B-A3B, Qwen3-Coder): Qwen3's
//! attention, and in the layers the config makes sparse a router over
//! `num_experts` SwiGLU experts of which each token uses
//! `num_experts_per_tok`; the keys mlx-lm's `mlx_lm/models/qwen3_moe.py` reads.

use serde::Deserialize;

use super::LanguageModel;
use super::moe::MoeSpec;
use super::transformer::{self, Experts};
use crate::config::ModelConfig;
use crate::error::Result;
use crate::weights::Weights;

#[derive(Debug, Clone, Deserialize)]
struct Config {
    num_experts: i32,
    num_experts_per_tok: i32,
    moe_intermediate_size: i32,
    decoder_sparse_step: i32,
    #[serde(default)]
    mlp_only_layers: Vec<i32>,
    norm_topk_prob: bool,
}

/// Builds a Qwen3 MoE model from its config and weights.
pub fn load(config: &ModelConfig, weights: &mut Weights) -> Result<Box<dyn LanguageModel>> {
    let c: Config = config.parse()?;
    let mut spec = super::qwen3::spec(config)?;
    spec.experts = Some(Experts {
        moe: MoeSpec::qwen(
            c.num_experts,
            c.num_experts_per_tok,
            c.moe_intermediate_size,
            c.norm_topk_prob,
        ),
        sparse_step: c.decoder_sparse_step,
        dense_layers: c.mlp_only_layers,
    });
    transformer::build(&spec, config, weights)
}
