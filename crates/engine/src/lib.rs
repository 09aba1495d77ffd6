//! Orchard's inference engine: language models run in-process on MLX through
//! mlx-rs, matching mlx-lm (the reference implementation) in their outputs.
//!
//! - [`Model::load`] reads a model folder (config, weights, tokenizer).
//! - [`generate`] and [`TextStream`] generate text; [`batch`] holds the
//!   prefill and the batched steps beneath them, which [`ModelWorker`] runs
//!   for many requests at once.
//! - [`runtime`] tells which MLX runtime and device this process uses.
//!
//! See [`models`] for the supported architectures and how to add one.

pub mod batch;
pub mod cache;
pub mod config;
pub mod constrain;
pub mod embed;
pub mod error;
mod ffi;
pub mod generate;
pub mod gguf;
pub mod model;
pub mod models;
pub mod prompt_cache;
pub mod quant;
pub mod runtime;
pub mod sampler;
pub mod tokenizer;
pub mod vision;
pub mod weights;
pub mod worker;

pub use constrain::{Constraint, Grammars, OnComplete};
pub use embed::{EmbeddingSpec, Pooling};
pub use error::{EngineError, Result};
pub use generate::{
    Counters, Event, FinishReason, GenerateOptions, Generation, GenerationStats, ReasoningBudget,
    SequenceText, Step, TextStream, Watch, generate,
};
pub use model::{CpuFastPath, LoadOptions, Model};
pub use prompt_cache::PromptCache;
pub use runtime::{DeviceKind, RuntimeInfo, runtime_info};
pub use sampler::SamplingParams;
pub use tokenizer::{ChatMessage, TemplateOptions, Tokenizer};
pub use vision::PromptImage;
pub use worker::{ModelWorker, SubmitError, WorkerGauges, WorkerOptions};
