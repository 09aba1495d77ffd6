//! Embeddings, as the HTTP adapter asks for them: inputs (text or tokens)
//! in, one vector per input out, from a model whose sentence-transformers
//! files say how it pools.

use std::sync::Arc;

use crate::error::CoreError;
use crate::manager::LoadedModel;

/// One input: text, or token ids as the model's tokenizer made them.
#[derive(Debug, Clone, PartialEq)]
pub enum EmbeddingInput {
    Text(String),
    Tokens(Vec<u32>),
}

/// What an embeddings request asks for besides its inputs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EmbeddingOptions {
    /// Keep the first `dimensions` values of each vector, scaled back to
    /// length 1 (for models trained to allow it, Matryoshka-style).
    pub dimensions: Option<usize>,
    /// Cut inputs longer than the model's context to its length instead of
    /// refusing them.
    pub truncate: bool,
}

/// The vectors, in the order of the inputs, and the tokens they took.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    pub vectors: Vec<Vec<f32>>,
    pub prompt_tokens: usize,
}

/// Embeds `inputs` with `model` on its worker thread.
pub async fn embed(
    model: Arc<LoadedModel>,
    inputs: Vec<EmbeddingInput>,
    options: EmbeddingOptions,
) -> Result<Embeddings, CoreError> {
    let Some(spec) = model.embedding else {
        return Err(CoreError::invalid(
            "model",
            format!(
                "{} generates text and makes no embeddings; use an embedding model (one with sentence-transformers' modules.json, such as Qwen3-Embedding)",
                model.id
            ),
        ));
    };
    if inputs.is_empty() {
        return Err(CoreError::invalid("input", "input must not be empty"));
    }
    let limit = model.context_length();
    let vocab = model.tokenizer().vocab_size();
    let tokenizer_model = Arc::clone(&model);
    let tokenized = tokio::task::spawn_blocking(move || {
        let mut all = Vec::with_capacity(inputs.len());
        for (index, input) in inputs.into_iter().enumerate() {
            let mut tokens = match input {
                EmbeddingInput::Text(text) => tokenizer_model
                    .tokenizer()
                    .encode(&text, true)
                    .map_err(|e| CoreError::invalid("input", format!("input {index}: {e}")))?,
                EmbeddingInput::Tokens(tokens) => {
                    if let Some(bad) = tokens.iter().find(|&&t| t as usize >= vocab) {
                        return Err(CoreError::invalid(
                            "input",
                            format!(
                                "input {index} has the token id {bad}, beyond the model's {vocab}"
                            ),
                        ));
                    }
                    tokens
                }
            };
            if tokens.is_empty() {
                return Err(CoreError::invalid(
                    "input",
                    format!("input {index} is empty"),
                ));
            }
            if tokens.len() > limit {
                if !options.truncate {
                    return Err(CoreError::PromptTooLong {
                        tokens: tokens.len(),
                        limit,
                    });
                }
                tokens.truncate(limit);
            }
            all.push(tokens);
        }
        Ok(all)
    })
    .await
    .map_err(|e| CoreError::Engine(orchard_engine::EngineError::Exception(e.to_string())))??;
    let prompt_tokens = tokenized.iter().map(Vec::len).sum();
    let receiver = model
        .worker
        .embed(tokenized, spec)
        .map_err(|e| model.submit_error(e))?;
    model.touch();
    let died = model.id.clone();
    let mut vectors = tokio::task::spawn_blocking(move || receiver.recv())
        .await
        .map_err(|e| CoreError::Engine(orchard_engine::EngineError::Exception(e.to_string())))?
        .map_err(|_| CoreError::WorkerDied(died))?
        .map_err(CoreError::Engine)?;
    if let Some(dimensions) = options.dimensions {
        let width = vectors.first().map_or(0, Vec::len);
        if dimensions == 0 || dimensions > width {
            return Err(CoreError::invalid(
                "dimensions",
                format!("dimensions must be between 1 and the model's {width}"),
            ));
        }
        for vector in &mut vectors {
            vector.truncate(dimensions);
            let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            vector.iter_mut().for_each(|v| *v /= norm);
        }
    }
    Ok(Embeddings {
        vectors,
        prompt_tokens,
    })
}
