//! Downloads from the Hub into the Hugging Face cache: start, pause, resume,
//! cancel, and the events that report their progress.

use orchard_hub::RepoId;
use tokio::sync::broadcast;

use super::{DownloadState, DownloadView, ErrorCode, ModelRequest, OpError, Orchard};
use crate::downloads::DownloadEvent;
use orchard_store::DownloadRecord;

/// Every download Orchard knows of, newest first as the store keeps them.
pub async fn list_downloads(orchard: &Orchard) -> Result<Vec<DownloadView>, OpError> {
    Ok(orchard
        .downloads()?
        .list()?
        .iter()
        .map(view_of_record)
        .collect())
}

/// Starts downloading a Hub repo (or starts it again after a failure or a
/// cancel); it runs in the background and reports through the events.
pub async fn start_download(
    orchard: &Orchard,
    input: ModelRequest,
) -> Result<DownloadView, OpError> {
    let repo = repo_of(&input)?;
    let downloads = orchard.downloads()?;
    downloads.start(repo.as_str(), "main", &[])?;
    current(orchard, &repo)
}

/// Pauses a download, keeping its bytes for resume.
pub async fn pause_download(
    orchard: &Orchard,
    input: ModelRequest,
) -> Result<DownloadView, OpError> {
    let repo = repo_of(&input)?;
    orchard.downloads()?.pause(repo.as_str()).await?;
    current(orchard, &repo)
}

/// Continues a paused, failed or interrupted download from its bytes on disk.
pub async fn resume_download(
    orchard: &Orchard,
    input: ModelRequest,
) -> Result<DownloadView, OpError> {
    let repo = repo_of(&input)?;
    orchard.downloads()?.resume(repo.as_str())?;
    current(orchard, &repo)
}

/// Stops a download and deletes its partial files.
pub async fn cancel_download(
    orchard: &Orchard,
    input: ModelRequest,
) -> Result<DownloadView, OpError> {
    let repo = repo_of(&input)?;
    orchard.downloads()?.cancel(repo.as_str()).await?;
    current(orchard, &repo)
}

fn repo_of(input: &ModelRequest) -> Result<RepoId, OpError> {
    RepoId::parse(input.model.trim())
        .map_err(|e| OpError::new(ErrorCode::InvalidInput, format!("model: {e}")))
}

fn current(orchard: &Orchard, repo: &RepoId) -> Result<DownloadView, OpError> {
    let record = orchard
        .downloads()?
        .list()?
        .into_iter()
        .find(|d| d.repo == repo.as_str())
        .ok_or_else(|| OpError::new(ErrorCode::NotFound, format!("no download of {repo}")))?;
    Ok(view_of_record(&record))
}

fn view_of_record(record: &DownloadRecord) -> DownloadView {
    DownloadView {
        repo: record.repo.clone(),
        state: DownloadState::parse(&record.state),
        file: None,
        downloaded: record.downloaded,
        total: record.total,
        error: record.error.clone(),
    }
}

fn view_of_event(event: DownloadEvent) -> DownloadView {
    DownloadView {
        state: DownloadState::parse(&event.state),
        repo: event.repo,
        file: event.file,
        downloaded: event.downloaded,
        total: event.total,
        error: event.error,
    }
}

/// A subscription to download progress: the state of every download when it
/// began, then each change. Events a slow reader missed are skipped, never
/// queued without bound: the next one carries the totals anyway.
#[derive(Debug)]
pub struct DownloadEvents {
    first: std::vec::IntoIter<DownloadView>,
    live: broadcast::Receiver<DownloadEvent>,
}

impl super::Events for DownloadEvents {
    type Event = DownloadView;

    /// The next event; None once the download manager is gone.
    async fn next(&mut self) -> Option<DownloadView> {
        if let Some(view) = self.first.next() {
            return Some(view);
        }
        loop {
            match self.live.recv().await {
                Ok(event) => return Some(view_of_event(event)),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

impl Orchard {
    /// Subscribes to download progress (the `download_events` stream).
    pub fn download_events(&self) -> Result<DownloadEvents, OpError> {
        let downloads = self.downloads()?;
        // Subscribed before the snapshot, so no change falls between them.
        let live = downloads.subscribe();
        let first: Vec<DownloadView> = downloads.list()?.iter().map(view_of_record).collect();
        Ok(DownloadEvents {
            first: first.into_iter(),
            live,
        })
    }
}
