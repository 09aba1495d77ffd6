//! gpt-oss, following mlx-lm's `mlx_lm/models/gpt_oss.py`: layers alternate
//! sliding-window and full attention (`layer_types`), attention has biases
//! and a learned sink logit per head, rotary embeddings use YaRN scaling, and
//! every layer's feed-forward part is a mixture of experts with biases, a
//! top-k-then-softmax router and the clamped SwiGLU.

use mlx_rs::{Array, fast};
use serde::Deserialize;

use super::LanguageModel;
use super::moe::{Activation, MoeNames, MoeSpec, Routing, SparseMoe};
use super::transformer::{Rope, attend};
use crate::cache::{KvCache, LayerCache};
use crate::config::ModelConfig;
use crate::error::{EngineError, Result};
use crate::weights::{Embedding, Linear, Weights};

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

#[derive(Debug)]
struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    /// One logit per head that joins each softmax and takes no value.
    sinks: Array,
    heads: i32,
    kv_heads: i32,
    scale: f32,
    rope: Rope,
    window: Option<i32>,
}

impl Attention {
    fn forward(&self, x: &Array, cache: &mut LayerCache) -> Result<Array> {
        let (b, l) = (x.shape()[0], x.shape()[1]);
        let split = |t: Array, heads: i32| -> Result<Array> {
            Ok(t.reshape(&[b, l, heads, -1])?
                .transpose_axes(&[0, 2, 1, 3])?)
        };
        let offset = cache.offset();
        let q = self
            .rope
            .apply(&split(self.q_proj.forward(x)?, self.heads)?, offset)?;
        let k = self
            .rope
            .apply(&split(self.k_proj.forward(x)?, self.kv_heads)?, offset)?;
        let v = split(self.v_proj.forward(x)?, self.kv_heads)?;
        let (k, v) = cache.update_and_fetch(k, v)?;
        let out = attend(q, k, v, self.scale, offset, self.window, Some(&self.sinks))?;
        let out = out.transpose_axes(&[0, 2, 1, 3])?.reshape(&[b, l, -1])?;
        self.o_proj.forward(&out)
    }
}

#[derive(Debug)]
struct Block {
    attention: Attention,
    mlp: SparseMoe,
    input_norm: Array,
    post_attention_norm: Array,
    eps: f32,
}

impl Block {
    fn forward(&self, x: &Array, cache: &mut LayerCache) -> Result<Array> {
        let r = self
            .attention
            .forward(&fast::rms_norm(x, Some(&self.input_norm), self.eps)?, cache)?;
        let h = x.add(r)?;
        let r = self.mlp.forward(&fast::rms_norm(
            &h,
            Some(&self.post_attention_norm),
            self.eps,
        )?)?;
        Ok(h.add(r)?)
    }
}

#[derive(Debug)]
struct Model {
    embed_tokens: Embedding,
    layers: Vec<Block>,
    norm: Array,
    lm_head: Linear,
    eps: f32,
    context_length: usize,
}

impl LanguageModel for Model {
    fn forward(&self, tokens: &Array, cache: &mut KvCache) -> Result<Array> {
        let mut h = self.embed_tokens.forward(tokens)?;
        for (layer, layer_cache) in self.layers.iter().zip(cache.layers_mut()) {
            h = layer.forward(&h, layer_cache)?;
        }
        let h = fast::rms_norm(&h, Some(&self.norm), self.eps)?;
        self.lm_head.forward(&h)
    }

    fn num_layers(&self) -> usize {
        self.layers.len()
    }

    fn context_length(&self) -> usize {
        self.context_length
    }
}

/// Builds a gpt-oss model from its config and weights.
pub fn load(config: &ModelConfig, weights: &mut Weights) -> Result<Box<dyn LanguageModel>> {
    let c: Config = config.parse()?;
    let invalid = |message: String| EngineError::invalid(&config.path, message);
    if c.num_attention_heads <= 0
        || c.num_key_value_heads <= 0
        || c.num_attention_heads % c.num_key_value_heads != 0
    {
        return Err(invalid(format!(
            "{} attention heads cannot share {} key/value heads",
            c.num_attention_heads, c.num_key_value_heads
        )));
    }
    if c.num_experts_per_tok <= 0 || c.num_experts_per_tok > c.num_local_experts {
        return Err(invalid(format!(
            "{} experts per token cannot be chosen from {} experts",
            c.num_experts_per_tok, c.num_local_experts
        )));
    }
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
    let (dim, head_dim) = (c.hidden_size, c.head_dim);
    let (heads, kv_heads) = (c.num_attention_heads, c.num_key_value_heads);
    let moe = MoeSpec {
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
    };
    let mut layers = Vec::with_capacity(layer_types.len());
    for (i, kind) in layer_types.iter().enumerate() {
        let window = match kind.as_str() {
            "sliding_attention" => Some(c.sliding_window),
            "full_attention" => None,
            other => {
                return Err(invalid(format!(
                    "layer {i} has type {other:?}; gpt-oss layers are sliding_attention or full_attention"
                )));
            }
        };
        let p = format!("model.layers.{i}");
        let attn = format!("{p}.self_attn");
        let linear = |weights: &mut Weights, name: &str, in_dim: i32, out_dim: i32| {
            weights.linear(&format!("{attn}.{name}"), in_dim, out_dim, true)
        };
        layers.push(Block {
            attention: Attention {
                q_proj: linear(weights, "q_proj", dim, heads * head_dim)?,
                k_proj: linear(weights, "k_proj", dim, kv_heads * head_dim)?,
                v_proj: linear(weights, "v_proj", dim, kv_heads * head_dim)?,
                o_proj: linear(weights, "o_proj", heads * head_dim, dim)?,
                sinks: weights.vector(&format!("{attn}.sinks"), heads)?,
                heads,
                kv_heads,
                scale: (head_dim as f32).powf(-0.5),
                rope: Rope::from_config(
                    head_dim,
                    c.rope_theta,
                    false,
                    c.rope_scaling.as_ref(),
                    &config.path,
                )?,
                window,
            },
            mlp: SparseMoe::load(weights, &format!("{p}.mlp"), dim, moe)?,
            input_norm: weights.vector(&format!("{p}.input_layernorm.weight"), dim)?,
            post_attention_norm: weights
                .vector(&format!("{p}.post_attention_layernorm.weight"), dim)?,
            eps: c.rms_norm_eps,
        });
    }
    Ok(Box::new(Model {
        embed_tokens: weights.embedding("model.embed_tokens", c.vocab_size, dim)?,
        layers,
        norm: weights.vector("model.norm.weight", dim)?,
        lm_head: weights.linear("lm_head", dim, c.vocab_size, false)?,
        eps: c.rms_norm_eps,
        context_length: c.max_position_embeddings.max(1) as usize,
    }))
}
