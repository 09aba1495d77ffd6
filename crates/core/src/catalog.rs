//! The models Orchard can serve: folders given on the command line (or
//! registered by the app) and the models in the Hugging Face cache.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;

/// Where a model comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A folder given by path.
    Local,
    /// A snapshot in the Hugging Face cache.
    HuggingFace,
}

/// One servable model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelEntry {
    /// The name clients use: the repo id (`org/name`) for the Hugging Face
    /// cache, the folder name for local folders.
    pub id: String,
    /// The model folder (config.json, tokenizer, weights).
    pub dir: PathBuf,
    pub source: Source,
    /// Other names that select it (the path it was given by).
    pub aliases: Vec<String>,
    /// Bytes of weights on disk: what loading it costs in memory.
    pub weight_bytes: u64,
}

/// The set of models. Hugging Face's cache is read again when its folders
/// change (a download lands, a model is deleted) or on [`Catalog::refresh`],
/// so downloads appear without a restart and requests do not rescan the disk.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    local: Vec<ModelEntry>,
    /// `$HF_HUB_CACHE`, `$HF_HOME/hub` or `~/.cache/huggingface/hub`; None to skip.
    hub_cache: Option<PathBuf>,
    /// The last scan of `hub_cache`, with the folders' state it was made from.
    scanned: Arc<Mutex<Option<Scan>>>,
}

#[derive(Debug)]
struct Scan {
    stamp: Vec<(PathBuf, Option<SystemTime>)>,
    entries: Vec<ModelEntry>,
}

/// The modification times of the folders a scan depends on: the cache root,
/// each model's folder, its `snapshots/` and `refs/` and each snapshot. A
/// download or a delete changes at least one; reading them is a few `stat`s
/// per model, where a scan reads every config and weight file's size.
fn cache_stamp(root: &Path) -> Vec<(PathBuf, Option<SystemTime>)> {
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut stamp = vec![(root.to_path_buf(), mtime(root))];
    let Ok(models) = std::fs::read_dir(root) else {
        return stamp;
    };
    for model in models.flatten() {
        let path = model.path();
        if !model.file_name().to_string_lossy().starts_with("models--") {
            continue;
        }
        stamp.push((path.clone(), mtime(&path)));
        for sub in ["snapshots", "refs"] {
            let dir = path.join(sub);
            stamp.push((dir.clone(), mtime(&dir)));
            for child in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let child = child.path();
                stamp.push((child.clone(), mtime(&child)));
            }
        }
    }
    stamp.sort();
    stamp
}

impl Catalog {
    /// A catalog of the local folders only.
    pub fn new() -> Self {
        Catalog::default()
    }

    /// Also lists the models in this Hugging Face cache folder.
    pub fn with_hub_cache(mut self, dir: Option<PathBuf>) -> Self {
        self.hub_cache = dir;
        self
    }

    /// The Hugging Face cache folder other tools use.
    pub fn default_hub_cache() -> Option<PathBuf> {
        orchard_hub::HubCache::default_root()
    }

    /// Adds a model folder; returns its entry. The folder must hold a config.json.
    pub fn add_folder(&mut self, given: &str) -> Result<ModelEntry, String> {
        self.add_folder_as(given, None)
    }

    /// Adds a model folder served as `name` (default: the folder's name).
    pub fn add_folder_as(&mut self, given: &str, name: Option<&str>) -> Result<ModelEntry, String> {
        let path = Path::new(given);
        if !path.join("config.json").is_file() {
            return Err(format!(
                "{given} is not a model folder (it has no config.json)"
            ));
        }
        let dir = path.canonicalize().map_err(|e| format!("{given}: {e}"))?;
        let id = name.map(str::to_string).unwrap_or_else(|| {
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| given.to_string())
        });
        if self.local.iter().any(|e| e.id == id && e.dir != dir) {
            return Err(format!(
                "two model folders are both named {id}; rename one of them"
            ));
        }
        let mut aliases = vec![given.to_string(), dir.to_string_lossy().into_owned()];
        aliases.dedup();
        let entry = ModelEntry {
            id,
            weight_bytes: weight_bytes(&dir),
            dir,
            source: Source::Local,
            aliases,
        };
        self.local.retain(|e| e.dir != entry.dir);
        self.local.push(entry.clone());
        Ok(entry)
    }

    /// Takes a local folder out of the catalog (its files stay); None when
    /// no local folder is called `id`.
    pub fn remove_local(&mut self, id: &str) -> Option<ModelEntry> {
        let index = self.local.iter().position(|e| e.id == id)?;
        Some(self.local.remove(index))
    }

    /// Every model: local folders first, then the Hugging Face cache by id.
    pub fn entries(&self) -> Vec<ModelEntry> {
        let mut entries = self.local.clone();
        for entry in self.hub_entries() {
            if !entries.iter().any(|e| e.id == entry.id) {
                entries.push(entry);
            }
        }
        entries
    }

    /// Forgets the last scan of the Hugging Face cache: the next look reads it.
    pub fn refresh(&self) {
        *self.scanned.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// The Hugging Face cache's models, scanned again only when it changed.
    fn hub_entries(&self) -> Vec<ModelEntry> {
        let Some(cache) = &self.hub_cache else {
            return Vec::new();
        };
        let stamp = cache_stamp(cache);
        let mut scanned = self.scanned.lock().unwrap_or_else(|p| p.into_inner());
        match scanned.as_ref() {
            Some(scan) if scan.stamp == stamp => scan.entries.clone(),
            _ => {
                let entries = scan_hub_cache(cache);
                *scanned = Some(Scan {
                    stamp,
                    entries: entries.clone(),
                });
                entries
            }
        }
    }

    /// The model a request's `model` field names: by id or by a path it was given as.
    pub fn resolve(&self, name: &str) -> Option<ModelEntry> {
        let entries = self.entries();
        entries
            .iter()
            .find(|e| e.id == name)
            .or_else(|| entries.iter().find(|e| e.aliases.iter().any(|a| a == name)))
            .cloned()
    }
}

/// Sum of the weight files' sizes.
fn weight_bytes(dir: &Path) -> u64 {
    let Ok(read) = std::fs::read_dir(dir) else {
        return 0;
    };
    read.flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".safetensors"))
        // Hugging Face's cache holds symlinks into blobs/: follow them.
        .filter_map(|e| std::fs::metadata(e.path()).ok())
        .map(|m| m.len())
        .sum()
}

/// Models in a Hugging Face cache whose current revision (`refs/main`, else
/// the newest) holds config.json and tokenizer.json.
fn scan_hub_cache(cache: &Path) -> Vec<ModelEntry> {
    orchard_hub::HubCache::new(cache)
        .models()
        .into_iter()
        .filter_map(|model| {
            let dir = model.current()?.dir.clone();
            if !dir.join("config.json").is_file() || !dir.join("tokenizer.json").is_file() {
                return None;
            }
            Some(ModelEntry {
                id: model.repo.to_string(),
                weight_bytes: weight_bytes(&dir),
                aliases: vec![dir.to_string_lossy().into_owned()],
                dir,
                source: Source::HuggingFace,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model_folder(dir: &Path) {
        std::fs::create_dir_all(dir).expect("mkdir");
        std::fs::write(dir.join("config.json"), "{}").expect("config");
        std::fs::write(dir.join("tokenizer.json"), "{}").expect("tokenizer");
        std::fs::write(dir.join("model.safetensors"), vec![0u8; 1000]).expect("weights");
    }

    #[test]
    fn local_folders_resolve_by_name_and_by_path() {
        let tmp = tempfile::tempdir().expect("tmp");
        let folder = tmp.path().join("Tiny-4bit");
        model_folder(&folder);
        let mut catalog = Catalog::new();
        let given = folder.to_string_lossy().into_owned();
        let entry = catalog.add_folder(&given).expect("add");
        assert_eq!(entry.id, "Tiny-4bit");
        assert_eq!(entry.weight_bytes, 1000);
        assert_eq!(catalog.resolve("Tiny-4bit").expect("by id").dir, entry.dir);
        assert_eq!(catalog.resolve(&given).expect("by path").id, "Tiny-4bit");
        assert!(catalog.resolve("tiny").is_none());
        let err = catalog
            .add_folder(&tmp.path().to_string_lossy())
            .expect_err("no config");
        assert!(err.contains("no config.json"), "{err}");
    }

    #[test]
    fn the_hugging_face_cache_layout_is_read() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path().join("models--mlx-community--Tiny-4bit");
        model_folder(&root.join("snapshots").join("abc123"));
        std::fs::create_dir_all(root.join("refs")).expect("refs");
        std::fs::write(root.join("refs").join("main"), "abc123\n").expect("ref");
        // A repo still downloading (no tokenizer yet) is not listed.
        let partial = tmp
            .path()
            .join("models--org--Partial")
            .join("snapshots")
            .join("r1");
        std::fs::create_dir_all(&partial).expect("mkdir");
        std::fs::write(partial.join("config.json"), "{}").expect("config");

        let catalog = Catalog::new().with_hub_cache(Some(tmp.path().to_path_buf()));
        let ids: Vec<String> = catalog.entries().into_iter().map(|e| e.id).collect();
        assert_eq!(ids, ["mlx-community/Tiny-4bit"]);
        let entry = catalog.resolve("mlx-community/Tiny-4bit").expect("resolve");
        assert_eq!(entry.source, Source::HuggingFace);
        assert!(entry.dir.ends_with("snapshots/abc123"));
    }
}
