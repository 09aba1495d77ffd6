//! A loaded model: its network on MLX, its tokenizer and its config.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mlx_rs::{Array, Dtype};

use crate::cache::KvCache;
use crate::config::ModelConfig;
use crate::error::{EngineError, Result};
use crate::models::{self, LanguageModel};
use crate::runtime::{DeviceKind, use_preferred_device};
use crate::tokenizer::Tokenizer;
use crate::vision::ImageProcessor;
use crate::weights::Weights;

/// Whether a quantized model runs dequantized on the CPU backend (its
/// linear layers as float32 products through BLAS, dequantized once at load).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CpuFastPath {
    /// When the dequantized weights fit in [`LoadOptions::dense_budget_bytes`].
    #[default]
    Auto,
    On,
    Off,
}

/// How a model is loaded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadOptions {
    pub cpu_fast_path: CpuFastPath,
    /// The most the dequantized weights may take for `Auto` to choose the
    /// fast path; None: no limit.
    pub dense_budget_bytes: Option<u64>,
}

/// A model ready to generate.
pub struct Model {
    dir: PathBuf,
    config: ModelConfig,
    network: Box<dyn LanguageModel>,
    tokenizer: Arc<Tokenizer>,
    /// With the CPU fast path, the bytes of the dequantized weights.
    dense_bytes: Option<u64>,
    /// For a model that takes images, how they are prepared.
    images: Option<Arc<ImageProcessor>>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("dir", &self.dir)
            .field("model_type", &self.config.model_type)
            .finish_non_exhaustive()
    }
}

impl Model {
    /// Loads a model folder in the Hugging Face / mlx-community layout and
    /// reads its weights into memory.
    pub fn load(dir: &Path) -> Result<Model> {
        Self::load_with(dir, LoadOptions::default())
    }

    /// Like [`Model::load`], choosing the CPU fast path as `options` says.
    pub fn load_with(dir: &Path, options: LoadOptions) -> Result<Model> {
        if !dir.is_dir() {
            return Err(EngineError::file(dir, "not a model folder"));
        }
        let device = use_preferred_device();
        let config = ModelConfig::load(dir)?;
        let tokenizer = Tokenizer::load(dir)?;
        let upcast = device == DeviceKind::Cpu;
        let mut weights = Weights::load(dir, config.quantization.clone(), upcast)?;
        // Hugging Face saves some decoders (Qwen3-Embedding) as the bare
        // model, without the `model.` prefix mlx-lm's layout has.
        if config.model_type != "bert" {
            weights.add_prefix_where_missing("model.", "embed_tokens.weight");
        }
        let dequantized = device == DeviceKind::Cpu
            && weights.is_quantized()
            && match options.cpu_fast_path {
                CpuFastPath::On => true,
                CpuFastPath::Off => false,
                CpuFastPath::Auto => options
                    .dense_budget_bytes
                    .is_none_or(|budget| weights.dequantized_bytes() <= budget),
            };
        let dense_bytes = dequantized.then(|| weights.dequantized_bytes());
        if dequantized {
            weights.dequantize_all();
        }
        let network = models::build(&config, &mut weights)?;
        weights.eval_loaded()?;
        let images = ImageProcessor::load(dir, &config, &tokenizer)?.map(Arc::new);
        Ok(Model {
            dir: dir.to_path_buf(),
            config,
            network,
            tokenizer: Arc::new(tokenizer),
            dense_bytes,
            images,
        })
    }

    /// True when the model's quantized layers run dequantized to float32
    /// (the CPU fast path).
    pub fn is_dequantized(&self) -> bool {
        self.dense_bytes.is_some()
    }

    /// With the CPU fast path, the memory of the dequantized weights (more
    /// than the files': float32 instead of a few bits per weight).
    pub fn dequantized_bytes(&self) -> Option<u64> {
        self.dense_bytes
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The tokenizer, for sharing with threads other than the model's.
    pub fn shared_tokenizer(&self) -> Arc<Tokenizer> {
        Arc::clone(&self.tokenizer)
    }

    /// The longest sequence (prompt and output) the model handles.
    pub fn context_length(&self) -> usize {
        self.network.context_length()
    }

    /// A fresh cache for one sequence.
    pub fn new_cache(&self) -> KvCache {
        self.network.new_cache()
    }

    /// Runs `tokens` after the positions in `cache` and returns the float32
    /// logits of the last position, copied to the host.
    pub fn last_logits(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Vec<f32>> {
        let logits = self.forward(tokens, cache)?;
        let last = logits.shape()[1] - 1;
        let last = logits
            .take_axis(Array::from_int(last), 1)?
            .as_dtype(Dtype::Float32)?;
        last.eval()?;
        Ok(last.as_slice::<f32>().to_vec())
    }

    /// Runs `tokens` after the positions in `cache`: logits (1, len, vocab), lazy.
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Array> {
        if tokens.is_empty() {
            return Err(EngineError::InvalidParameter {
                name: "tokens",
                message: "nothing to run: no tokens".into(),
            });
        }
        let ids: Vec<i32> = tokens.iter().map(|&t| t as i32).collect();
        self.forward_ids(&Array::from_slice(&ids, &[1, ids.len() as i32]), cache)
    }

    /// The final hidden states of `ids` (batch, length), rows of
    /// `lengths[i]` tokens then padding: what embeddings pool.
    pub fn encode(&self, ids: &Array, lengths: &[usize]) -> Result<Array> {
        self.network
            .encode(ids, lengths)?
            .ok_or_else(|| EngineError::InvalidParameter {
                name: "model",
                message: format!(
                    "the {} architecture does not make embeddings in Orchard yet",
                    self.config.model_type
                ),
            })
    }

    /// For a model that takes images, how to turn them into its input.
    pub fn image_processor(&self) -> Option<Arc<ImageProcessor>> {
        self.images.clone()
    }

    /// For a model that takes images, the token that stands for each image
    /// position in a prompt; None for a text-only model.
    pub fn image_token(&self) -> Option<u32> {
        self.network.image_token()
    }

    /// Runs the vision tower: features (n, tokens per image, hidden) of
    /// `pixel_values` (n, channels, height, width), lazy.
    pub fn encode_images(&self, pixel_values: &Array) -> Result<Array> {
        self.network.encode_images(pixel_values)
    }

    /// Like [`Model::forward`], with the rows of `features` (k, hidden) in
    /// place of the k tokens at `positions` (ascending indices into `tokens`).
    pub fn forward_with_images(
        &self,
        tokens: &[u32],
        positions: &[usize],
        features: &Array,
        cache: &mut KvCache,
    ) -> Result<Array> {
        if positions.is_empty() {
            return self.forward(tokens, cache);
        }
        let ids: Vec<i32> = tokens.iter().map(|&t| t as i32).collect();
        let ids = Array::from_slice(&ids, &[1, ids.len() as i32]);
        self.network
            .forward_with_images(&ids, positions, features, cache)
    }

    /// Like [`Model::forward`], with the ids (1, len) already in an MLX array,
    /// which may still be lazy: the previous step's output.
    pub fn forward_ids(&self, ids: &Array, cache: &mut KvCache) -> Result<Array> {
        self.network.forward(ids, cache)
    }
}
