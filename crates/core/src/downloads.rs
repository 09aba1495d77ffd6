//! The download manager: model downloads that run in the background, report
//! progress as events, can be paused, resumed and cancelled, and continue
//! after a restart. Their state lives in SQLite; the bytes already fetched
//! live in the cache's partial files, which the next run continues.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use orchard_hub::download::ModelProgress;
use orchard_hub::{HubClient, RepoId};
use orchard_store::{DownloadRecord, Store};
use serde::Serialize;
use tokio::sync::broadcast;
use tokio::task::AbortHandle;

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
    #[error(transparent)]
    Store(#[from] orchard_store::StoreError),
}

/// Runs downloads; clones share it.
#[derive(Debug, Clone)]
pub struct DownloadManager {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    client: HubClient,
    cache_root: PathBuf,
    /// Downloads running now, by repo; a task removes itself when it ends.
    running: Mutex<HashMap<String, AbortHandle>>,
    events: broadcast::Sender<DownloadEvent>,
}

impl DownloadManager {
    pub fn new(store: Store, client: HubClient, cache_root: PathBuf) -> Self {
        DownloadManager {
            inner: Arc::new(Inner {
                store,
                client,
                cache_root,
                running: Mutex::new(HashMap::new()),
                events: broadcast::channel(256).0,
            }),
        }
    }

    /// Progress and state changes of every download.
    pub fn subscribe(&self) -> broadcast::Receiver<DownloadEvent> {
        self.inner.events.subscribe()
    }

    pub fn list(&self) -> Result<Vec<DownloadRecord>, DownloadError> {
        Ok(self.inner.store.downloads()?)
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<String, AbortHandle>> {
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
        self.inner
            .store
            .put_download(repo.as_str(), revision, &patterns, "running")?;
        self.emit(repo.as_str(), "running", 0, 0, None);
        let manager = self.clone();
        let revision = revision.to_string();
        let key = repo.to_string();
        let task = tokio::spawn(async move { manager.run(repo, revision, patterns).await });
        running.insert(key, task.abort_handle());
        Ok(())
    }

    /// Stops a running download, keeping what it fetched for [`DownloadManager::resume`].
    pub fn pause(&self, repo: &str) -> Result<(), DownloadError> {
        self.stop(repo, "paused")?;
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

    /// Stops a download and deletes its partial files.
    pub fn cancel(&self, repo: &str) -> Result<(), DownloadError> {
        self.stop(repo, "cancelled")?;
        let id = RepoId::parse(repo).map_err(|e| DownloadError::Invalid(e.to_string()))?;
        let blobs = self.inner.cache_root.join(id.cache_folder()).join("blobs");
        for entry in std::fs::read_dir(blobs).into_iter().flatten().flatten() {
            if entry.file_name().to_string_lossy().ends_with(".incomplete") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    /// Stops every running download without changing its recorded state, as
    /// on quitting: [`DownloadManager::resume_interrupted`] continues them.
    pub fn shutdown(&self) {
        for (_, task) in self.running().drain() {
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
            .filter(|d| d.state == "running" || d.state == "queued")
            .collect();
        for record in &stale {
            self.start(&record.repo, &record.revision, &record.patterns)?;
        }
        Ok(stale.len())
    }

    fn stop(&self, repo: &str, state: &str) -> Result<(), DownloadError> {
        let record = self
            .inner
            .store
            .download(repo)?
            .ok_or_else(|| DownloadError::NotFound(format!("no download of {repo}")))?;
        if let Some(task) = self.running().remove(repo) {
            task.abort();
        }
        if record.state != "done" {
            self.inner.store.set_download_state(repo, state, None)?;
            self.emit(repo, state, record.downloaded, record.total, None);
        }
        Ok(())
    }

    async fn run(self, repo: RepoId, revision: String, patterns: Vec<String>) {
        let key = repo.to_string();
        let patterns: Vec<&str> = patterns.iter().map(String::as_str).collect();
        let mut saved = Instant::now();
        let mut last = (0, 0);
        let result = self
            .inner
            .client
            .download_model(
                &self.inner.cache_root,
                &repo,
                &revision,
                &patterns,
                |p: &ModelProgress| {
                    last = (p.downloaded, p.total);
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
        self.running().remove(&key);
        self.emit(&key, state, last.0, last.1, error);
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
