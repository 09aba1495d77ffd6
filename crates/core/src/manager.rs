//! The model manager: which models are loaded, loading on demand, unloading
//! idle ones, and keeping loaded models within a memory budget.
//!
//! What stays true:
//! - a model's weights are in memory at most once: a model unloaded while
//!   requests still run on it is *draining*; it counts against the budget until
//!   its last request ends, and a request for it meanwhile gets it back;
//! - loads run one at a time, so two loads cannot both pass the budget check;
//! - a model whose worker thread died is removed (and counted) the next time
//!   anyone looks, so the next request loads it again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::time::{Duration, Instant};

use orchard_engine::{CpuFastPath, LoadOptions, ModelWorker, Tokenizer, WorkerOptions};
use orchard_store::Settings;
use serde::Serialize;
use tokio::sync::OnceCell;

use crate::catalog::{Catalog, ModelEntry};
use crate::chat::ChatFormat;
use crate::error::CoreError;
use crate::profiles::Profile;

/// How long a load waits for draining models to give their memory back.
const DRAIN_WAIT: Duration = Duration::from_secs(120);

/// How the manager behaves; [`ManagerOptions::from_settings`] reads the user's settings.
#[derive(Debug, Clone)]
pub struct ManagerOptions {
    /// Load a model when a request names it.
    pub jit_loading: bool,
    /// Unload models idle this long; None keeps them.
    pub idle_ttl: Option<Duration>,
    /// Loaded models (weights, KV caches, prompt caches) may take at most this many bytes.
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
                .then(|| Duration::from_secs(settings.idle_ttl_minutes.saturating_mul(60))),
            memory_budget_bytes: crate::system::total_memory() / 100
                * u64::from(settings.memory_budget_percent),
            max_loaded_models: settings.max_loaded_models,
            worker: WorkerOptions {
                queue_capacity: settings.queue_capacity,
                max_sequences: settings.max_sequences,
                load: LoadOptions {
                    cpu_fast_path: match settings.cpu_fast_path.as_str() {
                        "on" => CpuFastPath::On,
                        "off" => CpuFastPath::Off,
                        _ => CpuFastPath::Auto,
                    },
                    // The dequantized weights must fit in the budget.
                    dense_budget_bytes: Some(
                        crate::system::total_memory() / 100
                            * u64::from(settings.memory_budget_percent),
                    ),
                },
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

/// A model's tokenizer and chat format: what turns requests into prompt
/// tokens. Read once per model and shared by its loaded copy and counting.
#[derive(Debug)]
pub struct Prompter {
    pub tokenizer: Arc<Tokenizer>,
    /// Read from the chat template at load time.
    pub format: ChatFormat,
    /// For a model that takes images: what each image part of a message
    /// becomes in the prompt (known once the model is loaded).
    pub images: Option<Arc<orchard_engine::vision::ImageProcessor>>,
}

impl Prompter {
    pub fn new(tokenizer: Arc<Tokenizer>) -> Self {
        let format = ChatFormat::from_facts(tokenizer.template_facts());
        Prompter {
            tokenizer,
            format,
            images: None,
        }
    }
}

/// A model loaded and ready for requests.
#[derive(Debug)]
pub struct LoadedModel {
    /// The name clients use.
    pub id: String,
    pub entry: ModelEntry,
    pub(crate) worker: ModelWorker,
    /// The tokenizer and chat format.
    pub prompter: Arc<Prompter>,
    /// How an embedding model pools (its sentence-transformers files); None
    /// for a model that generates text.
    pub embedding: Option<orchard_engine::EmbeddingSpec>,
    pub loaded_at: Instant,
    /// When a request last started or ended, in ms since `loaded_at`.
    last_used_ms: AtomicU64,
    /// Requests started and not finished.
    pub(crate) active: AtomicUsize,
    /// Tokens generated since the load.
    pub(crate) generated_tokens: AtomicU64,
    /// The last request's decode speed, in tokens/s × 1000.
    pub(crate) last_decode_milli_tps: AtomicU64,
    /// Prompt tokens of finished requests, and those the prompt cache held.
    pub(crate) prompt_tokens: AtomicU64,
    pub(crate) cached_prompt_tokens: AtomicU64,
    /// Finished requests of about the last minute: when, tokens generated,
    /// seconds spent decoding them. Old entries leave as new ones come.
    pub(crate) recent: Mutex<std::collections::VecDeque<(Instant, u64, f64)>>,
}

impl LoadedModel {
    pub fn context_length(&self) -> usize {
        self.worker.context_length()
    }

    pub fn queue_depth(&self) -> usize {
        self.worker.queue_depth()
    }

    /// The model's tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.prompter.tokenizer
    }

    /// False once the worker thread has ended (it panicked).
    pub fn is_alive(&self) -> bool {
        self.worker.is_alive()
    }

    /// Makes the worker thread panic; for tests of worker failure.
    #[doc(hidden)]
    pub fn crash_worker(&self) {
        self.worker.crash();
    }

    /// Whether the model runs dequantized to float32 (the CPU fast path).
    pub fn cpu_fast_path(&self) -> bool {
        self.worker.is_dequantized()
    }

    /// Sequences the model is generating now (its batch).
    pub fn sequences(&self) -> u64 {
        self.worker.gauges().sequences.load(Ordering::Relaxed)
    }

    /// Memory the model holds now.
    pub fn memory(&self) -> ModelMemory {
        let gauges = self.worker.gauges();
        ModelMemory {
            // The CPU fast path holds the weights as float32.
            weight_bytes: self
                .worker
                .dequantized_bytes()
                .unwrap_or(self.entry.weight_bytes),
            kv_cache_bytes: gauges.counters.kv_bytes.load(Ordering::Relaxed),
            prompt_cache_bytes: gauges.prompt_cache_bytes.load(Ordering::Relaxed),
        }
    }

    /// Prompt tokens computed, tokens generated and requests dropped unstarted
    /// (their caller gave up while they waited), since the load.
    pub fn work(&self) -> ModelWork {
        let gauges = self.worker.gauges();
        ModelWork {
            prefilled_tokens: gauges.counters.prefilled_tokens.load(Ordering::Relaxed),
            generated_tokens: gauges.counters.generated_tokens.load(Ordering::Relaxed),
            skipped_requests: gauges.skipped_requests.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn touch(&self) {
        let ms = self.loaded_at.elapsed().as_millis() as u64;
        self.last_used_ms.store(ms, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_used_ms.load(Ordering::Relaxed));
        self.loaded_at.elapsed().saturating_sub(last)
    }

    fn answers_to(&self, name: &str) -> bool {
        self.id == name || self.entry.aliases.iter().any(|a| a == name)
    }

    /// How long a finished request counts in [`LoadedModel::recent_decode_rate`].
    pub const RECENT: Duration = Duration::from_secs(60);

    /// Records a finished request's figures.
    pub(crate) fn record(&self, stats: &orchard_engine::GenerationStats) {
        self.prompt_tokens
            .fetch_add(stats.prompt_tokens as u64, Ordering::Relaxed);
        self.cached_prompt_tokens
            .fetch_add(stats.cached_prompt_tokens as u64, Ordering::Relaxed);
        let tokens = stats.generated_tokens as u64;
        if tokens > 0 && stats.decode_tokens_per_second > 0.0 {
            let seconds = tokens as f64 / stats.decode_tokens_per_second;
            let now = Instant::now();
            let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            recent.retain(|(at, _, _)| now.duration_since(*at) <= Self::RECENT);
            recent.push_back((now, tokens, seconds));
        }
    }

    /// Decode tokens/s of the requests that finished in the last minute
    /// (their tokens over their decode time); 0 when none did.
    pub fn recent_decode_rate(&self) -> f64 {
        let now = Instant::now();
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, seconds) = recent
            .iter()
            .filter(|(at, _, _)| now.duration_since(*at) <= Self::RECENT)
            .fold((0u64, 0f64), |(t, s), (_, tokens, secs)| {
                (t + tokens, s + secs)
            });
        if seconds > 0.0 {
            tokens as f64 / seconds
        } else {
            0.0
        }
    }

    /// Prompt tokens since the load, and how many came from the prompt cache.
    pub fn prompt_totals(&self) -> (u64, u64) {
        (
            self.prompt_tokens.load(Ordering::Relaxed),
            self.cached_prompt_tokens.load(Ordering::Relaxed),
        )
    }

    /// A snapshot for listings and gauges.
    pub fn info(&self) -> LoadedInfo {
        LoadedInfo {
            id: self.id.clone(),
            weight_bytes: self.entry.weight_bytes,
            memory: self.memory(),
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

/// The parts of a model's memory the budget counts.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct ModelMemory {
    pub weight_bytes: u64,
    /// Keys and values of the sequence running now.
    pub kv_cache_bytes: u64,
    /// Reusable prompt caches kept between requests.
    pub prompt_cache_bytes: u64,
}

impl ModelMemory {
    pub fn total(&self) -> u64 {
        self.weight_bytes + self.kv_cache_bytes + self.prompt_cache_bytes
    }
}

/// Work a model's worker has done since its load.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct ModelWork {
    pub prefilled_tokens: u64,
    pub generated_tokens: u64,
    pub skipped_requests: u64,
}

/// What the tiles and `/metrics` show of a loaded model.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LoadedInfo {
    pub id: String,
    pub weight_bytes: u64,
    pub memory: ModelMemory,
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
    /// Models unloaded while requests still ran on them; alive until the last ends.
    draining: Mutex<Vec<Weak<LoadedModel>>>,
    /// Held for the whole of a load, from the budget check to the worker's start.
    loading: tokio::sync::Mutex<()>,
    /// Prompters of models not loaded (for counting tokens), by id.
    prompters: Mutex<HashMap<String, Arc<Prompter>>>,
    /// Worker threads found dead since the start.
    worker_deaths: AtomicU64,
    /// Profiles by name: more names for models, with their policies.
    profiles: RwLock<HashMap<String, Arc<Profile>>>,
}

/// Prompters kept for models that are not loaded.
const MAX_SPARE_PROMPTERS: usize = 8;

impl ModelManager {
    pub fn new(catalog: Catalog, options: ManagerOptions) -> Self {
        ModelManager {
            inner: Arc::new(Inner {
                options,
                catalog: RwLock::new(catalog),
                slots: Mutex::new(HashMap::new()),
                draining: Mutex::new(Vec::new()),
                loading: tokio::sync::Mutex::new(()),
                prompters: Mutex::new(HashMap::new()),
                worker_deaths: AtomicU64::new(0),
                profiles: RwLock::new(HashMap::new()),
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

    /// Reads the Hugging Face cache again now (it is otherwise re-read only
    /// when its folders change).
    pub fn refresh_catalog(&self) {
        self.catalog().refresh();
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

    /// Takes a model folder out of the catalog (its files stay).
    pub fn remove_folder(&self, id: &str) -> bool {
        self.inner
            .catalog
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove_local(id)
            .is_some()
    }

    fn catalog(&self) -> std::sync::RwLockReadGuard<'_, Catalog> {
        self.inner.catalog.read().unwrap_or_else(|p| p.into_inner())
    }

    fn slots(&self) -> MutexGuard<'_, HashMap<String, Slot>> {
        self.inner.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn draining(&self) -> MutexGuard<'_, Vec<Weak<LoadedModel>>> {
        let mut draining = self
            .inner
            .draining
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        draining.retain(|w| w.strong_count() > 0);
        draining
    }

    /// Worker threads that died (panicked) since the start.
    pub fn worker_deaths(&self) -> u64 {
        self.inner.worker_deaths.load(Ordering::Relaxed)
    }

    /// Removes models whose worker thread has ended.
    fn remove_dead(&self) {
        let mut slots = self.slots();
        let dead: Vec<String> = slots
            .iter()
            .filter(|(_, slot)| slot.get().is_some_and(|m| !m.is_alive()))
            .map(|(id, _)| id.clone())
            .collect();
        for id in dead {
            tracing::error!(model = %id, "the model's worker thread died; it will be loaded again");
            slots.remove(&id);
            self.inner.worker_deaths.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The loaded models, most recently used first.
    pub fn loaded(&self) -> Vec<Arc<LoadedModel>> {
        self.remove_dead();
        let mut loaded: Vec<Arc<LoadedModel>> = self
            .slots()
            .values()
            .filter_map(|slot| slot.get().cloned())
            .collect();
        loaded.sort_by_key(|m| m.idle_for());
        loaded
    }

    /// Models unloaded whose requests still run.
    pub fn draining_models(&self) -> Vec<Arc<LoadedModel>> {
        self.draining().iter().filter_map(Weak::upgrade).collect()
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

    /// A loaded (or draining) model that answers to `name`, without reading the catalog.
    fn find_loaded(&self, name: &str) -> Option<Arc<LoadedModel>> {
        self.remove_dead();
        let loaded = self
            .slots()
            .values()
            .filter_map(|slot| slot.get())
            .find(|m| m.answers_to(name))
            .cloned();
        loaded.or_else(|| self.revive(name))
    }

    /// Puts a draining model called `name` back in service.
    fn revive(&self, name: &str) -> Option<Arc<LoadedModel>> {
        let model = self
            .draining()
            .iter()
            .filter_map(Weak::upgrade)
            .find(|m| m.answers_to(name) && m.is_alive())?;
        let mut slots = self.slots();
        let slot = slots.entry(model.id.clone()).or_default();
        match slot.get() {
            Some(current) => return Some(Arc::clone(current)),
            None if slot.set(Arc::clone(&model)).is_err() => {
                return slot.get().cloned();
            }
            None => {}
        }
        drop(slots);
        self.draining()
            .retain(|w| !w.upgrade().is_some_and(|m| Arc::ptr_eq(&m, &model)));
        tracing::info!(model = %model.id, "a draining model is back in service");
        Some(model)
    }

    /// Replaces the profiles (after one is created, edited or deleted).
    pub fn set_profiles(&self, profiles: Vec<Profile>) {
        *self
            .inner
            .profiles
            .write()
            .unwrap_or_else(|p| p.into_inner()) = profiles
            .into_iter()
            .map(|p| (p.name.clone(), Arc::new(p)))
            .collect();
    }

    /// The profile called `name`, unless a library model has that name.
    pub fn profile(&self, name: &str) -> Option<Arc<Profile>> {
        if self.catalog().resolve(name).is_some() {
            return None;
        }
        self.inner
            .profiles
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// Every profile, by name.
    pub fn profiles(&self) -> Vec<Arc<Profile>> {
        let mut all: Vec<Arc<Profile>> = self
            .inner
            .profiles
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// The profiles that serve the library model `id`.
    fn profiles_of(&self, id: &str) -> Vec<Arc<Profile>> {
        let catalog = self.catalog();
        self.profiles()
            .into_iter()
            .filter(|p| catalog.resolve(&p.model).is_some_and(|e| e.id == id))
            .collect()
    }

    /// Whether a profile keeps model `id` loaded.
    pub fn is_pinned(&self, id: &str) -> bool {
        self.profiles_of(id).iter().any(|p| p.keep_loaded)
    }

    /// How long model `id` may stay idle: None while a profile keeps it
    /// loaded; a profile's own time-to-live (the shortest); else the setting's.
    pub fn idle_ttl_of(&self, id: &str) -> Option<Duration> {
        let profiles = self.profiles_of(id);
        if profiles.iter().any(|p| p.keep_loaded) {
            return None;
        }
        profiles
            .iter()
            .filter_map(|p| p.idle_ttl_minutes)
            .filter(|&m| m > 0)
            .min()
            .map(|m| Duration::from_secs(m.saturating_mul(60)))
            .or(self.inner.options.idle_ttl)
    }

    fn resolve(&self, name: &str) -> Result<ModelEntry, CoreError> {
        let found = self.catalog().resolve(name).or_else(|| {
            let profile = self
                .inner
                .profiles
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(name)
                .cloned()?;
            self.catalog().resolve(&profile.model)
        });
        found.ok_or_else(|| CoreError::ModelNotFound {
            name: name.to_string(),
            available: self.entries().into_iter().map(|e| e.id).collect(),
        })
    }

    async fn get_or_load(&self, name: &str, may_load: bool) -> Result<Arc<LoadedModel>, CoreError> {
        if let Some(model) = self.find_loaded(name) {
            model.touch();
            return Ok(model);
        }
        let entry = self.resolve(name)?;
        if let Some(model) = self.find_loaded(&entry.id) {
            model.touch();
            return Ok(model);
        }
        if !may_load {
            return Err(CoreError::NotLoaded(entry.id));
        }
        let slot = Arc::clone(self.slots().entry(entry.id.clone()).or_default());
        let model = slot.get_or_try_init(|| self.load(entry)).await?;
        model.touch();
        Ok(Arc::clone(model))
    }

    async fn load(&self, entry: ModelEntry) -> Result<Arc<LoadedModel>, CoreError> {
        let id = entry.id.clone();
        let loaded = self.try_load(entry).await;
        if let Err(e) = &loaded {
            tracing::warn!(model = %id, error = %e, "the load failed");
        }
        loaded
    }

    async fn try_load(&self, entry: ModelEntry) -> Result<Arc<LoadedModel>, CoreError> {
        let _loading = self.inner.loading.lock().await;
        // A draining copy of this model may have come back while we waited.
        if let Some(model) = self
            .draining_models()
            .into_iter()
            .find(|m| m.id == entry.id && m.is_alive())
        {
            self.draining()
                .retain(|w| !w.upgrade().is_some_and(|m| Arc::ptr_eq(&m, &model)));
            return Ok(model);
        }
        let used = self.make_room(&entry).await?;
        let mut options = self.inner.options.worker.clone();
        // The CPU fast path's float32 weights are larger than the files:
        // they must fit in what the budget has left, not only in the budget.
        let room = self.inner.options.memory_budget_bytes.saturating_sub(used);
        options.load.dense_budget_bytes = Some(
            options
                .load
                .dense_budget_bytes
                .map_or(room, |budget| budget.min(room)),
        );
        tracing::info!(
            model = %entry.id,
            dir = %entry.dir.display(),
            weights_mib = entry.weight_bytes >> 20,
            "loading"
        );
        let started = Instant::now();
        let id = entry.id.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            let embedding = orchard_engine::EmbeddingSpec::read(&entry.dir)?;
            let worker = ModelWorker::spawn(&entry.dir, options)?;
            let prompter = Arc::new(Prompter {
                images: worker.image_processor(),
                ..Prompter::new(worker.tokenizer())
            });
            Ok::<_, orchard_engine::EngineError>(LoadedModel {
                id: entry.id.clone(),
                entry,
                worker,
                prompter,
                embedding,
                loaded_at: Instant::now(),
                last_used_ms: AtomicU64::new(0),
                active: AtomicUsize::new(0),
                generated_tokens: AtomicU64::new(0),
                last_decode_milli_tps: AtomicU64::new(0),
                prompt_tokens: AtomicU64::new(0),
                cached_prompt_tokens: AtomicU64::new(0),
                recent: Mutex::default(),
            })
        })
        .await
        .map_err(|e| CoreError::Engine(orchard_engine::EngineError::Exception(e.to_string())))?;
        let model = loaded.map_err(|source| CoreError::Load { name: id, source })?;
        tracing::info!(model = %model.id, seconds = started.elapsed().as_secs_f64(), "loaded");
        self.prompters().remove(&model.id);
        Ok(Arc::new(model))
    }

    /// Unloads models until `entry` fits the count and memory limits: idle
    /// ones first, then the least recently used. A busy model drains: its
    /// memory counts until its requests end, and the load waits for that.
    /// Returns the memory the other models still hold.
    async fn make_room(&self, entry: &ModelEntry) -> Result<u64, CoreError> {
        let options = &self.inner.options;
        let over_budget = || CoreError::OverBudget {
            name: entry.id.clone(),
            need_mib: entry.weight_bytes >> 20,
            budget_mib: options.memory_budget_bytes >> 20,
        };
        if entry.weight_bytes > options.memory_budget_bytes {
            return Err(over_budget());
        }
        let deadline = Instant::now() + DRAIN_WAIT;
        loop {
            let all: Vec<Arc<LoadedModel>> = self
                .loaded()
                .into_iter()
                .filter(|m| m.id != entry.id)
                .collect();
            // Models a profile keeps loaded are never evicted.
            let (pinned, mut loaded): (Vec<_>, Vec<_>) =
                all.into_iter().partition(|m| self.is_pinned(&m.id));
            let draining = self.draining_models();
            let used: u64 = loaded
                .iter()
                .chain(pinned.iter())
                .chain(draining.iter())
                .map(|m| m.memory().total())
                .sum();
            let count = loaded.len() + pinned.len() + draining.len();
            if count < options.max_loaded_models
                && used + entry.weight_bytes <= options.memory_budget_bytes
            {
                return Ok(used);
            }
            // Idle models first, then the least recently used.
            loaded.sort_by_key(|m| (m.active.load(Ordering::Relaxed) == 0, m.idle_for()));
            if let Some(victim) = loaded.pop() {
                tracing::info!(model = %victim.id, for_model = %entry.id, "unloading to make room");
                drop(loaded);
                drop(draining);
                self.unload_model(victim).await;
                continue;
            }
            if draining.is_empty() && !pinned.is_empty() {
                return Err(CoreError::Pinned {
                    name: entry.id.clone(),
                    pinned: pinned.iter().map(|m| m.id.clone()).collect(),
                });
            }
            if draining.is_empty() {
                // Nothing else holds memory the manager knows of.
                return Ok(used);
            }
            if Instant::now() >= deadline {
                let busy: Vec<String> = draining.iter().map(|m| m.id.clone()).collect();
                return Err(CoreError::MemoryBusy {
                    name: entry.id.clone(),
                    busy,
                });
            }
            drop(draining);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Unloads `name`; false when it was not loaded.
    pub async fn unload(&self, name: &str) -> bool {
        let Some(model) = self.loaded().into_iter().find(|m| m.answers_to(name)) else {
            return false;
        };
        self.unload_model(model).await;
        true
    }

    async fn unload_model(&self, model: Arc<LoadedModel>) {
        {
            let mut slots = self.slots();
            let ours = slots
                .get(&model.id)
                .and_then(|slot| slot.get())
                .is_some_and(|m| Arc::ptr_eq(m, &model));
            if ours {
                slots.remove(&model.id);
            }
        }
        if Arc::strong_count(&model) > 1 {
            // Requests still hold it: its memory is in use until they end.
            self.draining().push(Arc::downgrade(&model));
        }
        // The worker thread is joined when the last reference goes. Dropping
        // may block, so not on this thread.
        let _ = tokio::task::spawn_blocking(move || drop(model)).await;
    }

    fn prompters(&self) -> MutexGuard<'_, HashMap<String, Arc<Prompter>>> {
        self.inner
            .prompters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The tokenizer and chat format of `name`, without loading its weights
    /// or unloading anything: for counting tokens.
    pub async fn prompter(&self, name: &str) -> Result<Arc<Prompter>, CoreError> {
        if let Some(model) = self.find_loaded(name) {
            return Ok(Arc::clone(&model.prompter));
        }
        let entry = self.resolve(name)?;
        if let Some(model) = self.find_loaded(&entry.id) {
            return Ok(Arc::clone(&model.prompter));
        }
        if let Some(prompter) = self.prompters().get(&entry.id) {
            return Ok(Arc::clone(prompter));
        }
        let dir = entry.dir.clone();
        let tokenizer = tokio::task::spawn_blocking(move || Tokenizer::load(&dir))
            .await
            .map_err(|e| CoreError::Engine(orchard_engine::EngineError::Exception(e.to_string())))?
            .map_err(|source| CoreError::Load {
                name: entry.id.clone(),
                source,
            })?;
        let prompter = Arc::new(Prompter::new(Arc::new(tokenizer)));
        let mut prompters = self.prompters();
        if prompters.len() >= MAX_SPARE_PROMPTERS {
            prompters.clear();
        }
        prompters.insert(entry.id, Arc::clone(&prompter));
        Ok(prompter)
    }

    /// Starts the task that unloads models idle longer than the TTL and
    /// removes models whose worker died. It ends when the manager is dropped.
    pub fn spawn_idle_reaper(&self) -> tokio::task::JoinHandle<()> {
        let ttl = self.inner.options.idle_ttl;
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        // Profiles may set shorter times than the setting; a minute's are
        // checked every few seconds anyway.
        let period = ttl.map_or(Duration::from_secs(5), |ttl| {
            (ttl / 4).clamp(Duration::from_millis(100), Duration::from_secs(5))
        });
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let Some(inner) = weak.upgrade() else { return };
                let manager = ModelManager { inner };
                // `loaded()` removes dead models; idle ones go only with a TTL
                // (the setting's, or their profile's).
                for model in manager.loaded() {
                    let Some(ttl) = manager.idle_ttl_of(&model.id) else {
                        continue;
                    };
                    if model.active.load(Ordering::Relaxed) == 0 && model.idle_for() >= ttl {
                        tracing::info!(model = %model.id, idle_seconds = model.idle_for().as_secs(), "unloading idle model");
                        manager.unload_model(model).await;
                    }
                }
            }
        })
    }
}
