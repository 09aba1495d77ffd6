//! The Servers screen: a tile per loaded model with its live figures, the
//! machine's strip, and Start / Stop / Restart. The figures are the ones
//! `/metrics` reads (the manager's per-model memory and counters, MLX's and
//! the process's memory), so the tiles and the metrics agree.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use sysinfo::{MemoryRefreshKind, ProcessRefreshKind, ProcessesToUpdate, RefreshKind, System};

use super::{
    ErrorCode, GpuView, MemoryParts, ModelRequest, OpError, Orchard, ServerState, ServerTile,
    ServersView, SystemView,
};

/// How often the `server_events` stream sends the figures again.
pub const SERVER_EVENTS_EVERY: Duration = Duration::from_secs(1);

/// Loads started from the Servers screen that are not loaded models (yet):
/// loading, restarting, or failed with the reason and the load's log lines.
#[derive(Debug, Default)]
pub(super) struct Starts {
    states: Mutex<HashMap<String, Start>>,
}

#[derive(Debug, Clone)]
struct Start {
    state: ServerState,
    error: Option<String>,
    log: Vec<String>,
}

impl Start {
    fn now(state: ServerState) -> Start {
        Start {
            state,
            error: None,
            log: Vec::new(),
        }
    }
}

impl Starts {
    fn set(&self, model: &str, start: Start) {
        self.lock().insert(model.to_string(), start);
    }

    fn clear(&self, model: &str) {
        self.lock().remove(model);
    }

    fn snapshot(&self) -> HashMap<String, Start> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Start>> {
        self.states.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The machine's figures; CPU use is measured between two reads, so one
/// `System` is kept.
#[derive(Debug)]
pub(super) struct Sampler {
    system: Mutex<System>,
}

impl Default for Sampler {
    fn default() -> Self {
        Sampler {
            system: Mutex::new(System::new_with_specifics(
                RefreshKind::nothing().with_memory(MemoryRefreshKind::nothing().with_ram()),
            )),
        }
    }
}

impl Sampler {
    /// Memory (total, used), this process's resident memory and CPU %.
    fn read(&self) -> (u64, u64, u64, f64) {
        let mut system = self.system.lock().unwrap_or_else(|p| p.into_inner());
        system.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
        let (mut rss, mut cpu) = (0, 0.0);
        if let Ok(pid) = sysinfo::get_current_pid() {
            system.refresh_processes_specifics(
                ProcessesToUpdate::Some(&[pid]),
                true,
                ProcessRefreshKind::nothing().with_memory().with_cpu(),
            );
            if let Some(process) = system.process(pid) {
                rss = process.memory();
                cpu = f64::from(process.cpu_usage());
            }
        }
        (system.total_memory(), system.used_memory(), rss, cpu)
    }
}

/// The tiles and the strip, now.
pub async fn list_servers(orchard: &Orchard) -> Result<ServersView, OpError> {
    Ok(servers_view(orchard))
}

fn servers_view(orchard: &Orchard) -> ServersView {
    let manager = orchard.manager();
    let starts = orchard.inner.starts.snapshot();
    let mut servers: Vec<ServerTile> = manager
        .loaded()
        .iter()
        .map(|model| {
            let info = model.info();
            let (prompt_tokens, cached) = model.prompt_totals();
            let memory = MemoryParts {
                weights: info.memory.weight_bytes,
                kv_cache: info.memory.kv_cache_bytes,
                prompt_cache: info.memory.prompt_cache_bytes,
            };
            let start = starts
                .get(&model.id)
                .cloned()
                .unwrap_or(Start::now(ServerState::Running));
            ServerTile {
                profiles: profile_names(orchard, &model.id),
                model: model.id.clone(),
                state: start.state,
                error: start.error,
                log: start.log,
                memory_bytes: memory.weights + memory.kv_cache + memory.prompt_cache,
                memory,
                uptime_seconds: info.uptime_seconds,
                active_requests: u32::try_from(info.active_requests).unwrap_or(u32::MAX),
                queued_requests: u32::try_from(info.queue_depth).unwrap_or(u32::MAX),
                tokens_per_second: model.recent_decode_rate(),
                generated_tokens: info.generated_tokens,
                prompt_tokens,
                cached_prompt_tokens: cached,
                prompt_cache_hit_rate: (prompt_tokens > 0)
                    .then(|| cached as f64 / prompt_tokens as f64),
                cpu_fast_path: model.cpu_fast_path(),
            }
        })
        .collect();
    // Loads in progress, restarts and failures keep a tile of their own.
    for (model, start) in starts {
        if !servers.iter().any(|t| t.model == model) {
            servers.push(ServerTile {
                profiles: profile_names(orchard, &model),
                model,
                state: start.state,
                error: start.error,
                log: start.log,
                memory: MemoryParts {
                    weights: 0,
                    kv_cache: 0,
                    prompt_cache: 0,
                },
                memory_bytes: 0,
                uptime_seconds: 0,
                active_requests: 0,
                queued_requests: 0,
                tokens_per_second: 0.0,
                generated_tokens: 0,
                prompt_tokens: 0,
                cached_prompt_tokens: 0,
                prompt_cache_hit_rate: None,
                cpu_fast_path: false,
            });
        }
    }
    servers.sort_by_key(|t| t.model.to_lowercase());
    let (total, used, rss, cpu) = orchard.inner.sampler.read();
    let backend = mlx_sys::BACKEND.to_string();
    let gpu = (backend != "cpu").then(|| {
        let (active, peak, cache) = crate::system::mlx_memory();
        GpuView {
            active_bytes: active,
            peak_bytes: peak,
            cache_bytes: cache,
            recommended_working_set_bytes: orchard_engine::runtime::gpu_recommended_working_set(),
        }
    });
    ServersView {
        system: SystemView {
            total_memory_bytes: total,
            used_memory_bytes: used,
            process_memory_bytes: rss,
            memory_budget_bytes: manager.options().memory_budget_bytes,
            cpu_percent: cpu,
            cpu_cores: std::thread::available_parallelism()
                .map(|n| u32::try_from(n.get()).unwrap_or(1))
                .unwrap_or(1),
            backend,
            gpu,
        },
        servers,
    }
}

fn profile_names(orchard: &Orchard, id: &str) -> Vec<String> {
    orchard
        .manager()
        .profiles()
        .iter()
        .filter(|p| super::library::entry(orchard, &p.model).is_ok_and(|e| e.id == id))
        .map(|p| p.name.clone())
        .collect()
}

/// Loads a model or a profile's model (Start); its tile says "loading"
/// meanwhile, and why when the load fails.
pub async fn start_server(orchard: &Orchard, input: ModelRequest) -> Result<ServersView, OpError> {
    let id = model_of(orchard, &input.model)?;
    load(orchard, &id, ServerState::Loading).await?;
    Ok(servers_view(orchard))
}

/// Unloads a model (Stop): its memory is given back once its running
/// requests end.
pub async fn stop_server(orchard: &Orchard, input: ModelRequest) -> Result<ServersView, OpError> {
    let id = model_of(orchard, &input.model)?;
    let had_tile = orchard.inner.starts.snapshot().contains_key(&id);
    orchard.inner.starts.clear(&id);
    // A failed start's tile goes away with Stop too.
    if !orchard.manager().unload(&id).await && !had_tile {
        return Err(OpError::new(
            ErrorCode::NotFound,
            format!("{id} is not loaded"),
        ));
    }
    Ok(servers_view(orchard))
}

/// Unloads and loads a model again; its tile stays, "restarting".
pub async fn restart_server(
    orchard: &Orchard,
    input: ModelRequest,
) -> Result<ServersView, OpError> {
    let id = model_of(orchard, &input.model)?;
    orchard
        .inner
        .starts
        .set(&id, Start::now(ServerState::Restarting));
    orchard.manager().unload(&id).await;
    load(orchard, &id, ServerState::Restarting).await?;
    Ok(servers_view(orchard))
}

/// The library model a name means: a model, or a profile's model.
fn model_of(orchard: &Orchard, name: &str) -> Result<String, OpError> {
    match orchard.manager().profile(name.trim()) {
        Some(profile) => Ok(super::library::entry(orchard, &profile.model)?.id),
        None => Ok(super::library::entry(orchard, name)?.id),
    }
}

async fn load(orchard: &Orchard, id: &str, state: ServerState) -> Result<(), OpError> {
    let starts = &orchard.inner.starts;
    starts.set(id, Start::now(state));
    let mark = crate::logs::mark();
    match orchard.manager().load_now(id).await {
        Ok(_) => {
            starts.clear(id);
            if let Err(e) = orchard.store().touch_model(id, super::library::unix_now()) {
                tracing::warn!(error = %e, "cannot record a model's use");
            }
            Ok(())
        }
        Err(e) => {
            let error = OpError::from(e);
            starts.set(
                id,
                Start {
                    state: ServerState::Failed,
                    error: Some(error.message.clone()),
                    log: crate::logs::since(id, mark),
                },
            );
            Err(error)
        }
    }
}

/// The `server_events` stream: the figures now, then every second.
#[derive(Debug)]
pub struct ServerEvents {
    orchard: Orchard,
    ticks: tokio::time::Interval,
}

impl super::Events for ServerEvents {
    type Event = ServersView;

    /// The next figures; the stream never ends by itself.
    async fn next(&mut self) -> Option<ServersView> {
        self.ticks.tick().await;
        Some(servers_view(&self.orchard))
    }
}

impl Orchard {
    /// Subscribes to the Servers screen's figures (the `server_events` stream).
    pub fn server_events(&self) -> Result<ServerEvents, OpError> {
        let mut ticks = tokio::time::interval(SERVER_EVENTS_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Ok(ServerEvents {
            orchard: self.clone(),
            ticks,
        })
    }
}
