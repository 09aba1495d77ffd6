//! The library: models on this machine (the Hugging Face cache and
//! registered folders), loading and unloading them, deleting and adding.

use std::collections::HashMap;
use std::sync::Arc;

use orchard_hub::RepoId;
use orchard_hub::capabilities::{ModelFiles, detect};

use super::search::facts_of;
use super::{
    Deleted, ErrorCode, FolderRequest, LibraryModel, ModelRequest, ModelSource, OpError, Orchard,
    RevisionView, supported_architectures,
};
use crate::catalog::{ModelEntry, Source};
use crate::manager::LoadedModel;

/// Every model Orchard can serve, by name.
pub async fn list_library(orchard: &Orchard) -> Result<Vec<LibraryModel>, OpError> {
    let orchard = orchard.clone();
    // Reading every model's small files and sizing its blobs is disk work.
    tokio::task::spawn_blocking(move || library(&orchard))
        .await
        .map_err(|e| {
            OpError::new(
                ErrorCode::Internal,
                format!("listing the library failed: {e}"),
            )
        })?
}

fn library(orchard: &Orchard) -> Result<Vec<LibraryModel>, OpError> {
    let loaded = loaded_models(orchard);
    let usage = orchard.store().model_usage()?;
    let mut models: Vec<LibraryModel> = orchard
        .manager()
        .entries()
        .iter()
        .map(|entry| describe(orchard, entry, &loaded, &usage))
        .collect();
    models.sort_by_key(|m| m.id.to_lowercase());
    Ok(models)
}

/// The loaded models by id; their use is recorded as they are seen.
fn loaded_models(orchard: &Orchard) -> HashMap<String, Arc<LoadedModel>> {
    let now = unix_now();
    orchard
        .manager()
        .loaded()
        .into_iter()
        .map(|model| {
            let used = now.saturating_sub(model.info().idle_seconds);
            if let Err(e) = orchard.store().touch_model(&model.id, used) {
                tracing::warn!(error = %e, "cannot record a model's use");
            }
            (model.id.clone(), model)
        })
        .collect()
}

fn describe(
    orchard: &Orchard,
    entry: &ModelEntry,
    loaded: &HashMap<String, Arc<LoadedModel>>,
    usage: &HashMap<String, u64>,
) -> LibraryModel {
    let facts = ModelFiles::read_dir(&entry.dir)
        .ok()
        .map(|files| facts_of(&detect(&files, &supported_architectures())));
    let cached = match entry.source {
        Source::HuggingFace => RepoId::parse(&entry.id)
            .ok()
            .and_then(|repo| orchard.cache()?.model(&repo)),
        Source::Local => None,
    };
    let model = loaded.get(&entry.id);
    let accessed = cached
        .as_ref()
        .and_then(|c| c.last_accessed)
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs());
    LibraryModel {
        id: entry.id.clone(),
        source: match entry.source {
            Source::HuggingFace => ModelSource::HuggingFace,
            Source::Local => ModelSource::Local,
        },
        path: entry.dir.display().to_string(),
        size_bytes: cached
            .as_ref()
            .map_or_else(|| folder_size(&entry.dir), |c| c.size_on_disk),
        revisions: cached
            .as_ref()
            .map(|c| {
                c.revisions
                    .iter()
                    .map(|r| RevisionView {
                        commit: r.commit.clone(),
                        refs: r.refs.clone(),
                        size_bytes: r.size_bytes,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        facts,
        last_used: usage.get(&entry.id).copied().max(accessed),
        loaded: model.is_some(),
        memory_bytes: model.map(|m| m.memory().total()),
    }
}

/// The bytes of a folder's files (not following links out of it).
fn folder_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::metadata(e.path()).ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// The library entry called `name`, or a not-found error listing what exists.
pub(super) fn entry(orchard: &Orchard, name: &str) -> Result<ModelEntry, OpError> {
    let name = name.trim();
    let entries = orchard.manager().entries();
    entries
        .iter()
        .find(|e| e.id == name || e.aliases.iter().any(|a| a == name))
        .cloned()
        .ok_or_else(|| {
            OpError::new(
                ErrorCode::NotFound,
                format!(
                    "no model called {name:?} is in the library; download it or add its folder first"
                ),
            )
        })
}

/// One model as the library shows it now.
async fn library_model(orchard: &Orchard, name: &str) -> Result<LibraryModel, OpError> {
    let wanted = entry(orchard, name)?.id;
    list_library(orchard)
        .await?
        .into_iter()
        .find(|m| m.id == wanted)
        .ok_or_else(|| OpError::new(ErrorCode::NotFound, format!("{wanted} left the library")))
}

/// Loads a model now (whatever the just-in-time setting).
pub async fn load_model(orchard: &Orchard, input: ModelRequest) -> Result<LibraryModel, OpError> {
    let id = entry(orchard, &input.model)?.id;
    orchard.manager().load_now(&id).await?;
    orchard.store().touch_model(&id, unix_now())?;
    library_model(orchard, &id).await
}

/// Unloads a model; requests still running on it finish first.
pub async fn unload_model(orchard: &Orchard, input: ModelRequest) -> Result<LibraryModel, OpError> {
    let id = entry(orchard, &input.model)?.id;
    if orchard.manager().unload(&id).await {
        orchard.store().touch_model(&id, unix_now())?;
    }
    library_model(orchard, &id).await
}

/// Deletes a downloaded model from the Hugging Face cache (every revision;
/// blobs are removed with it). It is unloaded first. A folder the user added
/// leaves the library but its files stay (they are the user's): nothing is
/// freed. A folder given with `--model` belongs to that run and stays.
pub async fn delete_model(orchard: &Orchard, input: ModelRequest) -> Result<Deleted, OpError> {
    let entry = entry(orchard, &input.model)?;
    if entry.source == Source::Local {
        let registered = orchard
            .store()
            .local_models()?
            .into_iter()
            .any(|m| m.name == entry.id);
        if !registered {
            return Err(OpError::new(
                ErrorCode::Conflict,
                format!(
                    "{} was given on the command line (--model {}); it stays for this run",
                    entry.id,
                    entry.dir.display()
                ),
            ));
        }
        orchard.manager().unload(&entry.id).await;
        orchard.manager().remove_folder(&entry.id);
        orchard.store().remove_local_model(&entry.id)?;
        tracing::info!(model = %entry.id, "model folder removed from the library; its files stay");
        return Ok(Deleted {
            model: entry.id,
            freed_bytes: 0,
        });
    }
    let downloading = orchard
        .downloads()
        .ok()
        .map(|d| d.list())
        .transpose()?
        .unwrap_or_default()
        .into_iter()
        .any(|d| d.repo == entry.id && d.state == "running");
    if downloading {
        return Err(OpError::new(
            ErrorCode::Conflict,
            format!(
                "{} is being downloaded; pause or cancel the download first",
                entry.id
            ),
        ));
    }
    let repo = RepoId::parse(&entry.id)?;
    let cache = orchard
        .cache()
        .ok_or_else(|| OpError::new(ErrorCode::Internal, "no Hugging Face cache folder"))?;
    orchard.manager().unload(&entry.id).await;
    let freed = cache.delete(&repo, None)?;
    orchard.manager().refresh_catalog();
    orchard.store().forget_model_usage(&entry.id)?;
    tracing::info!(model = %entry.id, freed, "model deleted");
    Ok(Deleted {
        model: entry.id,
        freed_bytes: freed,
    })
}

/// Registers a model folder (kept across restarts) and adds it to the library.
pub async fn add_folder(orchard: &Orchard, input: FolderRequest) -> Result<LibraryModel, OpError> {
    let path = input.path.trim();
    if path.is_empty() {
        return Err(OpError::new(
            ErrorCode::InvalidInput,
            "path: give a model folder",
        ));
    }
    let added = orchard.manager().add_folder(path)?;
    orchard
        .store()
        .add_local_model(&added.id, &added.dir.to_string_lossy())
        .map_err(|e| match e {
            orchard_store::StoreError::Invalid(message) => {
                OpError::new(ErrorCode::Conflict, message)
            }
            other => other.into(),
        })?;
    library_model(orchard, &added.id).await
}

pub(super) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
