//! The hybrid Qwen models: Qwen3-Next (`qwen3_next`) and the language model
//! of Qwen3.5 (`qwen3_5`, `qwen3_5_moe`), following mlx-lm's
//! `mlx_lm/models/qwen3_next.py`, `qwen3_5.py` and `gated_delta.py`.
//!
//! Three layers in four are linear attention (gated DeltaNet): a short causal
//! convolution over the projected queries, keys and values, then a recurrent
//! state per head that each token decays and corrects by the delta rule, read
//! out by the query. Every fourth layer is softmax attention with an output
//! gate and partial rotary embeddings. The feed-forward part is a SwiGLU MLP,
//! or experts with a gated shared expert.
//!
//! The recurrence runs as MLX ops, one step per token, as mlx-lm does on the
//! CPU; on Metal mlx-lm has a custom kernel for it, which mlx-rs cannot build,
//! so prefill of long prompts on a Mac is slower than mlx-lm's there.

use mlx_rs::fast;
use mlx_rs::ops::indexing::TryIndexOp;
use mlx_rs::{Array, Dtype, nn, ops};
use serde::Deserialize;
use serde_json::Value;

use super::LanguageModel;
use super::moe::{MoeSpec, SparseMoe};
use super::transformer::{Experts, Mlp, Projections, Rope, cached_attention};
use crate::cache::{KvCache, LayerCache, StateCache};
use crate::config::ModelConfig;
use crate::error::{EngineError, Result};
use crate::weights::{Embedding, Linear, Weights};

/// The keys both families read; Qwen3.5 nests them under `text_config` and
/// its rotary settings under `rope_parameters`.
#[derive(Debug, Clone, Deserialize)]
struct Config {
    hidden_size: i32,
    num_hidden_layers: i32,
    #[serde(default)]
    intermediate_size: i32,
    num_attention_heads: i32,
    num_key_value_heads: i32,
    head_dim: Option<i32>,
    rms_norm_eps: f32,
    vocab_size: i32,
    max_position_embeddings: i32,
    linear_num_value_heads: i32,
    linear_num_key_heads: i32,
    linear_key_head_dim: i32,
    linear_value_head_dim: i32,
    linear_conv_kernel_dim: i32,
    #[serde(default = "four")]
    full_attention_interval: i32,
    #[serde(default)]
    num_experts: i32,
    #[serde(default)]
    num_experts_per_tok: i32,
    #[serde(default = "one")]
    decoder_sparse_step: i32,
    #[serde(default)]
    shared_expert_intermediate_size: i32,
    #[serde(default)]
    mlp_only_layers: Vec<i32>,
    #[serde(default)]
    moe_intermediate_size: i32,
    norm_topk_prob: Option<bool>,
    #[serde(default)]
    tie_word_embeddings: bool,
    #[serde(default)]
    attention_bias: bool,
    rope_theta: Option<f32>,
    partial_rotary_factor: Option<f32>,
    rope_scaling: Option<Value>,
    rope_parameters: Option<Value>,
}

fn four() -> i32 {
    4
}

fn one() -> i32 {
    1
}

/// How a family names and lays out its tensors.
#[derive(Debug, Clone, Copy)]
struct Family {
    /// Where the decoder's tensors are: `model` or `language_model.model`.
    root: &'static str,
    /// The output projection's name.
    head: &'static str,
    /// Qwen3-Next projects q, k, v, z and b, a in two fused matrices grouped
    /// by key head; Qwen3.5 in four plain ones.
    fused_projections: bool,
    /// Qwen3.5 makes every layer sparse when it has experts; Qwen3-Next
    /// follows `decoder_sparse_step` and `mlp_only_layers`.
    every_layer_sparse: bool,
    /// `norm_topk_prob` when the config has none.
    normalize_default: bool,
    /// Rotary defaults when the config has none (Qwen3.5's).
    rope_theta_default: Option<f32>,
    partial_rotary_default: Option<f32>,
}

const QWEN3_NEXT: Family = Family {
    root: "model",
    head: "lm_head",
    fused_projections: true,
    every_layer_sparse: false,
    normalize_default: false,
    rope_theta_default: None,
    partial_rotary_default: None,
};

const QWEN3_5: Family = Family {
    root: "language_model.model",
    head: "language_model.lm_head",
    fused_projections: false,
    every_layer_sparse: true,
    normalize_default: true,
    rope_theta_default: Some(100_000.0),
    partial_rotary_default: Some(0.25),
};

/// Builds a Qwen3-Next model.
pub fn load(config: &ModelConfig, weights: &mut Weights) -> Result<Box<dyn LanguageModel>> {
    build(config, &config.raw, QWEN3_NEXT, weights)
}

/// Builds the language model of a Qwen3.5 (dense or MoE) checkpoint; its
/// vision tower's tensors are left unread.
pub fn load_qwen3_5(config: &ModelConfig, weights: &mut Weights) -> Result<Box<dyn LanguageModel>> {
    let text = config.raw.get("text_config").unwrap_or(&config.raw);
    build(config, text, QWEN3_5, weights)
}

fn build(
    config: &ModelConfig,
    text: &Value,
    family: Family,
    weights: &mut Weights,
) -> Result<Box<dyn LanguageModel>> {
    let invalid = |message: String| EngineError::invalid(&config.path, message);
    let c: Config = serde_json::from_value(text.clone()).map_err(|e| invalid(format!("{e}")))?;
    let head_dim = c
        .head_dim
        .unwrap_or(c.hidden_size / c.num_attention_heads.max(1));
    if c.num_attention_heads <= 0
        || c.num_key_value_heads <= 0
        || c.num_attention_heads % c.num_key_value_heads != 0
        || head_dim <= 0
    {
        return Err(invalid(format!(
            "{} attention heads cannot share {} key/value heads of dimension {head_dim}",
            c.num_attention_heads, c.num_key_value_heads
        )));
    }
    if c.linear_num_key_heads <= 0
        || c.linear_num_value_heads % c.linear_num_key_heads != 0
        || c.linear_conv_kernel_dim < 2
        || c.full_attention_interval <= 0
    {
        return Err(invalid(format!(
            "linear attention with {} value heads over {} key heads, a convolution of {} and a full layer every {} is not a valid gated DeltaNet",
            c.linear_num_value_heads,
            c.linear_num_key_heads,
            c.linear_conv_kernel_dim,
            c.full_attention_interval
        )));
    }
    // Qwen3.5 keeps its rotary settings under `rope_parameters`.
    let nested = |key: &str| {
        c.rope_parameters
            .as_ref()
            .and_then(|p| p.get(key)?.as_f64())
            .map(|v| v as f32)
    };
    let rope_theta = c
        .rope_theta
        .or_else(|| nested("rope_theta"))
        .or(family.rope_theta_default)
        .ok_or_else(|| invalid("no rope_theta".into()))?;
    let partial = c
        .partial_rotary_factor
        .or_else(|| nested("partial_rotary_factor"))
        .or(family.partial_rotary_default)
        .ok_or_else(|| invalid("no partial_rotary_factor".into()))?;
    let rope_dims = (head_dim as f32 * partial) as i32;
    let scaling = c.rope_scaling.as_ref().or(c.rope_parameters.as_ref());
    let experts = (c.num_experts > 0).then(|| Experts {
        moe: MoeSpec::qwen(
            c.num_experts,
            c.num_experts_per_tok,
            c.moe_intermediate_size,
            c.norm_topk_prob.unwrap_or(family.normalize_default),
        ),
        sparse_step: if family.every_layer_sparse {
            1
        } else {
            c.decoder_sparse_step
        },
        dense_layers: if family.every_layer_sparse {
            Vec::new()
        } else {
            c.mlp_only_layers.clone()
        },
    });
    if let Some(experts) = &experts
        && (experts.moe.top_k <= 0 || experts.moe.top_k > experts.moe.num_experts)
    {
        return Err(invalid(format!(
            "{} experts per token cannot be chosen from {} experts",
            experts.moe.top_k, experts.moe.num_experts
        )));
    }

    let dim = c.hidden_size;
    let root = family.root;
    let (mut attention_layers, mut recurrent_layers) = (0, 0);
    let mut layers = Vec::with_capacity(c.num_hidden_layers as usize);
    for i in 0..c.num_hidden_layers {
        let p = format!("{root}.layers.{i}");
        let mixer = if (i + 1) % c.full_attention_interval != 0 {
            recurrent_layers += 1;
            Mixer::Linear(
                GatedDeltaNet::load(weights, &format!("{p}.linear_attn"), &c, family, config)?,
                recurrent_layers - 1,
            )
        } else {
            attention_layers += 1;
            let attn = format!("{p}.self_attn");
            let heads = c.num_attention_heads;
            let kv_heads = c.num_key_value_heads;
            let bias = c.attention_bias;
            Mixer::Attention(
                GatedAttention {
                    // The queries come with their gates: twice the features.
                    proj: Projections::load(
                        weights,
                        &attn,
                        dim,
                        heads * head_dim * 2,
                        kv_heads * head_dim,
                        heads * head_dim,
                        bias,
                        bias,
                    )?,
                    q_norm: weights.vector(&format!("{attn}.q_norm.weight"), head_dim)?,
                    k_norm: weights.vector(&format!("{attn}.k_norm.weight"), head_dim)?,
                    heads,
                    kv_heads,
                    scale: (head_dim as f32).powf(-0.5),
                    eps: c.rms_norm_eps,
                    rope: Rope::from_config(rope_dims, rope_theta, false, scaling, &config.path)?,
                },
                attention_layers - 1,
            )
        };
        let mlp_at = format!("{p}.mlp");
        let mlp = match &experts {
            Some(experts) if experts.is_sparse(i) => FeedForward::Sparse {
                experts: Box::new(SparseMoe::load(weights, &mlp_at, dim, experts.moe)?),
                shared: Mlp::load(
                    weights,
                    &format!("{mlp_at}.shared_expert"),
                    dim,
                    c.shared_expert_intermediate_size,
                    false,
                )?,
                shared_gate: weights.linear(
                    &format!("{mlp_at}.shared_expert_gate"),
                    dim,
                    1,
                    false,
                )?,
            },
            _ => FeedForward::Dense(Mlp::load(
                weights,
                &mlp_at,
                dim,
                c.intermediate_size,
                false,
            )?),
        };
        layers.push(Layer {
            mixer,
            mlp,
            input_norm: weights.vector(&format!("{p}.input_layernorm.weight"), dim)?,
            post_attention_norm: weights
                .vector(&format!("{p}.post_attention_layernorm.weight"), dim)?,
            eps: c.rms_norm_eps,
        });
    }
    let lm_head = if c.tie_word_embeddings {
        None
    } else {
        Some(weights.linear(family.head, dim, c.vocab_size, false)?)
    };
    Ok(Box::new(Model {
        embed_tokens: weights.embedding(&format!("{root}.embed_tokens"), c.vocab_size, dim)?,
        layers,
        norm: weights.vector(&format!("{root}.norm.weight"), dim)?,
        lm_head,
        eps: c.rms_norm_eps,
        attention_layers,
        recurrent_layers,
        context_length: c.max_position_embeddings.max(1) as usize,
    }))
}

/// Softmax attention whose query projection also yields a sigmoid gate on
/// its output, with per-head q/k RMSNorm and rotary embeddings on part of
/// each head (mlx-lm's `Qwen3NextAttention`).
#[derive(Debug)]
struct GatedAttention {
    proj: Projections,
    q_norm: Array,
    k_norm: Array,
    heads: i32,
    kv_heads: i32,
    scale: f32,
    eps: f32,
    rope: Rope,
}

impl GatedAttention {
    fn forward(&self, x: &Array, cache: &mut LayerCache) -> Result<Array> {
        let (b, l) = (x.shape()[0], x.shape()[1]);
        let mut halves = self
            .proj
            .q
            .forward(x)?
            .reshape(&[b, l, self.heads, -1])?
            .split_equal(2, -1)?;
        let (Some(gate), Some(q)) = (halves.pop(), halves.pop()) else {
            return Err(EngineError::Exception(
                "the query split gave no halves".into(),
            ));
        };
        let gate = gate.reshape(&[b, l, -1])?;
        let q = fast::rms_norm(&q, Some(&self.q_norm), self.eps)?.transpose_axes(&[0, 2, 1, 3])?;
        let k = self
            .proj
            .k
            .forward(x)?
            .reshape(&[b, l, self.kv_heads, -1])?;
        let k = fast::rms_norm(&k, Some(&self.k_norm), self.eps)?.transpose_axes(&[0, 2, 1, 3])?;
        let v = self
            .proj
            .v
            .forward(x)?
            .reshape(&[b, l, self.kv_heads, -1])?
            .transpose_axes(&[0, 2, 1, 3])?;
        let out = cached_attention(cache, &self.rope, &q, &k, v, self.scale, None, None)?;
        let out = out.transpose_axes(&[0, 2, 1, 3])?.reshape(&[b, l, -1])?;
        self.proj.o.forward(&out.multiply(nn::sigmoid(&gate)?)?)
    }
}

/// The input projections of a gated DeltaNet layer.
#[derive(Debug)]
enum InputProjections {
    /// Qwen3-Next: q, k, v, z in one matrix and b, a in another, each
    /// grouped by key head.
    Fused { qkvz: Linear, ba: Linear },
    /// Qwen3.5: q, k, v together, and z, b, a apart.
    Split {
        qkv: Linear,
        z: Linear,
        b: Linear,
        a: Linear,
    },
}

/// Linear attention by the gated delta rule (mlx-lm's `Qwen3NextGatedDeltaNet`
/// and Qwen3.5's `GatedDeltaNet`).
#[derive(Debug)]
struct GatedDeltaNet {
    projections: InputProjections,
    /// Depthwise causal convolution over q, k and v: (channels, kernel, 1).
    conv_weight: Array,
    dt_bias: Array,
    a_log: Array,
    /// The gated RMSNorm's weight over each value head.
    norm: Array,
    out_proj: Linear,
    key_heads: i32,
    value_heads: i32,
    key_dim: i32,
    value_dim: i32,
    kernel: i32,
    eps: f32,
}

impl GatedDeltaNet {
    fn load(
        weights: &mut Weights,
        prefix: &str,
        c: &Config,
        family: Family,
        config: &ModelConfig,
    ) -> Result<GatedDeltaNet> {
        let dim = c.hidden_size;
        let (nk, nv) = (c.linear_num_key_heads, c.linear_num_value_heads);
        let (dk, dv) = (c.linear_key_head_dim, c.linear_value_head_dim);
        let (key_dim, value_dim) = (nk * dk, nv * dv);
        let conv_dim = key_dim * 2 + value_dim;
        let mut linear = |name: &str, out_dim: i32| {
            weights.linear(&format!("{prefix}.{name}"), dim, out_dim, false)
        };
        let projections = if family.fused_projections {
            InputProjections::Fused {
                qkvz: linear("in_proj_qkvz", key_dim * 2 + value_dim * 2)?,
                ba: linear("in_proj_ba", nv * 2)?,
            }
        } else {
            InputProjections::Split {
                qkv: linear("in_proj_qkv", conv_dim)?,
                z: linear("in_proj_z", value_dim)?,
                b: linear("in_proj_b", nv)?,
                a: linear("in_proj_a", nv)?,
            }
        };
        let conv = format!("{prefix}.conv1d.weight");
        let kernel = c.linear_conv_kernel_dim;
        if weights.shape(&conv) == Some(&[conv_dim, 1, kernel][..]) {
            return Err(EngineError::invalid(
                &config.path,
                "the weights are in the Hugging Face layout (convolution weights not yet \
                 transposed, norms not yet shifted); use the mlx-community conversion, or \
                 convert with `mlx_lm.convert`",
            ));
        }
        Ok(GatedDeltaNet {
            projections,
            conv_weight: weights.tensor(&conv, &[conv_dim, kernel, 1])?,
            dt_bias: weights.vector(&format!("{prefix}.dt_bias"), nv)?,
            a_log: weights.vector(&format!("{prefix}.A_log"), nv)?,
            norm: weights.vector(&format!("{prefix}.norm.weight"), dv)?,
            out_proj: weights.linear(&format!("{prefix}.out_proj"), value_dim, dim, false)?,
            key_heads: nk,
            value_heads: nv,
            key_dim: dk,
            value_dim: dv,
            kernel,
            eps: c.rms_norm_eps,
        })
    }

    /// q, k, v side by side for the convolution (batch, length, channels),
    /// and z (batch, length, value heads, value dim), b and a (batch,
    /// length, value heads).
    fn project(&self, x: &Array) -> Result<(Array, Array, Array, Array)> {
        let (bs, l) = (x.shape()[0], x.shape()[1]);
        let (nk, nv, dk, dv) = (
            self.key_heads,
            self.value_heads,
            self.key_dim,
            self.value_dim,
        );
        match &self.projections {
            InputProjections::Fused { qkvz, ba } => {
                let per = nv / nk * dv;
                let qkvz = qkvz.forward(x)?.reshape(&[bs, l, nk, -1])?;
                let [q, k, v, z] = parts(
                    qkvz.split_at_indices(&[dk, 2 * dk, 2 * dk + per], -1)?,
                    "qkvz",
                )?;
                let ba = ba.forward(x)?.reshape(&[bs, l, nk, -1])?;
                let [b, a] = parts(ba.split_at_indices(&[nv / nk], -1)?, "ba")?;
                let qkv = ops::concatenate(
                    &[
                        q.reshape(&[bs, l, -1])?,
                        k.reshape(&[bs, l, -1])?,
                        v.reshape(&[bs, l, -1])?,
                    ],
                    -1,
                )?;
                Ok((
                    qkv,
                    z.reshape(&[bs, l, -1, dv])?,
                    b.reshape(&[bs, l, nv])?,
                    a.reshape(&[bs, l, nv])?,
                ))
            }
            InputProjections::Split { qkv, z, b, a } => Ok((
                qkv.forward(x)?,
                z.forward(x)?.reshape(&[bs, l, nv, dv])?,
                b.forward(x)?,
                a.forward(x)?,
            )),
        }
    }

    fn forward(&self, x: &Array, cache: &mut StateCache) -> Result<Array> {
        let (bs, l) = (x.shape()[0], x.shape()[1]);
        let (nk, nv, dk, dv) = (
            self.key_heads,
            self.value_heads,
            self.key_dim,
            self.value_dim,
        );
        let (qkv, z, b, a) = self.project(x)?;
        let channels = qkv.shape()[2];
        let (conv_state, state) = cache.get();
        let conv_state = match conv_state {
            Some(s) => s.clone(),
            None => ops::zeros_dtype(&[bs, self.kernel - 1, channels], x.dtype())?,
        };
        let conv_input = ops::concatenate(&[conv_state, qkv], 1)?;
        // The convolution's window for the next call: the last kernel-1 inputs.
        let kept = conv_input
            .try_index((.., -(self.kernel - 1).., ..))?
            .contiguous()?;
        let conv_out = nn::silu(ops::conv1d(
            &conv_input,
            &self.conv_weight,
            1,
            0,
            1,
            channels,
        )?)?;
        let [q, k, v] = parts(
            conv_out.split_at_indices(&[nk * dk, 2 * nk * dk], -1)?,
            "qkv",
        )?;
        let q = q.reshape(&[bs, l, nk, dk])?;
        let k = k.reshape(&[bs, l, nk, dk])?;
        let v = v.reshape(&[bs, l, nv, dv])?;
        let (q, k) = normalize_qk(&q, &k, dk)?;
        let state = match state {
            Some(s) => s.clone(),
            None => ops::zeros_dtype(&[bs, nv, dv, dk], Dtype::Float32)?,
        };
        let (out, state) = self.delta_rule(q, k, v, &a, &b, state)?;
        cache.set(kept, state, l);
        // RMSNorm, gated by silu(z) in float32.
        let normed = fast::rms_norm(&out, Some(&self.norm), self.eps)?;
        let gated = nn::silu(z.as_dtype(Dtype::Float32)?)?
            .multiply(normed.as_dtype(Dtype::Float32)?)?
            .as_dtype(out.dtype())?;
        self.out_proj.forward(&gated.reshape(&[bs, l, -1])?)
    }

    /// The gated delta rule over the `l` new positions, one step per token
    /// (mlx-lm's `gated_delta_ops`): returns the outputs (batch, length,
    /// value heads, value dim) and the new state (batch, value heads, value
    /// dim, key dim), float32.
    fn delta_rule(
        &self,
        q: Array,
        k: Array,
        v: Array,
        a: &Array,
        b: &Array,
        mut state: Array,
    ) -> Result<(Array, Array)> {
        let l = q.shape()[1];
        let beta = nn::sigmoid(b)?;
        // g = exp(-exp(A_log) * softplus(a + dt_bias)), in float32.
        let shifted = a.add(&self.dt_bias)?;
        let softplus = ops::logaddexp(&shifted, Array::from_f32(0.0).as_dtype(shifted.dtype())?)?;
        let g = ops::exp(
            ops::exp(self.a_log.as_dtype(Dtype::Float32)?)?
                .negative()?
                .multiply(softplus)?,
        )?;
        let repeat = self.value_heads / self.key_heads;
        let (q, k) = if repeat > 1 {
            (
                Array::repeat_axis::<f32>(q, repeat, -2)?,
                Array::repeat_axis::<f32>(k, repeat, -2)?,
            )
        } else {
            (q, k)
        };
        let dtype = q.dtype();
        let mut outputs = Vec::with_capacity(l as usize);
        for t in 0..l {
            let at = |x: &Array| x.try_index((.., t));
            let (q_t, k_t, v_t) = (at(&q)?, at(&k)?, at(&v)?);
            let (g_t, beta_t) = (at(&g)?, at(&beta)?);
            // Decay, then correct the memory toward v along k, then read with q.
            state = state.multiply(g_t.expand_dims_axes(&[-1, -2])?)?;
            let k_row = k_t.expand_dims(-2)?;
            let remembered = state.multiply(&k_row)?.sum_axis(-1, false)?;
            let delta = v_t
                .subtract(remembered)?
                .multiply(beta_t.expand_dims(-1)?)?;
            state = state.add(k_row.multiply(delta.expand_dims(-1)?)?)?;
            let y = state
                .multiply(q_t.expand_dims(-2)?)?
                .sum_axis(-1, false)?
                .as_dtype(dtype)?;
            outputs.push(y);
        }
        Ok((ops::stack(&outputs, 1)?, state))
    }
}

/// The `N` parts of a split, named by `what` in the error.
fn parts<const N: usize>(parts: Vec<Array>, what: &str) -> Result<[Array; N]> {
    <[Array; N]>::try_from(parts)
        .map_err(|_| EngineError::Exception(format!("the {what} split gave no {N} parts")))
}

/// L2-normalizes q and k over each head (as RMSNorm with the epsilon
/// rescaled) and folds the `dk^-0.5` read-out scale into q (mlx-lm's
/// `normalize_qk` with eps 1e-6).
fn normalize_qk(q: &Array, k: &Array, dk: i32) -> Result<(Array, Array)> {
    let inv_scale = (dk as f32).powf(-0.5);
    let eps = 1e-6 * inv_scale * inv_scale;
    let scalar = |v: f32, like: &Array| Array::from_f32(v).as_dtype(like.dtype());
    let q = fast::rms_norm(q, None, eps)?;
    let k = fast::rms_norm(k, None, eps)?;
    let q = q.multiply(scalar(inv_scale * inv_scale, &q)?)?;
    let k = k.multiply(scalar(inv_scale, &k)?)?;
    Ok((q, k))
}

/// A layer's token mixer, with its slot in the cache's attention layers or
/// recurrent states.
#[derive(Debug)]
enum Mixer {
    Linear(GatedDeltaNet, usize),
    Attention(GatedAttention, usize),
}

#[derive(Debug)]
enum FeedForward {
    Dense(Mlp),
    /// Routed experts plus a shared expert scaled by a sigmoid gate.
    Sparse {
        experts: Box<SparseMoe>,
        shared: Mlp,
        shared_gate: Linear,
    },
}

impl FeedForward {
    fn forward(&self, x: &Array) -> Result<Array> {
        match self {
            FeedForward::Dense(mlp) => mlp.forward(x),
            FeedForward::Sparse {
                experts,
                shared,
                shared_gate,
            } => {
                let routed = experts.forward(x)?;
                let gate = nn::sigmoid(shared_gate.forward(x)?)?;
                Ok(routed.add(gate.multiply(shared.forward(x)?)?)?)
            }
        }
    }
}

#[derive(Debug)]
struct Layer {
    mixer: Mixer,
    mlp: FeedForward,
    input_norm: Array,
    post_attention_norm: Array,
    eps: f32,
}

/// The cache slot of a layer; a cache made for another model has none.
fn slot_of<T>(slots: &mut [T], slot: usize) -> Result<&mut T> {
    slots
        .get_mut(slot)
        .ok_or_else(|| EngineError::InvalidParameter {
            name: "cache",
            message: "the cache was not made for this hybrid model (use Model::new_cache)".into(),
        })
}

#[derive(Debug)]
struct Model {
    embed_tokens: Embedding,
    layers: Vec<Layer>,
    norm: Array,
    lm_head: Option<Linear>,
    eps: f32,
    attention_layers: usize,
    recurrent_layers: usize,
    context_length: usize,
}

impl LanguageModel for Model {
    fn forward(&self, tokens: &Array, cache: &mut KvCache) -> Result<Array> {
        let mut h = self.embed_tokens.forward(tokens)?;
        let (attention, states) = cache.parts_mut();
        for layer in &self.layers {
            let x = fast::rms_norm(&h, Some(&layer.input_norm), layer.eps)?;
            let r = match &layer.mixer {
                Mixer::Linear(net, slot) => net.forward(&x, slot_of(states, *slot)?)?,
                Mixer::Attention(attn, slot) => attn.forward(&x, slot_of(attention, *slot)?)?,
            };
            h = h.add(r)?;
            let r = layer.mlp.forward(&fast::rms_norm(
                &h,
                Some(&layer.post_attention_norm),
                layer.eps,
            )?)?;
            h = h.add(r)?;
        }
        let h = fast::rms_norm(&h, Some(&self.norm), self.eps)?;
        match &self.lm_head {
            Some(head) => head.forward(&h),
            None => self.embed_tokens.as_linear(&h),
        }
    }

    fn num_layers(&self) -> usize {
        self.layers.len()
    }

    fn new_cache(&self) -> KvCache {
        KvCache::hybrid(self.attention_layers, self.recurrent_layers)
    }

    fn context_length(&self) -> usize {
        self.context_length
    }
}
