//! Prometheus metrics, kept by hand: a few counters and histograms behind
//! one mutex, rendered as text on `GET /metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use orchard_core::{GenerationStats, ModelManager};

/// Upper bounds, in seconds, of the latency histograms' buckets.
const BUCKETS: [f64; 12] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (bound, count) in BUCKETS.iter().zip(self.counts.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, count) in BUCKETS.iter().zip(self.counts.iter()) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

/// The MCP servers' figures: calls, errors and latency per tool, and each
/// server's breaker and state.
pub fn render_mcp(out: &mut String, hub: &orchard_mcp::Hub) {
    let stats = hub.tool_stats();
    out.push_str("# HELP orchard_mcp_tool_calls_total MCP tool calls by server and tool.\n# TYPE orchard_mcp_tool_calls_total counter\n");
    for ((server, tool), s) in &stats {
        let _ = writeln!(
            out,
            "orchard_mcp_tool_calls_total{{server=\"{}\",tool=\"{}\"}} {}",
            escape(server),
            escape(tool),
            s.calls
        );
    }
    out.push_str("# HELP orchard_mcp_tool_errors_total MCP tool calls that failed (the tool's error, a timeout, a server down).\n# TYPE orchard_mcp_tool_errors_total counter\n");
    for ((server, tool), s) in &stats {
        let _ = writeln!(
            out,
            "orchard_mcp_tool_errors_total{{server=\"{}\",tool=\"{}\"}} {}",
            escape(server),
            escape(tool),
            s.errors
        );
    }
    out.push_str("# HELP orchard_mcp_tool_duration_seconds MCP tool call latency.\n# TYPE orchard_mcp_tool_duration_seconds histogram\n");
    for ((server, tool), s) in &stats {
        let labels = format!("server=\"{}\",tool=\"{}\"", escape(server), escape(tool));
        for (bound, count) in orchard_mcp::hub::LATENCY_BUCKETS
            .iter()
            .zip(s.buckets.iter())
        {
            let _ = writeln!(
                out,
                "orchard_mcp_tool_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "orchard_mcp_tool_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}\norchard_mcp_tool_duration_seconds_sum{{{labels}}} {}\norchard_mcp_tool_duration_seconds_count{{{labels}}} {}",
            s.calls, s.seconds, s.calls
        );
    }
    out.push_str("# HELP orchard_mcp_server_up 1 when the MCP server is connected (or built in), else 0.\n# TYPE orchard_mcp_server_up gauge\n");
    let status = hub.last_status();
    for server in &status {
        let _ = writeln!(
            out,
            "orchard_mcp_server_up{{server=\"{}\"}} {}",
            escape(&server.name),
            u8::from(server.state == "up")
        );
    }
    out.push_str("# HELP orchard_mcp_breaker_state The MCP server's circuit breaker: 0 closed, 1 half-open, 2 open.\n# TYPE orchard_mcp_breaker_state gauge\n");
    for server in &status {
        let value = match server.breaker {
            "open" => 2,
            "half-open" => 1,
            _ => 0,
        };
        let _ = writeln!(
            out,
            "orchard_mcp_breaker_state{{server=\"{}\"}} {value}",
            escape(&server.name)
        );
    }
}

#[derive(Debug, Default)]
struct Counters {
    /// (endpoint, status) -> requests.
    requests: BTreeMap<(String, u16), u64>,
    prompt_tokens: u64,
    cached_prompt_tokens: u64,
    generated_tokens: u64,
    time_to_first_token: Histogram,
    /// endpoint -> whole-request latency (to the end of the stream).
    latency: BTreeMap<String, Histogram>,
    /// model -> decode tokens/s of its last request.
    decode_tps: BTreeMap<String, f64>,
}

/// The server's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    counters: Mutex<Counters>,
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.counters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a finished request.
    pub fn request(&self, endpoint: &str, status: u16) {
        *self
            .lock()
            .requests
            .entry((endpoint.to_string(), status))
            .or_default() += 1;
    }

    pub fn first_token(&self, after: Duration) {
        self.lock().time_to_first_token.observe(after.as_secs_f64());
    }

    /// Records a generation that ended, `elapsed` after its request arrived.
    pub fn generation(
        &self,
        endpoint: &str,
        model: &str,
        stats: &GenerationStats,
        elapsed: Duration,
    ) {
        let mut c = self.lock();
        c.prompt_tokens += stats.prompt_tokens as u64;
        c.cached_prompt_tokens += stats.cached_prompt_tokens as u64;
        c.generated_tokens += stats.generated_tokens as u64;
        c.latency
            .entry(endpoint.to_string())
            .or_default()
            .observe(elapsed.as_secs_f64());
        if stats.generated_tokens > 1 {
            c.decode_tps
                .insert(model.to_string(), stats.decode_tokens_per_second);
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self, manager: &ModelManager) -> String {
        let mut out = String::new();
        let c = self.lock();
        out.push_str("# HELP orchard_requests_total HTTP requests by endpoint and status.\n# TYPE orchard_requests_total counter\n");
        for ((endpoint, status), n) in &c.requests {
            let _ = writeln!(
                out,
                "orchard_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}"
            );
        }
        for (name, help, value) in [
            (
                "orchard_prompt_tokens_total",
                "Prompt tokens processed.",
                c.prompt_tokens,
            ),
            (
                "orchard_cached_prompt_tokens_total",
                "Prompt tokens served from the prompt cache.",
                c.cached_prompt_tokens,
            ),
            (
                "orchard_generated_tokens_total",
                "Tokens generated.",
                c.generated_tokens,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
        out.push_str("# HELP orchard_time_to_first_token_seconds From the request's arrival to its first output.\n# TYPE orchard_time_to_first_token_seconds histogram\n");
        c.time_to_first_token
            .render(&mut out, "orchard_time_to_first_token_seconds", "");
        out.push_str("# HELP orchard_request_duration_seconds From a generation request's arrival to its last byte.\n# TYPE orchard_request_duration_seconds histogram\n");
        for (endpoint, histogram) in &c.latency {
            histogram.render(
                &mut out,
                "orchard_request_duration_seconds",
                &format!("endpoint=\"{endpoint}\""),
            );
        }
        out.push_str("# HELP orchard_decode_tokens_per_second Decode speed of the model's last request.\n# TYPE orchard_decode_tokens_per_second gauge\n");
        for (model, tps) in &c.decode_tps {
            let _ = writeln!(
                out,
                "orchard_decode_tokens_per_second{{model=\"{}\"}} {tps}",
                escape(model)
            );
        }
        drop(c);

        let loaded = manager.loaded();
        let _ = writeln!(
            out,
            "# HELP orchard_loaded_models Models loaded now.\n# TYPE orchard_loaded_models gauge\norchard_loaded_models {}",
            loaded.len()
        );
        out.push_str("# HELP orchard_queue_depth Requests waiting per model.\n# TYPE orchard_queue_depth gauge\n");
        for model in &loaded {
            let _ = writeln!(
                out,
                "orchard_queue_depth{{model=\"{}\"}} {}",
                escape(&model.id),
                model.queue_depth()
            );
        }
        out.push_str("# HELP orchard_model_sequences Sequences each model generates now, together in one batch.\n# TYPE orchard_model_sequences gauge\n");
        for model in &loaded {
            let _ = writeln!(
                out,
                "orchard_model_sequences{{model=\"{}\"}} {}",
                escape(&model.id),
                model.sequences()
            );
        }
        out.push_str("# HELP orchard_model_cpu_fast_path 1 when the model runs dequantized to float32 on the CPU (the fast path), else 0.\n# TYPE orchard_model_cpu_fast_path gauge\n");
        for model in &loaded {
            let _ = writeln!(
                out,
                "orchard_model_cpu_fast_path{{model=\"{}\"}} {}",
                escape(&model.id),
                u8::from(model.cpu_fast_path())
            );
        }
        // Draining models (unloaded, finishing requests) still hold memory.
        let holding: Vec<_> = loaded
            .iter()
            .cloned()
            .chain(manager.draining_models())
            .collect();
        out.push_str("# HELP orchard_model_memory_bytes Memory the budget counts for each model, by part (weights, kv_cache, prompt_cache).\n# TYPE orchard_model_memory_bytes gauge\n");
        for model in &holding {
            let memory = model.memory();
            for (part, bytes) in [
                ("weights", memory.weight_bytes),
                ("kv_cache", memory.kv_cache_bytes),
                ("prompt_cache", memory.prompt_cache_bytes),
            ] {
                let _ = writeln!(
                    out,
                    "orchard_model_memory_bytes{{model=\"{}\",part=\"{part}\"}} {bytes}",
                    escape(&model.id),
                );
            }
        }
        out.push_str("# HELP orchard_model_weight_bytes Weights of each loaded model.\n# TYPE orchard_model_weight_bytes gauge\n");
        for model in &loaded {
            let _ = writeln!(
                out,
                "orchard_model_weight_bytes{{model=\"{}\"}} {}",
                escape(&model.id),
                model.entry.weight_bytes
            );
        }
        let _ = writeln!(
            out,
            "# HELP orchard_worker_deaths_total Model worker threads that died (the model is loaded again on the next request).\n# TYPE orchard_worker_deaths_total counter\norchard_worker_deaths_total {}",
            manager.worker_deaths()
        );
        let (active, peak, cache) = orchard_core::system::mlx_memory();
        for (name, help, value) in [
            (
                "orchard_mlx_active_memory_bytes",
                "Memory MLX holds in arrays.",
                active,
            ),
            (
                "orchard_mlx_peak_memory_bytes",
                "MLX's peak memory during the last request.",
                peak,
            ),
            (
                "orchard_mlx_cache_memory_bytes",
                "Memory MLX keeps cached for reuse.",
                cache,
            ),
            (
                "orchard_process_resident_memory_bytes",
                "This process's resident memory.",
                orchard_core::system::process_memory(),
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        out
    }
}

/// Escapes a label value.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
