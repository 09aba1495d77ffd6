//! Hugging Face models as Orchard sees them: repo ids checked before they
//! touch a path, the standard cache layout (`blobs/`, `snapshots/`, `refs/`)
//! read and pruned the way `huggingface_hub` keeps it, what a model can do
//! (read from its small files), and the Hub's search and model details.
//! Downloads build on these.

pub mod cache;
pub mod capabilities;
pub mod client;
pub mod download;
pub mod integrity;
pub mod lock;
pub mod repo;

pub use cache::{CachedModel, CachedRevision, HubCache};
pub use capabilities::{Capabilities, Quantization};
pub use client::{HubClient, ModelInfo, SearchPage, SearchQuery, Sort};
pub use repo::RepoId;

/// What can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// A repo id or file name that is not valid, or would leave the cache.
    #[error("{0}")]
    Invalid(String),
    /// Nothing by that name in the cache.
    #[error("{0}")]
    NotFound(String),
    /// The Hub wants a token, or refuses it (gated model).
    #[error("{0}")]
    Auth(String),
    /// The Hub asks to slow down; retry after this many seconds when it says.
    #[error("the Hub is rate-limiting requests; retry {}", .0.map_or("later".to_string(), |s| format!("in {s} s")))]
    RateLimited(Option<u64>),
    /// The Hub could not be reached, or answered with something unusable.
    #[error("{0}")]
    Network(String),
    /// Not enough free disk space for a download.
    #[error(
        "the download needs {need_mib} MiB but only {free_mib} MiB are free at {path}; free some space or choose fewer files"
    )]
    DiskFull {
        path: String,
        need_mib: u64,
        free_mib: u64,
    },
    /// A model file exists but cannot be read as expected.
    #[error("{path}: {message}")]
    File { path: String, message: String },
}

pub type Result<T, E = HubError> = std::result::Result<T, E>;
