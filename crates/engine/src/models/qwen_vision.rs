//! The Qwen2.5-VL vision tower, following mlx-vlm's
//! `mlx_vlm/models/qwen2_5_vl/vision.py`: patches of (2 frames x 14 x 14)
//! pixels embedded by a 3D convolution (a product here, its stride being its
//! kernel), pre-norm blocks whose attention rotates queries and keys by each
//! patch's (row, column) and looks only inside windows of 112 pixels except
//! in the `fullatt_block_indexes` blocks (the whole frame), then a merger
//! that joins each 2 x 2 block of patches into one token of the language
//! model's width.
//!
//! Issue 12: the tower is checked against mlx-vlm (`tests/vision.rs`); the
//! language side (M-RoPE positions) is not built yet, so no `model_type`
//! uses it.

use mlx_rs::{Array, fast, nn, ops};
use serde::Deserialize;

use crate::config::ModelConfig;
use crate::error::{EngineError, Result};
use crate::weights::{Linear, Weights};

fn default_depth() -> i32 {
    32
}
fn default_hidden() -> i32 {
    1280
}
fn default_intermediate() -> i32 {
    3420
}
fn default_out() -> i32 {
    1536
}
fn default_heads() -> i32 {
    16
}
fn default_channels() -> i32 {
    3
}
fn default_patch() -> i32 {
    14
}
fn default_merge() -> i32 {
    2
}
fn default_temporal() -> i32 {
    2
}
fn default_window() -> i32 {
    112
}
fn default_full_blocks() -> Vec<usize> {
    vec![7, 15, 23, 31]
}

/// `vision_config` of a Qwen2.5-VL checkpoint (defaults: mlx-vlm's).
#[derive(Debug, Clone, Deserialize)]
pub struct VisionConfig {
    #[serde(default = "default_depth")]
    pub depth: i32,
    #[serde(default = "default_hidden")]
    pub hidden_size: i32,
    #[serde(default = "default_intermediate")]
    pub intermediate_size: i32,
    #[serde(default = "default_out")]
    pub out_hidden_size: i32,
    #[serde(default = "default_heads")]
    pub num_heads: i32,
    #[serde(default = "default_channels")]
    pub in_channels: i32,
    #[serde(default = "default_patch")]
    pub patch_size: i32,
    #[serde(default = "default_merge")]
    pub spatial_merge_size: i32,
    #[serde(default = "default_temporal")]
    pub temporal_patch_size: i32,
    #[serde(default = "default_window")]
    pub window_size: i32,
    #[serde(default = "default_full_blocks")]
    pub fullatt_block_indexes: Vec<usize>,
}

#[derive(Debug)]
struct Block {
    norm1: Array,
    qkv: Linear,
    proj: Linear,
    norm2: Array,
    gate: Linear,
    up: Linear,
    down: Linear,
    heads: i32,
    scale: f32,
}

impl Block {
    /// `x` (patches, width); `cos`/`sin` (1, patches, 1, head dim); the
    /// attention runs separately inside each `[bounds[i], bounds[i + 1])`.
    fn forward(&self, x: &Array, cos: &Array, sin: &Array, bounds: &[i32]) -> Result<Array> {
        let n = x.shape()[0];
        let h = fast::rms_norm(x, Some(&self.norm1), 1e-6)?;
        let qkv = self
            .qkv
            .forward(&h)?
            .reshape(&[n, 3, self.heads, -1])?
            .transpose_axes(&[1, 0, 2, 3])?;
        let part =
            |i: i32| -> Result<Array> { Ok(qkv.take_axis(Array::from_int(i), 0)?.expand_dims(0)?) };
        // In float32, as mlx-vlm's cos and sin are, back to the input's type.
        let rotate = |t: Array| -> Result<Array> {
            let halves = t.split_equal(2, 3)?;
            let rotated = ops::concatenate(&[halves[1].negative()?, halves[0].clone()], 3)?;
            Ok(t.multiply(cos)?
                .add(rotated.multiply(sin)?)?
                .as_dtype(t.dtype())?)
        };
        // (1, patches, heads, dim) -> (1, heads, patches, dim)
        let q = rotate(part(0)?)?.transpose_axes(&[0, 2, 1, 3])?;
        let k = rotate(part(1)?)?.transpose_axes(&[0, 2, 1, 3])?;
        let v = part(2)?.transpose_axes(&[0, 2, 1, 3])?;
        let mut outputs = Vec::with_capacity(bounds.len());
        for pair in bounds.windows(2) {
            let (start, end) = (pair[0], pair[1]);
            if end <= start {
                continue;
            }
            let range = Array::from_slice(&(start..end).collect::<Vec<i32>>(), &[end - start]);
            let (qs, ks, vs) = (
                q.take_axis(&range, 2)?,
                k.take_axis(&range, 2)?,
                v.take_axis(&range, 2)?,
            );
            outputs.push(fast::scaled_dot_product_attention(
                &qs, &ks, &vs, self.scale, None, None,
            )?);
        }
        let attended = ops::concatenate(&outputs, 2)?
            .transpose_axes(&[0, 2, 1, 3])?
            .reshape(&[n, -1])?;
        let x = x.add(self.proj.forward(&attended)?)?;
        let h = fast::rms_norm(&x, Some(&self.norm2), 1e-6)?;
        let gated = nn::silu(self.gate.forward(&h)?)?.multiply(self.up.forward(&h)?)?;
        Ok(x.add(self.down.forward(&gated)?)?)
    }
}

/// The Qwen2.5-VL vision tower and merger.
#[derive(Debug)]
pub struct VisionTower {
    config: VisionConfig,
    /// The patch embedding as (width, channels * frames * rows * columns),
    /// the order of a `pixel_values` row.
    patch: Array,
    blocks: Vec<Block>,
    merger_norm: Array,
    merger_fc1: Linear,
    merger_fc2: Linear,
}

impl VisionTower {
    /// The tower of the checkpoint whose `vision_config` is in `config`,
    /// its tensors under `vision_tower.` (mlx-vlm's names).
    pub fn load(config: &ModelConfig, weights: &mut Weights) -> Result<VisionTower> {
        let raw = config.raw.get("vision_config").cloned().unwrap_or_default();
        let c: VisionConfig = serde_json::from_value(raw)
            .map_err(|e| EngineError::invalid(&config.path, format!("vision_config: {e}")))?;
        let (d, heads) = (c.hidden_size, c.num_heads);
        if heads <= 0 || d % heads != 0 || (d / heads) % 4 != 0 || c.spatial_merge_size <= 0 {
            return Err(EngineError::invalid(
                &config.path,
                format!("a vision tower of width {d} cannot have {heads} heads"),
            ));
        }
        let (ch, t, p) = (c.in_channels, c.temporal_patch_size, c.patch_size);
        let name = "vision_tower.patch_embed.proj.weight";
        // mlx-vlm stores the kernel (out, t, h, w, in); transformers (out, in, t, h, w).
        let kernel = match weights.shape(name) {
            Some(s) if s == [d, t, p, p, ch] => weights
                .tensor(name, &[d, t, p, p, ch])?
                .transpose_axes(&[0, 4, 1, 2, 3])?,
            _ => weights.tensor(name, &[d, ch, t, p, p])?,
        };
        let mut blocks = Vec::with_capacity(c.depth.max(0) as usize);
        for i in 0..c.depth {
            let b = format!("vision_tower.blocks.{i}");
            blocks.push(Block {
                norm1: weights.vector(&format!("{b}.norm1.weight"), d)?,
                qkv: weights.linear(&format!("{b}.attn.qkv"), d, 3 * d, true)?,
                proj: weights.linear(&format!("{b}.attn.proj"), d, d, true)?,
                norm2: weights.vector(&format!("{b}.norm2.weight"), d)?,
                gate: weights.linear(
                    &format!("{b}.mlp.gate_proj"),
                    d,
                    c.intermediate_size,
                    true,
                )?,
                up: weights.linear(&format!("{b}.mlp.up_proj"), d, c.intermediate_size, true)?,
                down: weights.linear(
                    &format!("{b}.mlp.down_proj"),
                    c.intermediate_size,
                    d,
                    true,
                )?,
                heads,
                scale: ((d / heads) as f32).powf(-0.5),
            });
        }
        let joined = d * c.spatial_merge_size * c.spatial_merge_size;
        Ok(VisionTower {
            patch: kernel.reshape(&[d, ch * t * p * p])?,
            blocks,
            merger_norm: weights.vector("vision_tower.merger.ln_q.weight", d)?,
            merger_fc1: weights.linear("vision_tower.merger.mlp.0", joined, joined, true)?,
            merger_fc2: weights.linear(
                "vision_tower.merger.mlp.2",
                joined,
                c.out_hidden_size,
                true,
            )?,
            config: c,
        })
    }

    /// Features (tokens, language width) of `pixel_values` (one row of
    /// channels x frames x 14 x 14 values per patch, as Orchard's
    /// `qwen_pixel_values` lays them out) for images or videos of `grids`
    /// (frames, rows, columns) in patches: one token per 2 x 2 block of
    /// patches, in the rows' order.
    pub fn forward(&self, pixel_values: &Array, grids: &[[usize; 3]]) -> Result<Array> {
        let c = &self.config;
        let merge = c.spatial_merge_size as usize;
        let unit = merge * merge;
        let total: usize = grids.iter().map(|g| g[0] * g[1] * g[2]).sum();
        let width = self.patch.shape()[1];
        if pixel_values.shape() != [total as i32, width]
            || grids.iter().any(|g| g[1] % merge != 0 || g[2] % merge != 0)
        {
            return Err(EngineError::InvalidParameter {
                name: "pixel_values",
                message: format!(
                    "pixel values of shape {:?} do not make grids {grids:?} of {width}-value patches",
                    pixel_values.shape()
                ),
            });
        }
        let dtype = self.merger_norm.dtype();
        let h = ops::matmul(&pixel_values.as_dtype(dtype)?, self.patch.t())?;

        // Each patch's (row, column) in its frame, in the rows' order.
        let (mut rows, mut cols) = (Vec::with_capacity(total), Vec::with_capacity(total));
        for &[t, gh, gw] in grids {
            for _ in 0..t {
                for by in 0..gh / merge {
                    for bx in 0..gw / merge {
                        for i in 0..merge {
                            for j in 0..merge {
                                rows.push((by * merge + i) as f32);
                                cols.push((bx * merge + j) as f32);
                            }
                        }
                    }
                }
            }
        }
        let (window, window_bounds) = self.window_index(grids);
        let order = |v: &[f32]| -> Vec<f32> {
            window
                .iter()
                .flat_map(|&w| (0..unit).map(move |k| v[w * unit + k]))
                .collect()
        };
        let (rows, cols) = (order(&rows), order(&cols));
        let (cos, sin) = self.rotary(&rows, &cols)?;

        // Patches grouped by window, as mlx-vlm runs them.
        let gather: Vec<i32> = window
            .iter()
            .flat_map(|&w| (0..unit).map(move |k| (w * unit + k) as i32))
            .collect();
        let mut h = h.take_axis(Array::from_slice(&gather, &[total as i32]), 0)?;
        let mut frame_bounds = vec![0i32];
        for &[t, gh, gw] in grids {
            for _ in 0..t {
                let last = *frame_bounds.last().expect("starts with 0");
                frame_bounds.push(last + (gh * gw) as i32);
            }
        }
        for (i, block) in self.blocks.iter().enumerate() {
            let bounds = if c.fullatt_block_indexes.contains(&i) {
                &frame_bounds
            } else {
                &window_bounds
            };
            h = block.forward(&h, &cos, &sin, bounds)?;
        }
        let joined = self.merger_fc1.forward(
            &fast::rms_norm(&h, Some(&self.merger_norm), 1e-6)?
                .reshape(&[(total / unit) as i32, -1])?,
        )?;
        let out = self.merger_fc2.forward(&nn::gelu(joined)?)?;
        // Back to the rows' order.
        let mut inverse = vec![0i32; window.len()];
        for (position, &w) in window.iter().enumerate() {
            inverse[w] = position as i32;
        }
        Ok(out.take_axis(Array::from_slice(&inverse, &[window.len() as i32]), 0)?)
    }

    /// cos and sin (1, patches, 1, head dim) of each patch's rotation: half
    /// the frequencies turn with the row, half with the column.
    fn rotary(&self, rows: &[f32], cols: &[f32]) -> Result<(Array, Array)> {
        let head = self.config.hidden_size / self.config.num_heads;
        let dim = head / 2;
        let n = rows.len() as i32;
        let steps: Vec<f32> = (0..dim).step_by(2).map(|i| i as f32).collect();
        let exponents =
            Array::from_slice(&steps, &[steps.len() as i32]).divide(Array::from_f32(dim as f32))?;
        let inv_freq =
            Array::from_f32(1.0).divide(ops::power(Array::from_f32(10_000.0), &exponents)?)?;
        let outer = |positions: &[f32]| -> Result<Array> {
            Ok(Array::from_slice(positions, &[n, 1]).multiply(inv_freq.reshape(&[1, -1])?)?)
        };
        let freqs = ops::concatenate(&[outer(rows)?, outer(cols)?], 1)?;
        let full = |t: Array| -> Result<Array> {
            Ok(ops::concatenate(&[&t, &t], 1)?.reshape(&[1, n, 1, head])?)
        };
        Ok((full(freqs.cos()?)?, full(freqs.sin()?)?))
    }

    /// The merged-token order that groups tokens by window (windows of
    /// `window_size` pixels, raster order, per frame) and the bounds of the
    /// windows in patches, as mlx-vlm's `get_window_index` makes them.
    fn window_index(&self, grids: &[[usize; 3]]) -> (Vec<usize>, Vec<i32>) {
        let c = &self.config;
        let merge = c.spatial_merge_size as usize;
        let unit = (merge * merge) as i32;
        let side = (c.window_size / c.spatial_merge_size / c.patch_size).max(1) as usize;
        let mut index = Vec::new();
        let mut bounds = vec![0i32];
        let mut base = 0usize;
        for &[t, gh, gw] in grids {
            let (lh, lw) = (gh / merge, gw / merge);
            let (wh, ww) = (lh.div_ceil(side), lw.div_ceil(side));
            for frame in 0..t {
                for wy in 0..wh {
                    for wx in 0..ww {
                        let mut count = 0;
                        for y in wy * side..((wy + 1) * side).min(lh) {
                            for x in wx * side..((wx + 1) * side).min(lw) {
                                index.push(base + frame * lh * lw + y * lw + x);
                                count += 1;
                            }
                        }
                        let last = *bounds.last().expect("starts with 0");
                        if count > 0 {
                            bounds.push(last + count * unit);
                        }
                    }
                }
            }
            base += t * lh * lw;
        }
        (index, bounds)
    }
}

/// For tests: a tower loaded on its own from a model folder.
pub fn load_tower(dir: &std::path::Path) -> Result<VisionTower> {
    let config = ModelConfig::load(dir)?;
    let mut weights = Weights::load(dir, config.quantization.clone(), false)?;
    let tower = VisionTower::load(&config, &mut weights)?;
    weights.eval_loaded()?;
    Ok(tower)
}
