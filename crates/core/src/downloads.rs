//! The download manager: model downloads that run in the background, report
//! progress as events, can be paused, resumed and cancelled, and continue
//! after a restart. Their state lives in SQLite; the bytes already fetched
//! live in the cache's partial files, which the next run continues. The app
//! and `orchard serve` continue interrupted downloads when they start
//! ([`DownloadManager::resume_at_startup`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use orchard_hub::download::ModelProgress;
use orchard_hub::{HubClient, RepoId};
use orchard_store::{DownloadRecord, Store};
use serde::Serialize;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

/// How often progress is written to the database (events go out on every chunk).
const SAVE_EVERY: Duration = Duration::from_millis(500);

/// What subscribers hear about a download.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DownloadEvent {
    pub repo: String,
    /// queued, running, paused, done, failed or cancelled.
    pub state: String,
    /// The file being fetched, while running, and its own progress.
    pub file: Option<String>,
    pub file_downloaded: u64,
    pub file_total: Option<u64>,
    /// All the download's files: bytes so far and in total.
    pub downloaded: u64,
    pub total: u64,
    pub error: Option<String>,
}

/// Why a download request was refused.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    /// The cache's files could not be changed (permissions, a full disk).
    #[error("{0}")]
    Files(String),
    #[error(transparent)]
    Store(#[from] orchard_store::StoreError),
}

/// Runs downloads; clones share it. Its `Debug` output never shows the
/// Hugging Face token.
#[derive(Clone)]
pub struct DownloadManager {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    /// Replaced when the token changes; a running download keeps the one it started with.
    client: std::sync::RwLock<Arc<HubClient>>,
    cache_root: PathBuf,
    /// Downloads running now, by repo, with the id of their task; a task
    /// removes itself (by that id) when it ends.
    running: Mutex<HashMap<String, (u64, JoinHandle<()>)>>,
    next_task: AtomicU64,
    events: broadcast::Sender<DownloadEvent>,
    /// The last progress sent for each running download (bytes done,
    /// total): what a pause records, so the bar never goes back.
    progress: Mutex<HashMap<String, (u64, u64)>>,
}

impl std::fmt::Debug for DownloadManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let running: Vec<String> = self.running().keys().cloned().collect();
        // The client's own Debug redacts its token.
        f.debug_struct("DownloadManager")
            .field("client", &self.client())
            .field("cache_root", &self.inner.cache_root)
            .field("running", &running)
            .finish_non_exhaustive()
    }
}

impl DownloadManager {
    pub fn new(store: Store, client: Arc<HubClient>, cache_root: PathBuf) -> Self {
        DownloadManager {
            inner: Arc::new(Inner {
                store,
                client: std::sync::RwLock::new(client),
                cache_root,
                running: Mutex::new(HashMap::new()),
                next_task: AtomicU64::new(0),
                events: broadcast::channel(256).0,
                progress: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// A manager for the user's setup: the Hub of `HF_ENDPOINT` (offline with
    /// `HF_HUB_OFFLINE`), the token of [`crate::secrets::hf_token`], and the
    /// Hugging Face cache (`HF_HUB_CACHE`, `HF_HOME`).
    pub fn from_env(store: Store) -> Result<Self, DownloadError> {
        let cache_root = orchard_hub::HubCache::default_root().ok_or_else(|| {
            DownloadError::Invalid(
                "cannot find the Hugging Face cache; set HF_HUB_CACHE or HF_HOME".into(),
            )
        })?;
        let secrets = crate::paths::data_dir().map(crate::secrets::Secrets::new);
        let client = HubClient::from_env(crate::secrets::hf_token(secrets.as_ref()))
            .map_err(|e| DownloadError::Invalid(e.to_string()))?;
        Ok(Self::new(store, Arc::new(client), cache_root))
    }

    /// At startup (`orchard serve`, the app): continues the downloads a crash
    /// or quit left running, in the background, with [`DownloadManager::from_env`].
    /// Returns the manager, or None when nothing was left running (then the
    /// token is not even read).
    pub fn resume_at_startup(store: &Store) -> Result<Option<Self>, DownloadError> {
        if !store.downloads()?.iter().any(interrupted) {
            return Ok(None);
        }
        let manager = Self::from_env(store.clone())?;
        manager.resume_interrupted()?;
        Ok(Some(manager))
    }

    /// The Hub client downloads started from now on use.
    pub fn client(&self) -> Arc<HubClient> {
        self.inner
            .client
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Uses `client` (a new token, say) for downloads started from now on.
    pub fn set_client(&self, client: Arc<HubClient>) {
        *self.inner.client.write().unwrap_or_else(|p| p.into_inner()) = client;
    }

    /// Progress and state changes of every download.
    pub fn subscribe(&self) -> broadcast::Receiver<DownloadEvent> {
        self.inner.events.subscribe()
    }

    pub fn list(&self) -> Result<Vec<DownloadRecord>, DownloadError> {
        Ok(self.inner.store.downloads()?)
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, JoinHandle<()>)>> {
        self.inner.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts (or restarts) downloading `repo`; returns at once.
    pub fn start(
        &self,
        repo: &str,
        revision: &str,
        patterns: &[String],
    ) -> Result<(), DownloadError> {
        let repo = RepoId::parse(repo).map_err(|e| DownloadError::Invalid(e.to_string()))?;
        // Held until the task is registered, so a task that ends at once
        // cannot remove itself before it is added.
        let mut running = self.running();
        if running.contains_key(repo.as_str()) {
            return Ok(());
        }
        let patterns = if patterns.is_empty() {
            orchard_hub::download::DEFAULT_PATTERNS
                .iter()
                .map(|p| p.to_string())
                .collect()
        } else {
            patterns.to_vec()
        };
        // A resumed download starts from what it had.
        let (downloaded, total) = self
            .inner
            .store
            .download(repo.as_str())?
            .map_or((0, 0), |r| (r.downloaded, r.total));
        self.inner
            .store
            .put_download(repo.as_str(), revision, &patterns, "running")?;
        self.emit(repo.as_str(), "running", downloaded, total, None);
        let manager = self.clone();
        let revision = revision.to_string();
        let key = repo.to_string();
        let id = self.inner.next_task.fetch_add(1, Ordering::Relaxed);
        let task = tokio::spawn(async move { manager.run(id, repo, revision, patterns).await });
        running.insert(key, (id, task));
        Ok(())
    }

    /// Stops a running download, keeping what it fetched for
    /// [`DownloadManager::resume`]; returns once its task has stopped.
    pub async fn pause(&self, repo: &str) -> Result<(), DownloadError> {
        self.stop(repo, "paused").await?;
        Ok(())
    }

    /// Continues a paused, failed or interrupted download.
    pub fn resume(&self, repo: &str) -> Result<(), DownloadError> {
        let record = self
            .inner
            .store
            .download(repo)?
            .ok_or_else(|| DownloadError::NotFound(format!("no download of {repo}")))?;
        self.start(&record.repo, &record.revision, &record.patterns)
    }

    /// Stops a download and deletes its partial files, once its task has
    /// stopped (so it cannot write to them again). A partial file another
    /// process is writing (it holds the blob's lock) is left to it.
    pub async fn cancel(&self, repo: &str) -> Result<(), DownloadError> {
        let id = RepoId::parse(repo).map_err(|e| DownloadError::Invalid(e.to_string()))?;
        let cancelled = self.stop(repo, "cancelled").await?;
        orchard_hub::lock::remove_partials(&self.inner.cache_root, &id).map_err(|e| {
            DownloadError::Files(format!("cannot remove the partial files of {repo}: {e}"))
        })?;
        if let Some(record) = cancelled {
            self.emit(repo, "cancelled", record.downloaded, record.total, None);
        }
        Ok(())
    }

    /// Stops every running download without changing its recorded state, as
    /// on quitting: [`DownloadManager::resume_interrupted`] continues them.
    pub fn shutdown(&self) {
        for (_, (_, task)) in self.running().drain() {
            task.abort();
        }
    }

    /// Restarts the downloads a crash or quit left running; returns how many.
    pub fn resume_interrupted(&self) -> Result<usize, DownloadError> {
        let stale: Vec<DownloadRecord> = self
            .inner
            .store
            .downloads()?
            .into_iter()
            .filter(interrupted)
            .collect();
        for record in &stale {
            self.start(&record.repo, &record.revision, &record.patterns)?;
        }
        Ok(stale.len())
    }

    /// Stops the task of `repo`, waits until it has, then records `state`
    /// unless the download is done. Returns the record when the state
    /// changed; a pause also announces it (a cancel does once its partial
    /// files are gone).
    async fn stop(&self, repo: &str, state: &str) -> Result<Option<DownloadRecord>, DownloadError> {
        if self.inner.store.download(repo)?.is_none() {
            return Err(DownloadError::NotFound(format!("no download of {repo}")));
        }
        let task = self.running().remove(repo);
        if let Some((_, task)) = task {
            task.abort();
            // Cancelled or finished: either way it no longer runs.
            let _ = task.await;
        }
        // The bytes received up to the stop, not the last periodic save.
        if let Some((downloaded, total)) = self.progress().remove(repo) {
            self.inner
                .store
                .set_download_progress(repo, downloaded, total)?;
        }
        // The store keeps a download that finished meanwhile done.
        if !self.inner.store.set_download_state(repo, state, None)? {
            return Ok(None);
        }
        let record = self.inner.store.download(repo)?;
        if let Some(record) = &record
            && state != "cancelled"
        {
            self.emit(repo, state, record.downloaded, record.total, None);
        }
        Ok(record)
    }

    async fn run(self, id: u64, repo: RepoId, revision: String, patterns: Vec<String>) {
        let key = repo.to_string();
        let patterns: Vec<&str> = patterns.iter().map(String::as_str).collect();
        let mut saved = Instant::now();
        let mut last = (0, 0);
        let client = self.client();
        let result = client
            .download_model(
                &self.inner.cache_root,
                &repo,
                &revision,
                &patterns,
                |p: &ModelProgress| {
                    last = (p.downloaded, p.total);
                    self.progress().insert(key.clone(), last);
                    let _ = self.inner.events.send(DownloadEvent {
                        repo: key.clone(),
                        state: "running".into(),
                        file: Some(p.file.clone()),
                        file_downloaded: p.progress.downloaded,
                        file_total: p.progress.total,
                        downloaded: p.downloaded,
                        total: p.total,
                        error: None,
                    });
                    if saved.elapsed() >= SAVE_EVERY {
                        saved = Instant::now();
                        let _ = self
                            .inner
                            .store
                            .set_download_progress(&key, p.downloaded, p.total);
                    }
                },
            )
            .await;
        let _ = self.inner.store.set_download_progress(&key, last.0, last.1);
        self.progress().remove(&key);
        let (state, error) = match result {
            Ok(_) => ("done", None),
            Err(e) => ("failed", Some(e.to_string())),
        };
        if let Err(e) = self
            .inner
            .store
            .set_download_state(&key, state, error.as_deref())
        {
            tracing::error!(repo = %key, error = %e, "cannot record the download's end");
        }
        {
            let mut running = self.running();
            // Only this task's own entry: a later start may have replaced it.
            if running.get(&key).is_some_and(|(task, _)| *task == id) {
                running.remove(&key);
            }
        }
        self.emit(&key, state, last.0, last.1, error);
    }

    fn progress(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, u64)>> {
        self.inner
            .progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// A state change, with the download's totals.
    fn emit(&self, repo: &str, state: &str, downloaded: u64, total: u64, error: Option<String>) {
        // No subscribers is fine.
        let _ = self.inner.events.send(DownloadEvent {
            repo: repo.to_string(),
            state: state.to_string(),
            file: None,
            file_downloaded: 0,
            file_total: None,
            downloaded,
            total,
            error,
        });
    }
}

/// A download a crash or quit left unfinished.
fn interrupted(record: &DownloadRecord) -> bool {
    record.state == "running" || record.state == "queued"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_token() {
        let token = "hf_SecretTokenValue123";
        let client = HubClient::new("http://127.0.0.1:9", Some(token.into())).expect("client");
        let store = Store::open_in_memory().expect("store");
        let manager =
            DownloadManager::new(store, Arc::new(client), PathBuf::from("/tmp/hub-cache"));
        for text in [format!("{manager:?}"), format!("{manager:#?}")] {
            assert!(!text.contains(token), "{text}");
            assert!(
                text.contains("hub-cache") && text.contains("<redacted>"),
                "{text}"
            );
        }
    }
}
