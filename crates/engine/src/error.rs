//! The engine's errors. Each names the file or value at fault and what to do.

use std::path::PathBuf;

/// Errors of the engine crate.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// MLX returned an error code from a C API call.
    #[error("MLX call {call} failed")]
    Mlx { call: &'static str },
    /// An MLX operation raised an error (shapes, types, or the device).
    #[error("MLX error: {0}")]
    Exception(String),
    /// MLX computed a wrong result: the runtime or its BLAS is broken.
    #[error("MLX computed a wrong result: {0}")]
    WrongResult(String),
    /// A model file is missing or unreadable.
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },
    /// A model file exists but its content is wrong (bad JSON, truncated weights, bad shapes).
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    /// The model's architecture has no implementation in Orchard.
    #[error("{}: model_type {model_type:?} is not supported (supported: {})", path.display(), supported.join(", "))]
    UnsupportedModel {
        path: PathBuf,
        model_type: String,
        supported: Vec<&'static str>,
    },
    /// The chat template could not be rendered.
    #[error("the chat template failed: {0}")]
    Template(String),
    /// The prompt does not fit in the model's context.
    #[error("the prompt has {tokens} tokens but the model's context holds {limit}; shorten it")]
    PromptTooLong { tokens: usize, limit: usize },
    /// The request was cancelled before its prompt was fully computed.
    #[error("the request was cancelled")]
    Cancelled,
    /// A request parameter is out of range.
    #[error("invalid parameter {name}: {message}")]
    InvalidParameter { name: &'static str, message: String },
}

impl From<mlx_rs::error::Exception> for EngineError {
    fn from(e: mlx_rs::error::Exception) -> Self {
        EngineError::Exception(e.what().to_string())
    }
}

impl EngineError {
    pub(crate) fn invalid(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        EngineError::Invalid {
            path: path.into(),
            message: message.into(),
        }
    }

    pub(crate) fn file(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        EngineError::File {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// The engine's result type.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;
