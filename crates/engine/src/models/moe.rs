//! A sparse mixture-of-experts feed-forward block, as mlx-lm's `SwitchGLU`
//! (`mlx_lm/models/switch_layers.py`) under the routers of
//! `qwen3_moe.py` (`Qwen3MoeSparseMoeBlock`) and `gpt_oss.py` (`MLPBlock`):
//! a router picks each token's top-k experts, each runs a gated MLP, and
//! their outputs are summed weighted by the router's scores.

use mlx_rs::{Array, nn, ops};

use crate::error::{EngineError, Result};
use crate::weights::{Linear, SwitchLinear, Weights};

/// From this many (token, expert) pairs on, tokens are sorted by expert
/// before the products, so each expert's weights are read once (mlx-lm's
/// threshold).
const SORT_FROM: usize = 64;

/// What a sparse block needs from the config.
#[derive(Debug, Clone, Copy)]
pub struct MoeSpec {
    pub num_experts: i32,
    /// Experts per token.
    pub top_k: i32,
    /// Each expert's hidden size.
    pub intermediate_size: i32,
    pub routing: Routing,
    pub activation: Activation,
    /// The router and the experts have biases (gpt-oss).
    pub bias: bool,
    pub names: MoeNames,
}

impl MoeSpec {
    /// Qwen's experts (Qwen3 MoE, Qwen3-Next, Qwen3.5): a softmax router
    /// under `gate`, its top-k weights rescaled to sum to one when
    /// `normalize`, SwiGLU experts stacked as `switch_mlp` (one tensor per
    /// expert under `experts` in Hugging Face checkpoints), no biases.
    pub fn qwen(num_experts: i32, top_k: i32, intermediate_size: i32, normalize: bool) -> MoeSpec {
        MoeSpec {
            num_experts,
            top_k,
            intermediate_size,
            routing: Routing::SoftmaxThenTopK { normalize },
            activation: Activation::SwiGlu,
            bias: false,
            names: MoeNames {
                router: "gate",
                experts: "switch_mlp",
                per_expert: Some("experts"),
            },
        }
    }
}

/// How the router's logits become the chosen experts' weights.
#[derive(Debug, Clone, Copy)]
pub enum Routing {
    /// Softmax over every expert, then the top k; optionally rescaled to sum
    /// to one (Qwen3 MoE).
    SoftmaxThenTopK { normalize: bool },
    /// The top k logits, then a softmax over just those (gpt-oss).
    TopKThenSoftmax,
}

/// The experts' gated activation, `act(gate, up)`.
#[derive(Debug, Clone, Copy)]
pub enum Activation {
    /// silu(gate) * up.
    SwiGlu,
    /// gpt-oss's: the gate clipped from above at `limit`, up clipped to
    /// ±`limit`, then (up + 1) * gate * sigmoid(alpha * gate).
    ClampedSwiGlu { alpha: f32, limit: f32 },
}

/// Where the block's tensors are, under the layer's `mlp` prefix.
#[derive(Debug, Clone, Copy)]
pub struct MoeNames {
    /// The router: "gate" (Qwen3 MoE), "router" (gpt-oss).
    pub router: &'static str,
    /// The stacked experts: "switch_mlp" (mlx-lm's Qwen3 MoE), "experts" (gpt-oss).
    pub experts: &'static str,
    /// Where a Hugging Face checkpoint keeps one tensor per expert, if it does.
    pub per_expert: Option<&'static str>,
}

#[derive(Debug)]
pub struct SparseMoe {
    router: Linear,
    gate_proj: SwitchLinear,
    up_proj: SwitchLinear,
    down_proj: SwitchLinear,
    spec: MoeSpec,
}

impl SparseMoe {
    /// The block at `prefix` (`model.layers.N.mlp`) for `dim` features.
    pub fn load(weights: &mut Weights, prefix: &str, dim: i32, spec: MoeSpec) -> Result<SparseMoe> {
        let hidden = spec.intermediate_size;
        let names = spec.names;
        let per_expert = names.per_expert.map(|p| format!("{prefix}.{p}"));
        let mut switch = |name: &str, in_dim: i32, out_dim: i32| {
            weights.switch_linear(
                &format!("{prefix}.{}.{name}", names.experts),
                per_expert.as_deref().map(|p| (p, name)),
                spec.num_experts,
                in_dim,
                out_dim,
                spec.bias,
            )
        };
        let gate_proj = switch("gate_proj", dim, hidden)?;
        let up_proj = switch("up_proj", dim, hidden)?;
        let down_proj = switch("down_proj", hidden, dim)?;
        Ok(SparseMoe {
            router: weights.linear(
                &format!("{prefix}.{}", names.router),
                dim,
                spec.num_experts,
                spec.bias,
            )?,
            gate_proj,
            up_proj,
            down_proj,
            spec,
        })
    }

    /// `x` (batch, length, dim) through each token's experts.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let logits = self.router.forward(x)?;
        let (chosen, weights) = match self.spec.routing {
            Routing::SoftmaxThenTopK { normalize } => {
                let probs = ops::softmax_axis(&logits, -1, true)?;
                let chosen = self.top_k(&probs)?;
                let mut weights = probs.take_along_axis(&chosen, -1)?;
                if normalize {
                    weights = weights.divide(weights.sum_axis(-1, true)?)?;
                }
                (chosen, weights)
            }
            Routing::TopKThenSoftmax => {
                let chosen = self.top_k(&logits)?;
                let top = logits.take_along_axis(&chosen, -1)?;
                (chosen, ops::softmax_axis(&top, -1, true)?)
            }
        };
        let y = self.experts(x, &chosen)?;
        let weighted = y.multiply(weights.expand_dims(-1)?)?;
        Ok(weighted.sum_axis(-2, false)?.as_dtype(y.dtype())?)
    }

    /// The indices of the k largest of `scores` along the last axis, in the
    /// order MLX's partition leaves them (mlx-lm's `argpartition(kth=-k)`).
    fn top_k(&self, scores: &Array) -> Result<Array> {
        let (n, k) = (self.spec.num_experts, self.spec.top_k);
        ops::argpartition_axis(scores, n - k, -1)?
            .split_at_indices(&[n - k], -1)?
            .pop()
            .ok_or_else(|| EngineError::Exception("argpartition gave no experts".into()))
    }

    /// Each token's chosen experts' outputs: (batch, length, k, dim).
    fn experts(&self, x: &Array, chosen: &Array) -> Result<Array> {
        let shape = chosen.shape().to_vec();
        let k = self.spec.top_k;
        // (batch, length, 1, 1, dim): one row per token, broadcast over its experts.
        let x = x.expand_dims_axes(&[-2, -3])?;
        let sorted = chosen.size() >= SORT_FROM;
        let (rows, indices, unsort) = if sorted {
            let flat = chosen.flatten(None, None)?;
            let order = ops::argsort_axis(&flat, 0)?;
            let unsort = ops::argsort_axis(&order, 0)?;
            let dim = *x.shape().last().unwrap_or(&0);
            let tokens = x.reshape(&[-1, 1, dim])?;
            let rows = tokens.take_axis(order.floor_divide(Array::from_int(k))?, 0)?;
            (rows, flat.take_axis(&order, 0)?, Some(unsort))
        } else {
            (x, chosen.clone(), None)
        };
        let up = self.up_proj.forward(&rows, &indices, sorted)?;
        let gate = self.gate_proj.forward(&rows, &indices, sorted)?;
        let hidden = match self.spec.activation {
            Activation::SwiGlu => nn::silu(gate)?.multiply(up)?,
            Activation::ClampedSwiGlu { alpha, limit } => {
                // Scalars in the activations' dtype, as Python's weakly typed ones are.
                let scalar = |v: f32| Array::from_f32(v).as_dtype(gate.dtype());
                let gate = ops::minimum(&gate, scalar(limit)?)?;
                let up = ops::minimum(ops::maximum(&up, scalar(-limit)?)?, scalar(limit)?)?;
                let glu = gate.multiply(nn::sigmoid(gate.multiply(scalar(alpha)?)?)?)?;
                up.add(scalar(1.0)?)?.multiply(glu)?
            }
        };
        let mut out = self.down_proj.forward(&hidden, &indices, sorted)?;
        if let Some(unsort) = unsort {
            // Back to token order: (batch, length, k, 1, dim).
            let out_dim = *out.shape().last().unwrap_or(&0);
            out = out
                .take_axis(&unsort, 0)?
                .reshape(&[shape[0], shape[1], k, 1, out_dim])?;
        }
        Ok(out.squeeze_axes(&[-2])?)
    }
}
