//! Orchard's local HTTP port: the OpenAI API (`/v1/chat/completions`,
//! `/v1/completions`, `/v1/models`), the Anthropic Messages API
//! (`/v1/messages`), `/health` and `/metrics`, over the model manager.
//!
//! [`router`] builds the app from an [`AppState`]; [`serve`] runs it on a
//! listener until a shutdown future resolves, so tests bind `127.0.0.1:0`.

mod anthropic;
pub mod auth;
pub mod error;
pub mod launch;
pub mod metrics;
mod openai;
mod sse;

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
use orchard_store::Store;
use serde_json::json;
use tokio::net::TcpListener;
use tower_http::cors::{AllowOrigin, CorsLayer};

pub use auth::AuthConfig;
pub use error::{ApiError, Flavor};
pub use launch::{LaunchError, LaunchOptions, Launched, launch};
pub use metrics::Metrics;

/// Every route, as (method, path); the OpenAPI document must list exactly these.
pub const ROUTES: [(&str, &str); 7] = [
    ("GET", "/health"),
    ("GET", "/metrics"),
    ("GET", "/v1/models"),
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/completions"),
    ("POST", "/v1/messages"),
    ("POST", "/v1/messages/count_tokens"),
];

/// The origins of Orchard's own windows, the only ones CORS lets in.
pub const APP_ORIGINS: [&str; 3] = [
    "tauri://localhost",
    "http://tauri.localhost",
    "https://tauri.localhost",
];

/// Limits and policies of one server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub auth: AuthConfig,
    /// Largest request body, in bytes.
    pub max_request_bytes: usize,
    /// Origins allowed besides [`APP_ORIGINS`] (the UI's dev server).
    pub extra_origins: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            auth: AuthConfig::required(&[]),
            max_request_bytes: orchard_store::Settings::default().max_request_bytes,
            extra_origins: Vec::new(),
        }
    }
}

/// What every handler can reach. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Resolves model names and runs generations.
    pub manager: ModelManager,
    /// API keys (and settings).
    pub store: Store,
    /// Who may call; fixed for the server's life.
    pub auth: Arc<AuthConfig>,
    /// Counters shared by all requests.
    pub metrics: Arc<Metrics>,
    /// When the server started.
    pub started: Instant,
}

/// The app: routes, auth, CORS, body limit and metrics.
pub fn router(manager: ModelManager, store: Store, config: ServerConfig) -> Router {
    let state = AppState {
        manager,
        store,
        auth: Arc::new(config.auth),
        metrics: Arc::new(Metrics::default()),
        started: Instant::now(),
    };
    let origins: Vec<HeaderValue> = APP_ORIGINS
        .iter()
        .map(|o| o.to_string())
        .chain(config.extra_origins)
        .filter_map(|o| HeaderValue::from_str(&o).ok())
        .collect();
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::HeaderName::from_static("x-api-key"),
            header::HeaderName::from_static("anthropic-version"),
        ]);
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/models", get(openai::models))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/completions", post(openai::completions))
        .route("/v1/messages", post(anthropic::messages))
        .route("/v1/messages/count_tokens", post(anthropic::count_tokens))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .layer(DefaultBodyLimit::max(config.max_request_bytes))
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

async fn metrics(State(state): State<AppState>, _auth: auth::Authorized) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(&state.manager),
    )
        .into_response()
}

async fn not_found(request: Request) -> ApiError {
    let path = request.uri().path().to_string();
    ApiError::not_found(format!(
        "there is no route {} {path}; the API is at /v1 (see GET /v1/models)",
        request.method()
    ))
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
