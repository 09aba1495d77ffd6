//! Gemma 3 with images, following mlx-vlm's `mlx_vlm/models/gemma3/`: a
//! SigLIP vision tower (patch embedding, learned positions, pre-norm encoder
//! layers attending over the whole image), a projector (average pooling to
//! `mm_tokens_per_image` tokens, Gemma's RMSNorm, a linear map into the text
//! model's width), and the Gemma 3 text model ([`super::gemma3_text`]),
//! whose image-token positions take the projected features.
//!
//! Two places where Orchard follows the model as Google published it
//! (transformers) rather than mlx-vlm 0.6.17; both are in `docs/vision.md`:
//! - image features enter the text model unscaled. mlx-vlm divides them by
//!   the config's top-level `hidden_size` (2048 when absent, as in the
//!   released configs) before its text model multiplies every position by
//!   sqrt(text hidden size): a factor of 1.12 for the 4B model. The parity
//!   test's model has both widths 64, where mlx-vlm's factor is exactly 1.
//! - the text model's lm_head is the embeddings' (Gemma ties them), as in
//!   mlx-vlm, which replaces any stored head.
//!
//! Like mlx-vlm, image tokens attend causally (transformers lets them see
//! their whole image).

use mlx_rs::{Array, Dtype, fast, nn, ops};
use serde::Deserialize;
use serde_json::Value;

use super::LanguageModel;
use super::gemma3_text::{Norm, TextModel, load_text};
use crate::cache::KvCache;
use crate::config::ModelConfig;
use crate::error::{EngineError, Result};
use crate::weights::{Embedding, LayerNorm, Linear, Weights};

fn default_image_size() -> i32 {
    224
}
fn default_channels() -> i32 {
    3
}
fn default_vision_eps() -> f32 {
    1e-6
}
fn default_image_token() -> u32 {
    262_144
}

/// `vision_config`: the SigLIP tower's shape.
#[derive(Debug, Clone, Deserialize)]
struct VisionConfig {
    hidden_size: i32,
    num_hidden_layers: i32,
    intermediate_size: i32,
    num_attention_heads: i32,
    patch_size: i32,
    #[serde(default = "default_image_size")]
    image_size: i32,
    #[serde(default = "default_channels")]
    num_channels: i32,
    #[serde(default = "default_vision_eps")]
    layer_norm_eps: f32,
}

#[derive(Debug, Clone, Deserialize)]
struct Config {
    text_config: Value,
    vision_config: VisionConfig,
    #[serde(default = "default_image_token")]
    image_token_index: u32,
    /// Transformers keeps it at the top level, mlx-vlm in `text_config`.
    mm_tokens_per_image: Option<i32>,
}

/// One encoder layer: attention over every patch, then a GELU MLP, each
/// after a LayerNorm and added back.
#[derive(Debug)]
struct EncoderLayer {
    norm1: LayerNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    heads: i32,
    scale: f32,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

impl EncoderLayer {
    fn load(weights: &mut Weights, p: &str, c: &VisionConfig) -> Result<EncoderLayer> {
        let (d, eps) = (c.hidden_size, c.layer_norm_eps);
        let a = format!("{p}.self_attn");
        Ok(EncoderLayer {
            norm1: weights.layer_norm(&format!("{p}.layer_norm1"), d, eps)?,
            q: weights.linear(&format!("{a}.q_proj"), d, d, true)?,
            k: weights.linear(&format!("{a}.k_proj"), d, d, true)?,
            v: weights.linear(&format!("{a}.v_proj"), d, d, true)?,
            out: weights.linear(&format!("{a}.out_proj"), d, d, true)?,
            heads: c.num_attention_heads,
            scale: ((d / c.num_attention_heads) as f32).powf(-0.5),
            norm2: weights.layer_norm(&format!("{p}.layer_norm2"), d, eps)?,
            fc1: weights.linear(&format!("{p}.mlp.fc1"), d, c.intermediate_size, true)?,
            fc2: weights.linear(&format!("{p}.mlp.fc2"), c.intermediate_size, d, true)?,
        })
    }

    fn forward(&self, x: &Array) -> Result<Array> {
        let (b, l) = (x.shape()[0], x.shape()[1]);
        let h = self.norm1.forward(x)?;
        let split = |t: Array| -> Result<Array> {
            Ok(t.reshape(&[b, l, self.heads, -1])?
                .transpose_axes(&[0, 2, 1, 3])?)
        };
        let (q, k, v) = (
            split(self.q.forward(&h)?)?,
            split(self.k.forward(&h)?)?,
            split(self.v.forward(&h)?)?,
        );
        let attended = fast::scaled_dot_product_attention(&q, &k, &v, self.scale, None, None)?
            .transpose_axes(&[0, 2, 1, 3])?
            .reshape(&[b, l, -1])?;
        let h = x.add(self.out.forward(&attended)?)?;
        let r = self.fc1.forward(&self.norm2.forward(&h)?)?;
        let r = self.fc2.forward(&nn::gelu_approximate(r)?)?;
        Ok(h.add(r)?)
    }
}

/// The SigLIP tower and the projector: pixels in, text-width features out.
#[derive(Debug)]
struct VisionTower {
    /// The patch embedding as a matrix (width, patch * patch * channels)
    /// over (row, column, channel) patches: a convolution whose stride is
    /// its kernel is a product with the flattened patches.
    patch_weight: Array,
    patch_bias: Array,
    positions: Array,
    layers: Vec<EncoderLayer>,
    post_norm: LayerNorm,
    soft_norm: Norm,
    projection: Array,
    patch: i32,
    channels: i32,
    image_size: i32,
    /// Patches per side, and pooled tokens per side.
    patches: i32,
    tokens: i32,
}

impl VisionTower {
    fn load(
        config: &ModelConfig,
        weights: &mut Weights,
        c: &VisionConfig,
        text_hidden: i32,
        tokens_per_image: i32,
    ) -> Result<Self> {
        let invalid = |message: String| EngineError::invalid(&config.path, message);
        let (d, p, ch) = (c.hidden_size, c.patch_size, c.num_channels);
        let patches = if p > 0 { c.image_size / p } else { 0 };
        let tokens = (tokens_per_image as f64).sqrt() as i32;
        if p <= 0
            || c.image_size % p != 0
            || c.num_attention_heads <= 0
            || d % c.num_attention_heads != 0
        {
            return Err(invalid(format!(
                "a vision tower of width {d} with {} heads over {p}-pixel patches of {}-pixel images is not valid",
                c.num_attention_heads, c.image_size
            )));
        }
        if tokens <= 0 || tokens * tokens != tokens_per_image || patches % tokens != 0 {
            return Err(invalid(format!(
                "{tokens_per_image} image tokens cannot pool a grid of {patches}x{patches} patches: it must be a square whose side divides {patches}"
            )));
        }
        let root = "vision_tower.vision_model";
        let name = format!("{root}.embeddings.patch_embedding.weight");
        // mlx-vlm stores the kernel (out, kh, kw, in); transformers (out, in, kh, kw).
        let kernel = match weights.shape(&name) {
            Some(s) if s == [d, ch, p, p] && s != [d, p, p, ch] => weights
                .tensor(&name, &[d, ch, p, p])?
                .transpose_axes(&[0, 2, 3, 1])?,
            _ => weights.tensor(&name, &[d, p, p, ch])?,
        };
        let mut layers = Vec::with_capacity(c.num_hidden_layers.max(0) as usize);
        for i in 0..c.num_hidden_layers {
            layers.push(EncoderLayer::load(
                weights,
                &format!("{root}.encoder.layers.{i}"),
                c,
            )?);
        }
        Ok(VisionTower {
            patch_weight: kernel.reshape(&[d, p * p * ch])?,
            patch_bias: weights.vector(&format!("{root}.embeddings.patch_embedding.bias"), d)?,
            positions: position_table(
                weights.embedding(
                    &format!("{root}.embeddings.position_embedding"),
                    patches * patches,
                    d,
                )?,
                patches * patches,
            )?,
            layers,
            // mlx-vlm builds this norm with MLX's default epsilon, not the config's.
            post_norm: weights.layer_norm(&format!("{root}.post_layernorm"), d, 1e-5)?,
            soft_norm: Norm::load(
                weights,
                "multi_modal_projector.mm_soft_emb_norm.weight",
                d,
                c.layer_norm_eps,
            )?,
            projection: weights.tensor(
                "multi_modal_projector.mm_input_projection_weight",
                &[d, text_hidden],
            )?,
            patch: p,
            channels: ch,
            image_size: c.image_size,
            patches,
            tokens,
        })
    }

    /// Features (images, tokens, text width) of `pixel_values` (images,
    /// channels, size, size), in `dtype`.
    fn forward(&self, pixel_values: &Array, dtype: Dtype) -> Result<Array> {
        let shape = pixel_values.shape();
        let (n, s) = (shape.first().copied().unwrap_or(0), self.image_size);
        if shape != [n, self.channels, s, s] || n == 0 {
            return Err(EngineError::InvalidParameter {
                name: "pixel_values",
                message: format!(
                    "the vision tower takes images of shape (n, {}, {s}, {s}), not {shape:?}",
                    self.channels
                ),
            });
        }
        let (p, g, d) = (self.patch, self.patches, self.patch_weight.shape()[0]);
        // (n, c, s, s) -> (n, gy, py, gx, px, c) -> (n, gy, gx, py, px, c).
        let x = pixel_values
            .as_dtype(dtype)?
            .transpose_axes(&[0, 2, 3, 1])?
            .reshape(&[n, g, p, g, p, self.channels])?
            .transpose_axes(&[0, 1, 3, 2, 4, 5])?
            .reshape(&[n, g * g, p * p * self.channels])?;
        let mut h = ops::addmm(&self.patch_bias, &x, self.patch_weight.t(), None, None)?
            .add(&self.positions)?;
        for layer in &self.layers {
            h = layer.forward(&h)?;
        }
        let h = self.post_norm.forward(&h)?;
        // Average each k x k block of patches into one token.
        let (t, k) = (self.tokens, self.patches / self.tokens);
        let pooled = h
            .reshape(&[n, t, k, t, k, d])?
            .mean_axes(&[2, 4], false)?
            .reshape(&[n, t * t, d])?;
        let normed = self.soft_norm.forward(&pooled)?;
        Ok(ops::matmul(&normed, &self.projection)?.as_dtype(h.dtype())?)
    }
}

/// Every row of the learned positions, dense: mlx-vlm's conversion
/// quantizes this table with the other embeddings unless told to skip the
/// vision tower.
fn position_table(table: Embedding, rows: i32) -> Result<Array> {
    let ids: Vec<i32> = (0..rows).collect();
    let dense = table.forward(&Array::from_slice(&ids, &[rows]))?;
    dense.eval()?;
    Ok(dense)
}

/// Gemma 3 with its vision tower.
#[derive(Debug)]
struct Model {
    text: TextModel,
    vision: VisionTower,
    image_token: u32,
    dtype: Dtype,
}

impl LanguageModel for Model {
    fn forward(&self, tokens: &Array, cache: &mut KvCache) -> Result<Array> {
        self.text.run(self.text.embed(tokens)?, cache)
    }

    fn num_layers(&self) -> usize {
        LanguageModel::num_layers(&self.text)
    }

    fn context_length(&self) -> usize {
        LanguageModel::context_length(&self.text)
    }

    fn image_token(&self) -> Option<u32> {
        Some(self.image_token)
    }

    fn encode_images(&self, pixel_values: &Array) -> Result<Array> {
        self.vision.forward(pixel_values, self.dtype)
    }

    fn forward_with_images(
        &self,
        tokens: &Array,
        positions: &[usize],
        features: &Array,
        cache: &mut KvCache,
    ) -> Result<Array> {
        let h = self.text.embed(tokens)?;
        let (len, width) = (h.shape()[1], h.shape()[2]);
        let k = positions.len() as i32;
        if features.shape() != [k, width] || positions.iter().any(|&p| p >= len as usize) {
            return Err(EngineError::InvalidParameter {
                name: "images",
                message: format!(
                    "{k} image positions in {len} tokens cannot take features of shape {:?}",
                    features.shape()
                ),
            });
        }
        // Each position reads its token's embedding or, for an image token,
        // the next image feature (stacked after the embeddings).
        let mut index: Vec<i32> = (0..len).collect();
        for (j, &p) in positions.iter().enumerate() {
            index[p] = len + j as i32;
        }
        let features = features.as_dtype(h.dtype())?.reshape(&[1, k, width])?;
        let stacked = ops::concatenate(&[&h, &features], 1)?;
        let h = stacked.take_axis(Array::from_slice(&index, &[len]), 1)?;
        self.text.run(h, cache)
    }
}

/// Builds Gemma 3 with images from its config and weights.
pub fn load(config: &ModelConfig, weights: &mut Weights) -> Result<Box<dyn LanguageModel>> {
    let c: Config = config.parse()?;
    let mut text = c.text_config.clone();
    // mlx-vlm's defaults for the text part of the released checkpoints.
    if let Some(fields) = text.as_object_mut() {
        fields.entry("sliding_window").or_insert(1024.into());
        fields
            .entry("max_position_embeddings")
            .or_insert(131_072.into());
        if let Some(base) = fields.get("rope_global_base_freq").cloned() {
            fields.entry("rope_theta").or_insert(base);
        }
        fields.entry("head_dim").or_insert(256.into());
        fields.entry("query_pre_attn_scalar").or_insert(256.into());
        fields.entry("vocab_size").or_insert(262_208.into());
    }
    let tokens_per_image = text
        .get("mm_tokens_per_image")
        .and_then(Value::as_i64)
        .map(|t| t as i32)
        .or(c.mm_tokens_per_image)
        .unwrap_or(256);
    let text_hidden = text
        .get("hidden_size")
        .and_then(Value::as_i64)
        .ok_or_else(|| EngineError::invalid(&config.path, "text_config has no hidden_size"))?
        as i32;
    // Transformers (4.52 and later) saves the same layers under other names.
    weights.rename_prefixes(&[
        ("model.language_model.", "language_model.model."),
        ("model.vision_tower.", "vision_tower."),
        ("model.multi_modal_projector.", "multi_modal_projector."),
    ]);
    let language = load_text(config, &text, "language_model.model", None, weights)?;
    let vision = VisionTower::load(
        config,
        weights,
        &c.vision_config,
        text_hidden,
        tokens_per_image,
    )?;
    // The tower runs in the embeddings' type, as mlx-vlm casts the pixels.
    let dtype = language
        .embed(&Array::from_slice(&[0i32], &[1, 1]))?
        .dtype();
    Ok(Box::new(Model {
        text: language,
        vision,
        image_token: c.image_token_index,
        dtype,
    }))
}
