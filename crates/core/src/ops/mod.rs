//! The operations of Orchard's window: search, model details, downloads,
//! the library, settings. Each is one async function here. The desktop app's
//! Tauri commands and the management API under `/api` are generated from
//! [`operations!`](crate::operations), so both adapters call the same
//! function for the same operation and neither can hold behaviour the other
//! lacks.

mod downloads;
mod library;
mod profiles;
mod search;
mod servers;
mod settings;
pub mod types;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

pub use orchard_hub::HubClient;
use orchard_hub::{HubCache, HubError};
use orchard_store::Store;

pub use downloads::{
    DownloadEvents, cancel_download, list_downloads, pause_download, resume_download,
    start_download,
};
pub use library::{add_folder, delete_model, list_library, load_model, unload_model};
pub use profiles::{create_profile, delete_profile, list_profiles, update_profile};
pub use search::{model_details, search_models};
pub use servers::{ServerEvents, list_servers, restart_server, start_server, stop_server};
pub use settings::{
    create_key, get_settings, list_keys, revoke_key, runtime_info, set_hf_token, update_settings,
};
pub use types::*;

use crate::downloads::{DownloadError, DownloadManager};
use crate::secrets::Secrets;
use crate::{CoreError, ModelManager};

/// Lists every operation for a callback macro, as
/// `reads { NAME PATH -> OUTPUT; ... } calls { NAME PATH (INPUT) -> OUTPUT; ... }
/// streams { NAME PATH -> EVENT; ... }`.
/// Reads take no input (`GET PATH`); calls take one (`POST PATH` with a JSON
/// body); streams push events (server-sent events, or a Tauri channel).
/// Each NAME is a function of [`crate::ops`]: `NAME(&Orchard)` for reads,
/// `NAME(&Orchard, INPUT)` for calls, `Orchard::NAME()` for streams.
#[macro_export]
macro_rules! operations {
    ($callback:ident) => {
        $callback! {
            reads {
                runtime_info "/api/runtime" -> $crate::ops::RuntimeInfo;
                list_downloads "/api/downloads" -> Vec<$crate::ops::DownloadView>;
                list_library "/api/library" -> Vec<$crate::ops::LibraryModel>;
                get_settings "/api/settings" -> $crate::ops::SettingsView;
                list_servers "/api/servers" -> $crate::ops::ServersView;
                list_keys "/api/keys" -> Vec<$crate::ops::ApiKeyView>;
                list_profiles "/api/profiles" -> Vec<$crate::ops::Profile>;
            }
            calls {
                search_models "/api/models/search" ($crate::ops::SearchRequest) -> $crate::ops::SearchResults;
                model_details "/api/models/details" ($crate::ops::ModelRequest) -> $crate::ops::ModelDetails;
                start_download "/api/downloads/start" ($crate::ops::ModelRequest) -> $crate::ops::DownloadView;
                pause_download "/api/downloads/pause" ($crate::ops::ModelRequest) -> $crate::ops::DownloadView;
                resume_download "/api/downloads/resume" ($crate::ops::ModelRequest) -> $crate::ops::DownloadView;
                cancel_download "/api/downloads/cancel" ($crate::ops::ModelRequest) -> $crate::ops::DownloadView;
                load_model "/api/library/load" ($crate::ops::ModelRequest) -> $crate::ops::LibraryModel;
                unload_model "/api/library/unload" ($crate::ops::ModelRequest) -> $crate::ops::LibraryModel;
                delete_model "/api/library/delete" ($crate::ops::ModelRequest) -> $crate::ops::Deleted;
                add_folder "/api/library/add_folder" ($crate::ops::FolderRequest) -> $crate::ops::LibraryModel;
                set_hf_token "/api/settings/hf_token" ($crate::ops::TokenRequest) -> $crate::ops::SettingsView;
                update_settings "/api/settings/update" ($crate::ops::ServerSettings) -> $crate::ops::SettingsView;
                start_server "/api/servers/start" ($crate::ops::ModelRequest) -> $crate::ops::ServersView;
                stop_server "/api/servers/stop" ($crate::ops::ModelRequest) -> $crate::ops::ServersView;
                restart_server "/api/servers/restart" ($crate::ops::ModelRequest) -> $crate::ops::ServersView;
                create_key "/api/keys/create" ($crate::ops::KeyRequest) -> $crate::ops::NewKeyView;
                revoke_key "/api/keys/revoke" ($crate::ops::KeyIdRequest) -> Vec<$crate::ops::ApiKeyView>;
                create_profile "/api/profiles/create" ($crate::ops::Profile) -> $crate::ops::Profile;
                update_profile "/api/profiles/update" ($crate::ops::ProfileUpdate) -> $crate::ops::Profile;
                delete_profile "/api/profiles/delete" ($crate::ops::NameRequest) -> Vec<$crate::ops::Profile>;
            }
            streams {
                download_events "/api/downloads/events" -> $crate::ops::DownloadView;
                server_events "/api/servers/events" -> $crate::ops::ServersView;
            }
        }
    };
}

/// How an operation is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationKind {
    /// No input: `GET path`.
    Read,
    /// A JSON input: `POST path`.
    Call,
    /// Pushed events: `GET path` as server-sent events.
    Stream,
}

/// One operation: its name (the Tauri command's) and its HTTP path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operation {
    pub name: &'static str,
    pub path: &'static str,
    pub kind: OperationKind,
}

macro_rules! operation_table {
    (
        reads { $($read:ident $read_path:literal -> $read_out:ty;)* }
        calls { $($call:ident $call_path:literal ($call_in:ty) -> $call_out:ty;)* }
        streams { $($stream:ident $stream_path:literal -> $event:ty;)* }
    ) => {
        /// Every operation, from [`operations!`](crate::operations).
        pub const OPERATIONS: &[Operation] = &[
            $(Operation { name: stringify!($read), path: $read_path, kind: OperationKind::Read },)*
            $(Operation { name: stringify!($call), path: $call_path, kind: OperationKind::Call },)*
            $(Operation { name: stringify!($stream), path: $stream_path, kind: OperationKind::Stream },)*
        ];
    };
}

crate::operations!(operation_table);

/// The events of a stream operation (`Orchard::NAME()` of the `streams` in
/// [`operations!`](crate::operations)), which each adapter forwards as they
/// come: server-sent events, or a Tauri channel.
pub trait Events: Send + 'static {
    type Event: serde::Serialize + Send + 'static;

    /// The next event; None when the stream has ended.
    fn next(&mut self) -> impl std::future::Future<Output = Option<Self::Event>> + Send;
}

/// The context every operation runs in: the model manager, the store, the
/// Hub and its cache, downloads, secrets. Clones share it.
#[derive(Debug, Clone)]
pub struct Orchard {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Loaded models and the catalog of servable ones.
    manager: ModelManager,
    /// Settings, registered folders, download records, model use.
    store: Store,
    /// The Hub client for search and details; replaced when the token changes.
    hub: RwLock<Arc<HubClient>>,
    /// Where downloads go and the library reads from; None when no cache
    /// folder can be found (downloads then say so).
    cache: Option<HubCache>,
    /// Runs downloads into `cache`; shares the store.
    downloads: Option<DownloadManager>,
    /// Where the Hugging Face token is kept; None without a data folder.
    secrets: Option<Secrets>,
    /// The settings the running server started with (a change to the
    /// stored ones applies at the next start).
    started: orchard_store::Settings,
    /// Loads from the Servers screen under way or failed.
    starts: servers::Starts,
    /// The machine's figures for the Servers screen.
    sampler: servers::Sampler,
    /// The user's MCP servers and the built-in one, as one hub.
    mcp: orchard_mcp::Hub,
}

/// How to build an [`Orchard`]; [`Orchard::from_env`] fills it from the user's setup.
#[derive(Debug)]
pub struct OrchardParts {
    pub manager: ModelManager,
    pub store: Store,
    /// The Hub's address (`HF_ENDPOINT`), offline mode and the token.
    pub hub: HubClient,
    pub cache_root: Option<PathBuf>,
    pub secrets: Option<Secrets>,
}

impl Orchard {
    pub fn new(parts: OrchardParts) -> Self {
        let hub = Arc::new(parts.hub);
        let downloads = parts
            .cache_root
            .clone()
            .map(|root| DownloadManager::new(parts.store.clone(), hub.clone(), root));
        let started = parts.store.settings().unwrap_or_default();
        let mcp = crate::mcp::McpServers::new(parts.store.clone(), parts.secrets.clone()).hub(
            orchard_mcp::HubOptions {
                call_timeout: std::time::Duration::from_secs(started.mcp_call_timeout_seconds),
                ..orchard_mcp::HubOptions::default()
            },
        );
        mcp.set_audit(crate::mcp::audit_log(parts.store.clone()));
        let orchard = Orchard {
            inner: Arc::new(Inner {
                started,
                starts: servers::Starts::default(),
                sampler: servers::Sampler::default(),
                manager: parts.manager,
                store: parts.store,
                hub: RwLock::new(hub),
                cache: parts.cache_root.map(HubCache::new),
                downloads,
                secrets: parts.secrets,
                mcp,
            }),
        };
        // Profile names are model names from the start.
        if let Err(e) = profiles::apply(&orchard) {
            tracing::warn!(error = %e, "cannot read the profiles");
        }
        orchard
    }

    /// The user's setup: `HF_ENDPOINT`, `HF_HUB_OFFLINE`, the kept token and
    /// the Hugging Face cache (`HF_HUB_CACHE`, `HF_HOME`).
    pub fn from_env(manager: ModelManager, store: Store) -> Result<Self, OpError> {
        let secrets = crate::paths::data_dir().map(Secrets::new);
        let hub = HubClient::from_env(crate::secrets::hf_token(secrets.as_ref()))?;
        Ok(Orchard::new(OrchardParts {
            manager,
            store,
            hub,
            cache_root: HubCache::default_root(),
            secrets,
        }))
    }

    /// An Orchard that never asks the Hub, for a setup whose Hub address
    /// is unusable: the library works, search and downloads say why not.
    pub fn offline(manager: ModelManager, store: Store) -> Self {
        let mut hub = HubClient::new(orchard_hub::client::DEFAULT_ENDPOINT, None)
            .expect("the public Hub's address is a valid URL");
        hub.set_offline(true);
        Orchard::new(OrchardParts {
            manager,
            store,
            hub,
            cache_root: HubCache::default_root(),
            secrets: None,
        })
    }

    pub fn manager(&self) -> &ModelManager {
        &self.inner.manager
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The MCP servers (the user's and the built-in one), supervised.
    pub fn mcp(&self) -> &orchard_mcp::Hub {
        &self.inner.mcp
    }

    /// The download manager, or why there is none.
    pub fn downloads(&self) -> Result<&DownloadManager, OpError> {
        self.inner.downloads.as_ref().ok_or_else(|| {
            OpError::new(
                ErrorCode::Internal,
                "cannot find the Hugging Face cache folder; set HF_HUB_CACHE or HF_HOME",
            )
        })
    }

    fn hub(&self) -> Arc<HubClient> {
        self.inner
            .hub
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_hub(&self, hub: HubClient) {
        let hub = Arc::new(hub);
        if let Some(downloads) = &self.inner.downloads {
            downloads.set_client(hub.clone());
        }
        *self.inner.hub.write().unwrap_or_else(|p| p.into_inner()) = hub;
    }

    fn cache(&self) -> Option<&HubCache> {
        self.inner.cache.as_ref()
    }
}

/// The architectures the engine runs.
fn supported_architectures() -> Vec<&'static str> {
    orchard_engine::models::ARCHITECTURES
        .iter()
        .map(|(name, _)| *name)
        .collect()
}

impl From<HubError> for OpError {
    fn from(e: HubError) -> Self {
        let code = match &e {
            HubError::Invalid(_) => ErrorCode::InvalidInput,
            HubError::NotFound(_) => ErrorCode::NotFound,
            HubError::Auth(_) => ErrorCode::HubAuth,
            HubError::RateLimited(_) => ErrorCode::RateLimited,
            HubError::Network(_) => ErrorCode::HubUnreachable,
            HubError::DiskFull { .. } => ErrorCode::DiskFull,
            HubError::File { .. } => ErrorCode::Internal,
        };
        OpError::new(code, e.to_string())
    }
}

impl From<CoreError> for OpError {
    fn from(e: CoreError) -> Self {
        let code = match &e {
            CoreError::ModelNotFound { .. } => ErrorCode::NotFound,
            CoreError::Invalid { .. }
            | CoreError::PromptTooLong { .. }
            | CoreError::Load { .. } => ErrorCode::InvalidInput,
            CoreError::OverBudget { .. } | CoreError::Pinned { .. } => ErrorCode::Conflict,
            CoreError::Busy { .. } | CoreError::MemoryBusy { .. } | CoreError::WorkerDied(_) => {
                ErrorCode::Busy
            }
            _ => ErrorCode::Internal,
        };
        OpError::new(code, e.to_string())
    }
}

impl From<DownloadError> for OpError {
    fn from(e: DownloadError) -> Self {
        let code = match &e {
            DownloadError::Invalid(_) => ErrorCode::InvalidInput,
            DownloadError::NotFound(_) => ErrorCode::NotFound,
            DownloadError::Files(_) | DownloadError::Store(_) => ErrorCode::Internal,
        };
        OpError::new(code, e.to_string())
    }
}

impl From<orchard_store::StoreError> for OpError {
    fn from(e: orchard_store::StoreError) -> Self {
        use orchard_store::StoreError;
        match e {
            StoreError::Invalid(message) => OpError::new(ErrorCode::InvalidInput, message),
            StoreError::NotFound(message) => OpError::new(ErrorCode::NotFound, message),
            e => {
                tracing::error!(error = %e, "store error in an operation");
                OpError::new(
                    ErrorCode::Internal,
                    format!("Orchard's database failed: {e}"),
                )
            }
        }
    }
}
