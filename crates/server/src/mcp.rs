//! `/mcp`: every MCP server Orchard runs (the user's and the built-in one),
//! aggregated into one, over streamable HTTP. rmcp's server transport does
//! the protocol; the port's own layers (the API key, the Host and Origin
//! checks) stand in front of it like every other route.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use orchard_core::mcp::Aggregator;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

use crate::AppState;

/// The streamable-HTTP server of the aggregator.
#[derive(Clone)]
pub struct McpService(StreamableHttpService<Aggregator, LocalSessionManager>);

impl std::fmt::Debug for McpService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("McpService")
    }
}

/// The service over `hub`: each client session gets an [`Aggregator`];
/// sessions end when the hub shuts down.
pub fn service(
    hub: &orchard_mcp::Hub,
    max_tools: usize,
    keep_alive: std::time::Duration,
) -> McpService {
    let mut config = StreamableHttpServerConfig::default();
    // The port's guard already refuses foreign Host and Origin headers, for
    // every route alike, including the names allowed when bound beyond
    // loopback; a second list here would only disagree with it.
    config.allowed_hosts = Vec::new();
    config.cancellation_token = hub.closing().child_token();
    config.sse_keep_alive = Some(keep_alive);
    // A plain JSON answer where the handler sends nothing before it: no
    // event stream to set up for the usual request and response.
    config.json_response = true;
    let hub = hub.clone();
    McpService(StreamableHttpService::new(
        move || Ok(Aggregator::new(hub.clone(), max_tools)),
        Arc::new(LocalSessionManager::default()),
        config,
    ))
}

/// `GET`, `POST` and `DELETE /mcp`.
pub async fn handle(State(state): State<AppState>, request: Request) -> Response {
    let mut response = state.mcp.0.handle(request).await.map(axum::body::Body::new);
    // rmcp sends its refusals (406, 415...) as bare text without a type.
    let headers = response.headers_mut();
    if !headers.contains_key(header::CONTENT_TYPE) && !response.status().is_success() {
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    response
}
