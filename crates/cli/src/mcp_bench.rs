//! `orchard mcp bench`: what Orchard's MCP port adds to a tool call. One
//! process starts a loopback streamable-HTTP MCP server with an `echo` tool
//! and Orchard's real port (router, key check, Host/Origin guard, the
//! aggregator) with that server configured, then runs `tools/call` from 1, 8
//! and 32 concurrent rmcp clients, first straight to the echo server, then
//! through `/mcp`. Both paths share the machine, the clients and the echo
//! server, so the difference is the port's overhead.

use std::sync::Arc;
use std::time::{Duration, Instant};

use orchard_core::catalog::Catalog;
use orchard_core::mcp::McpServers;
use orchard_core::ops::Orchard;
use orchard_core::{ManagerOptions, ModelManager};
use orchard_mcp::{ServerSpec, Transport};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, InitializeResult,
    JsonObject, ListToolsResult, PaginatedRequestParams, ProtocolVersion, ServerCapabilities,
    ServerConfig, Tool,
};
use rmcp::service::{ClientLifecycleMode, ClientServiceExt, RequestContext};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde::Serialize;

use crate::bench_server::{Percentiles, percentiles};

/// The key the benchmark's port requires.
const KEY: &str = "orchard-mcp-bench";
/// The text each call echoes.
const TEXT: &str = "The quick brown fox jumps over the lazy dog.";

/// One concurrency level's figures for one path.
#[derive(Debug, Serialize)]
pub struct PathResult {
    pub calls: usize,
    pub calls_per_second: f64,
    pub latency_ms: Percentiles,
}

/// One concurrency level: direct, through Orchard, and the difference.
#[derive(Debug, Serialize)]
pub struct Level {
    pub clients: usize,
    pub direct: PathResult,
    pub orchard: PathResult,
    /// Orchard's percentile minus the direct one, in milliseconds.
    pub overhead_ms: Percentiles,
}

/// Runs the benchmark for `seconds` per path and level.
pub async fn run(levels: &[usize], seconds: f64) -> Result<Vec<Level>, String> {
    let echo_url = start_echo().await?;
    // A database file, as `orchard serve` has: the audit log writes to it.
    let home =
        tempfile::tempdir().map_err(|e| format!("cannot make a folder for the database: {e}"))?;
    let orchard_url = start_orchard(&echo_url, home.path()).await?;
    let duration = Duration::from_secs_f64(seconds);
    let mut out = Vec::new();
    for &clients in levels {
        let direct = measure(&echo_url, None, "echo", clients, duration).await?;
        let orchard = measure(&orchard_url, Some(KEY), "echo__echo", clients, duration).await?;
        let overhead_ms = Percentiles {
            p50: orchard.latency_ms.p50 - direct.latency_ms.p50,
            p90: orchard.latency_ms.p90 - direct.latency_ms.p90,
            p99: orchard.latency_ms.p99 - direct.latency_ms.p99,
        };
        out.push(Level {
            clients,
            direct,
            orchard,
            overhead_ms,
        });
    }
    Ok(out)
}

/// The echo server: one tool that returns its `text`.
#[derive(Debug, Clone)]
struct Echo;

impl ServerHandler for Echo {
    fn get_info(&self) -> ServerConfig {
        InitializeResult::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let schema = serde_json::json!({
            "type": "object",
            "properties": {"text": {"type": "string"}},
            "required": ["text"]
        });
        let schema = schema.as_object().cloned().unwrap_or_default();
        Ok(ListToolsResult::with_all_items(vec![Tool::new(
            "echo",
            "Returns its text.",
            Arc::new(schema),
        )]))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let text = request
            .arguments
            .as_ref()
            .and_then(|a| a.get("text"))
            .and_then(|t| t.as_str())
            .unwrap_or_default()
            .to_string();
        Ok(CallToolResult::success(vec![ContentBlock::text(text)]).into())
    }
}

async fn start_echo() -> Result<String, String> {
    let service = StreamableHttpService::new(
        || Ok(Echo),
        Arc::new(LocalSessionManager::default()),
        // Like Orchard's port: JSON answers where no event stream is needed.
        StreamableHttpServerConfig::default().with_json_response(true),
    );
    let app = axum::Router::new().route_service("/mcp", service);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot bind the echo server: {e}"))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    // Served as Orchard's port is, so the two hops are alike.
    tokio::spawn(orchard_server::serve(listener, app, std::future::pending()));
    Ok(format!("http://{address}/mcp"))
}

/// Orchard's port as `orchard serve` builds it, over a database in `home`
/// whose one MCP server is the echo server.
async fn start_orchard(echo_url: &str, home: &std::path::Path) -> Result<String, String> {
    let store = orchard_store::Store::open(&home.join("orchard.db")).map_err(|e| e.to_string())?;
    McpServers::new(store.clone(), None).add(
        &ServerSpec {
            name: "echo".into(),
            transport: Transport::Http {
                url: echo_url.into(),
                headers: Default::default(),
            },
            enabled: true,
            allow: Vec::new(),
            deny: Vec::new(),
        },
        false,
    )?;
    let manager = ModelManager::new(Catalog::new(), ManagerOptions::default());
    let orchard = Orchard::offline(manager, store);
    let config = orchard_server::ServerConfig {
        auth: orchard_server::AuthConfig::required(&[KEY.to_string()]),
        ..orchard_server::ServerConfig::default()
    };
    let app = orchard_server::router_for(orchard, config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot bind Orchard's port: {e}"))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(orchard_server::serve(listener, app, std::future::pending()));
    Ok(format!("http://{address}/mcp"))
}

async fn measure(
    url: &str,
    key: Option<&str>,
    tool: &str,
    clients: usize,
    duration: Duration,
) -> Result<PathResult, String> {
    // Every client connects and makes one call before the clock starts.
    let mut connected = Vec::with_capacity(clients);
    for _ in 0..clients {
        let mut config = StreamableHttpClientTransportConfig::with_uri(url);
        if let Some(key) = key {
            config = config.auth_header(key.to_string());
        }
        // A client that keeps its connection open between calls, as most
        // MCP clients do (rmcp's default opens one per request).
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .build()
            .map_err(|e| format!("cannot set up an HTTP client: {e}"))?;
        let transport = rmcp::transport::StreamableHttpClientTransport::with_client(http, config);
        // A current client: the 2026-07-28 protocol, discovered, without a
        // session (older clients get one, and answers as event streams).
        let lifecycle = ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::LATEST],
        };
        let client =
            ().serve_with_lifecycle(transport, lifecycle)
                .await
                .map_err(|e| format!("cannot connect to {url}: {e}"))?;
        call(&client, tool).await?;
        connected.push(client);
    }
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for client in connected {
        let tool = tool.to_string();
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let sent = Instant::now();
                call(&client, &tool).await?;
                latencies.push(sent.elapsed().as_secs_f64());
            }
            let _ = client.cancel().await;
            Ok::<_, String>(latencies)
        });
    }
    let mut all = Vec::new();
    while let Some(done) = tasks.join_next().await {
        all.extend(done.map_err(|e| e.to_string())??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let calls = all.len();
    Ok(PathResult {
        calls,
        calls_per_second: calls as f64 / elapsed,
        latency_ms: percentiles(all).ok_or("no call finished")?,
    })
}

async fn call(
    client: &rmcp::service::RunningService<rmcp::RoleClient, ()>,
    tool: &str,
) -> Result<(), String> {
    let mut arguments = JsonObject::new();
    arguments.insert("text".into(), TEXT.into());
    let mut params = CallToolRequestParams::new(tool.to_string());
    params.arguments = Some(arguments);
    let result = client
        .call_tool(params)
        .await
        .map_err(|e| format!("tools/call {tool} failed: {e}"))?;
    let text: String = result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect();
    if result.is_error == Some(true) || text != TEXT {
        return Err(format!("tools/call {tool} answered {text:?}"));
    }
    Ok(())
}

/// The figures as a Markdown table.
pub fn table(levels: &[Level]) -> String {
    let mut out = String::from(
        "| clients | direct calls/s | via /mcp calls/s | direct p50 / p90 / p99 ms | via /mcp p50 / p90 / p99 ms | overhead p50 / p90 / p99 ms |\n|---:|---:|---:|---|---|---|\n",
    );
    for level in levels {
        let p = |p: &Percentiles| format!("{:.2} / {:.2} / {:.2}", p.p50, p.p90, p.p99);
        out.push_str(&format!(
            "| {} | {:.0} | {:.0} | {} | {} | {} |\n",
            level.clients,
            level.direct.calls_per_second,
            level.orchard.calls_per_second,
            p(&level.direct.latency_ms),
            p(&level.orchard.latency_ms),
            p(&level.overhead_ms),
        ));
    }
    out
}
