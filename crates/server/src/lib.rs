//! Orchard's local HTTP port: the OpenAI API (`/v1/chat/completions`,
//! `/v1/completions`, `/v1/responses`, `/v1/embeddings`, `/v1/models`), the Anthropic Messages API
//! (`/v1/messages`), `/health` and `/metrics`, over the model manager; the
//! management API the web UI uses (`/api`), the aggregated MCP servers
//! (`/mcp`), and the web UI itself at `/`.
//!
//! [`router`] builds the app from an [`AppState`]; [`serve`] runs it on a
//! listener until a shutdown future resolves, so tests bind `127.0.0.1:0`.

mod anthropic;
mod api;
pub mod auth;
pub mod error;
mod guard;
mod images;
pub mod launch;
mod mcp;
pub mod metrics;
mod openai;
mod sse;
mod ui;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use orchard_core::ModelManager;
use orchard_core::ops::Orchard;
use orchard_store::Store;
use serde_json::json;
use tokio::net::TcpListener;
use tower_http::cors::{AllowOrigin, CorsLayer};

pub use auth::AuthConfig;
pub use error::{ApiError, Flavor};
pub use launch::{LaunchError, LaunchOptions, Launched, Prepared, launch, prepare};
pub use metrics::Metrics;

/// The origins of Orchard's own windows, the only ones CORS lets in.
pub const APP_ORIGINS: [&str; 3] = [
    "tauri://localhost",
    "http://tauri.localhost",
    "https://tauri.localhost",
];

/// The names of this machine's loopback interface a `Host` header may carry.
pub const LOOPBACK_HOSTS: [&str; 3] = ["127.0.0.1", "localhost", "[::1]"];

/// Limits and policies of one server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub auth: AuthConfig,
    /// Largest request body, in bytes.
    pub max_request_bytes: usize,
    /// Origins allowed besides [`APP_ORIGINS`] (the UI's dev server).
    pub extra_origins: Vec<String>,
    /// Host names (without port) accepted in `Host` besides [`LOOPBACK_HOSTS`]:
    /// the bound address and the `allowed_hosts` setting when bound beyond
    /// loopback. Anything else is refused, which stops DNS rebinding.
    pub extra_hosts: Vec<String>,
    /// The longest silence on an event stream before a keep-alive comment.
    pub keep_alive: std::time::Duration,
    /// At most this many tools are listed on `/mcp` (0: all), the rest found
    /// through its search tool.
    pub mcp_max_tools: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            auth: AuthConfig::required(&[]),
            max_request_bytes: orchard_store::Settings::default().max_request_bytes,
            extra_origins: Vec::new(),
            extra_hosts: Vec::new(),
            keep_alive: sse::KEEP_ALIVE,
            mcp_max_tools: 0,
        }
    }
}

/// What every handler can reach. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Resolves model names and runs generations.
    pub manager: ModelManager,
    /// The window's operations (`/api`), over the same manager and store.
    pub orchard: Orchard,
    /// API keys (and settings).
    pub store: Store,
    /// Who may call; fixed for the server's life.
    pub auth: Arc<AuthConfig>,
    /// Counters shared by all requests.
    pub metrics: Arc<Metrics>,
    /// When the server started.
    pub started: Instant,
    /// The longest silence on an event stream.
    pub keep_alive: std::time::Duration,
    /// `/mcp`: the aggregated MCP servers.
    pub mcp: mcp::McpService,
}

/// One route as the router holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteInfo {
    pub method: &'static str,
    pub path: &'static str,
    /// Behind the API-key layer.
    pub protected: bool,
}

/// Builds a router and the list of what it routes in the same calls, so the
/// list cannot drift from the router.
pub(crate) struct Routes {
    router: Router<AppState>,
    list: Vec<RouteInfo>,
}

impl Routes {
    fn new() -> Self {
        Routes {
            router: Router::new(),
            list: Vec::new(),
        }
    }

    fn get<H, T>(self, path: &'static str, handler: H) -> Self
    where
        H: axum::handler::Handler<T, AppState>,
        T: 'static,
    {
        self.add("GET", path, get(handler))
    }

    fn post<H, T>(self, path: &'static str, handler: H) -> Self
    where
        H: axum::handler::Handler<T, AppState>,
        T: 'static,
    {
        self.add("POST", path, post(handler))
    }

    fn delete<H, T>(self, path: &'static str, handler: H) -> Self
    where
        H: axum::handler::Handler<T, AppState>,
        T: 'static,
    {
        self.add("DELETE", path, axum::routing::delete(handler))
    }

    fn add(
        mut self,
        method: &'static str,
        path: &'static str,
        route: axum::routing::MethodRouter<AppState>,
    ) -> Self {
        self.router = self.router.route(path, route);
        self.list.push(RouteInfo {
            method,
            path,
            protected: false,
        });
        self
    }
}

/// Routes anyone on this machine may call.
fn public_routes() -> Routes {
    Routes::new().get("/health", health)
}

/// Routes that need an API key (when keys are required). A new route goes
/// here unless it is deliberately public.
fn protected_routes() -> Routes {
    let mut routes = Routes::new()
        .get("/metrics", metrics)
        .get("/v1/models", openai::models)
        .post("/v1/chat/completions", openai::chat_completions)
        .post("/v1/completions", openai::completions)
        .post("/v1/embeddings", openai::embeddings)
        .post("/v1/responses", openai::responses::create)
        .get("/v1/responses/{id}", openai::responses::get)
        .delete("/v1/responses/{id}", openai::responses::delete)
        .post("/v1/messages", anthropic::messages)
        .post("/v1/messages/count_tokens", anthropic::count_tokens)
        .post("/mcp", mcp::handle)
        .get("/mcp", mcp::handle)
        .delete("/mcp", mcp::handle);
    routes = api::routes(routes);
    for route in &mut routes.list {
        route.protected = true;
    }
    routes
}

/// Every route the router serves; the OpenAPI document must list exactly these.
pub fn routes() -> Vec<RouteInfo> {
    let mut all = public_routes().list;
    all.extend(protected_routes().list);
    all
}

/// The app: routes, auth, the port's defences (Host, Origin, content type),
/// CORS, body limit and metrics.
/// The window's operations come from [`Orchard::from_env`].
pub fn router(manager: ModelManager, store: Store, config: ServerConfig) -> Router {
    let orchard = Orchard::from_env(manager.clone(), store.clone()).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "the Hub is not usable; search and downloads will fail");
        Orchard::offline(manager, store)
    });
    router_for(orchard, config)
}

/// The app over `orchard`'s manager and store.
pub fn router_for(orchard: Orchard, config: ServerConfig) -> Router {
    let mcp = mcp::service(orchard.mcp(), config.mcp_max_tools, config.keep_alive);
    let state = AppState {
        mcp,
        manager: orchard.manager().clone(),
        store: orchard.store().clone(),
        orchard,
        auth: Arc::new(config.auth),
        metrics: Arc::new(Metrics::default()),
        started: Instant::now(),
        keep_alive: config.keep_alive,
    };
    let origins: Vec<String> = APP_ORIGINS
        .iter()
        .map(|o| o.to_string())
        .chain(config.extra_origins)
        .collect();
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(
            origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()),
        ))
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::HeaderName::from_static("x-api-key"),
            header::HeaderName::from_static("anthropic-version"),
            header::HeaderName::from_static("anthropic-beta"),
        ]);
    let guard = Arc::new(guard::Guard::new(origins, config.extra_hosts));
    let protected = protected_routes()
        .router
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_key,
        ));
    public_routes()
        .router
        .merge(protected)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .layer(DefaultBodyLimit::max(config.max_request_bytes))
        .layer(middleware::from_fn_with_state(guard, guard::check))
        .layer(cors)
        .with_state(state)
}

/// Serves `app` on `listener` until `shutdown` resolves; requests in flight
/// then finish before this returns.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    // Each answer goes out as soon as it is written: without this, a small
    // write (a streamed token, a JSON-RPC reply written after its headers)
    // can wait on the client's delayed ACK, about 40 ms on Linux, whenever
    // the client keeps its connection open between requests.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn health(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.started.elapsed().as_secs(),
        "loaded_models": state.manager.loaded().len(),
    }))
}

async fn metrics(State(state): State<AppState>) -> Response {
    let mut text = state.metrics.render(&state.manager);
    metrics::render_mcp(&mut text, state.orchard.mcp());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn not_found(request: Request) -> Response {
    if let Some(page) = ui::serve(&request) {
        return page;
    }
    let path = request.uri().path().to_string();
    ApiError::not_found(format!(
        "there is no route {} {path}; the API is at /v1 (see GET /v1/models)",
        request.method()
    ))
    .with_flavor(Flavor::for_path(&path))
    .into_response()
}

async fn method_not_allowed(request: Request) -> ApiError {
    let path = request.uri().path().to_string();
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{path} does not answer {}; see docs/openapi.json for its method",
            request.method()
        ),
    )
    .with_flavor(Flavor::for_path(&path))
}

/// Counts each request by route and status.
async fn count_requests(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let endpoint = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let response = next.run(request).await;
    state.metrics.request(&endpoint, response.status().as_u16());
    response
}

/// Seconds since the Unix epoch, for `created` fields.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A random id with `prefix`, for responses and tool uses.
fn new_id(prefix: &str) -> String {
    let mut bytes = [0u8; 12];
    if getrandom::fill(&mut bytes).is_err() {
        bytes[..8].copy_from_slice(&(unix_now() ^ u64::from(std::process::id())).to_le_bytes());
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}{hex}")
}
