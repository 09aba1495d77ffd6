//! The user's MCP servers, supervised: each is started (or connected to) on
//! first use, its lists are cached until it says they changed or it
//! reconnects, every call has a timeout, and a circuit breaker stops a
//! failing server from slowing every request down. `tools/call` is never
//! retried: tools have side effects.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, CompleteRequestParams,
    CompleteResult, GetPromptRequestParams, GetPromptResult, Implementation, JsonObject, Prompt,
    PromptReference, ReadResourceRequestParams, ReadResourceResult, Reference, Resource,
    ResourceTemplate, ResourceUpdatedNotificationParam, SubscribeRequestParams, Tool,
    UnsubscribeRequestParams,
};
#[allow(deprecated)] // logging: deprecated by SEP-2577, still what 2025 clients speak
use rmcp::model::{LoggingLevel, LoggingMessageNotificationParam, SetLevelRequestParams};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::{ServerSpec, Transport};
use crate::names::Namer;
use crate::{builtin, program, uri_template};

/// How often the call path reads the configured servers again, at most.
const REFRESH_EVERY: Duration = Duration::from_millis(250);
/// Requests in flight to one streamable-HTTP server at once.
const HTTP_CONCURRENCY: usize = 64;

/// Consecutive failures that open a server's breaker.
const FAILURES_TO_OPEN: u32 = 3;
/// How long a breaker first stays open; doubled on each failed trial.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// How many events wait for a slow session before it misses some (and
/// then compares the lists again, which is all a missed change needs).
const EVENT_BACKLOG: usize = 256;

/// What the hub tells the sessions of its own clients.
#[derive(Debug, Clone)]
pub enum HubEvent {
    /// A server's lists may have changed, or servers came or went.
    ListsChanged,
    /// A server says a resource changed (by its URI).
    ResourceUpdated(String),
    /// A server's log message; `logger` starts with the server's name.
    #[allow(deprecated)]
    Log(LoggingMessageNotificationParam),
}

/// The order of the log levels, least severe first (rmcp's enum has none).
#[allow(deprecated)]
pub fn level_rank(level: LoggingLevel) -> u8 {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}

/// Limits for the hub.
#[derive(Debug, Clone)]
pub struct HubOptions {
    /// The longest a `tools/call`, `prompts/get` or `resources/read` may take.
    pub call_timeout: Duration,
    /// The longest starting a server and listing its tools may take.
    pub connect_timeout: Duration,
    /// Whether `orchard-tools` (the built-in server) is offered.
    pub builtin: bool,
}

impl Default for HubOptions {
    fn default() -> Self {
        HubOptions {
            call_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(30),
            builtin: true,
        }
    }
}

/// What went wrong talking to a server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum McpError {
    /// No tool, prompt, resource or server by that name.
    #[error("{0}")]
    NotFound(String),
    /// The server is down or failed; the message says which and why.
    #[error("{0}")]
    Unavailable(String),
    /// The call took longer than the timeout (and was cancelled on the server).
    #[error("{0}")]
    Timeout(String),
    /// The server answered with an MCP error of its own.
    #[error("{0}")]
    Server(String),
    /// The caller went away.
    #[error("cancelled")]
    Cancelled,
}

/// Where the hub's servers come from (Orchard's database): read again
/// whenever [`SpecSource::revision`] changes, so a server added by another
/// process is picked up without a restart.
pub trait SpecSource: Send + Sync + std::fmt::Debug + 'static {
    /// A number that changes whenever the servers do.
    fn revision(&self) -> Result<i64, String>;
    /// The configured servers, secrets included.
    fn specs(&self) -> Result<Vec<ServerSpec>, String>;
}

/// A supervised set of servers. Clones share it.
#[derive(Debug, Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    options: HubOptions,
    backends: Mutex<BTreeMap<String, Arc<Backend>>>,
    /// The merged lists, rebuilt when a backend's lists change.
    catalog: tokio::sync::Mutex<Option<Arc<Catalog>>>,
    /// Bumped whenever a backend's lists may have changed.
    generation: Arc<AtomicU64>,
    source: Option<Arc<dyn SpecSource>>,
    /// The source's revision the backends were last synced to.
    synced: tokio::sync::Mutex<Option<i64>>,
    /// When the source was last read.
    checked: Mutex<Option<Instant>>,
    /// Cancelled by [`Hub::shutdown`]: ends the sessions of MCP clients.
    closing: CancellationToken,
    /// Calls, errors and latency per (server, tool).
    stats: Mutex<BTreeMap<(String, String), ToolStats>>,
    /// Where each tool call is reported (Orchard's audit log).
    audit: Mutex<Option<AuditSink>>,
    shared: Arc<Shared>,
}

/// What the hub and its backends share: the events for client sessions,
/// the resource subscriptions and the log level asked for.
#[derive(Debug)]
struct Shared {
    events: tokio::sync::broadcast::Sender<HubEvent>,
    /// URI -> (its server, how many client subscriptions hold it).
    subscriptions: Mutex<HashMap<String, (String, usize)>>,
    /// The most detailed level any client asked for; servers get it.
    #[allow(deprecated)]
    log_level: Mutex<Option<LoggingLevel>>,
}

impl Shared {
    fn send(&self, event: HubEvent) {
        // No session listening is fine.
        let _ = self.events.send(event);
    }
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("options", &self.options)
            .field("servers", &lock(&self.backends).keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Receives a record of every tool call.
pub type AuditSink = Arc<dyn Fn(&CallRecord) + Send + Sync>;

/// One tool call, for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    pub server: String,
    pub tool: String,
    /// Who asked (an API key's id), when known.
    pub caller: Option<String>,
    pub duration: Duration,
    /// `ok`, `tool_error`, `error`, `timeout`, `cancelled` or `not_found`.
    pub outcome: &'static str,
}

/// Upper bounds, in seconds, of the tool-call latency buckets.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

/// A tool's calls so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ToolStats {
    pub calls: u64,
    /// Calls that failed: the tool's own errors, timeouts, a server down.
    pub errors: u64,
    /// Calls at or under each of [`LATENCY_BUCKETS`].
    pub buckets: [u64; LATENCY_BUCKETS.len()],
    pub seconds: f64,
}

impl ToolStats {
    fn observe(&mut self, elapsed: Duration, failed: bool) {
        let seconds = elapsed.as_secs_f64();
        self.calls += 1;
        self.errors += u64::from(failed);
        self.seconds += seconds;
        for (bound, count) in LATENCY_BUCKETS.iter().zip(self.buckets.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
    }
}

/// Every enabled server's tools, prompts and resources under their
/// aggregated names, with the exact map back to each one's owner.
#[derive(Debug, Default)]
pub struct Catalog {
    pub tools: Vec<Tool>,
    pub prompts: Vec<Prompt>,
    pub resources: Vec<Resource>,
    pub resource_templates: Vec<ResourceTemplate>,
    tool_routes: HashMap<String, (String, String)>,
    prompt_routes: HashMap<String, (String, String)>,
    resource_routes: HashMap<String, String>,
    /// Each template's server, in list order: the first that matches wins.
    template_routes: Vec<(String, String)>,
    /// Names that clashed (and what each got instead).
    pub collisions: Vec<String>,
    /// Servers that could not be listed, with the reason.
    pub unavailable: Vec<(String, String)>,
    generation: u64,
}

impl Catalog {
    /// The server and original name behind an aggregated tool name.
    pub fn tool_route(&self, name: &str) -> Option<(&str, &str)> {
        self.tool_routes
            .get(name)
            .map(|(server, tool)| (server.as_str(), tool.as_str()))
    }

    /// The server that owns a resource: the one that listed it, else the
    /// first whose template could have made the URI.
    pub fn resource_route(&self, uri: &str) -> Result<&str, McpError> {
        self.resource_routes
            .get(uri)
            .map(String::as_str)
            .or_else(|| {
                self.template_routes
                    .iter()
                    .find(|(template, _)| uri_template::matches(template, uri))
                    .map(|(_, server)| server.as_str())
            })
            .ok_or_else(|| {
                McpError::NotFound(format!(
                    "no server lists a resource {uri:?} or a template that makes it"
                ))
            })
    }
}

/// A server's state, as `orchard mcp list` and the UI show it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ServerStatus {
    pub name: String,
    pub enabled: bool,
    /// The command line or URL.
    pub target: String,
    /// `idle` (not started yet), `up`, `down` or `disabled`.
    pub state: &'static str,
    /// `closed`, `open` or `half-open`.
    pub breaker: &'static str,
    /// Tools offered (after the allow and deny patterns), when known.
    pub tools: Option<usize>,
    pub last_error: Option<String>,
    /// How many times it was started (or connected to) again after the first.
    pub restarts: u32,
}

#[derive(Debug)]
struct Backend {
    spec: ServerSpec,
    /// `orchard-tools`, answered in this process: no connection.
    builtin: bool,
    /// The live connection (none for the built-in server).
    link: tokio::sync::Mutex<Option<RunningService<RoleClient, Watcher>>>,
    health: Mutex<Health>,
    /// The server's own lists, filtered, while they are fresh.
    lists: Mutex<Option<Lists>>,
    /// Set by the server's `list_changed` notifications.
    stale: Arc<AtomicBool>,
    generation: Arc<AtomicU64>,
    shared: Arc<Shared>,
}

#[derive(Debug, Clone, Default)]
struct Lists {
    tools: Vec<Tool>,
    prompts: Vec<Prompt>,
    resources: Vec<Resource>,
    templates: Vec<ResourceTemplate>,
}

#[derive(Debug, Default)]
struct Health {
    breaker: Breaker,
    last_error: Option<String>,
    starts: u32,
    up: bool,
}

/// Closed (calls go through), open (calls fail at once until `until`), or
/// half-open (one trial call decides).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Breaker {
    Closed { failures: u32 },
    Open { until: Instant, backoff: Duration },
    HalfOpen { backoff: Duration },
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker::Closed { failures: 0 }
    }
}

impl Breaker {
    /// Whether a call may go through now; an open breaker that has waited
    /// long enough lets one trial through.
    fn admit(&mut self, now: Instant) -> Result<(), Duration> {
        match *self {
            Breaker::Closed { .. } | Breaker::HalfOpen { .. } => Ok(()),
            Breaker::Open { until, backoff } if now >= until => {
                *self = Breaker::HalfOpen { backoff };
                Ok(())
            }
            Breaker::Open { until, .. } => Err(until - now),
        }
    }

    fn success(&mut self) {
        *self = Breaker::Closed { failures: 0 };
    }

    fn failure(&mut self, now: Instant) {
        *self = match *self {
            Breaker::Closed { failures } if failures + 1 < FAILURES_TO_OPEN => Breaker::Closed {
                failures: failures + 1,
            },
            Breaker::Closed { .. } => Breaker::Open {
                until: now + FIRST_BACKOFF,
                backoff: FIRST_BACKOFF,
            },
            Breaker::HalfOpen { backoff } | Breaker::Open { backoff, .. } => {
                let backoff = (backoff * 2).min(MAX_BACKOFF);
                Breaker::Open {
                    until: now + backoff,
                    backoff,
                }
            }
        };
    }

    fn name(&self) -> &'static str {
        match self {
            Breaker::Closed { .. } => "closed",
            Breaker::Open { .. } => "open",
            Breaker::HalfOpen { .. } => "half-open",
        }
    }
}

/// Orchard's side of each connection: marks the lists stale when the
/// server says they changed.
#[derive(Debug, Clone)]
struct Watcher {
    server: String,
    stale: Arc<AtomicBool>,
    generation: Arc<AtomicU64>,
    shared: Arc<Shared>,
}

impl Watcher {
    fn changed(&self) {
        self.stale.store(true, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.shared.send(HubEvent::ListsChanged);
    }
}

impl ClientHandler for Watcher {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("orchard", env!("CARGO_PKG_VERSION")),
        )
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.changed();
    }

    async fn on_prompt_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.changed();
    }

    async fn on_resource_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.changed();
    }

    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.shared.send(HubEvent::ResourceUpdated(params.uri));
    }

    #[allow(deprecated)]
    async fn on_logging_message(
        &self,
        mut params: LoggingMessageNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        // Which server said it: its name leads the logger's.
        params.logger = Some(match params.logger.take() {
            Some(logger) => format!("{}{}{logger}", self.server, crate::names::SEPARATOR),
            None => self.server.clone(),
        });
        self.shared.send(HubEvent::Log(params));
    }
}

impl Hub {
    /// A hub of the built-in server only (when `options.builtin`), until
    /// [`Hub::sync`] gives it more.
    pub fn new(options: HubOptions) -> Hub {
        Hub::build(options, None)
    }

    /// A hub whose servers are read from `source`, and read again when it
    /// changes.
    pub fn with_source(options: HubOptions, source: Arc<dyn SpecSource>) -> Hub {
        Hub::build(options, Some(source))
    }

    fn build(options: HubOptions, source: Option<Arc<dyn SpecSource>>) -> Hub {
        let hub = Hub {
            inner: Arc::new(Inner {
                options,
                backends: Mutex::new(BTreeMap::new()),
                catalog: tokio::sync::Mutex::new(None),
                generation: Arc::new(AtomicU64::new(1)),
                source,
                synced: tokio::sync::Mutex::new(None),
                checked: Mutex::new(None),
                closing: CancellationToken::new(),
                stats: Mutex::new(BTreeMap::new()),
                audit: Mutex::new(None),
                shared: Arc::new(Shared {
                    events: tokio::sync::broadcast::channel(EVENT_BACKLOG).0,
                    subscriptions: Mutex::new(HashMap::new()),
                    log_level: Mutex::new(None),
                }),
            }),
        };
        if hub.inner.options.builtin {
            let spec = ServerSpec {
                name: builtin::NAME.to_string(),
                transport: Transport::Stdio {
                    command: builtin::NAME.into(),
                    args: Vec::new(),
                    env: BTreeMap::new(),
                    cwd: None,
                },
                enabled: true,
                allow: Vec::new(),
                deny: Vec::new(),
            };
            let backend = Backend::new(spec, true, &hub.inner.generation, &hub.inner.shared);
            lock(&hub.inner.backends).insert(builtin::NAME.to_string(), backend);
        }
        hub
    }

    pub fn options(&self) -> &HubOptions {
        &self.inner.options
    }

    /// Makes the hub serve exactly `specs` (besides the built-in server):
    /// new ones are added, removed ones stopped, changed ones restarted; the
    /// others keep their connections.
    pub async fn sync(&self, specs: Vec<ServerSpec>) {
        let mut stopped = Vec::new();
        let mut added = false;
        {
            let mut backends = lock(&self.inner.backends);
            let wanted: BTreeMap<String, ServerSpec> =
                specs.into_iter().map(|s| (s.name.clone(), s)).collect();
            let names: Vec<String> = backends.keys().cloned().collect();
            for name in names {
                if name == builtin::NAME && self.inner.options.builtin {
                    continue;
                }
                if wanted.get(&name) != backends.get(&name).map(|b| &b.spec)
                    && let Some(old) = backends.remove(&name)
                {
                    stopped.push(old);
                }
            }
            for (name, spec) in wanted {
                if name == builtin::NAME && self.inner.options.builtin {
                    continue;
                }
                backends.entry(name).or_insert_with(|| {
                    added = true;
                    Backend::new(spec, false, &self.inner.generation, &self.inner.shared)
                });
            }
        }
        if !stopped.is_empty() {
            self.inner.generation.fetch_add(1, Ordering::SeqCst);
        }
        if added || !stopped.is_empty() {
            self.inner.shared.send(HubEvent::ListsChanged);
        }
        for backend in stopped {
            backend.disconnect().await;
        }
    }

    /// Brings the servers up to date with the source, when it changed.
    /// With `throttle` (the path of every call), the source is read at most
    /// every [`REFRESH_EVERY`]; lists and status always read it.
    async fn refresh(&self, throttle: bool) {
        let Some(source) = &self.inner.source else {
            return;
        };
        {
            let mut checked = lock(&self.inner.checked);
            if throttle && checked.is_some_and(|at| at.elapsed() < REFRESH_EVERY) {
                return;
            }
            *checked = Some(Instant::now());
        }
        let mut synced = self.inner.synced.lock().await;
        let revision = match source.revision() {
            Ok(revision) => revision,
            Err(error) => {
                tracing::warn!(target: "orchard::mcp", "cannot read the MCP servers: {error}");
                return;
            }
        };
        if *synced == Some(revision) {
            return;
        }
        match source.specs() {
            Ok(specs) => {
                self.sync(specs).await;
                *synced = Some(revision);
            }
            Err(error) => {
                tracing::warn!(target: "orchard::mcp", "cannot read the MCP servers: {error}");
            }
        }
    }

    /// The server called `name`, or the error that says there is none.
    fn backend(&self, name: &str) -> Result<Arc<Backend>, McpError> {
        lock(&self.inner.backends)
            .get(name)
            .cloned()
            .ok_or_else(|| McpError::NotFound(format!("no MCP server named {name:?}")))
    }

    fn backends(&self) -> Vec<Arc<Backend>> {
        lock(&self.inner.backends).values().cloned().collect()
    }

    /// The merged lists of every enabled server, from the cache while no
    /// server has reported a change. Servers that cannot be reached are left
    /// out and named in [`Catalog::unavailable`].
    pub async fn catalog(&self) -> Arc<Catalog> {
        self.refresh(false).await;
        self.build_catalog(true).await
    }

    /// The cached catalog while nothing changed; with `retry_unavailable`,
    /// servers that could not be listed last time are tried again.
    async fn build_catalog(&self, retry_unavailable: bool) -> Arc<Catalog> {
        let mut cached = self.inner.catalog.lock().await;
        let generation = self.inner.generation.load(Ordering::SeqCst);
        if let Some(catalog) = cached.as_ref()
            && catalog.generation == generation
            && (!retry_unavailable || catalog.unavailable.is_empty())
        {
            return catalog.clone();
        }
        let backends: Vec<Arc<Backend>> = self
            .backends()
            .into_iter()
            .filter(|b| b.spec.enabled)
            .collect();
        let lists =
            futures_util::future::join_all(backends.iter().map(|b| b.lists(&self.inner.options)))
                .await;
        let mut catalog = Catalog {
            generation,
            ..Catalog::default()
        };
        let mut tools = Namer::default();
        let mut prompts = Namer::default();
        for (backend, lists) in backends.iter().zip(lists) {
            let server = backend.spec.name.as_str();
            let lists = match lists {
                Ok(lists) => lists,
                Err(error) => {
                    catalog
                        .unavailable
                        .push((server.to_string(), error.to_string()));
                    continue;
                }
            };
            for mut tool in lists.tools {
                let original = tool.name.to_string();
                let name = tools.name(server, &original);
                tool.name = name.clone().into();
                catalog.tools.push(tool);
                catalog
                    .tool_routes
                    .insert(name, (server.to_string(), original));
            }
            for mut prompt in lists.prompts {
                let original = prompt.name.clone();
                let name = prompts.name(server, &original);
                prompt.name = name.clone();
                catalog.prompts.push(prompt);
                catalog
                    .prompt_routes
                    .insert(name, (server.to_string(), original));
            }
            for resource in lists.resources {
                if let Some(owner) = catalog.resource_routes.get(&resource.uri) {
                    catalog.collisions.push(format!(
                        "resource {:?} is offered by both {owner} and {server}; {owner}'s is used",
                        resource.uri
                    ));
                    continue;
                }
                catalog
                    .resource_routes
                    .insert(resource.uri.clone(), server.to_string());
                catalog.resources.push(resource);
            }
            for template in lists.templates {
                catalog
                    .template_routes
                    .push((template.uri_template.clone(), server.to_string()));
                catalog.resource_templates.push(template);
            }
        }
        catalog.collisions.extend(tools.collisions);
        catalog.collisions.extend(prompts.collisions);
        for collision in &catalog.collisions {
            tracing::warn!(target: "orchard::mcp", "name clash: {collision}");
        }
        let catalog = Arc::new(catalog);
        *cached = Some(catalog.clone());
        catalog
    }

    /// Calls an aggregated tool (`server__tool`). A tool's own failure is a
    /// result with `is_error`; an `Err` means the call could not be made.
    pub async fn call_tool(
        &self,
        name: &str,
        arguments: Option<JsonObject>,
        cancel: CancellationToken,
        caller: Option<&str>,
    ) -> Result<CallToolResult, McpError> {
        // A server that is down is not asked again on every call to the
        // others: only when the name is not in the lists already known.
        self.refresh(true).await;
        let mut catalog = self.build_catalog(false).await;
        if catalog.tool_route(name).is_none() && !catalog.unavailable.is_empty() {
            catalog = self.build_catalog(true).await;
        }
        let (server, tool) = catalog.tool_route(name).ok_or_else(|| {
            McpError::NotFound(format!(
                "no tool named {name:?}: list the tools to see the names offered"
            ))
        })?;
        self.call_as(server, tool, arguments, cancel, caller).await
    }

    /// Calls `tool` on `server` by their own names.
    pub async fn call_server_tool(
        &self,
        server: &str,
        tool: &str,
        arguments: Option<JsonObject>,
        cancel: CancellationToken,
    ) -> Result<CallToolResult, McpError> {
        self.call_as(server, tool, arguments, cancel, None).await
    }

    /// [`Hub::call_server_tool`] on behalf of `caller` (the API key's id),
    /// as the audit log records it.
    pub async fn call_as(
        &self,
        server: &str,
        tool: &str,
        arguments: Option<JsonObject>,
        cancel: CancellationToken,
        caller: Option<&str>,
    ) -> Result<CallToolResult, McpError> {
        let started = Instant::now();
        let result = self.call_unrecorded(server, tool, arguments, cancel).await;
        let elapsed = started.elapsed();
        let outcome = match &result {
            Ok(r) if r.is_error == Some(true) => "tool_error",
            Ok(_) => "ok",
            Err(McpError::Timeout(_)) => "timeout",
            Err(McpError::Cancelled) => "cancelled",
            Err(McpError::NotFound(_)) => "not_found",
            Err(_) => "error",
        };
        if !matches!(&result, Err(McpError::NotFound(_))) {
            lock(&self.inner.stats)
                .entry((server.to_string(), tool.to_string()))
                .or_default()
                .observe(elapsed, outcome != "ok");
        }
        let audit = lock(&self.inner.audit).clone();
        if let Some(audit) = audit {
            audit(&CallRecord {
                server: server.to_string(),
                tool: tool.to_string(),
                caller: caller.map(str::to_string),
                duration: elapsed,
                outcome,
            });
        }
        result
    }

    async fn call_unrecorded(
        &self,
        server: &str,
        tool: &str,
        arguments: Option<JsonObject>,
        cancel: CancellationToken,
    ) -> Result<CallToolResult, McpError> {
        self.refresh(true).await;
        let backend = self.backend(server)?;
        if !backend.spec.enabled {
            return Err(McpError::Unavailable(format!(
                "MCP server {server} is disabled; enable it to use its tools"
            )));
        }
        if !backend.spec.offers(tool) {
            return Err(McpError::NotFound(format!(
                "{server} does not offer a tool named {tool:?} (its allow and deny patterns leave it out)"
            )));
        }
        if backend.builtin {
            return builtin::call(tool, &arguments.unwrap_or_default())
                .ok_or_else(|| McpError::NotFound(format!("{server} has no tool named {tool:?}")));
        }
        let mut params = CallToolRequestParams::new(tool.to_string());
        params.arguments = arguments;
        let options = &self.inner.options;
        let what = format!("{server}'s tool {tool}");
        backend
            .request(options, &what, cancel, |peer| async move {
                peer.call_tool(params).await
            })
            .await
    }

    /// Gets an aggregated prompt (`server__prompt`).
    pub async fn get_prompt(
        &self,
        name: &str,
        arguments: Option<JsonObject>,
        cancel: CancellationToken,
    ) -> Result<GetPromptResult, McpError> {
        let catalog = self.catalog().await;
        let (server, prompt) = catalog
            .prompt_routes
            .get(name)
            .ok_or_else(|| McpError::NotFound(format!("no prompt named {name:?}")))?;
        let backend = self.backend(server)?;
        let mut params = GetPromptRequestParams::new(prompt.clone());
        params.arguments = arguments;
        let what = format!("{server}'s prompt {prompt}");
        backend
            .request(&self.inner.options, &what, cancel, |peer| async move {
                peer.get_prompt(params).await
            })
            .await
    }

    /// Completions for an argument of an aggregated prompt, from the server
    /// that owns it (none when that server offers no completions).
    pub async fn complete_prompt_argument(
        &self,
        mut params: CompleteRequestParams,
        cancel: CancellationToken,
    ) -> Result<CompleteResult, McpError> {
        let catalog = self.catalog().await;
        let prompt = match &params.r#ref {
            Reference::Prompt(prompt) => prompt,
            Reference::Resource(template) => {
                // Templates keep their servers' URIs: passed on unchanged.
                let server = catalog
                    .template_routes
                    .iter()
                    .find(|(t, _)| *t == template.uri)
                    .map(|(_, server)| server.clone())
                    .ok_or_else(|| {
                        McpError::NotFound(format!("no resource template {:?}", template.uri))
                    })?;
                let backend = self.backend(&server)?;
                let what = format!("{server}'s completions for {}", template.uri);
                return backend
                    .request(&self.inner.options, &what, cancel, |peer| async move {
                        peer.complete(params).await
                    })
                    .await;
            }
            _ => return Ok(CompleteResult::default()),
        };
        let (server, original) = catalog
            .prompt_routes
            .get(&prompt.name)
            .ok_or_else(|| McpError::NotFound(format!("no prompt named {:?}", prompt.name)))?;
        let backend = self.backend(server)?;
        let peer = backend.peer(&self.inner.options).await?;
        let offers = peer
            .peer_info()
            .is_none_or(|info| info.capabilities.completions.is_some());
        if !offers {
            return Ok(CompleteResult::default());
        }
        params.r#ref = Reference::Prompt(PromptReference::new(original.clone()));
        let what = format!("{server}'s completions for {original}");
        backend
            .request(&self.inner.options, &what, cancel, |peer| async move {
                peer.complete(params).await
            })
            .await
    }

    /// Reads a resource by its URI, from the server that listed it.
    pub async fn read_resource(
        &self,
        uri: &str,
        cancel: CancellationToken,
    ) -> Result<ReadResourceResult, McpError> {
        let catalog = self.catalog().await;
        let server = catalog.resource_route(uri)?;
        let backend = self.backend(server)?;
        let params = ReadResourceRequestParams::new(uri.to_string());
        let what = format!("{server}'s resource {uri}");
        backend
            .request(&self.inner.options, &what, cancel, |peer| async move {
                peer.read_resource(params).await
            })
            .await
    }

    /// The events for client sessions: list changes, resource updates and
    /// servers' log messages.
    pub fn events(&self) -> tokio::sync::broadcast::Receiver<HubEvent> {
        self.inner.shared.events.subscribe()
    }

    /// The merged lists as they are now, without trying again the servers
    /// that could not be listed (what a change notice compares).
    pub async fn current_catalog(&self) -> Arc<Catalog> {
        self.refresh(false).await;
        self.build_catalog(false).await
    }

    /// Subscribes to a resource at the server that owns it, once however
    /// many clients ask; [`HubEvent::ResourceUpdated`] carries its changes.
    /// Each success needs one [`Hub::unsubscribe_resource`].
    pub async fn subscribe_resource(
        &self,
        uri: &str,
        cancel: CancellationToken,
    ) -> Result<(), McpError> {
        let catalog = self.catalog().await;
        let server = catalog.resource_route(uri)?.to_string();
        let backend = self.backend(&server)?;
        let peer = backend.peer(&self.inner.options).await?;
        let offers = peer.peer_info().is_some_and(|info| {
            info.capabilities
                .resources
                .as_ref()
                .is_some_and(|r| r.subscribe == Some(true))
        });
        if !offers {
            return Err(McpError::NotFound(format!(
                "MCP server {server} offers no subscriptions to its resources"
            )));
        }
        let first = {
            let mut subscriptions = lock(&self.inner.shared.subscriptions);
            let entry = subscriptions
                .entry(uri.to_string())
                .or_insert_with(|| (server.clone(), 0));
            entry.1 += 1;
            entry.1 == 1
        };
        if !first {
            return Ok(());
        }
        let params = SubscribeRequestParams::new(uri.to_string());
        let what = format!("{server}'s subscription to {uri}");
        let subscribed = backend
            .request(&self.inner.options, &what, cancel, |peer| async move {
                #[allow(deprecated)] // what 2025 servers speak
                peer.subscribe(params).await
            })
            .await;
        if subscribed.is_err() {
            self.release_subscription(uri);
        }
        subscribed
    }

    /// Gives back one subscription to `uri`; the last one unsubscribes at
    /// its server.
    pub async fn unsubscribe_resource(&self, uri: &str) {
        let Some(server) = self.release_subscription(uri) else {
            return;
        };
        let Ok(backend) = self.backend(&server) else {
            return;
        };
        let params = UnsubscribeRequestParams::new(uri.to_string());
        let what = format!("{server}'s subscription to {uri}");
        let _ = backend
            .request(
                &self.inner.options,
                &what,
                CancellationToken::new(),
                #[allow(deprecated)]
                |peer| async move { peer.unsubscribe(params).await },
            )
            .await;
    }

    /// One subscription fewer; the server's name when it was the last.
    fn release_subscription(&self, uri: &str) -> Option<String> {
        let mut subscriptions = lock(&self.inner.shared.subscriptions);
        let entry = subscriptions.get_mut(uri)?;
        entry.1 = entry.1.saturating_sub(1);
        if entry.1 > 0 {
            return None;
        }
        subscriptions.remove(uri).map(|(server, _)| server)
    }

    /// A client asked for log messages at `level` or above. Servers that
    /// log are set to the most detailed level any client asked for (each
    /// session filters to its own), now and when they start again.
    #[allow(deprecated)]
    pub async fn set_log_level(&self, level: LoggingLevel) {
        let lowered = {
            let mut current = lock(&self.inner.shared.log_level);
            let lower = current.is_none_or(|c| level_rank(level) < level_rank(c));
            if lower {
                *current = Some(level);
            }
            lower
        };
        if !lowered {
            return;
        }
        let options = &self.inner.options;
        let connected: Vec<Arc<Backend>> = self
            .backends()
            .into_iter()
            .filter(|b| !b.builtin && b.spec.enabled)
            .collect();
        futures_util::future::join_all(connected.iter().map(|backend| async move {
            let peer = backend.link.lock().await.as_ref().map(|s| s.peer().clone());
            if let Some(peer) = peer {
                set_level(&peer, level, options.call_timeout).await;
            }
        }))
        .await;
    }

    /// Every server's state. With `probe`, servers not yet started are
    /// started and every connected one is pinged, so the answer is current.
    pub async fn status(&self, probe: bool) -> Vec<ServerStatus> {
        self.refresh(false).await;
        let backends = self.backends();
        if probe {
            let options = &self.inner.options;
            futures_util::future::join_all(
                backends
                    .iter()
                    .filter(|b| b.spec.enabled)
                    .map(|b| b.probe(options)),
            )
            .await;
        }
        backends.iter().map(|b| b.status()).collect()
    }

    /// Pings connected servers: one that does not answer is disconnected
    /// and counted as a failure (it is started again on next use).
    pub async fn check_health(&self) {
        let options = &self.inner.options;
        let backends = self.backends();
        futures_util::future::join_all(backends.iter().map(|b| b.ping(options))).await;
    }

    /// Sends a record of every tool call to `sink` from now on.
    pub fn set_audit(&self, sink: AuditSink) {
        *lock(&self.inner.audit) = Some(sink);
    }

    /// Calls, errors and latency per (server, tool), for `/metrics`.
    pub fn tool_stats(&self) -> BTreeMap<(String, String), ToolStats> {
        lock(&self.inner.stats).clone()
    }

    /// Every server's state as last seen, without asking anything (for
    /// `/metrics`, which must answer at once).
    pub fn last_status(&self) -> Vec<ServerStatus> {
        self.backends().iter().map(|b| b.status()).collect()
    }

    /// Cancelled when the hub shuts down; sessions served over it end then.
    pub fn closing(&self) -> CancellationToken {
        self.inner.closing.clone()
    }

    /// Ends client sessions and stops every server (children are stopped,
    /// connections closed).
    pub async fn shutdown(&self) {
        self.inner.closing.cancel();
        for backend in self.backends() {
            backend.disconnect().await;
        }
    }
}

type Peer = rmcp::Peer<RoleClient>;

impl Backend {
    fn new(
        spec: ServerSpec,
        builtin: bool,
        generation: &Arc<AtomicU64>,
        shared: &Arc<Shared>,
    ) -> Arc<Backend> {
        Arc::new(Backend {
            spec,
            builtin,
            link: tokio::sync::Mutex::new(None),
            health: Mutex::new(Health::default()),
            lists: Mutex::new(None),
            stale: Arc::new(AtomicBool::new(false)),
            generation: generation.clone(),
            shared: shared.clone(),
        })
    }

    fn status(&self) -> ServerStatus {
        let health = lock(&self.health);
        let tools = lock(&self.lists).as_ref().map(|l| l.tools.len());
        let state = if !self.spec.enabled {
            "disabled"
        } else if self.builtin || health.up {
            "up"
        } else if health.starts == 0 && health.last_error.is_none() {
            "idle"
        } else {
            "down"
        };
        ServerStatus {
            name: self.spec.name.clone(),
            enabled: self.spec.enabled,
            target: if self.builtin {
                "built into Orchard".into()
            } else {
                self.spec.transport.summary()
            },
            state,
            breaker: health.breaker.name(),
            tools: if self.builtin {
                Some(builtin::tools().len())
            } else {
                tools
            },
            last_error: health.last_error.clone(),
            restarts: health.starts.saturating_sub(1),
        }
    }

    /// The live connection's peer, starting the server when there is none.
    async fn peer(&self, options: &HubOptions) -> Result<Peer, McpError> {
        let now = Instant::now();
        let admitted = {
            let mut health = lock(&self.health);
            health
                .breaker
                .admit(now)
                .map_err(|wait| (wait, health.last_error.clone().unwrap_or_default()))
        };
        if let Err((wait, last)) = admitted {
            return Err(McpError::Unavailable(format!(
                "MCP server {} is down (trying again in {:.0} s): {last}",
                self.spec.name,
                wait.as_secs_f64().ceil()
            )));
        }
        let mut link = self.link.lock().await;
        if let Some(service) = link.as_ref() {
            if !service.is_closed() {
                return Ok(service.peer().clone());
            }
            *link = None;
            self.mark_down("the connection closed");
        }
        let started = tokio::time::timeout(options.connect_timeout, self.connect()).await;
        let service = match started {
            Ok(Ok(service)) => service,
            Ok(Err(error)) => return Err(self.failed(error)),
            Err(_) => {
                return Err(self.failed(format!(
                    "it did not finish starting within {} s",
                    options.connect_timeout.as_secs()
                )));
            }
        };
        let peer = service.peer().clone();
        *link = Some(service);
        {
            let mut health = lock(&self.health);
            health.starts += 1;
            health.up = true;
        }
        // New process, new lists.
        self.stale.store(true, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.shared.send(HubEvent::ListsChanged);
        self.restore(&peer);
        Ok(peer)
    }

    /// After a (re)connection: the log level and the resource
    /// subscriptions clients hold at this server, asked for again.
    #[allow(deprecated)]
    fn restore(&self, peer: &Peer) {
        let level = *lock(&self.shared.log_level);
        let uris: Vec<String> = lock(&self.shared.subscriptions)
            .iter()
            .filter(|(_, (server, _))| *server == self.spec.name)
            .map(|(uri, _)| uri.clone())
            .collect();
        if level.is_none() && uris.is_empty() {
            return;
        }
        let peer = peer.clone();
        tokio::spawn(async move {
            if let Some(level) = level {
                set_level(&peer, level, FIRST_BACKOFF * 10).await;
            }
            for uri in uris {
                #[allow(deprecated)]
                let _ = peer.subscribe(SubscribeRequestParams::new(uri)).await;
            }
        });
    }

    fn failed(&self, error: String) -> McpError {
        let message = format!("MCP server {} failed: {error}", self.spec.name);
        tracing::warn!(target: "orchard::mcp", "{message}");
        let mut health = lock(&self.health);
        health.breaker.failure(Instant::now());
        health.last_error = Some(error);
        health.up = false;
        McpError::Unavailable(message)
    }

    /// The server answered: its breaker closes and it counts as up.
    fn succeeded(&self) {
        let mut health = lock(&self.health);
        health.breaker.success();
        health.up = true;
    }

    fn mark_down(&self, why: &str) {
        let mut health = lock(&self.health);
        health.up = false;
        health.last_error = Some(why.to_string());
    }

    async fn connect(&self) -> Result<RunningService<RoleClient, Watcher>, String> {
        let watcher = Watcher {
            server: self.spec.name.clone(),
            stale: self.stale.clone(),
            generation: self.generation.clone(),
            shared: self.shared.clone(),
        };
        match &self.spec.transport {
            Transport::Stdio {
                command,
                args,
                env,
                cwd,
            } => {
                let program = program::resolve(command)?;
                let mut cmd = tokio::process::Command::new(&program);
                cmd.args(args).envs(env);
                if std::env::var_os("PATH").is_some() || !program::search_path().is_empty() {
                    let path = std::env::join_paths(program::search_path())
                        .map_err(|e| format!("cannot build PATH: {e}"))?;
                    if !env.contains_key("PATH") {
                        cmd.env("PATH", path);
                    }
                }
                if let Some(cwd) = cwd {
                    cmd.current_dir(cwd);
                }
                let (transport, stderr) = rmcp::transport::TokioChildProcess::builder(cmd)
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
                if let Some(stderr) = stderr {
                    drain(self.spec.name.clone(), stderr);
                }
                watcher
                    .serve(transport)
                    .await
                    .map_err(|e| format!("it did not complete the MCP handshake: {e}"))
            }
            Transport::Http { url, headers } => {
                use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
                let mut config = StreamableHttpClientTransportConfig::with_uri(url.as_str());
                let mut custom = HashMap::new();
                for (name, value) in headers {
                    if name.eq_ignore_ascii_case("authorization") {
                        let token = value.strip_prefix("Bearer ").unwrap_or(value);
                        config = config.auth_header(token.to_string());
                        continue;
                    }
                    let header = http::HeaderName::try_from(name.as_str())
                        .map_err(|_| format!("header name {name:?} is not valid"))?;
                    let value = http_value(value)
                        .ok_or_else(|| format!("the value of header {name:?} is not valid"))?;
                    custom.insert(header, value);
                }
                let mut config = config
                    .custom_headers(custom)
                    .max_concurrent_requests(HTTP_CONCURRENCY);
                config.channel_buffer_capacity = HTTP_CONCURRENCY;
                // rmcp's client opens a connection per request. Kept-alive
                // connections were no faster in `orchard mcp bench`, and with
                // a server that writes its answer in pieces without
                // TCP_NODELAY, each call stalled ~40 ms on the delayed ACK.
                let transport = rmcp::transport::StreamableHttpClientTransport::from_config(config);
                watcher
                    .serve(transport)
                    .await
                    .map_err(|e| format!("cannot connect to {url}: {e}"))
            }
        }
    }

    async fn disconnect(&self) {
        let service = self.link.lock().await.take();
        if let Some(service) = service {
            let _ = service.cancel().await;
        }
        lock(&self.health).up = false;
    }

    /// This server's lists, fetched when they are not fresh.
    async fn lists(&self, options: &HubOptions) -> Result<Lists, McpError> {
        if self.builtin {
            return Ok(Lists {
                tools: builtin::tools()
                    .into_iter()
                    .filter(|t| self.spec.offers(&t.name))
                    .collect(),
                ..Lists::default()
            });
        }
        if !self.stale.load(Ordering::SeqCst)
            && let Some(lists) = lock(&self.lists).clone()
        {
            return Ok(lists);
        }
        let peer = self.peer(options).await?;
        self.stale.store(false, Ordering::SeqCst);
        let fetched = tokio::time::timeout(options.connect_timeout, async {
            let info = peer.peer_info();
            let capabilities = info.as_ref().map(|i| i.capabilities.clone());
            let has = |f: fn(&rmcp::model::ServerCapabilities) -> bool| {
                capabilities.as_ref().is_none_or(f)
            };
            let tools = if has(|c| c.tools.is_some()) {
                peer.list_all_tools().await?
            } else {
                Vec::new()
            };
            let prompts = if has(|c| c.prompts.is_some()) {
                peer.list_all_prompts().await.unwrap_or_default()
            } else {
                Vec::new()
            };
            let (resources, templates) = if has(|c| c.resources.is_some()) {
                (
                    peer.list_all_resources().await.unwrap_or_default(),
                    peer.list_all_resource_templates().await.unwrap_or_default(),
                )
            } else {
                (Vec::new(), Vec::new())
            };
            Ok::<_, rmcp::ServiceError>(Lists {
                tools,
                prompts,
                resources,
                templates,
            })
        })
        .await;
        let lists = match fetched {
            Ok(Ok(mut lists)) => {
                lists.tools.retain(|t| self.spec.offers(&t.name));
                lists
            }
            Ok(Err(error)) => {
                self.stale.store(true, Ordering::SeqCst);
                return Err(self.failed(format!("listing its tools failed: {error}")));
            }
            Err(_) => {
                self.stale.store(true, Ordering::SeqCst);
                return Err(self.failed("listing its tools timed out".into()));
            }
        };
        self.succeeded();
        *lock(&self.lists) = Some(lists.clone());
        Ok(lists)
    }

    /// One request through the breaker, with the timeout; the server is told
    /// when the caller cancels or the time runs out (dropping rmcp's request
    /// sends `notifications/cancelled`). Never retried.
    async fn request<T, F, Fut>(
        &self,
        options: &HubOptions,
        what: &str,
        cancel: CancellationToken,
        send: F,
    ) -> Result<T, McpError>
    where
        F: FnOnce(Peer) -> Fut,
        Fut: Future<Output = Result<T, rmcp::ServiceError>>,
    {
        let peer = self.peer(options).await?;
        let outcome = tokio::select! {
            outcome = tokio::time::timeout(options.call_timeout, send(peer)) => outcome,
            _ = cancel.cancelled() => return Err(McpError::Cancelled),
        };
        match outcome {
            Ok(Ok(value)) => {
                self.succeeded();
                Ok(value)
            }
            Ok(Err(rmcp::ServiceError::McpError(error))) => {
                // The server answered: it is alive, the request was wrong.
                self.succeeded();
                Err(McpError::Server(format!("{what}: {}", error.message)))
            }
            Ok(Err(error)) => {
                let failure = self.failed(format!("{what}: {error}"));
                if matches!(
                    error,
                    rmcp::ServiceError::TransportClosed | rmcp::ServiceError::TransportSend(_)
                ) {
                    // The connection is gone (a child that exited, a server
                    // that went away): the next call starts a new one.
                    self.disconnect().await;
                }
                Err(failure)
            }
            Err(_) => {
                self.failed(format!(
                    "{what} did not answer within {} s",
                    options.call_timeout.as_secs()
                ));
                Err(McpError::Timeout(format!(
                    "{what} did not answer within {} s and was cancelled (tool calls are never retried)",
                    options.call_timeout.as_secs()
                )))
            }
        }
    }

    /// Starts the server if needed and pings it.
    async fn probe(&self, options: &HubOptions) {
        if self.builtin {
            return;
        }
        if self.peer(options).await.is_ok() {
            self.ping(options).await;
            let _ = self.lists(options).await;
        }
    }

    async fn ping(&self, options: &HubOptions) {
        let peer = {
            let link = self.link.lock().await;
            match link.as_ref() {
                Some(service) => service.peer().clone(),
                None => return,
            }
        };
        let answered = tokio::time::timeout(
            options.connect_timeout.min(Duration::from_secs(10)),
            async {
                peer.send_request(rmcp::model::ClientRequest::PingRequest(Default::default()))
                    .await
            },
        )
        .await;
        match answered {
            Ok(Ok(_)) => self.succeeded(),
            Ok(Err(error)) => {
                self.failed(format!("it did not answer a ping: {error}"));
                self.disconnect().await;
            }
            Err(_) => {
                self.failed("it did not answer a ping in time".into());
                self.disconnect().await;
            }
        }
    }
}

/// Sets a server's log level, when it logs at all.
#[allow(deprecated)]
async fn set_level(peer: &Peer, level: LoggingLevel, timeout: Duration) {
    let logs = peer
        .peer_info()
        .is_some_and(|info| info.capabilities.logging.is_some());
    if logs {
        let _ =
            tokio::time::timeout(timeout, peer.set_level(SetLevelRequestParams::new(level))).await;
    }
}

fn http_value(value: &str) -> Option<http::HeaderValue> {
    http::HeaderValue::from_str(value).ok()
}

/// Copies a child's stderr into Orchard's log, line by line, so a server
/// that complains is heard and its pipe never fills.
fn drain(server: String, stderr: tokio::process::ChildStderr) {
    use tokio::io::AsyncBufReadExt;
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::info!(target: "orchard::mcp", server = %server, "{line}");
        }
    });
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breaker_opens_after_repeated_failures_and_a_trial_closes_it() {
        let start = Instant::now();
        let mut breaker = Breaker::default();
        for _ in 0..FAILURES_TO_OPEN - 1 {
            breaker.failure(start);
            assert_eq!(breaker.admit(start), Ok(()));
        }
        breaker.failure(start);
        assert_eq!(breaker.name(), "open");
        assert!(breaker.admit(start).is_err());
        // After the backoff one trial goes through; its failure doubles the wait.
        let later = start + FIRST_BACKOFF;
        assert_eq!(breaker.admit(later), Ok(()));
        assert_eq!(breaker.name(), "half-open");
        breaker.failure(later);
        assert_eq!(breaker.admit(later + FIRST_BACKOFF), Err(FIRST_BACKOFF));
        assert_eq!(breaker.admit(later + FIRST_BACKOFF * 2), Ok(()));
        breaker.success();
        assert_eq!(breaker, Breaker::Closed { failures: 0 });
    }

    #[tokio::test]
    async fn the_built_in_server_is_listed_and_called_by_its_aggregated_names() {
        let hub = Hub::new(HubOptions::default());
        let catalog = hub.catalog().await;
        let names: Vec<&str> = catalog.tools.iter().map(|t| t.name.as_ref()).collect();
        assert_eq!(
            names,
            ["orchard-tools__calculate", "orchard-tools__get_weather"]
        );
        let mut args = JsonObject::new();
        args.insert("expression".into(), "2^10".into());
        let result = hub
            .call_tool(
                "orchard-tools__calculate",
                Some(args),
                CancellationToken::new(),
                None,
            )
            .await
            .expect("call");
        let text: String = result
            .content
            .iter()
            .filter_map(|c| c.as_text().map(|t| t.text.clone()))
            .collect();
        assert_eq!(text, "1024");
        let missing = hub
            .call_tool("nobody__nothing", None, CancellationToken::new(), None)
            .await;
        assert!(matches!(missing, Err(McpError::NotFound(_))), "{missing:?}");
    }

    #[tokio::test]
    async fn a_server_that_cannot_start_is_reported_and_opens_its_breaker() {
        let hub = Hub::new(HubOptions {
            builtin: false,
            ..HubOptions::default()
        });
        hub.sync(vec![ServerSpec {
            name: "broken".into(),
            transport: Transport::Stdio {
                command: "orchard-no-such-program".into(),
                args: Vec::new(),
                env: BTreeMap::new(),
                cwd: None,
            },
            enabled: true,
            allow: Vec::new(),
            deny: Vec::new(),
        }])
        .await;
        for _ in 0..FAILURES_TO_OPEN {
            let catalog = hub.catalog().await;
            assert!(catalog.tools.is_empty());
            assert_eq!(catalog.unavailable.len(), 1);
            assert!(
                catalog.unavailable[0].1.contains("was not found"),
                "{:?}",
                catalog.unavailable
            );
        }
        let status = hub.status(false).await;
        assert_eq!(status.len(), 1);
        assert_eq!(
            (status[0].state, status[0].breaker),
            ("down", "open"),
            "{status:?}"
        );
        // While open, a call fails at once and says when it will try again.
        let call = hub
            .call_server_tool("broken", "anything", None, CancellationToken::new())
            .await;
        assert!(
            matches!(&call, Err(McpError::Unavailable(m)) if m.contains("trying again in")),
            "{call:?}"
        );
    }
}
