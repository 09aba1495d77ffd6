//! A sparse mixture-of-experts feed-forward block, as mlx-lm's
//! `Qwen3MoeSparseMoeBlock` with its `SwitchGLU` (`mlx_lm/models/qwen3_moe.py`,
//! `switch_layers.py`): a router picks each token's top-k experts, each runs
//! a SwiGLU MLP, and their outputs are summed weighted by the router's scores.

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
    /// Rescale the chosen experts' scores to sum to one.
    pub norm_topk_prob: bool,
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
        let experts = format!("{prefix}.experts");
        let mut switch = |name: &str, in_dim: i32, out_dim: i32| {
            weights.switch_linear(
                &format!("{prefix}.switch_mlp.{name}"),
                Some((&experts, name)),
                spec.num_experts,
                in_dim,
                out_dim,
            )
        };
        let gate_proj = switch("gate_proj", dim, hidden)?;
        let up_proj = switch("up_proj", dim, hidden)?;
        let down_proj = switch("down_proj", hidden, dim)?;
        Ok(SparseMoe {
            router: weights.linear(&format!("{prefix}.gate"), dim, spec.num_experts, false)?,
            gate_proj,
            up_proj,
            down_proj,
            spec,
        })
    }

    /// `x` (batch, length, dim) through each token's experts.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let k = self.spec.top_k;
        let n = self.spec.num_experts;
        let gates = ops::softmax_axis(self.router.forward(x)?, -1, true)?;
        // The k highest scores end the partitioned order (mlx-lm's kth = -k).
        let chosen = ops::argpartition_axis(&gates, n - k, -1)?
            .split_at_indices(&[n - k], -1)?
            .pop()
            .ok_or_else(|| EngineError::Exception("argpartition gave no experts".into()))?;
        let mut scores = gates.take_along_axis(&chosen, -1)?;
        if self.spec.norm_topk_prob {
            scores = scores.divide(scores.sum_axis(-1, true)?)?;
        }
        let y = self.experts(x, &chosen)?;
        let weighted = y.multiply(scores.expand_dims(-1)?)?;
        Ok(weighted.sum_axis(-2, false)?.as_dtype(y.dtype())?)
    }

    /// Each token's chosen experts' SwiGLU outputs: (batch, length, k, dim).
    fn experts(&self, x: &Array, chosen: &Array) -> Result<Array> {
        let shape = chosen.shape().to_vec();
        let pairs = chosen.size();
        let k = self.spec.top_k;
        // (batch, length, 1, 1, dim): one row per token, broadcast over its experts.
        let x = x.expand_dims_axes(&[-2, -3])?;
        let sorted = pairs >= SORT_FROM;
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
        let hidden = nn::silu(gate)?.multiply(up)?;
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
