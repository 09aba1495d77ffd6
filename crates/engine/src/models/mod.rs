//! The model registry: one file per architecture, keyed by `model_type`.
//!
//! # Adding a model
//!
//! 1. Read the architecture's file in mlx-lm (`mlx_lm/models/<type>.py`): it is
//!    the reference Orchard must match number for number.
//! 2. Add `models/<type>.rs` with the config struct (only the keys it uses;
//!    unknown keys are ignored) and a `load(config, weights)`. A Llama-family
//!    model maps its config onto [`transformer::Spec`] (see `qwen3.rs`); any
//!    other writes its layers in the usual order: Attention, MLP, Block, Model,
//!    built from [`crate::weights::Weights`] (which checks every shape).
//! 3. Register it in [`ARCHITECTURES`] under its `model_type`.
//! 4. Add a parity test: a small random-weight model written by the test, loaded
//!    by both Orchard and mlx-lm, with equal logits and greedy tokens.

pub mod bert;
pub mod gemma3;
pub mod gemma3_text;
pub mod gpt_oss;
pub mod llama;
pub mod moe;
pub mod qwen2;
pub mod qwen3;
pub mod qwen3_moe;
pub mod qwen3_next;
pub mod qwen_vision;
pub mod transformer;

use mlx_rs::Array;

use crate::cache::KvCache;
use crate::config::ModelConfig;
use crate::error::{EngineError, Result};
use crate::weights::Weights;

/// A causal language model: token ids in, logits out.
pub trait LanguageModel: Send {
    /// Runs `tokens` (batch, length) through the model after the positions
    /// already in `cache`, appends them to it, and returns the logits
    /// (batch, length, vocab).
    fn forward(&self, tokens: &Array, cache: &mut KvCache) -> Result<Array>;

    /// The final hidden states (batch, length, hidden), after the last norm
    /// and before the output projection: what embedding models pool. None
    /// for an architecture Orchard does not embed with.
    fn hidden(&self, _tokens: &Array, _cache: &mut KvCache) -> Result<Option<Array>> {
        Ok(None)
    }

    /// The final hidden states of `tokens` (batch, length), whose rows hold
    /// `lengths[i]` real tokens followed by padding: what embeddings pool.
    /// A causal model never looks ahead, so padding at the end changes
    /// nothing and the default runs [`LanguageModel::hidden`] on a fresh
    /// cache; a bidirectional one (BERT) masks the padding.
    fn encode(&self, tokens: &Array, _lengths: &[usize]) -> Result<Option<Array>> {
        let mut cache = self.new_cache();
        self.hidden(tokens, &mut cache)
    }

    /// Number of transformer layers (one cache entry each).
    fn num_layers(&self) -> usize;

    /// A fresh cache for one sequence: keys and values for each layer, or,
    /// for a hybrid model, recurrent states for its linear-attention layers.
    fn new_cache(&self) -> KvCache {
        KvCache::new(self.num_layers())
    }

    /// The longest sequence the model was trained for.
    fn context_length(&self) -> usize;

    /// For a model that takes images: the token standing for one image
    /// position in a prompt. None for a text-only model.
    fn image_token(&self) -> Option<u32> {
        None
    }

    /// The features of images (n, channels, height, width), one row per
    /// image token, as (n, tokens per image, hidden): what
    /// [`LanguageModel::forward_with_images`] puts in place of image tokens.
    fn encode_images(&self, _pixel_values: &Array) -> Result<Array> {
        Err(no_images())
    }

    /// Like [`LanguageModel::forward`] for one sequence (1, length), with
    /// the rows of `features` (k, hidden) in place of the embeddings of the
    /// k tokens at `positions` (ascending, within the sequence).
    fn forward_with_images(
        &self,
        _tokens: &Array,
        _positions: &[usize],
        _features: &Array,
        _cache: &mut KvCache,
    ) -> Result<Array> {
        Err(no_images())
    }
}

fn no_images() -> EngineError {
    EngineError::InvalidParameter {
        name: "images",
        message: "this model does not take images".into(),
    }
}

type Loader = fn(&ModelConfig, &mut Weights) -> Result<Box<dyn LanguageModel>>;

/// Every supported `model_type` and how to build it. Mistral's dense models
/// are Llama with other defaults, as in mlx-lm's `MODEL_REMAPPING`.
pub const ARCHITECTURES: &[(&str, Loader)] = &[
    ("bert", bert::load),
    ("gemma3", gemma3::load),
    ("gemma3_text", gemma3_text::load),
    ("gpt_oss", gpt_oss::load),
    ("llama", llama::load),
    ("mistral", llama::load),
    ("qwen2", qwen2::load),
    ("qwen3", qwen3::load),
    ("qwen3_5", qwen3_next::load_qwen3_5),
    ("qwen3_5_moe", qwen3_next::load_qwen3_5),
    ("qwen3_moe", qwen3_moe::load),
    ("qwen3_next", qwen3_next::load),
];

/// Builds the model `config` describes from `weights`.
pub fn build(config: &ModelConfig, weights: &mut Weights) -> Result<Box<dyn LanguageModel>> {
    let loader = ARCHITECTURES
        .iter()
        .find(|(name, _)| *name == config.model_type)
        .map(|(_, loader)| *loader)
        .ok_or_else(|| EngineError::UnsupportedModel {
            path: config.path.clone(),
            model_type: config.model_type.clone(),
            supported: ARCHITECTURES.iter().map(|(name, _)| *name).collect(),
        })?;
    loader(config, weights)
}
