//! The model manager: which models are loaded, loading on demand, unloading
//! idle ones, and keeping loaded weights within a memory budget.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::time::{Duration, Instant};

use orchard_engine::{ModelWorker, Tokenizer, WorkerOptions};
use orchard_store::Settings;
use serde::Serialize;
use tokio::sync::OnceCell;

use crate::catalog::{Catalog, ModelEntry};
use crate::chat::ChatFormat;
use crate::error::CoreError;

/// How the manager behaves; [`ManagerOptions::from_settings`] reads the user's settings.
#[derive(Debug, Clone)]
pub struct ManagerOptions {
    /// Load a model when a request names it.
    pub jit_loading: bool,
    /// Unload models idle this long; None keeps them.
    pub idle_ttl: Option<Duration>,
    /// Loaded weights may take at most this many bytes.
    pub memory_budget_bytes: u64,
    /// At most this many models loaded at once.
    pub max_loaded_models: usize,
    /// Each model's queue and prompt-cache size.
    pub worker: WorkerOptions,
}

impl ManagerOptions {
    pub fn from_settings(settings: &Settings) -> Self {
        ManagerOptions {
            jit_loading: settings.jit_loading,
            idle_ttl: (settings.idle_ttl_minutes > 0)
                .then(|| Duration::from_secs(settings.idle_ttl_minutes * 60)),
            memory_budget_bytes: crate::system::total_memory() / 100
                * u64::from(settings.memory_budget_percent),
            max_loaded_models: settings.max_loaded_models,
            worker: WorkerOptions {
                queue_capacity: settings.queue_capacity,
                ..WorkerOptions::default()
            },
        }
    }
}

impl Default for ManagerOptions {
    fn default() -> Self {
        ManagerOptions::from_settings(&Settings::default())
    }
}

/// A model loaded and ready for requests.
#[derive(Debug)]
pub struct LoadedModel {
    /// The name clients use.
    pub id: String,
    pub entry: ModelEntry,
    pub(crate) worker: ModelWorker,
    /// The tokenizer, for templates and counting on the caller's side.
    pub tokenizer: Tokenizer,
    /// Read from the chat template at load time.
    pub format: ChatFormat,
    pub loaded_at: Instant,
    /// When a request last started or ended, in ms since `loaded_at`.
    last_used_ms: AtomicU64,
    /// Requests started and not finished.
    pub(crate) active: AtomicUsize,
    /// Tokens generated since the load.
    pub(crate) generated_tokens: AtomicU64,
    /// The last request's decode speed, in tokens/s × 1000.
    pub(crate) last_decode_milli_tps: AtomicU64,
}

impl LoadedModel {
    pub fn context_length(&self) -> usize {
        self.worker.context_length()
    }

    pub fn queue_depth(&self) -> usize {
        self.worker.queue_depth()
    }

    pub(crate) fn touch(&self) {
        let ms = self.loaded_at.elapsed().as_millis() as u64;
        self.last_used_ms.store(ms, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_used_ms.load(Ordering::Relaxed));
        self.loaded_at.elapsed().saturating_sub(last)
    }

    /// A snapshot for listings and gauges.
    pub fn info(&self) -> LoadedInfo {
        LoadedInfo {
            id: self.id.clone(),
            weight_bytes: self.entry.weight_bytes,
            context_length: self.context_length(),
            active_requests: self.active.load(Ordering::Relaxed),
            queue_depth: self.queue_depth(),
            uptime_seconds: self.loaded_at.elapsed().as_secs(),
            idle_seconds: self.idle_for().as_secs(),
            generated_tokens: self.generated_tokens.load(Ordering::Relaxed),
            last_decode_tokens_per_second: self.last_decode_milli_tps.load(Ordering::Relaxed)
                as f64
                / 1000.0,
        }
    }
}

/// What the tiles and `/metrics` show of a loaded model.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LoadedInfo {
    pub id: String,
    pub weight_bytes: u64,
    pub context_length: usize,
    pub active_requests: usize,
    pub queue_depth: usize,
    pub uptime_seconds: u64,
    pub idle_seconds: u64,
    pub generated_tokens: u64,
    pub last_decode_tokens_per_second: f64,
}

/// One model's load, shared by every request that waits for it.
type Slot = Arc<OnceCell<Arc<LoadedModel>>>;

/// The manager; clones share it.
#[derive(Debug, Clone)]
pub struct ModelManager {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    options: ManagerOptions,
    /// The models that can be served; only grows while running.
    catalog: RwLock<Catalog>,
    /// Models loaded or loading, by id. A slot whose cell is set is loaded;
    /// an empty one is loading (or failed, and the next request retries).
    slots: Mutex<HashMap<String, Slot>>,
}

impl ModelManager {
    pub fn new(catalog: Catalog, options: ManagerOptions) -> Self {
        ModelManager {
            inner: Arc::new(Inner {
                options,
                catalog: RwLock::new(catalog),
                slots: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn options(&self) -> &ManagerOptions {
        &self.inner.options
    }

    /// Every model that can be served.
    pub fn entries(&self) -> Vec<ModelEntry> {
        self.catalog().entries()
    }

    /// Adds a model folder to the catalog.
    pub fn add_folder(&self, given: &str) -> Result<ModelEntry, CoreError> {
        self.inner
            .catalog
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .add_folder(given)
            .map_err(|message| CoreError::invalid("model", message))
    }

    fn catalog(&self) -> std::sync::RwLockReadGuard<'_, Catalog> {
        self.inner.catalog.read().unwrap_or_else(|p| p.into_inner())
    }

    fn slots(&self) -> MutexGuard<'_, HashMap<String, Slot>> {
        self.inner.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The loaded models, most recently used first.
    pub fn loaded(&self) -> Vec<Arc<LoadedModel>> {
        let mut loaded: Vec<Arc<LoadedModel>> = self
            .slots()
            .values()
            .filter_map(|slot| slot.get().cloned())
            .collect();
        loaded.sort_by_key(|m| m.idle_for());
        loaded
    }

    /// The loaded model called `name`, loading it first when allowed.
    /// Concurrent requests for a model being loaded wait for that one load.
    pub async fn get(&self, name: &str) -> Result<Arc<LoadedModel>, CoreError> {
        self.get_or_load(name, self.inner.options.jit_loading).await
    }

    /// Loads `name` now, whatever the JIT setting (the app's "start" button,
    /// `--model` at startup).
    pub async fn load_now(&self, name: &str) -> Result<Arc<LoadedModel>, CoreError> {
        self.get_or_load(name, true).await
    }

    async fn get_or_load(&self, name: &str, may_load: bool) -> Result<Arc<LoadedModel>, CoreError> {
        let entry = self
            .catalog()
            .resolve(name)
            .ok_or_else(|| CoreError::ModelNotFound {
                name: name.to_string(),
                available: self.entries().into_iter().map(|e| e.id).collect(),
            })?;
        let slot = {
            let mut slots = self.slots();
            if let Some(model) = slots.get(&entry.id).and_then(|slot| slot.get()) {
                model.touch();
                return Ok(Arc::clone(model));
            }
            if !may_load {
                return Err(CoreError::NotLoaded(entry.id));
            }
            Arc::clone(slots.entry(entry.id.clone()).or_default())
        };
        let model = slot.get_or_try_init(|| self.load(entry)).await?;
        model.touch();
        Ok(Arc::clone(model))
    }

    async fn load(&self, entry: ModelEntry) -> Result<Arc<LoadedModel>, CoreError> {
        self.make_room(&entry).await?;
        let options = self.inner.options.worker.clone();
        tracing::info!(model = %entry.id, dir = %entry.dir.display(), "loading");
        let started = Instant::now();
        let id = entry.id.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            let tokenizer = Tokenizer::load(&entry.dir)?;
            let worker = ModelWorker::spawn(&entry.dir, options)?;
            let format = ChatFormat::detect(tokenizer.chat_template());
            Ok::<_, orchard_engine::EngineError>(LoadedModel {
                id: entry.id.clone(),
                entry,
                worker,
                tokenizer,
                format,
                loaded_at: Instant::now(),
                last_used_ms: AtomicU64::new(0),
                active: AtomicUsize::new(0),
                generated_tokens: AtomicU64::new(0),
                last_decode_milli_tps: AtomicU64::new(0),
            })
        })
        .await
        .map_err(|e| CoreError::Engine(orchard_engine::EngineError::Exception(e.to_string())))?;
        let model = loaded.map_err(|source| CoreError::Load { name: id, source })?;
        tracing::info!(model = %model.id, seconds = started.elapsed().as_secs_f64(), "loaded");
        Ok(Arc::new(model))
    }

    /// Unloads least recently used models until `entry` fits the count and
    /// memory limits. Models busy with requests are unloaded last; their memory
    /// comes back when those requests end.
    async fn make_room(&self, entry: &ModelEntry) -> Result<(), CoreError> {
        let options = &self.inner.options;
        if entry.weight_bytes > options.memory_budget_bytes {
            return Err(CoreError::OverBudget {
                name: entry.id.clone(),
                need_mib: entry.weight_bytes >> 20,
                budget_mib: options.memory_budget_bytes >> 20,
            });
        }
        loop {
            let mut loaded: Vec<Arc<LoadedModel>> = self
                .loaded()
                .into_iter()
                .filter(|m| m.id != entry.id)
                .collect();
            let used: u64 = loaded.iter().map(|m| m.entry.weight_bytes).sum();
            if loaded.len() < options.max_loaded_models
                && used + entry.weight_bytes <= options.memory_budget_bytes
            {
                return Ok(());
            }
            // Idle models first, then the least recently used.
            loaded.sort_by_key(|m| (m.active.load(Ordering::Relaxed) == 0, m.idle_for()));
            let Some(victim) = loaded.pop() else {
                return Ok(());
            };
            tracing::info!(model = %victim.id, for_model = %entry.id, "unloading to make room");
            drop(loaded);
            self.unload_model(victim).await;
        }
    }

    /// Unloads `name`; false when it was not loaded.
    pub async fn unload(&self, name: &str) -> bool {
        let Some(model) = self
            .loaded()
            .into_iter()
            .find(|m| m.id == name || m.entry.aliases.iter().any(|a| a == name))
        else {
            return false;
        };
        self.unload_model(model).await;
        true
    }

    async fn unload_model(&self, model: Arc<LoadedModel>) {
        self.slots().remove(&model.id);
        // The worker thread is joined when the last reference goes; requests
        // still running hold theirs. Dropping may block, so not on this thread.
        let _ = tokio::task::spawn_blocking(move || drop(model)).await;
    }

    /// Starts the task that unloads models idle longer than the TTL. It ends
    /// when the manager is dropped.
    pub fn spawn_idle_reaper(&self) -> Option<tokio::task::JoinHandle<()>> {
        let ttl = self.inner.options.idle_ttl?;
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let period = (ttl / 4).clamp(Duration::from_millis(100), Duration::from_secs(30));
        Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let Some(inner) = weak.upgrade() else { return };
                let manager = ModelManager { inner };
                for model in manager.loaded() {
                    if model.active.load(Ordering::Relaxed) == 0 && model.idle_for() >= ttl {
                        tracing::info!(model = %model.id, idle_seconds = model.idle_for().as_secs(), "unloading idle model");
                        manager.unload_model(model).await;
                    }
                }
            }
        }))
    }
}
