//! Gemma 3 (text), following mlx-lm's `mlx_lm/models/gemma3_text.py`: every
//! `sliding_window_pattern`-th layer attends globally, the others only to the
//! last `sliding_window` positions with their own rope base; RMSNorm scales by
//! `1 + weight`, with norms before and after both sub-layers; per-head q/k
//! norms; a GELU (tanh) gated MLP; embeddings scaled by sqrt(hidden_size).

use mlx_rs::fast;
use mlx_rs::{Array, Dtype, nn, ops};
use serde::Deserialize;

use serde_json::Value;

use super::LanguageModel;
use super::transformer::{Projections, Rope, cached_attention};
use crate::cache::{KvCache, LayerCache};
use crate::config::ModelConfig;
use crate::error::{EngineError, Result};
use crate::weights::{Embedding, Linear, Weights};

fn default_rope_theta() -> f32 {
    1_000_000.0
}
fn default_local_base() -> f32 {
    10_000.0
}
fn default_window() -> i32 {
    512
}
fn default_pattern() -> i32 {
    6
}
fn default_eps() -> f32 {
    1e-6
}
fn default_context() -> i32 {
    32_768
}

/// The keys of `config.json` this architecture reads (defaults as mlx-lm's).
#[derive(Debug, Clone, Deserialize)]
struct Config {
    hidden_size: i32,
    num_hidden_layers: i32,
    intermediate_size: i32,
    num_attention_heads: i32,
    num_key_value_heads: i32,
    head_dim: i32,
    #[serde(default = "default_eps")]
    rms_norm_eps: f32,
    vocab_size: i32,
    #[serde(default = "default_rope_theta")]
    rope_theta: f32,
    #[serde(default = "default_local_base")]
    rope_local_base_freq: f32,
    query_pre_attn_scalar: f32,
    #[serde(default = "default_window")]
    sliding_window: i32,
    #[serde(default = "default_pattern")]
    sliding_window_pattern: i32,
    #[serde(default = "default_context")]
    max_position_embeddings: i32,
    rope_scaling: Option<serde_json::Value>,
}

/// Gemma's RMSNorm: the learned weight is stored as an offset from 1.
#[derive(Debug)]
pub(super) struct Norm {
    scale: Array,
    eps: f32,
}

impl Norm {
    pub(super) fn load(weights: &mut Weights, name: &str, dim: i32, eps: f32) -> Result<Norm> {
        let weight = weights.vector(name, dim)?;
        Ok(Norm {
            scale: weight.add(Array::from_f32(1.0).as_dtype(weight.dtype())?)?,
            eps,
        })
    }

    pub(super) fn forward(&self, x: &Array) -> Result<Array> {
        Ok(fast::rms_norm(x, Some(&self.scale), self.eps)?)
    }
}

#[derive(Debug)]
struct Attention {
    proj: Projections,
    q_norm: Norm,
    k_norm: Norm,
    heads: i32,
    kv_heads: i32,
    scale: f32,
    rope: Rope,
    /// Attends only to this many most recent positions (sliding layers).
    window: Option<i32>,
}

impl Attention {
    fn forward(&self, x: &Array, cache: &mut LayerCache) -> Result<Array> {
        let (b, l) = (x.shape()[0], x.shape()[1]);
        let split = |t: Array, heads: i32| -> Result<Array> {
            Ok(t.reshape(&[b, l, heads, -1])?
                .transpose_axes(&[0, 2, 1, 3])?)
        };
        let q = self
            .q_norm
            .forward(&split(self.proj.q.forward(x)?, self.heads)?)?;
        let k = self
            .k_norm
            .forward(&split(self.proj.k.forward(x)?, self.kv_heads)?)?;
        let v = split(self.proj.v.forward(x)?, self.kv_heads)?;
        let out = cached_attention(cache, &self.rope, &q, &k, v, self.scale, self.window, None)?;
        let out = out.transpose_axes(&[0, 2, 1, 3])?.reshape(&[b, l, -1])?;
        self.proj.o.forward(&out)
    }
}

#[derive(Debug)]
struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

impl Mlp {
    fn forward(&self, x: &Array) -> Result<Array> {
        let gate = nn::gelu_approximate(self.gate_proj.forward(x)?)?;
        self.down_proj
            .forward(&gate.multiply(self.up_proj.forward(x)?)?)
    }
}

/// A residual sum that cannot overflow float16 (mlx-lm's `clip_residual`).
fn residual(x: &Array, y: &Array) -> Result<Array> {
    if x.dtype() != Dtype::Float16 {
        return Ok(x.add(y)?);
    }
    let bound = 65504.0f32;
    let sum = x
        .as_dtype(Dtype::Float32)?
        .add(y.as_dtype(Dtype::Float32)?)?;
    Ok(ops::clip(&sum, (-bound, bound))?.as_dtype(Dtype::Float16)?)
}

#[derive(Debug)]
struct Block {
    attention: Attention,
    mlp: Mlp,
    input_norm: Norm,
    post_attention_norm: Norm,
    pre_feedforward_norm: Norm,
    post_feedforward_norm: Norm,
}

impl Block {
    fn forward(&self, x: &Array, cache: &mut LayerCache) -> Result<Array> {
        let r = self
            .attention
            .forward(&self.input_norm.forward(x)?, cache)?;
        let h = residual(x, &self.post_attention_norm.forward(&r)?)?;
        let r = self.mlp.forward(&self.pre_feedforward_norm.forward(&h)?)?;
        residual(&h, &self.post_feedforward_norm.forward(&r)?)
    }
}

/// The whole Gemma 3 text model; also the language model of Gemma 3 with
/// images ([`super::gemma3`]), which feeds it embeddings.
#[derive(Debug)]
pub(super) struct TextModel {
    embed_tokens: Embedding,
    embed_scale: f32,
    layers: Vec<Block>,
    norm: Norm,
    lm_head: Option<Linear>,
    context_length: usize,
}

impl TextModel {
    /// The scaled embeddings of `tokens`, as the first layer takes them.
    pub(super) fn embed(&self, tokens: &Array) -> Result<Array> {
        let h = self.embed_tokens.forward(tokens)?;
        Ok(h.multiply(Array::from_f32(self.embed_scale).as_dtype(h.dtype())?)?)
    }

    /// Runs input embeddings (batch, length, hidden) through the layers:
    /// the logits.
    pub(super) fn run(&self, mut h: Array, cache: &mut KvCache) -> Result<Array> {
        for (layer, layer_cache) in self.layers.iter().zip(cache.layers_mut()) {
            h = layer.forward(&h, layer_cache)?;
        }
        let h = self.norm.forward(&h)?;
        match &self.lm_head {
            Some(head) => head.forward(&h),
            None => self.embed_tokens.as_linear(&h),
        }
    }
}

impl LanguageModel for TextModel {
    fn forward(&self, tokens: &Array, cache: &mut KvCache) -> Result<Array> {
        self.run(self.embed(tokens)?, cache)
    }

    fn num_layers(&self) -> usize {
        self.layers.len()
    }

    fn context_length(&self) -> usize {
        self.context_length
    }
}

/// sqrt(hidden_size) rounded to bfloat16 first, as mlx-lm computes the scale.
fn embedding_scale(hidden: i32) -> f32 {
    let bits = (hidden as f32).sqrt().to_bits();
    // Round to nearest even on the 16 bits that bfloat16 keeps.
    let rounded = bits.wrapping_add(0x7FFF + ((bits >> 16) & 1)) & 0xFFFF_0000;
    f32::from_bits(rounded)
}

/// Builds a Gemma 3 text model from its config and weights.
pub fn load(config: &ModelConfig, weights: &mut Weights) -> Result<Box<dyn LanguageModel>> {
    // Tied unless the checkpoint carries its own head (mlx-lm's `sanitize`).
    let head = weights.contains("lm_head.weight").then_some("lm_head");
    Ok(Box::new(load_text(
        config,
        &config.raw,
        "model",
        head,
        weights,
    )?))
}

/// The text model whose config is `text` and whose tensors are under `root`
/// (`model`, or `language_model.model` in a checkpoint with images); its
/// output projection is `head`, or the embeddings' when None.
pub(super) fn load_text(
    config: &ModelConfig,
    text: &Value,
    root: &str,
    head: Option<&str>,
    weights: &mut Weights,
) -> Result<TextModel> {
    let c: Config = serde_json::from_value(text.clone())
        .map_err(|e| EngineError::invalid(&config.path, format!("{e}")))?;
    if c.num_attention_heads <= 0
        || c.num_key_value_heads <= 0
        || c.num_attention_heads % c.num_key_value_heads != 0
    {
        return Err(EngineError::invalid(
            &config.path,
            format!(
                "{} attention heads cannot share {} key/value heads",
                c.num_attention_heads, c.num_key_value_heads
            ),
        ));
    }
    let (dim, hd, eps) = (c.hidden_size, c.head_dim, c.rms_norm_eps);
    let pattern = c.sliding_window_pattern.max(1);
    let mut layers = Vec::with_capacity(c.num_hidden_layers as usize);
    for i in 0..c.num_hidden_layers {
        let p = format!("{root}.layers.{i}");
        let a = format!("{p}.self_attn");
        let sliding = (i + 1) % pattern != 0;
        let rope = if sliding {
            Rope::plain(hd, c.rope_local_base_freq)
        } else {
            Rope::from_config(
                hd,
                c.rope_theta,
                false,
                c.rope_scaling.as_ref(),
                &config.path,
            )?
        };
        let attention = Attention {
            proj: Projections::load(
                weights,
                &a,
                dim,
                c.num_attention_heads * hd,
                c.num_key_value_heads * hd,
                c.num_attention_heads * hd,
                false,
                false,
            )?,
            q_norm: Norm::load(weights, &format!("{a}.q_norm.weight"), hd, eps)?,
            k_norm: Norm::load(weights, &format!("{a}.k_norm.weight"), hd, eps)?,
            heads: c.num_attention_heads,
            kv_heads: c.num_key_value_heads,
            scale: c.query_pre_attn_scalar.powf(-0.5),
            rope,
            window: sliding.then_some(c.sliding_window),
        };
        let m = format!("{p}.mlp");
        layers.push(Block {
            attention,
            mlp: Mlp {
                gate_proj: weights.linear(
                    &format!("{m}.gate_proj"),
                    dim,
                    c.intermediate_size,
                    false,
                )?,
                up_proj: weights.linear(
                    &format!("{m}.up_proj"),
                    dim,
                    c.intermediate_size,
                    false,
                )?,
                down_proj: weights.linear(
                    &format!("{m}.down_proj"),
                    c.intermediate_size,
                    dim,
                    false,
                )?,
            },
            input_norm: Norm::load(weights, &format!("{p}.input_layernorm.weight"), dim, eps)?,
            post_attention_norm: Norm::load(
                weights,
                &format!("{p}.post_attention_layernorm.weight"),
                dim,
                eps,
            )?,
            pre_feedforward_norm: Norm::load(
                weights,
                &format!("{p}.pre_feedforward_layernorm.weight"),
                dim,
                eps,
            )?,
            post_feedforward_norm: Norm::load(
                weights,
                &format!("{p}.post_feedforward_layernorm.weight"),
                dim,
                eps,
            )?,
        });
    }
    let lm_head = match head {
        Some(name) => Some(weights.linear(name, dim, c.vocab_size, false)?),
        None => None,
    };
    Ok(TextModel {
        embed_tokens: weights.embedding(&format!("{root}.embed_tokens"), c.vocab_size, dim)?,
        embed_scale: embedding_scale(dim),
        layers,
        norm: Norm::load(weights, &format!("{root}.norm.weight"), dim, eps)?,
        lm_head,
        context_length: c.max_position_embeddings.max(1) as usize,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedding_scale_is_rounded_to_bfloat16() {
        // sqrt(1152) = 33.9411...; bfloat16 keeps 8 significant bits: 34.0.
        assert_eq!(embedding_scale(1152), 34.0);
        assert_eq!(embedding_scale(64), 8.0);
    }
}
