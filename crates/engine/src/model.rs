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
use crate::weights::Weights;

/// A model ready to generate.
pub struct Model {
    dir: PathBuf,
    config: ModelConfig,
    network: Box<dyn LanguageModel>,
    tokenizer: Arc<Tokenizer>,
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
        if !dir.is_dir() {
            return Err(EngineError::file(dir, "not a model folder"));
        }
        let device = use_preferred_device();
        let config = ModelConfig::load(dir)?;
        let tokenizer = Tokenizer::load(dir)?;
        let upcast = device == DeviceKind::Cpu;
        let mut weights = Weights::load(dir, config.quantization.clone(), upcast)?;
        let network = models::build(&config, &mut weights)?;
        weights.eval_loaded()?;
        Ok(Model {
            dir: dir.to_path_buf(),
            config,
            network,
            tokenizer: Arc::new(tokenizer),
        })
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

    /// Like [`Model::forward`], with the ids (1, len) already in an MLX array,
    /// which may still be lazy: the previous step's output.
    pub fn forward_ids(&self, ids: &Array, cache: &mut KvCache) -> Result<Array> {
        self.network.forward(ids, cache)
    }
}
