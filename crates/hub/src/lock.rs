//! One writer per blob, across threads and processes. Whoever appends to
//! `blobs/<etag>.incomplete` holds an exclusive OS lock on
//! `<cache>/.locks/models--org--name/<etag>.lock`, the file `huggingface_hub`
//! locks for the same blob, so the app, the CLI (and Python's
//! `hf_hub_download`, whose lock is `flock` too) never append to one file at
//! once. The lock is released when its file is closed, which the OS does
//! even for a process that is killed.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use crate::repo::RepoId;
use crate::{HubError, Result};

/// The suffix of a file still being downloaded.
pub const PARTIAL_SUFFIX: &str = ".incomplete";

/// A held lock on one blob; dropping it releases the lock.
#[derive(Debug)]
pub struct BlobLock {
    _file: File,
}

/// `<cache>/.locks/models--org--name/<etag>.lock`.
pub fn lock_path(cache_root: &Path, repo: &RepoId, etag: &str) -> PathBuf {
    cache_root
        .join(".locks")
        .join(repo.cache_folder())
        .join(format!("{etag}.lock"))
}

fn open(path: &Path) -> Result<File> {
    let io = |e: std::io::Error| HubError::File {
        path: path.display().to_string(),
        message: format!("cannot open the download lock: {e}"),
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    // Never truncated: the file only exists to be locked.
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io)
}

impl BlobLock {
    /// Waits until no one else holds the blob's lock, then holds it.
    pub async fn acquire(cache_root: &Path, repo: &RepoId, etag: &str) -> Result<BlobLock> {
        let path = lock_path(cache_root, repo, etag);
        // Waiting blocks a thread, so it happens off the async workers.
        tokio::task::spawn_blocking(move || {
            let file = open(&path)?;
            file.lock().map_err(|e| HubError::File {
                path: path.display().to_string(),
                message: format!("cannot lock: {e}"),
            })?;
            Ok(BlobLock { _file: file })
        })
        .await
        .map_err(|e| HubError::Network(format!("waiting for the download lock failed: {e}")))?
    }

    /// The lock if no one holds it now; None if someone does.
    pub fn try_acquire(cache_root: &Path, repo: &RepoId, etag: &str) -> Result<Option<BlobLock>> {
        let path = lock_path(cache_root, repo, etag);
        let file = open(&path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(BlobLock { _file: file })),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(HubError::File {
                path: path.display().to_string(),
                message: format!("cannot lock: {e}"),
            }),
        }
    }
}

/// Deletes the partial files of `repo` that no one is writing now; returns
/// how many. A partial file whose lock another process holds is left alone:
/// that download is still running there.
pub fn remove_partials(cache_root: &Path, repo: &RepoId) -> Result<usize> {
    let blobs = cache_root.join(repo.cache_folder()).join("blobs");
    let mut removed = 0;
    for entry in std::fs::read_dir(&blobs).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(PARTIAL_SUFFIX) else {
            continue;
        };
        // huggingface_hub 2.x writes `<etag>.<random>.incomplete` under the
        // same `<etag>.lock`; etags themselves have no dots.
        let etag = stem.split('.').next().unwrap_or(stem);
        let Some(_lock) = BlobLock::try_acquire(cache_root, repo, etag)? else {
            continue;
        };
        match std::fs::remove_file(entry.path()) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(HubError::File {
                    path: entry.path().display().to_string(),
                    message: format!("cannot delete the partial file: {e}"),
                });
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_held_lock_keeps_others_out_until_dropped() {
        let cache = tempfile::tempdir().expect("tmp");
        let repo = RepoId::parse("org/m").expect("id");
        let held = BlobLock::acquire(cache.path(), &repo, "abc")
            .await
            .expect("lock");
        assert!(
            cache
                .path()
                .join(".locks/models--org--m/abc.lock")
                .is_file()
        );
        assert!(
            BlobLock::try_acquire(cache.path(), &repo, "abc")
                .expect("try")
                .is_none()
        );
        // Another blob of the same repo is independent.
        assert!(
            BlobLock::try_acquire(cache.path(), &repo, "def")
                .expect("try")
                .is_some()
        );

        let blobs = cache.path().join("models--org--m/blobs");
        std::fs::create_dir_all(&blobs).expect("blobs");
        std::fs::write(blobs.join("abc.incomplete"), b"in use").expect("write");
        std::fs::write(blobs.join("abc.1f2e3d4c.incomplete"), b"python's").expect("write");
        std::fs::write(blobs.join("def.incomplete"), b"left over").expect("write");
        std::fs::write(blobs.join("ghi"), b"a whole blob").expect("write");
        assert_eq!(remove_partials(cache.path(), &repo).expect("remove"), 1);
        assert!(
            blobs.join("abc.incomplete").exists(),
            "its writer holds the lock"
        );
        assert!(blobs.join("abc.1f2e3d4c.incomplete").exists());
        assert!(!blobs.join("def.incomplete").exists());
        assert!(blobs.join("ghi").exists());

        drop(held);
        assert_eq!(remove_partials(cache.path(), &repo).expect("remove"), 2);
        assert!(!blobs.join("abc.incomplete").exists());
        assert!(!blobs.join("abc.1f2e3d4c.incomplete").exists());
    }
}
