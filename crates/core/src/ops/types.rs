//! The types that cross into the window: inputs and outputs of the
//! operations. Their TypeScript is generated with `ts-rs` into
//! `ui/src/lib/api/` (see `tests/bindings.rs`), never written by hand.

use serde::{Deserialize, Serialize};
use ts_rs::TS;

pub use crate::profiles::Profile;
pub use orchard_hub::client::Sort;

/// Something a model can do beyond plain text chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    Vision,
    ToolUse,
    Thinking,
    Embeddings,
}

/// Whether a model fits the memory budget: its estimate (weights plus the KV
/// cache at the default context) is within 80% of the budget, within the
/// budget, or over it; unknown without sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum Fit {
    Fits,
    Tight,
    WontFit,
    Unknown,
}

/// A search of the Hub.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, TS)]
pub struct SearchRequest {
    /// Words to find in repo ids; null or blank lists everything.
    pub text: Option<String>,
    /// Only this author's models; null or blank for every author.
    pub author: Option<String>,
    pub sort: Sort,
    /// Only this `model_type` (`llama`, `qwen3`...).
    pub architecture: Option<String>,
    /// Only models quantized to this many bits.
    pub bits: Option<u32>,
    /// Only models that can do all of these.
    pub capabilities: Vec<Capability>,
    /// Only models whose estimate fits the memory budget (fits or tight).
    pub fits_only: bool,
}

/// One model found on the Hub.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct SearchResult {
    pub id: String,
    pub downloads: u64,
    pub likes: u64,
    /// Bytes of the repo's files, when the Hub says.
    pub size_bytes: Option<u64>,
    /// RFC 3339.
    pub last_modified: Option<String>,
    /// The config's `model_type`.
    pub architecture: Option<String>,
    pub quantization_bits: Option<u32>,
    pub parameters: Option<u64>,
    pub capabilities: Vec<Capability>,
    /// Whether Orchard's engine runs this architecture.
    pub supported: bool,
    /// The Hub wants a token for its files.
    pub gated: bool,
    /// Bytes to run it. A listing has no attention shapes, so this is the
    /// weights plus a tenth for the KV cache; the details have the full estimate.
    pub memory_estimate_bytes: Option<u64>,
    pub fit: Fit,
    /// Already in the library.
    pub downloaded: bool,
}

/// Search results, best first in the order asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct SearchResults {
    pub models: Vec<SearchResult>,
    /// The memory budget the fit labels were judged against.
    pub memory_budget_bytes: u64,
}

/// Names one model: a Hub repo id (`org/name`) or a library name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct ModelRequest {
    pub model: String,
}

/// A model folder on this machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct FolderRequest {
    pub path: String,
}

/// The Hugging Face token to keep; null removes it.
#[derive(Clone, PartialEq, Eq, Serialize, TS)]
pub struct TokenRequest {
    pub token: Option<String>,
}

impl<'de> Deserialize<'de> for TokenRequest {
    /// `token` is required even when null, and nothing else is accepted: a
    /// misspelt field must not read as "remove the token".
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Wire {
            #[serde(deserialize_with = "Option::deserialize")]
            token: Option<String>,
        }
        let wire = Wire::deserialize(deserializer)?;
        Ok(TokenRequest { token: wire.token })
    }
}

impl std::fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenRequest")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// What a model is and can do, read from its config, tokenizer config and
/// chat template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct ModelFacts {
    pub architecture: Option<String>,
    /// Whether Orchard's engine runs this architecture.
    pub supported: bool,
    pub parameters: Option<u64>,
    pub quantization_bits: Option<u32>,
    pub quantization_group_size: Option<u32>,
    pub context_length: Option<u64>,
    /// Bytes of keys and values per token of context.
    pub kv_bytes_per_token: Option<u64>,
    pub weight_bytes: u64,
    pub capabilities: Vec<Capability>,
}

/// A file of a Hub repo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct RepoFileView {
    pub name: String,
    pub size_bytes: Option<u64>,
}

/// Everything the details view shows about a Hub model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct ModelDetails {
    pub id: String,
    /// The commit described.
    pub sha: Option<String>,
    /// The model card without its front matter, as Markdown (sanitize it
    /// before showing it).
    pub readme: Option<String>,
    pub files: Vec<RepoFileView>,
    pub size_bytes: u64,
    pub license: Option<String>,
    pub gated: bool,
    /// The Hub refused the model's files for want of a (valid) Hugging Face
    /// token: the window leads to Settings.
    pub needs_token: bool,
    pub downloads: u64,
    pub likes: u64,
    pub last_modified: Option<String>,
    /// None when its files could not be read (a gated model without a token).
    pub facts: Option<ModelFacts>,
    pub memory_estimate_bytes: Option<u64>,
    pub fit: Fit,
    pub downloaded: bool,
}

/// Where a download is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum DownloadState {
    Queued,
    Running,
    Paused,
    Done,
    Failed,
    Cancelled,
}

impl DownloadState {
    /// Reads the state the store and the download manager record as text.
    pub fn parse(text: &str) -> DownloadState {
        match text {
            "queued" => DownloadState::Queued,
            "running" => DownloadState::Running,
            "paused" => DownloadState::Paused,
            "done" => DownloadState::Done,
            "cancelled" => DownloadState::Cancelled,
            _ => DownloadState::Failed,
        }
    }
}

/// A download and its progress; the download events carry the same shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct DownloadView {
    pub repo: String,
    pub state: DownloadState,
    /// The file being fetched, while running.
    pub file: Option<String>,
    /// Bytes of all its files received so far, and in total (0 until known).
    pub downloaded: u64,
    pub total: u64,
    /// Why it failed.
    pub error: Option<String>,
}

/// Where a library model lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum ModelSource {
    HuggingFace,
    Local,
}

/// One revision of a model in the Hugging Face cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct RevisionView {
    pub commit: String,
    /// Branches and tags that point at it.
    pub refs: Vec<String>,
    pub size_bytes: u64,
}

/// A model on this machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct LibraryModel {
    /// The name requests use.
    pub id: String,
    pub source: ModelSource,
    /// Its folder (the current snapshot for the Hugging Face cache).
    pub path: String,
    /// Bytes on disk, blobs shared between revisions counted once.
    pub size_bytes: u64,
    pub revisions: Vec<RevisionView>,
    /// None when its config cannot be read.
    pub facts: Option<ModelFacts>,
    /// When it was last loaded or used, in seconds since the Unix epoch.
    pub last_used: Option<u64>,
    pub loaded: bool,
    /// Bytes it holds while loaded (weights and caches).
    pub memory_bytes: Option<u64>,
}

/// What a delete freed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct Deleted {
    pub model: String,
    pub freed_bytes: u64,
}

/// The settings the window shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct SettingsView {
    /// A Hugging Face token is in use (it is never sent back).
    pub hf_token_set: bool,
    pub token_source: TokenSource,
    pub hub_endpoint: String,
    /// HF_HUB_OFFLINE is on: the Hub is not asked.
    pub offline: bool,
    pub memory_budget_bytes: u64,
    pub total_memory_bytes: u64,
    /// The stored settings, as the next start will use them.
    pub server: ServerSettings,
    /// The stored settings differ from those the running server started
    /// with: they apply once Orchard restarts.
    pub restart_required: bool,
    /// Orchard's data folder (database, secrets, logs).
    pub data_dir: Option<String>,
    /// The Hugging Face cache the library reads and downloads go to.
    pub hub_cache_dir: Option<String>,
    /// Model folders the user added.
    pub model_folders: Vec<String>,
}

/// The facts the window shows about this installation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct RuntimeInfo {
    pub orchard_version: String,
    pub mlx_version: String,
    /// The MLX runtime wheel: `cpu`, `cuda` or `metal`.
    pub backend: String,
    /// Where the engine computes: `cpu` or `gpu`.
    pub device: String,
}

/// Stable, machine-readable error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The input is wrong; the message says which part and how.
    InvalidInput,
    NotFound,
    /// The Hugging Face Hub cannot be reached (or offline mode is on).
    HubUnreachable,
    /// The Hub wants a token, or refuses the one kept (a gated model).
    HubAuth,
    RateLimited,
    /// The thing is in a state that forbids this (deleting a model being downloaded).
    Conflict,
    /// Memory or a queue is full; retry later.
    Busy,
    DiskFull,
    /// No API key, or a wrong one (the management API over HTTP).
    Unauthorized,
    /// The port refused the request's Host or Origin.
    Forbidden,
    Internal,
}

impl ErrorCode {
    /// The code as the wire carries it.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidInput => "invalid_input",
            ErrorCode::NotFound => "not_found",
            ErrorCode::HubUnreachable => "hub_unreachable",
            ErrorCode::HubAuth => "hub_auth",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Busy => "busy",
            ErrorCode::DiskFull => "disk_full",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::Internal => "internal",
        }
    }

    /// Every code.
    pub const ALL: [ErrorCode; 11] = [
        ErrorCode::InvalidInput,
        ErrorCode::NotFound,
        ErrorCode::HubUnreachable,
        ErrorCode::HubAuth,
        ErrorCode::RateLimited,
        ErrorCode::Conflict,
        ErrorCode::Busy,
        ErrorCode::DiskFull,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::Internal,
    ];
}

/// What went wrong in an operation: the window shows `message` and branches on `code`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS, thiserror::Error)]
#[error("{message}")]
pub struct OpError {
    pub code: ErrorCode,
    pub message: String,
}

impl OpError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        OpError {
            code,
            message: message.into(),
        }
    }
}

/// The parts of a loaded model's memory the budget counts, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct MemoryParts {
    pub weights: u64,
    /// Keys and values of the requests running now.
    pub kv_cache: u64,
    /// Reusable prompt caches kept between requests.
    pub prompt_cache: u64,
}

/// Where a served model is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum ServerState {
    Loading,
    Running,
    /// Unloaded to load again (Restart); its tile stays.
    Restarting,
    /// The last load failed; `error` says why.
    Failed,
}

/// One loaded model (or one being loaded, or whose load failed): a tile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct ServerTile {
    /// The model's library name.
    pub model: String,
    /// The profiles that serve it (their names are model names too).
    pub profiles: Vec<String>,
    pub state: ServerState,
    /// Why the last load failed.
    pub error: Option<String>,
    /// The log lines of that failed load, oldest first; empty otherwise.
    pub log: Vec<String>,
    pub memory: MemoryParts,
    /// weights + kv_cache + prompt_cache.
    pub memory_bytes: u64,
    pub uptime_seconds: u64,
    /// Requests generating now, and waiting in its queue.
    pub active_requests: u32,
    pub queued_requests: u32,
    /// Decode speed of the requests of the last minute (0 when none ran).
    pub tokens_per_second: f64,
    /// Tokens generated since the load.
    pub generated_tokens: u64,
    /// Prompt tokens since the load, and how many came from the prompt cache.
    pub prompt_tokens: u64,
    pub cached_prompt_tokens: u64,
    /// cached_prompt_tokens / prompt_tokens; null before any prompt.
    pub prompt_cache_hit_rate: Option<f64>,
    /// A quantized model running dequantized to float32 on the CPU backend
    /// (the CPU fast path, setting `cpu_fast_path`).
    pub cpu_fast_path: bool,
}

/// MLX's device memory, on a GPU backend (Metal, CUDA).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct GpuView {
    pub active_bytes: u64,
    pub peak_bytes: u64,
    pub cache_bytes: u64,
    /// The working set Metal recommends; null where the runtime does not say.
    pub recommended_working_set_bytes: Option<u64>,
}

/// The machine and Orchard's share of it: the strip above the tiles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct SystemView {
    pub total_memory_bytes: u64,
    pub used_memory_bytes: u64,
    /// Orchard's resident memory.
    pub process_memory_bytes: u64,
    pub memory_budget_bytes: u64,
    /// Orchard's process CPU use, 100 per fully busy core.
    pub cpu_percent: f64,
    pub cpu_cores: u32,
    /// The MLX runtime: `cpu`, `metal` or `cuda`.
    pub backend: String,
    /// Null on the CPU backend: the tiles say the model computes on the CPU.
    pub gpu: Option<GpuView>,
}

/// What the Servers screen shows; the `server_events` stream sends it again
/// every second.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct ServersView {
    pub system: SystemView,
    pub servers: Vec<ServerTile>,
}

/// The API server's settings the window edits (stored in SQLite).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    pub require_api_key: bool,
    /// Load a model when a request names it.
    pub jit_loading: bool,
    /// Unload models idle this long; 0 keeps them.
    pub idle_ttl_minutes: u64,
    /// Loaded models may take at most this share of the memory.
    pub memory_budget_percent: u8,
    pub max_loaded_models: u32,
    /// Requests waiting per model before 429.
    pub queue_capacity: u32,
}

/// Where the Hugging Face token in use comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum TokenSource {
    /// `HF_TOKEN` in the environment (it wins over a stored one).
    Environment,
    /// Kept by Orchard (the Keychain on macOS, a 0600 file elsewhere).
    Stored,
    /// `huggingface_hub`'s token file in `HF_HOME`.
    HuggingfaceHub,
    None,
}

/// An API key as listed: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct ApiKeyView {
    pub id: i64,
    pub name: String,
    /// The first characters of the secret, to tell keys apart.
    pub prefix: String,
    /// RFC 3339.
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
}

/// A key just made: the only time its secret is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct NewKeyView {
    pub key: ApiKeyView,
    pub secret: String,
}

/// Names a new API key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct KeyRequest {
    pub name: String,
}

/// Names an API key by id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct KeyIdRequest {
    pub id: i64,
}

/// Replaces the profile called `name` (which `profile` may rename).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct ProfileUpdate {
    pub name: String,
    pub profile: Profile,
}

/// Names a profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct NameRequest {
    pub name: String,
}
