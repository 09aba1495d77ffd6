//! Hugging Face models as Orchard sees them, without the network: repo ids
//! checked before they touch a path, the standard cache layout (`blobs/`,
//! `snapshots/`, `refs/`) read and pruned the way `huggingface_hub` keeps it,
//! and what a model can do, read from its small files.
//!
//! Search and downloads (which need the network) build on these.

pub mod cache;
pub mod capabilities;
pub mod repo;

pub use cache::{CachedModel, CachedRevision, HubCache};
pub use capabilities::{Capabilities, Quantization};
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
    /// A model file exists but cannot be read as expected.
    #[error("{path}: {message}")]
    File { path: String, message: String },
}

pub type Result<T, E = HubError> = std::result::Result<T, E>;
