//! The services' errors. Each says what was wrong and what to do; the server
//! maps them to HTTP statuses in one place.

use orchard_engine::EngineError;

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// No downloaded or registered model has this name.
    #[error("the model {name:?} does not exist; available models: {}", if available.is_empty() { "none (download one, or start with --model PATH)".to_string() } else { available.join(", ") })]
    ModelNotFound {
        name: String,
        available: Vec<String>,
    },
    /// The model exists but is not loaded, and just-in-time loading is off.
    #[error("the model {0:?} is not loaded and just-in-time loading is off; load it first")]
    NotLoaded(String),
    /// The model's weights do not fit in the memory budget even alone.
    #[error(
        "the model {name:?} needs {need_mib} MiB for its weights but the memory budget is {budget_mib} MiB; raise memory_budget_percent or use a smaller model"
    )]
    OverBudget {
        name: String,
        need_mib: u64,
        budget_mib: u64,
    },
    /// The model does not fit beside the models profiles keep loaded.
    #[error(
        "the model {name:?} does not fit beside the models kept loaded by their profiles ({}); unload one, or turn off its profile's keep loaded", pinned.join(", ")
    )]
    Pinned { name: String, pinned: Vec<String> },
    /// The model's queue is full.
    #[error("the model {name:?} has {waiting} requests waiting; retry shortly")]
    Busy { name: String, waiting: usize },
    /// A request value is wrong.
    #[error("{message}")]
    Invalid { param: String, message: String },
    /// The prompt does not fit in the context.
    #[error(
        "the prompt has {tokens} tokens but the model's context holds {limit}; shorten the conversation"
    )]
    PromptTooLong { tokens: usize, limit: usize },
    /// The model folder cannot be served (unsupported architecture, broken files).
    #[error("the model {name:?} cannot be loaded: {source}")]
    Load {
        name: String,
        #[source]
        source: EngineError,
    },
    /// Memory is held by models that are still finishing requests.
    #[error("the model {name:?} cannot be loaded yet: memory is held by requests still running on {}; retry shortly", busy.join(", "))]
    MemoryBusy { name: String, busy: Vec<String> },
    /// The model's worker thread died; the next request loads the model again.
    #[error("the model {0:?} stopped unexpectedly; retry the request, which loads it again")]
    WorkerDied(String),
    /// The model was unloaded while the request waited.
    #[error("the model was unloaded; retry the request")]
    Unloaded,
    /// An engine failure while generating.
    #[error("generation failed: {0}")]
    Engine(#[from] EngineError),
}

impl CoreError {
    /// Whether the failure is the server's own (the client cannot fix it).
    pub fn is_internal(&self) -> bool {
        match self {
            CoreError::Engine(_) => true,
            CoreError::Load { source, .. } => matches!(
                source,
                EngineError::Exception(_) | EngineError::Mlx { .. } | EngineError::WrongResult(_)
            ),
            _ => false,
        }
    }

    /// An error about request field `param`.
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        CoreError::Invalid {
            param: param.into(),
            message: message.into(),
        }
    }
}
