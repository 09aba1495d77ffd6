//! The Hugging Face cache as `huggingface_hub` lays it out, so models are
//! shared with it and with mlx-lm:
//!
//! ```text
//! models--org--name/
//!   blobs/<sha256 or git sha>        the file contents, once each
//!   snapshots/<commit>/<file>        links into blobs/, one folder per revision
//!   refs/main                        the commit a branch or tag points at
//! ```

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Serialize;

use crate::repo::RepoId;
use crate::{HubError, Result};

/// One revision of a cached model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CachedRevision {
    /// The commit hash (the snapshot folder's name).
    pub commit: String,
    /// Branches and tags (files under `refs/`) that point at it.
    pub refs: Vec<String>,
    pub dir: PathBuf,
    /// Files in the snapshot, relative to it, sorted.
    pub files: Vec<String>,
    /// The size of those files' contents.
    pub size_bytes: u64,
}

/// One cached model and its revisions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CachedModel {
    pub repo: RepoId,
    /// Newest first.
    pub revisions: Vec<CachedRevision>,
    /// Bytes on disk, each blob counted once however many revisions share it.
    pub size_on_disk: u64,
    /// When a file of the model was last read (as the file system records it).
    pub last_accessed: Option<SystemTime>,
}

impl CachedModel {
    /// The revision `refs/main` points at, else the newest.
    pub fn current(&self) -> Option<&CachedRevision> {
        self.revisions
            .iter()
            .find(|r| r.refs.iter().any(|name| name == "main"))
            .or_else(|| self.revisions.first())
    }
}

/// A Hugging Face cache folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubCache {
    root: PathBuf,
}

impl HubCache {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        HubCache { root: root.into() }
    }

    /// `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`:
    /// the folder `huggingface_hub` uses.
    pub fn default_root() -> Option<PathBuf> {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        if let Some(dir) = var("HF_HUB_CACHE") {
            return Some(PathBuf::from(dir));
        }
        if let Some(home) = var("HF_HOME") {
            return Some(PathBuf::from(home).join("hub"));
        }
        dirs::home_dir().map(|home| home.join(".cache").join("huggingface").join("hub"))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every cached model, by repo id. Folders that are not models, or that
    /// cannot be read, are skipped.
    pub fn models(&self) -> Vec<CachedModel> {
        let Ok(read) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let mut models: Vec<CachedModel> = read
            .flatten()
            .filter_map(|e| RepoId::from_cache_folder(&e.file_name().to_string_lossy()))
            .filter_map(|repo| self.model(&repo))
            .collect();
        models.sort_by(|a, b| a.repo.cmp(&b.repo));
        models
    }

    /// One model, if the cache has any revision of it.
    pub fn model(&self, repo: &RepoId) -> Option<CachedModel> {
        let folder = self.root.join(repo.cache_folder());
        let refs = read_refs(&folder.join("refs"));
        let mut revisions: Vec<(SystemTime, CachedRevision)> =
            std::fs::read_dir(folder.join("snapshots"))
                .ok()?
                .flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| {
                    let commit = e.file_name().to_string_lossy().into_owned();
                    let dir = e.path();
                    let mut files = Vec::new();
                    list_files(&dir, &dir, &mut files);
                    files.sort();
                    let size_bytes = files
                        .iter()
                        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
                        .map(|m| m.len())
                        .sum();
                    let modified = e
                        .metadata()
                        .and_then(|m| m.modified())
                        .unwrap_or(SystemTime::UNIX_EPOCH);
                    let revision = CachedRevision {
                        refs: refs
                            .iter()
                            .filter(|(_, c)| *c == commit)
                            .map(|(name, _)| name.clone())
                            .collect(),
                        commit,
                        dir,
                        files,
                        size_bytes,
                    };
                    (modified, revision)
                })
                .collect();
        if revisions.is_empty() {
            return None;
        }
        revisions.sort_by_key(|(modified, _)| std::cmp::Reverse(*modified));
        let (size_on_disk, last_accessed) = blobs_usage(&folder.join("blobs"));
        Some(CachedModel {
            repo: repo.clone(),
            revisions: revisions.into_iter().map(|(_, r)| r).collect(),
            size_on_disk,
            last_accessed,
        })
    }

    /// Deletes one revision (or, with None, the whole model) and returns the
    /// bytes freed. Blobs that another remaining revision still uses are kept.
    pub fn delete(&self, repo: &RepoId, commit: Option<&str>) -> Result<u64> {
        let model = self.model(repo).ok_or_else(|| {
            HubError::NotFound(format!(
                "{repo} is not in the cache at {}",
                self.root.display()
            ))
        })?;
        let folder = self.root.join(repo.cache_folder());
        let remove = |path: &Path| {
            std::fs::remove_dir_all(path).map_err(|e| HubError::File {
                path: path.display().to_string(),
                message: format!("cannot delete: {e}"),
            })
        };
        let Some(commit) = commit else {
            remove(&folder)?;
            return Ok(model.size_on_disk);
        };
        let revision = model
            .revisions
            .iter()
            .find(|r| r.commit == commit)
            .ok_or_else(|| HubError::NotFound(format!("{repo} has no cached revision {commit}")))?;
        if model.revisions.len() == 1 {
            remove(&folder)?;
            return Ok(model.size_on_disk);
        }
        // Blobs still linked from the other revisions stay.
        let mut kept = HashSet::new();
        for other in model.revisions.iter().filter(|r| r.commit != commit) {
            for file in &other.files {
                if let Ok(target) = std::fs::canonicalize(other.dir.join(file)) {
                    kept.insert(target);
                }
            }
        }
        let mut freed = 0;
        for file in &revision.files {
            let path = revision.dir.join(file);
            if let Ok(target) = std::fs::canonicalize(&path) {
                let in_blobs =
                    target.parent() == std::fs::canonicalize(folder.join("blobs")).ok().as_deref();
                if in_blobs && !kept.contains(&target) {
                    freed += std::fs::metadata(&target).map(|m| m.len()).unwrap_or(0);
                    let _ = std::fs::remove_file(&target);
                } else if !in_blobs {
                    // A plain file in the snapshot (a copy, not a link).
                    freed += std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                }
            }
        }
        remove(&revision.dir)?;
        for name in &revision.refs {
            let _ = std::fs::remove_file(folder.join("refs").join(name));
        }
        Ok(freed)
    }
}

/// `refs/<name>` files (nested for names with `/`) and the commit each holds.
fn read_refs(dir: &Path) -> Vec<(String, String)> {
    let mut files = Vec::new();
    list_files(dir, dir, &mut files);
    files
        .into_iter()
        .filter_map(|name| {
            let commit = std::fs::read_to_string(dir.join(&name)).ok()?;
            Some((name, commit.trim().to_string()))
        })
        .collect()
}

/// Paths of the files below `dir`, relative to `root`, following links to files.
fn list_files(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(read) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in read.flatten() {
        let path = entry.path();
        if path.is_dir() {
            list_files(root, &path, out);
        } else if path.is_file()
            && let Ok(relative) = path.strip_prefix(root)
        {
            out.push(relative.to_string_lossy().replace('\\', "/"));
        }
    }
}

/// Total size and latest access time of the blobs.
fn blobs_usage(blobs: &Path) -> (u64, Option<SystemTime>) {
    let Ok(read) = std::fs::read_dir(blobs) else {
        return (0, None);
    };
    let mut size = 0;
    let mut latest: Option<SystemTime> = None;
    for meta in read
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
    {
        size += meta.len();
        if let Ok(accessed) = meta.accessed() {
            latest = Some(latest.map_or(accessed, |t| t.max(accessed)));
        }
    }
    (size, latest)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a cached revision: blobs named by content, snapshot files as links.
    fn revision(root: &Path, repo: &str, commit: &str, files: &[(&str, &str)], refs: &[&str]) {
        let folder = root.join(RepoId::parse(repo).expect("id").cache_folder());
        let blobs = folder.join("blobs");
        let snapshot = folder.join("snapshots").join(commit);
        std::fs::create_dir_all(&blobs).expect("blobs");
        for (name, content) in files {
            let blob = blobs.join(format!("blob-{content}"));
            std::fs::write(&blob, content).expect("blob");
            let link = snapshot.join(name);
            std::fs::create_dir_all(link.parent().expect("parent")).expect("snapshot");
            #[cfg(unix)]
            std::os::unix::fs::symlink(&blob, &link).expect("link");
            #[cfg(not(unix))]
            std::fs::copy(&blob, &link).expect("copy");
        }
        for name in refs {
            let path = folder.join("refs").join(name);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("refs");
            std::fs::write(path, commit).expect("ref");
        }
    }

    #[test]
    fn models_revisions_and_sizes_are_listed() {
        let tmp = tempfile::tempdir().expect("tmp");
        revision(
            tmp.path(),
            "org/a",
            "c1",
            &[("config.json", "{}"), ("model.safetensors", "weights-1")],
            &[],
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
        revision(
            tmp.path(),
            "org/a",
            "c2",
            &[("config.json", "{}"), ("model.safetensors", "weights-22")],
            &["main"],
        );
        revision(
            tmp.path(),
            "b",
            "c9",
            &[("sub/tokenizer.json", "tok")],
            &["v1/tag"],
        );
        std::fs::create_dir_all(tmp.path().join("datasets--x--y")).expect("not a model");

        let cache = HubCache::new(tmp.path());
        let models = cache.models();
        let ids: Vec<&str> = models.iter().map(|m| m.repo.as_str()).collect();
        assert_eq!(ids, ["b", "org/a"]);
        let a = &models[1];
        assert_eq!(a.revisions.len(), 2);
        assert_eq!(a.current().expect("main").commit, "c2");
        assert_eq!(a.revisions[0].files, ["config.json", "model.safetensors"]);
        // "{}" is shared: stored once.
        assert_eq!(a.size_on_disk, (2 + 9 + 10) as u64);
        assert_eq!(models[0].revisions[0].refs, ["v1/tag"]);
        assert_eq!(models[0].revisions[0].files, ["sub/tokenizer.json"]);
    }

    #[test]
    fn deleting_a_revision_frees_only_its_own_blobs() {
        let tmp = tempfile::tempdir().expect("tmp");
        revision(
            tmp.path(),
            "org/a",
            "c1",
            &[("config.json", "{}"), ("model.safetensors", "old")],
            &[],
        );
        revision(
            tmp.path(),
            "org/a",
            "c2",
            &[("config.json", "{}"), ("model.safetensors", "newer")],
            &["main"],
        );
        let cache = HubCache::new(tmp.path());
        let repo = RepoId::parse("org/a").expect("id");

        let freed = cache.delete(&repo, Some("c1")).expect("delete c1");
        assert_eq!(freed, 3, "only the blob no other revision uses");
        let left = cache.model(&repo).expect("still cached");
        assert_eq!(left.revisions.len(), 1);
        assert_eq!(
            std::fs::read_to_string(left.revisions[0].dir.join("config.json"))
                .expect("shared blob kept"),
            "{}"
        );
        let freed = cache.delete(&repo, None).expect("delete all");
        assert_eq!(freed, 2 + 5);
        assert!(cache.model(&repo).is_none());
        assert!(matches!(
            cache.delete(&repo, None),
            Err(HubError::NotFound(_))
        ));
    }
}
