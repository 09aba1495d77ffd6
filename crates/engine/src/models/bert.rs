//! BERT (`model_type` `bert`), the encoder that most retrieval models are
//! built on (MiniLM, BGE, E5, GTE): learned absolute positions and token
//! types added to the word embeddings, then layers of bidirectional
//! attention and a GELU feed-forward, each followed by a residual LayerNorm.
//! It makes embeddings only (no language-model head), following
//! mlx-embeddings' `bert.py` and Hugging Face's `BertModel` weight names (a
//! `bert.` prefix, as masked-LM checkpoints have, is accepted).

use mlx_rs::Array;
use mlx_rs::fast::{self, ScaledDotProductAttentionMask};
use serde::Deserialize;

use super::LanguageModel;
use crate::cache::KvCache;
use crate::config::ModelConfig;
use crate::error::{EngineError, Result};
use crate::weights::{Embedding, LayerNorm, Linear, Weights};

#[derive(Debug, Clone, Deserialize)]
struct Config {
    hidden_size: i32,
    num_hidden_layers: i32,
    num_attention_heads: i32,
    intermediate_size: i32,
    vocab_size: i32,
    max_position_embeddings: i32,
    #[serde(default = "default_type_vocab")]
    type_vocab_size: i32,
    #[serde(default = "default_eps")]
    layer_norm_eps: f32,
    #[serde(default = "default_act")]
    hidden_act: String,
    #[serde(default = "default_positions")]
    position_embedding_type: String,
}

fn default_type_vocab() -> i32 {
    2
}
fn default_eps() -> f32 {
    1e-12
}
fn default_act() -> String {
    "gelu".into()
}
fn default_positions() -> String {
    "absolute".into()
}

#[derive(Debug)]
struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attention_out: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
}

impl Layer {
    fn load(weights: &mut Weights, prefix: &str, c: &Config) -> Result<Layer> {
        let (h, i, eps) = (c.hidden_size, c.intermediate_size, c.layer_norm_eps);
        let a = format!("{prefix}.attention");
        Ok(Layer {
            query: weights.linear(&format!("{a}.self.query"), h, h, true)?,
            key: weights.linear(&format!("{a}.self.key"), h, h, true)?,
            value: weights.linear(&format!("{a}.self.value"), h, h, true)?,
            attention_out: weights.linear(&format!("{a}.output.dense"), h, h, true)?,
            attention_norm: weights.layer_norm(&format!("{a}.output.LayerNorm"), h, eps)?,
            intermediate: weights.linear(&format!("{prefix}.intermediate.dense"), h, i, true)?,
            output: weights.linear(&format!("{prefix}.output.dense"), i, h, true)?,
            output_norm: weights.layer_norm(&format!("{prefix}.output.LayerNorm"), h, eps)?,
        })
    }

    /// `x` (batch, length, hidden); `mask` (batch, 1, 1, length) says which
    /// keys are real tokens.
    fn forward(&self, x: &Array, mask: &Array, heads: i32) -> Result<Array> {
        let shape = x.shape();
        let (b, l, h) = (shape[0], shape[1], shape[2]);
        let head_dim = h / heads;
        let split = |t: Array| -> Result<Array> {
            Ok(t.reshape(&[b, l, heads, head_dim])?
                .transpose_axes(&[0, 2, 1, 3])?)
        };
        let q = split(self.query.forward(x)?)?;
        let k = split(self.key.forward(x)?)?;
        let v = split(self.value.forward(x)?)?;
        let scale = 1.0 / (head_dim as f32).sqrt();
        let attended = fast::scaled_dot_product_attention(
            q,
            k,
            v,
            scale,
            Some(ScaledDotProductAttentionMask::Array(mask)),
            None,
        )?
        .transpose_axes(&[0, 2, 1, 3])?
        .reshape(&[b, l, h])?;
        let x = self
            .attention_norm
            .forward(&self.attention_out.forward(&attended)?.add(x)?)?;
        let inner = mlx_rs::nn::gelu(self.intermediate.forward(&x)?)?;
        self.output_norm
            .forward(&self.output.forward(&inner)?.add(&x)?)
    }
}

#[derive(Debug)]
pub struct Model {
    words: Embedding,
    positions: Array,
    token_types: Array,
    embedding_norm: LayerNorm,
    layers: Vec<Layer>,
    heads: i32,
    context_length: usize,
}

impl Model {
    /// The last layer's states of `tokens` (batch, length), rows of
    /// `lengths[i]` real tokens followed by padding.
    fn states(&self, tokens: &Array, lengths: &[usize]) -> Result<Array> {
        let shape = tokens.shape();
        let (rows, l) = (shape[0], shape[1]);
        if l as usize > self.context_length {
            return Err(EngineError::PromptTooLong {
                tokens: l as usize,
                limit: self.context_length,
            });
        }
        let positions = self
            .positions
            .take_axis(Array::from_slice(&(0..l).collect::<Vec<i32>>(), &[l]), 0)?;
        let token_type = self.token_types.take_axis(Array::from_int(0), 0)?;
        let x = self
            .words
            .forward(tokens)?
            .add(&positions)?
            .add(&token_type)?;
        let mut x = self.embedding_norm.forward(&x)?;
        let columns = Array::from_slice(&(0..l).collect::<Vec<i32>>(), &[1, l]);
        let lengths: Vec<i32> = lengths.iter().map(|&n| n as i32).collect();
        let mask = columns
            .lt(Array::from_slice(&lengths, &[rows, 1]))?
            .reshape(&[rows, 1, 1, l])?;
        for layer in &self.layers {
            x = layer.forward(&x, &mask, self.heads)?;
        }
        Ok(x)
    }
}

impl LanguageModel for Model {
    fn forward(&self, _tokens: &Array, _cache: &mut KvCache) -> Result<Array> {
        Err(EngineError::InvalidParameter {
            name: "model",
            message: "a BERT model makes embeddings, not text: send its inputs to /v1/embeddings"
                .into(),
        })
    }

    fn hidden(&self, tokens: &Array, _cache: &mut KvCache) -> Result<Option<Array>> {
        let shape = tokens.shape();
        let lengths = vec![shape[1] as usize; shape[0] as usize];
        self.states(tokens, &lengths).map(Some)
    }

    fn encode(&self, tokens: &Array, lengths: &[usize]) -> Result<Option<Array>> {
        self.states(tokens, lengths).map(Some)
    }

    fn num_layers(&self) -> usize {
        self.layers.len()
    }

    fn context_length(&self) -> usize {
        self.context_length
    }
}

pub fn load(config: &ModelConfig, weights: &mut Weights) -> Result<Box<dyn LanguageModel>> {
    let c: Config = config.parse()?;
    if c.num_attention_heads <= 0 || c.hidden_size % c.num_attention_heads != 0 {
        return Err(EngineError::invalid(
            &config.path,
            format!(
                "{} attention heads do not divide the hidden size {}",
                c.num_attention_heads, c.hidden_size
            ),
        ));
    }
    if !matches!(c.hidden_act.as_str(), "gelu" | "gelu_new" | "gelu_python") {
        return Err(EngineError::invalid(
            &config.path,
            format!(
                "hidden_act {:?} is not supported for BERT (gelu is)",
                c.hidden_act
            ),
        ));
    }
    if c.position_embedding_type != "absolute" {
        return Err(EngineError::invalid(
            &config.path,
            format!(
                "position_embedding_type {:?} is not supported for BERT (absolute is)",
                c.position_embedding_type
            ),
        ));
    }
    let root = if weights.contains("bert.embeddings.word_embeddings.weight") {
        "bert."
    } else {
        ""
    };
    let h = c.hidden_size;
    let e = format!("{root}embeddings");
    let words = weights.embedding(&format!("{e}.word_embeddings"), c.vocab_size, h)?;
    let positions = weights.tensor(
        &format!("{e}.position_embeddings.weight"),
        &[c.max_position_embeddings, h],
    )?;
    let token_types = weights.tensor(
        &format!("{e}.token_type_embeddings.weight"),
        &[c.type_vocab_size, h],
    )?;
    let embedding_norm = weights.layer_norm(&format!("{e}.LayerNorm"), h, c.layer_norm_eps)?;
    let layers = (0..c.num_hidden_layers)
        .map(|i| Layer::load(weights, &format!("{root}encoder.layer.{i}"), &c))
        .collect::<Result<Vec<_>>>()?;
    Ok(Box::new(Model {
        words,
        positions,
        token_types,
        embedding_norm,
        layers,
        heads: c.num_attention_heads,
        context_length: c.max_position_embeddings as usize,
    }))
}
