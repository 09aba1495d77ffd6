//! `orchard bench --server URL`: a set of prompts against any
//! OpenAI-compatible server (Orchard, mlx_lm.server, LM Studio, Ollama),
//! `--concurrency` requests at a time, each a streamed chat completion at
//! temperature 0. It reports time to first token, the gap between streamed
//! tokens and each request's latency as percentiles, the aggregate tokens
//! per second, and, when the server is Orchard, its peak memory read from
//! `/metrics` while the requests run.
//!
//! A gap is the time between two streamed chunks that carry text; a server
//! that packs several tokens in a chunk shows fewer, longer gaps.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};

/// The prompts used when `--prompts` names no file.
const DEFAULT_PROMPTS: &str = include_str!("bench_prompts.json");

/// What to run.
#[derive(Debug, Clone)]
pub struct ServerBench {
    /// The server's base URL, without `/v1`.
    pub url: String,
    pub api_key: Option<String>,
    /// The model to ask for; the server's first loaded model when None.
    pub model: Option<String>,
    pub prompts: Option<PathBuf>,
    pub concurrency: usize,
    pub requests: usize,
    pub max_tokens: usize,
}

/// The 50th, 90th and 99th percentiles of a measure, in milliseconds.
#[derive(Debug, Serialize, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub server: String,
    pub model: String,
    pub requests: usize,
    pub concurrency: usize,
    pub max_tokens: usize,
    pub completed: usize,
    pub failed: usize,
    /// The first failure's message, when any failed.
    pub first_error: Option<String>,
    pub wall_seconds: f64,
    pub output_tokens: u64,
    pub aggregate_tokens_per_second: f64,
    pub time_to_first_token_ms: Option<Percentiles>,
    pub gap_between_tokens_ms: Option<Percentiles>,
    pub latency_ms: Option<Percentiles>,
    /// Orchard only: the most resident memory seen in `/metrics` during the run.
    pub peak_resident_bytes: Option<u64>,
    /// Orchard only: MLX's peak memory after the run, from `/metrics`.
    pub mlx_peak_bytes: Option<u64>,
}

/// One request's measurements.
#[derive(Debug, Default)]
struct Sample {
    first_token: Option<Duration>,
    gaps: Vec<Duration>,
    latency: Duration,
    tokens: u64,
}

/// The user messages of each prompt: a JSON list of strings, or of message lists.
fn read_prompts(file: Option<&PathBuf>) -> Result<Vec<Value>, String> {
    let text = match file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
        None => DEFAULT_PROMPTS.to_string(),
    };
    let name = || file.map_or("the default prompts".into(), |p| p.display().to_string());
    let list: Vec<Value> =
        serde_json::from_str(&text).map_err(|e| format!("{} is not a JSON list: {e}", name()))?;
    if list.is_empty() {
        return Err(format!("{} holds no prompts", name()));
    }
    list.into_iter()
        .enumerate()
        .map(|(i, prompt)| match prompt {
            Value::String(text) => Ok(json!([{"role": "user", "content": text}])),
            messages @ Value::Array(_) => Ok(messages),
            _ => Err(format!(
                "prompt {i} of {} is neither a string nor a list of messages",
                name()
            )),
        })
        .collect()
}

/// The nearest-rank percentiles of `values` (in seconds), in milliseconds.
pub(crate) fn percentiles(mut values: Vec<f64>) -> Option<Percentiles> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let at = |p: f64| {
        let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
        values[rank.clamp(1, values.len()) - 1] * 1000.0
    };
    Some(Percentiles {
        p50: at(50.0),
        p90: at(90.0),
        p99: at(99.0),
    })
}

struct Client {
    http: reqwest::Client,
    base: String,
    key: Option<String>,
}

impl Client {
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    async fn first_model(&self) -> Result<String, String> {
        let answer: Value = self
            .request(reqwest::Method::GET, "/v1/models")
            .send()
            .await
            .map_err(|e| format!("cannot reach {}: {e}", self.base))?
            .error_for_status()
            .map_err(|e| format!("GET /v1/models: {e}"))?
            .json()
            .await
            .map_err(|e| format!("GET /v1/models answered no JSON: {e}"))?;
        let models = answer["data"].as_array().cloned().unwrap_or_default();
        let loaded = models.iter().find(|m| m["loaded"] == Value::Bool(true));
        loaded
            .or(models.first())
            .and_then(|m| m["id"].as_str())
            .map(str::to_string)
            .ok_or_else(|| "the server lists no models; name one with --model-name".into())
    }

    /// One streamed chat completion.
    async fn stream(
        &self,
        model: &str,
        messages: &Value,
        max_tokens: usize,
    ) -> Result<Sample, String> {
        let body = json!({
            "model": model, "messages": messages, "max_tokens": max_tokens, "temperature": 0,
            "stream": true, "stream_options": {"include_usage": true},
        });
        let sent = Instant::now();
        let mut response = self
            .request(reqwest::Method::POST, "/v1/chat/completions")
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("the request failed: {e}"))?;
        if !response.status().is_success() {
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            return Err(format!("the server answered {status}: {text}"));
        }
        let mut sample = Sample::default();
        let mut last_text: Option<Instant> = None;
        let mut chunks = 0u64;
        let mut usage_tokens = None;
        let mut buffer = String::new();
        while let Some(bytes) = response
            .chunk()
            .await
            .map_err(|e| format!("the stream broke: {e}"))?
        {
            buffer.push_str(&String::from_utf8_lossy(&bytes));
            while let Some(end) = buffer.find("\n\n") {
                let event: String = buffer.drain(..end + 2).collect();
                for data in event.lines().filter_map(|l| l.strip_prefix("data:")) {
                    let data = data.trim();
                    if data == "[DONE]" {
                        continue;
                    }
                    let Ok(chunk) = serde_json::from_str::<Value>(data) else {
                        continue;
                    };
                    if let Some(tokens) = chunk["usage"]["completion_tokens"].as_u64() {
                        usage_tokens = Some(tokens);
                    }
                    let text = chunk["choices"][0]["delta"]["content"]
                        .as_str()
                        .unwrap_or_default();
                    if text.is_empty() {
                        continue;
                    }
                    let now = Instant::now();
                    match last_text {
                        None => sample.first_token = Some(now - sent),
                        Some(previous) => sample.gaps.push(now - previous),
                    }
                    last_text = Some(now);
                    chunks += 1;
                }
            }
        }
        sample.latency = sent.elapsed();
        sample.tokens = usage_tokens.unwrap_or(chunks);
        Ok(sample)
    }

    /// The value of an unlabelled metric in `/metrics`; None when the server
    /// has no such page (it is not Orchard) or no such metric.
    async fn metric(&self, name: &str) -> Option<u64> {
        let text = self
            .request(reqwest::Method::GET, "/metrics")
            .send()
            .await
            .ok()?
            .error_for_status()
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .filter_map(|line| line.strip_prefix(name))
            .find_map(|rest| rest.strip_prefix(' '))
            .and_then(|value| value.trim().parse::<f64>().ok())
            .map(|value| value as u64)
    }
}

/// Runs the benchmark.
pub async fn run(bench: ServerBench) -> Result<Report, String> {
    if bench.concurrency == 0 || bench.requests == 0 || bench.max_tokens == 0 {
        return Err("--concurrency, --requests and --max-tokens must be at least 1".into());
    }
    let prompts = read_prompts(bench.prompts.as_ref())?;
    let base = bench
        .url
        .trim_end_matches('/')
        .trim_end_matches("/v1")
        .to_string();
    let client = Arc::new(Client {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(600))
            .build()
            .map_err(|e| format!("cannot make an HTTP client: {e}"))?,
        base: base.clone(),
        key: bench.api_key.clone(),
    });
    let model = match &bench.model {
        Some(model) => model.clone(),
        None => client.first_model().await?,
    };
    // Loads the model (when the server loads on demand) outside the timing.
    client.stream(&model, &prompts[0], 1).await?;

    let running = Arc::new(AtomicBool::new(true));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (client, running, peak) =
            (Arc::clone(&client), Arc::clone(&running), Arc::clone(&peak));
        tokio::spawn(async move {
            while running.load(Ordering::Relaxed) {
                match client.metric("orchard_process_resident_memory_bytes").await {
                    Some(bytes) => {
                        peak.fetch_max(bytes, Ordering::Relaxed);
                    }
                    None => return false,
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            true
        })
    };

    let next = Arc::new(AtomicUsize::new(0));
    let prompts = Arc::new(prompts);
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..bench.concurrency.min(bench.requests) {
        let (client, next, prompts, model) = (
            Arc::clone(&client),
            Arc::clone(&next),
            Arc::clone(&prompts),
            model.clone(),
        );
        let (requests, max_tokens) = (bench.requests, bench.max_tokens);
        workers.push(tokio::spawn(async move {
            let mut results = Vec::new();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= requests {
                    return results;
                }
                let messages = &prompts[index % prompts.len()];
                results.push(client.stream(&model, messages, max_tokens).await);
            }
        }));
    }
    let mut results = Vec::new();
    for worker in workers {
        results.extend(
            worker
                .await
                .map_err(|e| format!("a client task failed: {e}"))?,
        );
    }
    let wall = started.elapsed().as_secs_f64();
    running.store(false, Ordering::Relaxed);
    let orchard = sampler.await.unwrap_or(false);
    let mlx_peak_bytes = if orchard {
        client.metric("orchard_mlx_peak_memory_bytes").await
    } else {
        None
    };

    let mut samples = Vec::new();
    let mut first_error = None;
    for result in results {
        match result {
            Ok(sample) => samples.push(sample),
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
    }
    let output_tokens: u64 = samples.iter().map(|s| s.tokens).sum();
    let seconds = |d: &Duration| d.as_secs_f64();
    Ok(Report {
        server: base,
        model,
        requests: bench.requests,
        concurrency: bench.concurrency,
        max_tokens: bench.max_tokens,
        completed: samples.len(),
        failed: bench.requests - samples.len(),
        first_error,
        wall_seconds: wall,
        output_tokens,
        aggregate_tokens_per_second: if wall > 0.0 {
            output_tokens as f64 / wall
        } else {
            0.0
        },
        time_to_first_token_ms: percentiles(
            samples
                .iter()
                .filter_map(|s| s.first_token.as_ref().map(seconds))
                .collect(),
        ),
        gap_between_tokens_ms: percentiles(
            samples
                .iter()
                .flat_map(|s| s.gaps.iter().map(seconds))
                .collect(),
        ),
        latency_ms: percentiles(samples.iter().map(|s| seconds(&s.latency)).collect()),
        peak_resident_bytes: (orchard && peak.load(Ordering::Relaxed) > 0)
            .then(|| peak.load(Ordering::Relaxed)),
        mlx_peak_bytes,
    })
}

/// The report as a table.
pub fn table(report: &Report) -> String {
    let row = |name: &str, p: &Option<Percentiles>| match p {
        Some(p) => format!("{name:<22}{:>10.1}{:>10.1}{:>10.1}\n", p.p50, p.p90, p.p99),
        None => format!("{name:<22}{:>10}{:>10}{:>10}\n", "-", "-", "-"),
    };
    let mut out = format!(
        "{} requests, {} at a time, to {} (model {}), up to {} tokens each\n\n",
        report.requests, report.concurrency, report.server, report.model, report.max_tokens
    );
    out.push_str(&format!(
        "{:<22}{:>10}{:>10}{:>10}\n",
        "ms", "p50", "p90", "p99"
    ));
    out.push_str(&row("time to first token", &report.time_to_first_token_ms));
    out.push_str(&row("gap between tokens", &report.gap_between_tokens_ms));
    out.push_str(&row("request latency", &report.latency_ms));
    out.push_str(&format!(
        "\nthroughput: {:.1} tokens/s ({} tokens in {:.1} s); {} completed, {} failed\n",
        report.aggregate_tokens_per_second,
        report.output_tokens,
        report.wall_seconds,
        report.completed,
        report.failed
    ));
    let mb = |b: u64| b as f64 / 1e6;
    match (report.peak_resident_bytes, report.mlx_peak_bytes) {
        (Some(resident), mlx) => {
            out.push_str(&format!("peak memory: {:.1} MB resident", mb(resident)));
            if let Some(mlx) = mlx {
                out.push_str(&format!(", MLX peak {:.1} MB", mb(mlx)));
            }
            out.push('\n');
        }
        (None, _) => {
            out.push_str("peak memory: not reported (the server has no Orchard /metrics)\n")
        }
    }
    if let Some(error) = &report.first_error {
        out.push_str(&format!("first failure: {error}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank_in_milliseconds() {
        let values: Vec<f64> = (1..=100).map(|i| f64::from(i) / 1000.0).collect();
        assert_eq!(
            percentiles(values),
            Some(Percentiles {
                p50: 50.0,
                p90: 90.0,
                p99: 99.0
            })
        );
        assert_eq!(
            percentiles(vec![0.2]),
            Some(Percentiles {
                p50: 200.0,
                p90: 200.0,
                p99: 200.0
            })
        );
        assert_eq!(percentiles(Vec::new()), None);
    }

    #[test]
    fn prompts_are_strings_or_message_lists_and_bad_files_say_why() {
        let prompts = read_prompts(None).expect("the default prompts");
        assert!(prompts.len() >= 8);
        assert_eq!(prompts[0][0]["role"], "user");
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("p.json");
        std::fs::write(&file, r#"["Hi", [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]]"#)
            .expect("write");
        let read = read_prompts(Some(&file)).expect("read");
        assert_eq!(read[1][0]["role"], "system");
        std::fs::write(&file, "[3]").expect("write");
        let error = read_prompts(Some(&file)).expect_err("a number");
        assert!(error.contains("prompt 0"), "{error}");
        std::fs::write(&file, "[]").expect("write");
        assert!(read_prompts(Some(&file)).is_err());
    }
}
