//! `orchard models`: the models in the Hugging Face cache, what they can do,
//! and deleting them. (Search and download arrive with the Hub client.)

use std::process::ExitCode;

use clap::Subcommand;
use orchard_hub::capabilities::{Capabilities, ModelFiles, detect};
use orchard_hub::{HubCache, RepoId};
use serde::Serialize;

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// List cached models with their size and capabilities.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a cached model, or one revision of it; blobs another revision uses stay.
    Rm {
        /// The repo id, e.g. mlx-community/Qwen3-4B-4bit.
        repo: String,
        /// Only this revision (commit hash).
        #[arg(long)]
        revision: Option<String>,
    },
    /// Register a model folder outside the cache; servers then offer it by name.
    Add {
        /// The folder (config.json, weights, tokenizer).
        path: String,
        /// The name clients use (default: the folder's name).
        #[arg(long)]
        name: Option<String>,
    },
    /// Forget a registered folder (its files stay).
    Forget { name: String },
}

#[derive(Debug, Serialize)]
struct Listed {
    id: String,
    revisions: Vec<String>,
    size_on_disk: u64,
    capabilities: Option<Capabilities>,
}

pub fn run(command: ModelsCommand) -> ExitCode {
    match models(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("orchard models: {message}");
            ExitCode::FAILURE
        }
    }
}

fn cache() -> Result<HubCache, String> {
    HubCache::default_root()
        .map(HubCache::new)
        .ok_or_else(|| "cannot find the Hugging Face cache; set HF_HUB_CACHE or HF_HOME".into())
}

fn models(command: ModelsCommand) -> Result<(), String> {
    match command {
        ModelsCommand::List { json } => {
            let cache = cache()?;
            let supported: Vec<&str> = orchard_engine::models::ARCHITECTURES
                .iter()
                .map(|(name, _)| *name)
                .collect();
            let listed: Vec<Listed> = cache
                .models()
                .into_iter()
                .map(|model| Listed {
                    id: model.repo.to_string(),
                    revisions: model.revisions.iter().map(|r| r.commit.clone()).collect(),
                    size_on_disk: model.size_on_disk,
                    capabilities: model
                        .current()
                        .and_then(|r| ModelFiles::read_dir(&r.dir).ok())
                        .map(|files| detect(&files, &supported)),
                })
                .collect();
            if json {
                let text = serde_json::to_string_pretty(&listed).map_err(|e| e.to_string())?;
                println!("{text}");
            } else if listed.is_empty() {
                println!("No models in {}.", cache.root().display());
            } else {
                for model in listed {
                    println!("{}  {}", model.id, describe(&model));
                }
            }
        }
        ModelsCommand::Rm { repo, revision } => {
            let cache = cache()?;
            let repo = RepoId::parse(&repo).map_err(|e| e.to_string())?;
            let freed = cache
                .delete(&repo, revision.as_deref())
                .map_err(|e| e.to_string())?;
            println!("Deleted {repo}; freed {} MiB.", freed >> 20);
        }
        ModelsCommand::Add { path, name } => {
            let mut catalog = orchard_core::catalog::Catalog::new();
            let entry = catalog.add_folder_as(&path, name.as_deref())?;
            let store = orchard_core::paths::open_store()?;
            store
                .add_local_model(&entry.id, &entry.dir.to_string_lossy())
                .map_err(|e| e.to_string())?;
            println!("Registered {} as {:?}.", entry.dir.display(), entry.id);
        }
        ModelsCommand::Forget { name } => {
            let store = orchard_core::paths::open_store()?;
            store.remove_local_model(&name).map_err(|e| e.to_string())?;
            println!("Forgot {name:?}; its files are untouched.");
        }
    }
    Ok(())
}

/// One line: size, architecture, quantization and capability badges.
fn describe(model: &Listed) -> String {
    let mut parts = vec![format!("{} MiB", model.size_on_disk >> 20)];
    if let Some(caps) = &model.capabilities {
        parts.push(match (&caps.model_type, caps.supported) {
            (Some(t), true) => t.clone(),
            (Some(t), false) => format!("{t} (not supported)"),
            (None, _) => "unknown type".into(),
        });
        if let Some(p) = caps.parameters {
            parts.push(format!("{:.1}B params", p as f64 / 1e9));
        }
        if let Some(q) = caps.quantization {
            parts.push(format!("{}-bit", q.bits));
        }
        for (on, badge) in [
            (caps.tool_use, "tools"),
            (caps.reasoning, "reasoning"),
            (caps.vision, "vision"),
            (caps.audio, "audio"),
            (caps.embedding, "embedding"),
        ] {
            if on {
                parts.push(badge.into());
            }
        }
    }
    parts.join(", ")
}
