//! `orchard models`: search the Hugging Face Hub, a model's details and
//! capabilities, the models in the local cache, deleting them, and
//! registering folders. (Downloads are not built yet.)

use std::process::ExitCode;

use clap::Subcommand;
use orchard_core::downloads::{DownloadEvent, DownloadManager};
use orchard_hub::capabilities::{Capabilities, ModelFiles, detect};
use orchard_hub::client::{HubClient, SearchQuery, Sort};
use orchard_hub::{HubCache, RepoId};
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Search the Hub (HF_ENDPOINT, default huggingface.co).
    Search {
        /// Words in the model's name.
        query: Option<String>,
        /// Only this author or organization; `--author ''` for everyone.
        #[arg(long, default_value = "mlx-community")]
        author: String,
        /// downloads, likes, last_modified or trending.
        #[arg(long, default_value = "downloads")]
        sort: String,
        /// Results to show (1 to 100).
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Download a model into the Hugging Face cache; an interrupted download
    /// continues where it stopped when run again.
    Download {
        repo: String,
        /// A branch, tag or commit (default main).
        #[arg(long, default_value = "main")]
        revision: String,
        /// Only files matching these patterns (`*.ext`, `prefix*`, a name);
        /// default: configs, safetensors weights, tokenizer and template files.
        /// The download is recorded in Orchard's database, as the app's are.
        #[arg(long = "include", value_name = "PATTERN")]
        include: Vec<String>,
        /// Print one JSON line per progress event and the result.
        #[arg(long)]
        json: bool,
    },
    /// A Hub model's details and capabilities.
    Info {
        repo: String,
        /// A branch, tag or commit (default main).
        #[arg(long)]
        revision: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
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
        /// Print JSON.
        #[arg(long)]
        json: bool,
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
    /// Store a Hugging Face token for gated and private models (the macOS
    /// Keychain; elsewhere a file only you can read). Reads it from standard
    /// input unless given.
    Login {
        #[arg(long)]
        token: Option<String>,
    },
    /// Forget the stored Hugging Face token.
    Logout,
}

#[derive(Debug, Serialize)]
struct Listed {
    id: String,
    revisions: Vec<String>,
    size_on_disk: u64,
    /// Seconds since the Unix epoch when a file of the model was last read.
    last_used: Option<u64>,
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

fn supported() -> Vec<&'static str> {
    orchard_engine::models::ARCHITECTURES
        .iter()
        .map(|(name, _)| *name)
        .collect()
}

fn models(command: ModelsCommand) -> Result<(), String> {
    match command {
        ModelsCommand::Search {
            query,
            author,
            sort,
            limit,
            json,
        } => {
            let sort: Sort = serde_json::from_value(serde_json::Value::String(sort.clone()))
                .map_err(|_| {
                    format!("--sort {sort:?}: use downloads, likes, last_modified or trending")
                })?;
            let query = SearchQuery {
                text: query,
                author: (!author.is_empty()).then_some(author),
                sort,
                limit,
                ..SearchQuery::default()
            };
            let page = block_on(async { HubClient::from_env(token())?.search(&query).await })?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&page).map_err(|e| e.to_string())?
                );
            } else if page.models.is_empty() {
                println!("No models found.");
            } else {
                for model in &page.models {
                    println!(
                        "{}  {} downloads, {} likes",
                        model.id, model.downloads, model.likes
                    );
                }
            }
        }
        ModelsCommand::Download {
            repo,
            revision,
            include,
            json,
        } => {
            let repo = RepoId::parse(&repo).map_err(|e| e.to_string())?;
            let cache = cache()?;
            let store = orchard_core::paths::open_store()?;
            let mut report = ProgressReport::new(json);
            let outcome = block_on(async {
                let client = HubClient::from_env(token())?;
                let downloads = DownloadManager::new(
                    store,
                    std::sync::Arc::new(client),
                    cache.root().to_path_buf(),
                );
                let mut events = downloads.subscribe();
                downloads
                    .start(repo.as_str(), &revision, &include)
                    .map_err(|e| orchard_hub::HubError::Invalid(e.to_string()))?;
                loop {
                    match events.recv().await {
                        Ok(event) if event.state == "running" && event.file.is_some() => {
                            report.update(&event)
                        }
                        Ok(event) if event.state == "done" => return Ok(Ok(())),
                        Ok(event) if event.state == "failed" => {
                            return Ok(Err(event.error.unwrap_or_default()));
                        }
                        Ok(_) | Err(RecvError::Lagged(_)) => {}
                        Err(RecvError::Closed) => return Ok(Err("the download stopped".into())),
                    }
                }
            })?;
            report.finish();
            outcome?;
            let snapshot = cache
                .model(&repo)
                .and_then(|m| {
                    m.revisions
                        .into_iter()
                        .find(|r| r.commit == revision || r.refs.contains(&revision))
                })
                .map(|r| r.dir)
                .ok_or("the download finished but its snapshot is missing")?;
            if json {
                println!("{}", serde_json::json!({"done": true, "path": snapshot}));
            } else {
                println!("Downloaded {repo} to {}", snapshot.display());
            }
        }
        ModelsCommand::Info {
            repo,
            revision,
            json,
        } => {
            let repo = RepoId::parse(&repo).map_err(|e| e.to_string())?;
            let (info, capabilities) = block_on(async {
                let client = HubClient::from_env(token())?;
                let info = client.model_info(&repo, revision.as_deref()).await?;
                let files = client.model_files(&repo, &info).await?;
                Ok::<_, orchard_hub::HubError>((info, detect(&files, &supported())))
            })?;
            if json {
                let both = serde_json::json!({"info": info, "capabilities": capabilities});
                println!(
                    "{}",
                    serde_json::to_string_pretty(&both).map_err(|e| e.to_string())?
                );
            } else {
                let listed = Listed {
                    id: info.id.clone(),
                    revisions: info.sha.iter().cloned().collect(),
                    size_on_disk: info.total_size,
                    last_used: None,
                    capabilities: Some(capabilities),
                };
                println!("{}  {}", info.id, describe(&listed));
                println!(
                    "license {}, {} downloads, {} likes{}",
                    info.license.as_deref().unwrap_or("unknown"),
                    info.downloads,
                    info.likes,
                    if info.gated { ", gated" } else { "" }
                );
                for file in &info.files {
                    println!(
                        "  {} ({} bytes)",
                        file.name,
                        file.size.map_or("?".into(), |s| s.to_string())
                    );
                }
            }
        }
        ModelsCommand::List { json } => {
            let cache = cache()?;
            let supported = supported();
            let listed: Vec<Listed> = cache
                .models()
                .into_iter()
                .map(|model| Listed {
                    id: model.repo.to_string(),
                    revisions: model.revisions.iter().map(|r| r.commit.clone()).collect(),
                    size_on_disk: model.size_on_disk,
                    last_used: model
                        .last_accessed
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map(|d| d.as_secs()),
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
        ModelsCommand::Rm {
            repo,
            revision,
            json,
        } => {
            let cache = cache()?;
            let repo = RepoId::parse(&repo).map_err(|e| e.to_string())?;
            let freed = cache
                .delete(&repo, revision.as_deref())
                .map_err(|e| e.to_string())?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"deleted": repo, "freed_bytes": freed})
                );
            } else {
                println!("Deleted {repo}; freed {} MiB.", freed >> 20);
            }
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
        ModelsCommand::Login { token } => {
            let token = match token {
                Some(token) => token,
                None => {
                    eprintln!(
                        "Paste your Hugging Face token (from huggingface.co/settings/tokens) and press Enter:"
                    );
                    let mut line = String::new();
                    std::io::stdin()
                        .read_line(&mut line)
                        .map_err(|e| format!("cannot read the token: {e}"))?;
                    line
                }
            };
            let token = token.trim();
            if token.is_empty() || token.contains(char::is_whitespace) {
                return Err("that is not a token: expected one word such as hf_...".into());
            }
            secrets()?.set(orchard_core::secrets::HF_TOKEN, token)?;
            println!("Stored the Hugging Face token.");
        }
        ModelsCommand::Logout => {
            if secrets()?.delete(orchard_core::secrets::HF_TOKEN)? {
                println!("Forgot the Hugging Face token.");
            } else {
                println!("No Hugging Face token was stored.");
            }
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

/// Runs one Hub call on a small runtime; errors become the message to print.
fn block_on<T>(
    work: impl std::future::Future<Output = Result<T, orchard_hub::HubError>>,
) -> Result<T, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?
        .block_on(work)
        .map_err(|e| e.to_string())
}

/// Download progress: a bar redrawn in place on a terminal, a line every few
/// seconds otherwise, or JSON lines.
struct ProgressReport {
    json: bool,
    terminal: bool,
    started: std::time::Instant,
    last: Option<std::time::Instant>,
}

impl ProgressReport {
    fn new(json: bool) -> Self {
        use std::io::IsTerminal;
        ProgressReport {
            json,
            terminal: std::io::stderr().is_terminal(),
            started: std::time::Instant::now(),
            last: None,
        }
    }

    fn update(&mut self, p: &DownloadEvent) {
        let now = std::time::Instant::now();
        let every = if self.terminal { 100 } else { 2000 };
        let done = p.downloaded >= p.total;
        if !done
            && self
                .last
                .is_some_and(|t| now.duration_since(t).as_millis() < every)
        {
            return;
        }
        self.last = Some(now);
        let seconds = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = p.downloaded as f64 / seconds;
        let eta = if rate > 0.0 {
            (p.total.saturating_sub(p.downloaded)) as f64 / rate
        } else {
            0.0
        };
        let file = p.file.as_deref().unwrap_or("");
        if self.json {
            println!(
                "{}",
                serde_json::json!({"file": file, "file_downloaded": p.file_downloaded,
                    "file_total": p.file_total, "downloaded": p.downloaded, "total": p.total,
                    "bytes_per_second": rate.round(), "eta_seconds": eta.round()})
            );
            return;
        }
        let percent = (p.downloaded * 100).checked_div(p.total).unwrap_or(100);
        let line = format!(
            "{file} {percent:>3}% {}/{} MiB {:.1} MiB/s ETA {:.0}s",
            p.downloaded >> 20,
            p.total >> 20,
            rate / 1048576.0,
            eta
        );
        if self.terminal {
            eprint!("\r\x1b[2K{line}");
        } else {
            eprintln!("{line}");
        }
    }

    fn finish(&self) {
        if self.terminal && !self.json {
            eprintln!();
        }
    }
}

fn secrets() -> Result<orchard_core::secrets::Secrets, String> {
    orchard_core::paths::data_dir()
        .map(orchard_core::secrets::Secrets::new)
        .ok_or_else(|| "cannot find Orchard's data directory; set ORCHARD_HOME".into())
}

/// HF_TOKEN, the stored token, or huggingface_hub's token file.
fn token() -> Option<String> {
    orchard_core::secrets::hf_token(secrets().ok().as_ref())
}
