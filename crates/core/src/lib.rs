//! Orchard's services, shared by the desktop app, the HTTP server and the CLI.

pub mod catalog;
pub mod chat;
pub mod doctor;
pub mod downloads;
pub mod embeddings;
pub mod error;
pub mod generation;
pub mod logs;
pub mod manager;
pub mod mcp;
pub mod ops;
pub mod paths;
pub mod profiles;
pub mod secrets;
pub mod system;

pub use error::CoreError;
pub use generation::{
    Delta, Finish, Generation, GenerationRequest, ImageInput, JsonOutput, Output, TokenLogprobs,
    start,
};
pub use manager::{LoadedModel, ManagerOptions, ModelManager};

// The engine's request and result types, for adapters that depend on core only.
pub use orchard_engine::vision::takes_images;
pub use orchard_engine::{
    ChatMessage, EmbeddingSpec, EngineError, GenerateOptions, GenerationStats, SamplingParams,
};
