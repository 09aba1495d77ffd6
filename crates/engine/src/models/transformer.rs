//! The decoder shared by the Llama family, following mlx-lm's
//! `mlx_lm/models/llama.py`, `qwen2.py`, `qwen3.py`, `qwen3_moe.py` and
//! `gpt_oss.py`, which differ only in the switches of [`Spec`]: grouped-query
//! attention with rotary embeddings (Llama 3's and YaRN's frequency scaling),
//! optional q/k/v biases, per-head q/k RMSNorm, sliding-window layers and
//! attention sinks, a SwiGLU MLP or a sparse mixture of experts, RMSNorm
//! before each sub-layer, and optionally tied input/output embeddings.

use mlx_rs::fast::{self, ScaledDotProductAttentionMask};
use mlx_rs::ops::indexing::TryIndexOp;
use mlx_rs::{Array, nn};

use super::LanguageModel;
use super::moe::{MoeSpec, SparseMoe};
use crate::cache::{KvCache, LayerCache, Positions};
use crate::config::ModelConfig;
use crate::error::{EngineError, Result};
use crate::ffi::rope_at;
use crate::weights::{Embedding, Linear, Weights};

/// Everything that tells one Llama-family architecture from another, filled
/// in from `config.json` by each architecture's file.
#[derive(Debug, Clone)]
pub struct Spec {
    pub hidden_size: i32,
    pub num_hidden_layers: i32,
    pub intermediate_size: i32,
    pub num_attention_heads: i32,
    pub num_key_value_heads: i32,
    pub head_dim: i32,
    pub rms_norm_eps: f32,
    pub vocab_size: i32,
    pub rope_theta: f32,
    pub rope_traditional: bool,
    pub rope_scaling: Option<serde_json::Value>,
    pub tie_word_embeddings: bool,
    /// Biases on the q, k and v projections.
    pub qkv_bias: bool,
    /// A bias on the output projection.
    pub o_bias: bool,
    pub mlp_bias: bool,
    /// RMSNorm over each head's queries and keys before the rotary embedding (Qwen3).
    pub qk_norm: bool,
    pub max_position_embeddings: Option<i32>,
    /// Mixture-of-experts layers in place of the MLP, where set.
    pub experts: Option<Experts>,
    /// Per layer, the window a sliding-window layer attends over (None:
    /// all positions). Empty: no layer slides.
    pub windows: Vec<Option<i32>>,
    /// A learned sink logit per head joins each attention softmax (gpt-oss).
    pub attention_sinks: bool,
}

/// Which layers are sparse, and their experts.
#[derive(Debug, Clone)]
pub struct Experts {
    pub moe: MoeSpec,
    /// Every `sparse_step`-th layer is sparse (layer i when (i + 1) % step == 0)...
    pub sparse_step: i32,
    /// ...unless it is listed here.
    pub dense_layers: Vec<i32>,
}

impl Experts {
    pub(crate) fn is_sparse(&self, layer: i32) -> bool {
        self.moe.num_experts > 0
            && self.sparse_step > 0
            && (layer + 1) % self.sparse_step == 0
            && !self.dense_layers.contains(&layer)
    }
}

/// Rotary position embedding, as mlx-lm's `initialize_rope` builds it.
#[derive(Debug)]
pub(crate) struct Rope {
    dims: i32,
    traditional: bool,
    base: Option<f32>,
    scale: f32,
    /// Per-pair frequencies (Llama 3 and YaRN scaling); replace `base` when set.
    freqs: Option<Array>,
    /// YaRN's attention factor, applied to queries and keys before rotating.
    input_scale: f32,
}

impl Rope {
    /// Rotation of all `dims` features with frequencies from `base`.
    pub(crate) fn plain(dims: i32, base: f32) -> Rope {
        Rope {
            dims,
            traditional: false,
            base: Some(base),
            scale: 1.0,
            freqs: None,
            input_scale: 1.0,
        }
    }

    fn new(config: &Spec, path: &std::path::Path) -> Result<Rope> {
        Rope::from_config(
            config.head_dim,
            config.rope_theta,
            config.rope_traditional,
            config.rope_scaling.as_ref(),
            path,
        )
    }

    /// The rope a config describes, with its `rope_scaling` block if any.
    pub(crate) fn from_config(
        dims: i32,
        rope_theta: f32,
        traditional: bool,
        scaling: Option<&serde_json::Value>,
        path: &std::path::Path,
    ) -> Result<Rope> {
        let plain = Rope {
            traditional,
            ..Rope::plain(dims, rope_theta)
        };
        let Some(scaling) = scaling.filter(|s| !s.is_null()) else {
            return Ok(plain);
        };
        let kind = scaling
            .get("rope_type")
            .or_else(|| scaling.get("type"))
            .and_then(|v| v.as_str())
            .unwrap_or("default");
        let number = |key: &str, default: f32| -> f32 {
            scaling
                .get(key)
                .and_then(|v| v.as_f64())
                .map_or(default, |v| v as f32)
        };
        match kind {
            "default" => Ok(plain),
            "linear" => Ok(Rope {
                scale: 1.0 / number("factor", 1.0),
                ..plain
            }),
            "llama3" => Ok(Rope {
                base: None,
                freqs: Some(llama3_freqs(
                    dims,
                    rope_theta,
                    number("factor", 1.0),
                    number("low_freq_factor", 1.0),
                    number("high_freq_factor", 4.0),
                    number("original_max_position_embeddings", 8192.0),
                )),
                ..plain
            }),
            "yarn" => {
                let factor = number("factor", 1.0);
                let mscale = |m: f32| {
                    if factor <= 1.0 {
                        1.0
                    } else {
                        0.1 * m * factor.ln() + 1.0
                    }
                };
                Ok(Rope {
                    base: None,
                    freqs: Some(yarn_freqs(
                        dims,
                        rope_theta,
                        factor,
                        number("original_max_position_embeddings", 4096.0),
                        number("beta_fast", 32.0),
                        number("beta_slow", 1.0),
                    )),
                    input_scale: mscale(number("mscale", 1.0))
                        / mscale(number("mscale_all_dim", 0.0)),
                    ..plain
                })
            }
            other => Err(EngineError::invalid(
                path,
                format!(
                    "unsupported rope_scaling type {other:?} (supported: default, linear, llama3, yarn)"
                ),
            )),
        }
    }

    /// Rotates `x` (batch, heads, length, dims) to the positions `at`.
    pub(crate) fn apply(&self, x: &Array, at: &Positions) -> Result<Array> {
        // The factor covers the rotated features only (Qwen3-Next rotates a
        // quarter of each head).
        let scaled;
        let x = if self.input_scale == 1.0 {
            x
        } else {
            let factor = Array::from_f32(self.input_scale).as_dtype(x.dtype())?;
            let features = x.shape()[x.ndim() - 1];
            scaled = if features > self.dims {
                let parts = x.split_at_indices(&[self.dims], -1)?;
                mlx_rs::ops::concatenate(&[parts[0].multiply(&factor)?, parts[1].clone()], -1)?
            } else {
                x.multiply(&factor)?
            };
            &scaled
        };
        match at {
            Positions::Same(offset) => Ok(fast::rope(
                x,
                self.dims,
                self.traditional,
                self.base,
                self.scale,
                *offset,
                self.freqs.as_ref(),
            )?),
            Positions::PerRow(offsets) => rope_at(
                x,
                self.dims,
                self.traditional,
                self.base,
                self.scale,
                offsets,
                self.freqs.as_ref(),
            ),
        }
    }
}

/// Llama 3's wavelength-dependent frequency scaling (mlx-lm `Llama3RoPE`).
fn llama3_freqs(dims: i32, base: f32, factor: f32, low: f32, high: f32, old_context: f32) -> Array {
    let low_wavelen = old_context / low;
    let high_wavelen = old_context / high;
    let freqs: Vec<f32> = (0..dims)
        .step_by(2)
        .map(|i| {
            let freq = base.powf(i as f32 / dims as f32);
            let wavelen = 2.0 * std::f32::consts::PI * freq;
            let freq = if wavelen > low_wavelen {
                freq * factor
            } else {
                freq
            };
            if wavelen > high_wavelen && wavelen < low_wavelen {
                let smooth = (old_context / wavelen - low) / (high - low);
                freq / ((1.0 - smooth) / factor + smooth)
            } else {
                freq
            }
        })
        .collect();
    let len = freqs.len() as i32;
    Array::from_slice(&freqs, &[len])
}

/// YaRN's per-pair frequencies (mlx-lm `YarnRoPE`): pairs rotating faster
/// than `beta_fast` turns over the original context keep their frequency,
/// those slower than `beta_slow` are stretched by `factor`, with a linear
/// ramp between.
fn yarn_freqs(
    dims: i32,
    base: f32,
    factor: f32,
    original_context: f32,
    beta_fast: f32,
    beta_slow: f32,
) -> Array {
    let correction = |rotations: f32| {
        (dims as f32 * (original_context / (rotations * 2.0 * std::f32::consts::PI)).ln())
            / (2.0 * base.ln())
    };
    let low = correction(beta_fast).floor().max(0.0);
    let mut high = correction(beta_slow).ceil().min((dims - 1) as f32);
    if low == high {
        high += 0.001;
    }
    let freqs: Vec<f32> = (0..dims / 2)
        .map(|i| {
            let extra = base.powf((2 * i) as f32 / dims as f32);
            let inter = factor * extra;
            let ramp = ((i as f32 - low) / (high - low)).clamp(0.0, 1.0);
            let mask = 1.0 - ramp;
            (inter * extra) / (inter * mask + extra * (1.0 - mask))
        })
        .collect();
    let len = freqs.len() as i32;
    Array::from_slice(&freqs, &[len])
}

/// Rotates the new queries and keys to their positions, adds the keys and
/// values to the layer's `cache`, and attends over every cached position
/// (see [`attend`]). Each row of a batch keeps its own positions.
#[allow(clippy::too_many_arguments)]
pub(crate) fn cached_attention(
    cache: &mut LayerCache,
    rope: &Rope,
    q: &Array,
    k: &Array,
    v: Array,
    scale: f32,
    window: Option<i32>,
    sinks: Option<&Array>,
) -> Result<Array> {
    let positions = cache.positions()?;
    let (offset, padding) = (cache.offset(), cache.padding().cloned());
    let q = rope.apply(q, &positions)?;
    let k = rope.apply(k, &positions)?;
    let (k, v) = cache.update_and_fetch(k, v)?;
    attend(q, k, v, scale, offset, window, sinks, padding.as_ref())
}

/// Scaled dot-product attention of the new queries `q` (after `offset`
/// cached columns) over all cached keys and values, causal. With `window`,
/// each query sees only the `window` positions ending at its own; `sinks`
/// are per-head logits that join each softmax (gpt-oss). `padding` hides
/// each row's first columns (a batch of right-aligned sequences, decoding
/// one token each).
#[allow(clippy::too_many_arguments)]
pub(crate) fn attend(
    q: Array,
    mut k: Array,
    mut v: Array,
    scale: f32,
    offset: i32,
    window: Option<i32>,
    sinks: Option<&Array>,
    padding: Option<&Array>,
) -> Result<Array> {
    let l = q.shape()[2];
    let total = offset + l;
    if let Some(padding) = padding {
        if l != 1 {
            return Err(EngineError::InvalidParameter {
                name: "tokens",
                message: "a batch of sequences of different lengths runs one token per sequence at a time".into(),
            });
        }
        // Rows are right-aligned, so one window of columns fits every row.
        let start = match window {
            Some(window) if total > window => total - window,
            _ => 0,
        };
        if start > 0 {
            k = k.try_index((.., .., start..))?;
            v = v.try_index((.., .., start..))?;
        }
        let columns: Vec<i32> = (start..total).collect();
        let columns = Array::from_slice(&columns, &[1, total - start]);
        let rows = padding.shape()[0];
        let mask =
            columns
                .ge(padding.reshape(&[rows, 1])?)?
                .reshape(&[rows, 1, 1, total - start])?;
        return Ok(fast::scaled_dot_product_attention(
            q,
            k,
            v,
            scale,
            Some(ScaledDotProductAttentionMask::Array(&mask)),
            sinks,
        )?);
    }
    let mask = match window {
        // One new token: keep only the keys inside its window.
        Some(window) if l == 1 && total > window => {
            k = k.try_index((.., .., total - window..))?;
            v = v.try_index((.., .., total - window..))?;
            None
        }
        Some(window) if l > 1 && total > window => Some(window_mask(offset, l, window)?),
        _ => None,
    };
    let mask = match (&mask, l > 1) {
        (Some(m), _) => Some(ScaledDotProductAttentionMask::Array(m)),
        // A block of new tokens needs the causal mask (aligned to the end
        // when positions are cached); a single one sees every cached position.
        (None, true) => Some(ScaledDotProductAttentionMask::Causal),
        (None, false) => None,
    };
    Ok(fast::scaled_dot_product_attention(
        q, k, v, scale, mask, sinks,
    )?)
}

/// Which keys each of `len` new queries (after `offset` cached positions) may
/// see: earlier or equal positions less than `window` behind it.
fn window_mask(offset: i32, len: i32, window: i32) -> Result<Array> {
    let total = offset + len;
    let allowed: Vec<bool> = (0..len)
        .flat_map(|i| {
            let q = offset + i;
            (0..total).map(move |k| k <= q && q - k < window)
        })
        .collect();
    Ok(Array::from_slice(&allowed, &[len, total]))
}

/// An attention layer's projections: queries, keys and values from the
/// hidden states, and the output back to them.
#[derive(Debug)]
pub(crate) struct Projections {
    pub(crate) q: Linear,
    pub(crate) k: Linear,
    pub(crate) v: Linear,
    pub(crate) o: Linear,
}

impl Projections {
    /// The projections at `prefix` (`model.layers.N.self_attn`): `dim`
    /// features to `q_out` query and `kv_out` key and value features, and
    /// `o_in` features back to `dim`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn load(
        weights: &mut Weights,
        prefix: &str,
        dim: i32,
        q_out: i32,
        kv_out: i32,
        o_in: i32,
        qkv_bias: bool,
        o_bias: bool,
    ) -> Result<Projections> {
        let mut linear = |name: &str, in_dim: i32, out_dim: i32, bias: bool| {
            weights.linear(&format!("{prefix}.{name}"), in_dim, out_dim, bias)
        };
        Ok(Projections {
            q: linear("q_proj", dim, q_out, qkv_bias)?,
            k: linear("k_proj", dim, kv_out, qkv_bias)?,
            v: linear("v_proj", dim, kv_out, qkv_bias)?,
            o: linear("o_proj", o_in, dim, o_bias)?,
        })
    }
}

#[derive(Debug)]
struct Attention {
    proj: Projections,
    heads: i32,
    kv_heads: i32,
    scale: f32,
    rope: Rope,
    /// Per-head RMSNorm weights of queries and keys, with their epsilon.
    qk_norm: Option<(Array, Array, f32)>,
    window: Option<i32>,
    sinks: Option<Array>,
}

impl Attention {
    fn forward(&self, x: &Array, cache: &mut LayerCache) -> Result<Array> {
        let (b, l) = (x.shape()[0], x.shape()[1]);
        let split = |t: Array, heads: i32| -> Result<Array> {
            Ok(t.reshape(&[b, l, heads, -1])?
                .transpose_axes(&[0, 2, 1, 3])?)
        };
        let (mut q, mut k) = (self.proj.q.forward(x)?, self.proj.k.forward(x)?);
        if let Some((q_norm, k_norm, eps)) = &self.qk_norm {
            q = fast::rms_norm(q.reshape(&[b, l, self.heads, -1])?, Some(q_norm), *eps)?;
            k = fast::rms_norm(k.reshape(&[b, l, self.kv_heads, -1])?, Some(k_norm), *eps)?;
        }
        let v = split(self.proj.v.forward(x)?, self.kv_heads)?;
        let out = cached_attention(
            cache,
            &self.rope,
            &split(q, self.heads)?,
            &split(k, self.kv_heads)?,
            v,
            self.scale,
            self.window,
            self.sinks.as_ref(),
        )?;
        let out = out.transpose_axes(&[0, 2, 1, 3])?.reshape(&[b, l, -1])?;
        self.proj.o.forward(&out)
    }
}

/// A SwiGLU feed-forward block: `down(silu(gate(x)) * up(x))`.
#[derive(Debug)]
pub(crate) struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

impl Mlp {
    /// The block at `prefix` (`model.layers.N.mlp`), `dim` to `hidden` and back.
    pub(crate) fn load(
        weights: &mut Weights,
        prefix: &str,
        dim: i32,
        hidden: i32,
        bias: bool,
    ) -> Result<Mlp> {
        let mut linear = |name: &str, in_dim: i32, out_dim: i32| {
            weights.linear(&format!("{prefix}.{name}"), in_dim, out_dim, bias)
        };
        Ok(Mlp {
            gate_proj: linear("gate_proj", dim, hidden)?,
            up_proj: linear("up_proj", dim, hidden)?,
            down_proj: linear("down_proj", hidden, dim)?,
        })
    }

    pub(crate) fn forward(&self, x: &Array) -> Result<Array> {
        let gate = nn::silu(self.gate_proj.forward(x)?)?;
        self.down_proj
            .forward(&gate.multiply(self.up_proj.forward(x)?)?)
    }
}

/// A layer's feed-forward part.
#[derive(Debug)]
enum FeedForward {
    Dense(Mlp),
    Sparse(SparseMoe),
}

impl FeedForward {
    fn forward(&self, x: &Array) -> Result<Array> {
        match self {
            FeedForward::Dense(mlp) => mlp.forward(x),
            FeedForward::Sparse(moe) => moe.forward(x),
        }
    }
}

#[derive(Debug)]
struct Block {
    attention: Attention,
    mlp: FeedForward,
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

/// The whole model.
#[derive(Debug)]
pub struct Model {
    embed_tokens: Embedding,
    layers: Vec<Block>,
    norm: Array,
    /// `None` when the output projection is the embedding table (tied).
    lm_head: Option<Linear>,
    eps: f32,
    context_length: usize,
}

impl Model {
    fn normed_hidden(&self, tokens: &Array, cache: &mut KvCache) -> Result<Array> {
        let mut h = self.embed_tokens.forward(tokens)?;
        for (layer, layer_cache) in self.layers.iter().zip(cache.layers_mut()) {
            h = layer.forward(&h, layer_cache)?;
        }
        Ok(fast::rms_norm(&h, Some(&self.norm), self.eps)?)
    }
}

impl LanguageModel for Model {
    fn forward(&self, tokens: &Array, cache: &mut KvCache) -> Result<Array> {
        let h = self.normed_hidden(tokens, cache)?;
        match &self.lm_head {
            Some(head) => head.forward(&h),
            None => self.embed_tokens.as_linear(&h),
        }
    }

    fn hidden(&self, tokens: &Array, cache: &mut KvCache) -> Result<Option<Array>> {
        self.normed_hidden(tokens, cache).map(Some)
    }

    fn num_layers(&self) -> usize {
        self.layers.len()
    }

    fn context_length(&self) -> usize {
        self.context_length
    }
}

/// Builds the model `c` describes from `weights` (`config` names the file in errors).
pub fn build(
    c: &Spec,
    config: &ModelConfig,
    weights: &mut Weights,
) -> Result<Box<dyn LanguageModel>> {
    if c.num_attention_heads <= 0
        || c.num_key_value_heads <= 0
        || c.num_attention_heads % c.num_key_value_heads != 0
        || c.head_dim <= 0
    {
        return Err(EngineError::invalid(
            &config.path,
            format!(
                "{} attention heads cannot share {} key/value heads of dimension {}",
                c.num_attention_heads, c.num_key_value_heads, c.head_dim
            ),
        ));
    }
    if let Some(experts) = &c.experts
        && (experts.moe.top_k <= 0 || experts.moe.top_k > experts.moe.num_experts)
    {
        return Err(EngineError::invalid(
            &config.path,
            format!(
                "{} experts per token cannot be chosen from {} experts",
                experts.moe.top_k, experts.moe.num_experts
            ),
        ));
    }
    let (dim, head_dim) = (c.hidden_size, c.head_dim);
    let (heads, kv_heads) = (c.num_attention_heads, c.num_key_value_heads);
    let mut layers = Vec::with_capacity(c.num_hidden_layers as usize);
    for i in 0..c.num_hidden_layers {
        let p = format!("model.layers.{i}");
        let attn = format!("{p}.self_attn");
        let mlp_at = format!("{p}.mlp");
        let bias = c.qkv_bias;
        let qk_norm = if c.qk_norm {
            Some((
                weights.vector(&format!("{attn}.q_norm.weight"), head_dim)?,
                weights.vector(&format!("{attn}.k_norm.weight"), head_dim)?,
                c.rms_norm_eps,
            ))
        } else {
            None
        };
        let mlp = match &c.experts {
            Some(experts) if experts.is_sparse(i) => {
                FeedForward::Sparse(SparseMoe::load(weights, &mlp_at, dim, experts.moe)?)
            }
            _ => FeedForward::Dense(Mlp::load(
                weights,
                &mlp_at,
                dim,
                c.intermediate_size,
                c.mlp_bias,
            )?),
        };
        layers.push(Block {
            attention: Attention {
                proj: Projections::load(
                    weights,
                    &attn,
                    dim,
                    heads * head_dim,
                    kv_heads * head_dim,
                    heads * head_dim,
                    bias,
                    c.o_bias,
                )?,
                heads,
                kv_heads,
                scale: (head_dim as f32).powf(-0.5),
                rope: Rope::new(c, &config.path)?,
                qk_norm,
                window: c.windows.get(i as usize).copied().flatten(),
                sinks: if c.attention_sinks {
                    Some(weights.vector(&format!("{attn}.sinks"), heads)?)
                } else {
                    None
                },
            },
            mlp,
            input_norm: weights.vector(&format!("{p}.input_layernorm.weight"), dim)?,
            post_attention_norm: weights
                .vector(&format!("{p}.post_attention_layernorm.weight"), dim)?,
            eps: c.rms_norm_eps,
        });
    }
    // Some tied checkpoints still carry an lm_head copy; like mlx-lm, use it
    // only when the config says the embeddings are not tied.
    let lm_head = if c.tie_word_embeddings {
        None
    } else {
        Some(weights.linear("lm_head", dim, c.vocab_size, false)?)
    };
    Ok(Box::new(Model {
        embed_tokens: weights.embedding("model.embed_tokens", c.vocab_size, dim)?,
        layers,
        norm: weights.vector("model.norm.weight", dim)?,
        lm_head,
        eps: c.rms_norm_eps,
        context_length: c.max_position_embeddings.unwrap_or(4096).max(1) as usize,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_mask_is_causal_and_bounded() {
        let mask = window_mask(2, 3, 2).expect("mask");
        mask.eval().expect("eval");
        // Queries at positions 2, 3, 4 over keys 0..5, each seeing itself and one before.
        let expected = [
            false, true, true, false, false, //
            false, false, true, true, false, //
            false, false, false, true, true,
        ];
        assert_eq!(mask.as_slice::<bool>(), expected);
    }
}
