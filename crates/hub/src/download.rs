//! Downloading a repo file into the Hugging Face cache, as `huggingface_hub`
//! lays it out: the content in `blobs/<etag>`, a relative link from
//! `snapshots/<commit>/<file>`, and `refs/<branch>` naming the commit. A file
//! in progress is `blobs/<etag>.incomplete`, written only under the blob's
//! lock (see [`crate::lock`]); a later call continues it from its length with
//! a Range request. Every file is checked against its etag (the SHA-256 of an
//! LFS file, the git blob SHA-1 of the others), and a corrupt result is
//! fetched again from the start, once.
//!
//! The Hub answers `resolve` with redirects: for a small file, a `307` to a
//! relative `/api/resolve-cache/...` URL on its own host, whose answer carries
//! the file's metadata; for an LFS file, a `302` to a CDN host with the
//! metadata (`X-Linked-Etag`, `X-Linked-Size`) on the redirect itself. As
//! `huggingface_hub` does, [`HubClient::file_meta`] follows redirects that
//! stay on the Hub and stops at the first that leaves it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::client::HubClient;
use crate::integrity::{Expected, matches_etag};
use crate::lock::{BlobLock, PARTIAL_SUFFIX};
use crate::repo::{RepoId, join_repo_file};
use crate::{HubError, Result};

/// Network failures and 5xx answers are retried this many times, with backoff.
const RETRIES: u32 = 4;

/// Redirects followed on the Hub's own host before giving up.
const MAX_HOPS: usize = 10;

/// Progress of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Bytes on disk so far (resumed bytes included).
    pub downloaded: u64,
    /// The file's size, when the Hub says.
    pub total: Option<u64>,
}

/// What the Hub says about a file before it is fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    /// The commit the revision resolves to (`X-Repo-Commit`).
    pub commit: String,
    /// The blob's name: the SHA-256 for LFS files, the git hash otherwise.
    pub etag: String,
    pub size: Option<u64>,
}

impl HubClient {
    /// The commit, etag and size of `file` at `revision`, without its content:
    /// a `HEAD` of `resolve`, following redirects while they stay on the
    /// Hub's host (a relative `Location` resolves against the request URL).
    pub async fn file_meta(&self, repo: &RepoId, revision: &str, file: &str) -> Result<FileMeta> {
        let first = self.resolve_url(repo, revision, file)?;
        let mut url = reqwest::Url::parse(&first)
            .map_err(|e| HubError::Invalid(format!("bad Hub URL {first}: {e}")))?;
        for _ in 0..MAX_HOPS {
            let response = self
                .send_with_retries(|| {
                    self.no_redirect()
                        .head(url.clone())
                        // The size must be the file's, not a compressed one's.
                        .header("Accept-Encoding", "identity")
                })
                .await?;
            let status = response.status();
            if !(status.is_success() || status.is_redirection()) {
                return Err(crate::client::status_error(
                    status.as_u16(),
                    url.as_str(),
                    None,
                ));
            }
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok());
            if let (true, Some(location)) = (status.is_redirection(), location) {
                let target = url.join(location).map_err(|e| {
                    HubError::Network(format!(
                        "the Hub redirected {url} to a bad address {location:?}: {e}"
                    ))
                })?;
                if self.is_hub_origin(&url, &target) {
                    url = target;
                    continue;
                }
            }
            return meta_from(&response, url.as_str());
        }
        Err(HubError::Network(format!(
            "the Hub redirected {first} more than {MAX_HOPS} times"
        )))
    }

    /// Whether a redirect from `from` to `to` stays on the Hub: the same
    /// origin, or the public Hub itself. The token goes with such requests;
    /// it never goes to a CDN.
    fn is_hub_origin(&self, from: &reqwest::Url, to: &reqwest::Url) -> bool {
        let hub = reqwest::Url::parse(crate::client::DEFAULT_ENDPOINT).map(|u| u.origin());
        to.origin() == from.origin() || hub.is_ok_and(|hub| to.origin() == hub)
    }

    /// Downloads `file` of `repo` at `revision` into the cache at `cache_root`
    /// (continuing a partial download) and returns its path in the snapshot.
    pub async fn download_file(
        &self,
        cache_root: &Path,
        repo: &RepoId,
        revision: &str,
        file: &str,
        mut progress: impl FnMut(Progress),
    ) -> Result<PathBuf> {
        let meta = self.file_meta(repo, revision, file).await?;
        let folder = cache_root.join(repo.cache_folder());
        let snapshot = join_repo_file(&folder.join("snapshots").join(&meta.commit), file)?;
        let blob = folder.join("blobs").join(&meta.etag);
        if !blob.is_file() {
            // Another download of the same blob (here or in another process)
            // finishes first; then the blob is there.
            let _lock = BlobLock::acquire(cache_root, repo, &meta.etag).await?;
            if !blob.is_file() {
                self.fetch_blob(repo, &meta, file, &blob, &mut progress)
                    .await?;
            }
        }
        link(&blob, &snapshot).await?;
        if revision != meta.commit {
            let reference = join_repo_file(&folder.join("refs"), revision)?;
            write_file(&reference, meta.commit.as_bytes()).await?;
        }
        Ok(snapshot)
    }

    /// Fetches the blob into its partial file and moves it into place once it
    /// matches its etag. The caller holds the blob's lock.
    async fn fetch_blob(
        &self,
        repo: &RepoId,
        meta: &FileMeta,
        file: &str,
        blob: &Path,
        progress: &mut impl FnMut(Progress),
    ) -> Result<()> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let partial = self
                .fetch_to_partial(repo, meta, file, blob, progress)
                .await?;
            if matches_etag(&partial, &meta.etag).await? {
                // A plain rename, not one left running in the background
                // should this download be cancelled now.
                return std::fs::rename(&partial, blob).map_err(|e| io_error(blob, e));
            }
            // A corrupt partial file: start again from nothing, once.
            let _ = std::fs::remove_file(&partial);
            if attempt > 1 {
                let hash = Expected::of(&meta.etag).map_or("etag", Expected::name);
                return Err(HubError::Network(format!(
                    "{file} of {repo} does not match its {hash} after downloading it twice"
                )));
            }
        }
    }

    /// Continues `<blob>.incomplete` to the end of the file; returns its path.
    async fn fetch_to_partial(
        &self,
        repo: &RepoId,
        meta: &FileMeta,
        file: &str,
        blob: &Path,
        progress: &mut impl FnMut(Progress),
    ) -> Result<PathBuf> {
        let partial = blob.with_file_name(format!("{}{PARTIAL_SUFFIX}", meta.etag));
        create_parent(&partial).await?;
        // Resolve by commit, so every attempt fetches the same bytes.
        let url = self.resolve_url(repo, &meta.commit, file)?;
        let mut failures = 0;
        loop {
            let have = std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
            if meta.size == Some(have) {
                return Ok(partial);
            }
            match self
                .fetch_from(&url, &partial, have, meta.size, progress)
                .await
            {
                Ok(()) => return Ok(partial),
                Err(e @ (HubError::Network(_) | HubError::RateLimited(_)))
                    if failures < RETRIES =>
                {
                    failures += 1;
                    backoff(failures, &e).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Appends the file's bytes from `have` on to `partial`. The partial file
    /// is opened and written with blocking calls on purpose: an operation
    /// handed to another thread could still be running after this future is
    /// dropped (a cancelled download), with the blob's lock already released.
    async fn fetch_from(
        &self,
        url: &str,
        partial: &Path,
        have: u64,
        total: Option<u64>,
        progress: &mut impl FnMut(Progress),
    ) -> Result<()> {
        self.check_online()?;
        let mut request = self.authorized(self.http().get(url));
        if have > 0 {
            request = request.header("Range", format!("bytes={have}-"));
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| HubError::Network(format!("cannot reach the Hub: {e}")))?;
        let status = response.status().as_u16();
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(partial)
            .map_err(|e| io_error(partial, e))?;
        let mut downloaded = match status {
            // The server ignored the range: start over.
            200 => {
                out.set_len(0).map_err(|e| io_error(partial, e))?;
                0
            }
            206 => have,
            // The partial file is already whole (or longer than the file: redo it).
            416 => {
                out.set_len(0).map_err(|e| io_error(partial, e))?;
                return Err(HubError::Network(
                    "the partial file did not fit the file; starting over".into(),
                ));
            }
            500..=599 => {
                return Err(HubError::Network(format!(
                    "the Hub answered {status} for {url}"
                )));
            }
            _ => return Err(crate::client::status_error(status, url, None)),
        };
        progress(Progress { downloaded, total });
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| HubError::Network(format!("the download broke off: {e}")))?
        {
            out.write_all(&chunk).map_err(|e| io_error(partial, e))?;
            downloaded += chunk.len() as u64;
            progress(Progress { downloaded, total });
        }
        out.flush().map_err(|e| io_error(partial, e))?;
        Ok(())
    }
}

/// The metadata on the Hub's last answer: a `200` after redirects on the Hub,
/// or the redirect to a CDN. The size of a redirect is only `X-Linked-Size`:
/// its `Content-Length` is the length of the redirect's own body.
fn meta_from(response: &reqwest::Response, url: &str) -> Result<FileMeta> {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.trim()
                    .trim_start_matches("W/")
                    .trim_matches('"')
                    .to_string()
            })
    };
    let commit = header("x-repo-commit")
        .ok_or_else(|| HubError::Network(format!("the Hub gave no X-Repo-Commit for {url}")))?;
    let etag = header("x-linked-etag")
        .or_else(|| header("etag"))
        .ok_or_else(|| HubError::Network(format!("the Hub gave no ETag for {url}")))?;
    // Both name folders in the cache: they must be plain hex-like names.
    for (what, value) in [("commit", &commit), ("etag", &etag)] {
        if value.is_empty() || !value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(HubError::Network(format!(
                "the Hub sent a malformed {what}: {value:?}"
            )));
        }
    }
    let size = header("x-linked-size")
        .or_else(|| {
            (!response.status().is_redirection())
                .then(|| header("content-length"))
                .flatten()
        })
        .and_then(|s| s.parse().ok());
    Ok(FileMeta { commit, etag, size })
}

async fn backoff(failures: u32, error: &HubError) {
    let wait = match error {
        HubError::RateLimited(Some(seconds)) => Duration::from_secs((*seconds).min(60)),
        _ => Duration::from_millis(250 << failures.min(6)),
    };
    tokio::time::sleep(wait).await;
}

fn io_error(path: &Path, e: std::io::Error) -> HubError {
    HubError::File {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

async fn create_parent(path: &Path) -> Result<()> {
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| io_error(parent, e))?;
    }
    Ok(())
}

async fn write_file(path: &Path, content: &[u8]) -> Result<()> {
    create_parent(path).await?;
    tokio::fs::write(path, content)
        .await
        .map_err(|e| io_error(path, e))
}

/// Points the snapshot entry at the blob: a relative link where the system
/// has them (as huggingface_hub makes), a copy elsewhere.
async fn link(blob: &Path, snapshot: &Path) -> Result<()> {
    create_parent(snapshot).await?;
    let _ = tokio::fs::remove_file(snapshot).await;
    #[cfg(unix)]
    {
        let depth = snapshot
            .strip_prefix(blob.parent().and_then(Path::parent).unwrap_or(blob))
            .map(|p| p.components().count() - 1)
            .unwrap_or(2);
        let mut target = PathBuf::new();
        for _ in 0..depth {
            target.push("..");
        }
        target.push("blobs");
        target.push(blob.file_name().unwrap_or_default());
        match tokio::fs::symlink(&target, snapshot).await {
            // Another download of the same file linked it meanwhile.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                match tokio::fs::read_link(snapshot).await {
                    Ok(existing) if existing == target => Ok(()),
                    _ => {
                        let _ = tokio::fs::remove_file(snapshot).await;
                        tokio::fs::symlink(&target, snapshot)
                            .await
                            .map_err(|e| io_error(snapshot, e))
                    }
                }
            }
            other => other.map_err(|e| io_error(snapshot, e)),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::fs::copy(blob, snapshot)
            .await
            .map(|_| ())
            .map_err(|e| io_error(snapshot, e))
    }
}

/// The files a model needs by default: configs, weights, tokenizer and template.
pub const DEFAULT_PATTERNS: &[&str] = &[
    "*.json",
    "*.safetensors",
    "*.jinja",
    "*.txt",
    "*.model",
    "*.tiktoken",
    "README.md",
];

/// Whether `name` matches one of `patterns` (`*.ext`, `prefix*` or an exact name).
pub fn matches_patterns(name: &str, patterns: &[&str]) -> bool {
    let base = name.rsplit('/').next().unwrap_or(name);
    patterns
        .iter()
        .any(|p| match (p.strip_prefix('*'), p.strip_suffix('*')) {
            (Some(suffix), _) => base.ends_with(suffix),
            (None, Some(prefix)) => base.starts_with(prefix),
            (None, None) => base == *p || name == *p,
        })
}

/// Progress of a whole model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelProgress {
    pub file: String,
    /// 1-based index of the file among `files`.
    pub index: usize,
    pub files: usize,
    /// This file's progress.
    pub progress: Progress,
    /// All files: bytes on disk so far, and the total.
    pub downloaded: u64,
    pub total: u64,
}

impl HubClient {
    /// Downloads the files of `repo` at `revision` that match `patterns`, one
    /// after another, resuming any partial file; returns the snapshot folder.
    pub async fn download_model(
        &self,
        cache_root: &Path,
        repo: &RepoId,
        revision: &str,
        patterns: &[&str],
        mut progress: impl FnMut(&ModelProgress),
    ) -> Result<PathBuf> {
        if self.is_offline() {
            // Offline, a model already in the cache is the answer; nothing is fetched.
            let cached = crate::HubCache::new(cache_root).model(repo).and_then(|m| {
                m.revisions
                    .into_iter()
                    .find(|r| r.commit == revision || r.refs.iter().any(|name| name == revision))
            });
            return match cached {
                Some(revision) => Ok(revision.dir),
                None => self.check_online().map(|()| PathBuf::new()),
            };
        }
        let info = self.model_info(repo, Some(revision)).await?;
        let files: Vec<&crate::client::RepoFile> = info
            .files
            .iter()
            .filter(|f| matches_patterns(&f.name, patterns))
            .collect();
        if files.is_empty() {
            return Err(HubError::NotFound(format!(
                "{repo} has no files matching {}",
                patterns.join(", ")
            )));
        }
        let total: u64 = files.iter().filter_map(|f| f.size).sum();
        check_free_space(cache_root, repo, total)?;
        let mut finished = 0u64;
        let mut snapshot = None;
        for (i, file) in files.iter().enumerate() {
            let path = self
                .download_file(cache_root, repo, revision, &file.name, |p| {
                    progress(&ModelProgress {
                        file: file.name.clone(),
                        index: i + 1,
                        files: files.len(),
                        progress: p,
                        downloaded: finished + p.downloaded,
                        total,
                    })
                })
                .await?;
            finished += file.size.unwrap_or(0);
            // The snapshot folder: the path less the file's own components.
            let depth = Path::new(&file.name).components().count();
            snapshot = path.ancestors().nth(depth).map(Path::to_path_buf);
        }
        snapshot.ok_or_else(|| HubError::NotFound(format!("{repo}: nothing was downloaded")))
    }
}

/// Refuses a download that cannot fit, before fetching anything. Blobs
/// already complete and bytes of partial files count as done.
fn check_free_space(cache_root: &Path, repo: &RepoId, total: u64) -> Result<()> {
    let blobs = cache_root.join(repo.cache_folder()).join("blobs");
    let on_disk: u64 = std::fs::read_dir(&blobs)
        .map(|read| {
            read.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);
    let need = total.saturating_sub(on_disk);
    // The nearest existing folder: the cache itself may not exist yet.
    let probe = cache_root
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(cache_root);
    match free_space(probe) {
        Some(free) if free < need => Err(HubError::DiskFull {
            path: probe.display().to_string(),
            need_mib: need.div_ceil(1 << 20),
            free_mib: free >> 20,
        }),
        _ => Ok(()),
    }
}

/// Bytes available to this user on the file system holding `path`.
#[cfg(unix)]
fn free_space(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stats = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c_path` is a valid NUL-terminated string and `stats` points to
    // writable memory of the right type; statvfs fills it when it returns 0.
    let status = unsafe { libc::statvfs(c_path.as_ptr(), stats.as_mut_ptr()) };
    if status != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it initialised `stats`.
    let stats = unsafe { stats.assume_init() };
    #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
    Some(stats.f_bavail as u64 * stats.f_frsize as u64)
}

/// Without statvfs the check is skipped.
#[cfg(not(unix))]
fn free_space(_path: &Path) -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_space_is_read() {
        let free = free_space(Path::new("/")).expect("statvfs works here");
        assert!(free > 0);
    }

    #[test]
    fn patterns_pick_what_a_model_needs() {
        for name in [
            "config.json",
            "model-00001-of-00002.safetensors",
            "chat_template.jinja",
            "sub/tokenizer.json",
        ] {
            assert!(matches_patterns(name, DEFAULT_PATTERNS), "{name}");
        }
        for name in [
            "pytorch_model.bin",
            "model.gguf",
            "original/consolidated.pth",
            ".gitattributes",
        ] {
            assert!(!matches_patterns(name, DEFAULT_PATTERNS), "{name}");
        }
        assert!(matches_patterns("tokenizer.json", &["tokenizer*"]));
    }
}
