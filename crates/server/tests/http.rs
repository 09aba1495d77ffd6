//! The server over real HTTP on 127.0.0.1:0, with a real SQLite file and the
//! SmolLM2 fixture: auth, error formats, limits, CORS, streaming, 429, hang-ups,
//! metrics, and the OpenAPI document against the routes.

mod common;

use std::time::Duration;

use common::{MODEL, Server, chat, error_of, thinking_model};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_required_checked_and_revocable() {
    let server = Server::start(|_, _| {}).await;
    let health = server
        .client
        .get(format!("{}/health", server.base))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), 200, "health needs no key");

    let (status, body) = error_of(
        server
            .client
            .get(format!("{}/v1/models", server.base))
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["type"], "authentication_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("Authorization: Bearer")
    );

    let wrong = server
        .client
        .get(format!("{}/v1/models", server.base))
        .bearer_auth("orch-nope")
        .send()
        .await
        .expect("send");
    assert_eq!(wrong.status(), 401);

    // Anthropic's header and Anthropic's error format on /v1/messages.
    let (status, body) = error_of(
        server
            .client
            .post(format!("{}/v1/messages", server.base))
            .json(&json!({}))
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "authentication_error");
    let models = server
        .client
        .get(format!("{}/v1/models", server.base))
        .header("x-api-key", &server.key)
        .send()
        .await
        .expect("send");
    assert_eq!(models.status(), 200);
    let list: Value = models.json().await.expect("json");
    assert_eq!(list["data"][0]["id"], MODEL);

    let id = server.store.list_api_keys().expect("list")[0].id;
    server.store.revoke_api_key(id).expect("revoke");
    assert_eq!(
        server
            .get("/v1/models")
            .send()
            .await
            .expect("send")
            .status(),
        401
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors_in_each_format() {
    let server = Server::start(|config, _| config.max_request_bytes = 4096).await;
    let cases = [
        (
            json!({"model": "nope", "messages": [{"role": "user", "content": "hi"}]}),
            404,
            "model",
        ),
        (
            json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "n": 2}),
            400,
            "n",
        ),
        (
            json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "json_schema"}}),
            400,
            "response_format",
        ),
        (
            json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "frobnicate": true}),
            400,
            "frobnicate",
        ),
        (json!({"model": MODEL, "messages": []}), 400, "messages"),
        (
            json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "temperature": -2}),
            400,
            "temperature",
        ),
        (
            json!({"model": MODEL, "messages": [{"role": "robot", "content": "hi"}]}),
            400,
            "messages[0].role",
        ),
        (json!({"model": MODEL, "messages": "hi"}), 400, "messages"),
    ];
    for (body, status, param) in cases {
        let (got, error) = server.call("/v1/chat/completions", &body).await;
        assert_eq!(got, status, "{body} -> {error}");
        assert_eq!(error["error"]["param"], param, "{body} -> {error}");
        assert!(
            error["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    let (status, error) = server
        .call(
            "/v1/chat/completions",
            &json!({"model": "nope", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (404, Some("model_not_found"))
    );

    let malformed = server
        .client
        .post(format!("{}/v1/chat/completions", server.base))
        .bearer_auth(&server.key)
        .header("Content-Type", "application/json")
        .body("{\"model\": ")
        .send()
        .await
        .expect("send");
    assert_eq!(malformed.status(), 400);

    let big =
        json!({"model": MODEL, "messages": [{"role": "user", "content": "x".repeat(10_000)}]});
    let (status, error) = server.call("/v1/chat/completions", &big).await;
    assert_eq!(status, 413);
    assert_eq!(error["error"]["code"], "request_too_large");

    let (status, error) = server
        .call(
            "/v1/messages",
            &json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(status, 400, "max_tokens is required: {error}");
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert!(
        error["error"]["message"]
            .as_str()
            .expect("message")
            .contains("max_tokens")
    );

    // Stop strings are searched after every token: their number and length are bounded.
    for stop in [json!(["a", "b", "c", "d", "e"]), json!(["x".repeat(257)])] {
        let mut body = chat("Hi", 1);
        body["stop"] = stop;
        let (status, error) = server.call("/v1/chat/completions", &body).await;
        assert_eq!(
            (status, error["error"]["param"].as_str()),
            (400, Some("stop")),
            "{error}"
        );
    }

    let (status, error) = error_of(server.get("/v2/nothing").send().await.expect("send")).await;
    assert_eq!(status, 404);
    assert!(
        error["error"]["message"]
            .as_str()
            .expect("message")
            .contains("/v2/nothing")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_admits_only_the_apps_origins() {
    let server = Server::start(|_, _| {}).await;
    let preflight = |origin: &'static str| {
        server
            .client
            .request(
                reqwest::Method::OPTIONS,
                format!("{}/v1/chat/completions", server.base),
            )
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "authorization,content-type",
            )
            .send()
    };
    let app = preflight("tauri://localhost").await.expect("send");
    assert_eq!(
        app.headers()["access-control-allow-origin"],
        "tauri://localhost"
    );
    let other = preflight("https://evil.example").await.expect("send");
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_is_openai_sse_and_ends_with_done() {
    let server = Server::start(|_, _| {}).await;
    let mut body = chat("Name a colour.", 8);
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let response = server
        .post("/v1/chat/completions", &body)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .expect("type")
            .starts_with("text/event-stream")
    );
    let text = response.text().await.expect("body");
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert!(events.iter().all(|e| e.starts_with("data: ")), "{text}");
    assert_eq!(*events.last().expect("events"), "data: [DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(&e["data: ".len()..]).expect("JSON chunk"))
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk" && c["id"] == chunks[0]["id"])
    );
    let usage = &chunks.last().expect("usage chunk")["usage"];
    assert_eq!(chunks.last().expect("usage chunk")["choices"], json!([]));
    let finish = &chunks[chunks.len() - 2]["choices"][0]["finish_reason"];
    assert!(finish == "length" || finish == "stop", "{finish}");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(!text.is_empty());
    assert_eq!(
        usage["total_tokens"],
        usage["prompt_tokens"].as_u64().expect("n")
            + usage["completion_tokens"].as_u64().expect("n")
    );

    // The same conversation again reuses the cached prompt.
    let again: Value = server
        .call("/v1/chat/completions", &chat("Name a colour.", 8))
        .await
        .1;
    assert!(
        again["usage"]["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .expect("cached")
            > 0,
        "{again}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_429_with_retry_after() {
    let server = Server::start(|_, options| options.worker.queue_capacity = 1).await;
    let mut long = chat("Write a long story about the sea.", 400);
    long["stream"] = json!(true);
    // The first runs (its first chunk has arrived), the second waits, the third is refused.
    let mut running = server
        .post("/v1/chat/completions", &long)
        .send()
        .await
        .expect("send");
    running.chunk().await.expect("read").expect("a first chunk");
    let mut waiting = server
        .post("/v1/chat/completions", &long)
        .send()
        .await
        .expect("send");
    assert_eq!(waiting.status(), 200);
    let refused = server
        .post("/v1/chat/completions", &long)
        .send()
        .await
        .expect("send");
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    let (_, error) = error_of(refused).await;
    assert_eq!(error["error"]["code"], "rate_limit_exceeded");

    // Hanging up on both frees the model: a short request then completes.
    drop(running);
    let _ = waiting.chunk().await;
    drop(waiting);
    let short = tokio::time::timeout(Duration::from_secs(120), async {
        server.call("/v1/chat/completions", &chat("Hi", 3)).await.1
    })
    .await
    .expect("the abandoned generations stopped");
    assert_eq!(short["usage"]["completion_tokens"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_tokens_and_memory() {
    let server = Server::start(|_, _| {}).await;
    server
        .post("/v1/chat/completions", &chat("Hi", 4))
        .send()
        .await
        .expect("send")
        .error_for_status()
        .expect("200");
    let _ = server.get("/v1/models").send().await.expect("send");
    let text = server
        .get("/metrics")
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("text");
    for needle in [
        "orchard_requests_total{endpoint=\"/v1/chat/completions\",status=\"200\"} 1",
        "orchard_generated_tokens_total 4",
        "orchard_time_to_first_token_seconds_count 1",
        "orchard_request_duration_seconds_count{endpoint=\"/v1/chat/completions\"} 1",
        "orchard_loaded_models 1",
        &format!("orchard_queue_depth{{model=\"{MODEL}\"}} 0"),
        "orchard_mlx_active_memory_bytes ",
        "orchard_process_resident_memory_bytes ",
        "orchard_worker_deaths_total 0",
        &format!("orchard_model_memory_bytes{{model=\"{MODEL}\",part=\"kv_cache\"}} 0"),
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    // The request left its prompt cache behind: counted beside the weights.
    let part = |text: &str, part: &str| -> u64 {
        let prefix = format!("orchard_model_memory_bytes{{model=\"{MODEL}\",part=\"{part}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {part} line in\n{text}"))
    };
    assert!(part(&text, "weights") > 0);
    assert!(part(&text, "prompt_cache") > 0);

    // A worker that dies is counted, and the next request loads the model again.
    let model = server.manager.loaded().pop().expect("loaded");
    model.crash_worker();
    while model.is_alive() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(model);
    let (status, _) = server.call("/v1/chat/completions", &chat("Hi", 1)).await;
    assert_eq!(status, 200, "the model was not loaded again");
    let text = server
        .get("/metrics")
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("text");
    assert!(text.contains("orchard_worker_deaths_total 1"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_messages_and_token_counts() {
    let server = Server::start(|_, _| {}).await;
    let body = json!({
        "model": MODEL,
        "max_tokens": 6,
        "system": "Answer briefly.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Name a fruit."}]}],
    });
    let message: Value = server.call("/v1/messages", &body).await.1;
    assert_eq!(message["type"], "message");
    assert_eq!(message["content"][0]["type"], "text");
    assert!(message["stop_reason"] == "max_tokens" || message["stop_reason"] == "end_turn");
    let count: Value = server
        .call(
            "/v1/messages/count_tokens",
            &json!({"model": MODEL, "system": "Answer briefly.", "messages": body["messages"]}),
        )
        .await
        .1;
    let input = message["usage"]["input_tokens"].as_u64().expect("n")
        + message["usage"]["cache_read_input_tokens"]
            .as_u64()
            .expect("n");
    assert_eq!(count["input_tokens"].as_u64(), Some(input));
}

/// The committed OpenAPI document lists exactly the routes the router serves.
#[test]
fn the_openapi_document_matches_the_routes() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("docs/openapi.json"))
            .expect("valid JSON");
    let mut documented: Vec<(String, String)> = Vec::new();
    for (route, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            documented.push((method.to_uppercase(), route.clone()));
        }
    }
    documented.sort();
    // The list is made by the same calls that build the router.
    let mut served: Vec<(String, String)> = orchard_server::routes()
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    served.sort();
    assert_eq!(
        documented, served,
        "docs/openapi.json and the router's routes disagree"
    );
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reasoning_goes_to_reasoning_content_and_thinking_blocks() {
    let models = tempfile::tempdir().expect("temp dir");
    let folder = thinking_model(models.path());
    let server = Server::start_with(&[folder], |_, _| {}).await;
    let body = json!({
        "model": "Thinking-SmolLM2",
        "messages": [{"role": "user", "content": "Is 7 prime?"}],
        "max_tokens": 6,
        "temperature": 0,
    });
    let whole: Value = server.call("/v1/chat/completions", &body).await.1;
    let message = &whole["choices"][0]["message"];
    let reasoning = message["reasoning_content"]
        .as_str()
        .expect("reasoning_content")
        .to_string();
    assert!(!reasoning.is_empty(), "{whole}");
    assert!(!reasoning.contains("<think>"));
    // Six tokens of reasoning leave no room for an answer.
    assert_eq!(message["content"], "", "{whole}");

    let text = server.stream_text("/v1/chat/completions", &body).await;
    let pieces: String = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str::<Value>(d).expect("chunk"))
        .filter_map(|c| {
            c["choices"][0]["delta"]["reasoning_content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(pieces, reasoning);

    let anthropic: Value = server
        .call(
            "/v1/messages",
            &json!({"model": "Thinking-SmolLM2", "max_tokens": 6, "temperature": 0,
            "messages": [{"role": "user", "content": "Is 7 prime?"}]}),
        )
        .await
        .1;
    assert_eq!(anthropic["content"][0]["type"], "thinking", "{anthropic}");
    assert_eq!(anthropic["content"][0]["thinking"], reasoning.as_str());

    // The Responses API: a reasoning item, and all six tokens counted as reasoning.
    let request = json!({"model": "Thinking-SmolLM2", "input": "Is 7 prime?",
        "max_output_tokens": 6, "temperature": 0, "store": false});
    let (status, response) = server.call("/v1/responses", &request).await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(response["status"], "incomplete", "{response}");
    assert_eq!(
        response["incomplete_details"]["reason"],
        "max_output_tokens"
    );
    let item = &response["output"][0];
    assert_eq!(item["type"], "reasoning", "{response}");
    assert_eq!(item["content"][0]["text"], reasoning.as_str());
    assert_eq!(response["output"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        response["usage"]["output_tokens_details"]["reasoning_tokens"],
        6
    );
    let text = server.stream_text("/v1/responses", &request).await;
    let events: Vec<Value> = text
        .split("\n\n")
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(|d| serde_json::from_str(d).expect("event"))
        .collect();
    let pieces: String = events
        .iter()
        .filter(|e| e["type"] == "response.reasoning_text.delta")
        .filter_map(|e| e["delta"].as_str())
        .collect();
    assert_eq!(pieces, reasoning);
    let last = events.last().expect("events");
    assert_eq!(last["type"], "response.incomplete", "{text}");
    assert_eq!(
        last["response"]["output"][0]["content"][0]["text"],
        reasoning.as_str()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_that_refuses_the_messages_is_a_400_on_messages() {
    let dir = tempfile::tempdir().expect("tmp");
    let strict = thinking_model(dir.path());
    // Gemma's and Mistral's templates refuse conversations whose roles do not alternate.
    let mut config: Value = serde_json::from_str(
        &std::fs::read_to_string(strict.join("tokenizer_config.json")).expect("read"),
    )
    .expect("json");
    config["chat_template"] = json!(
        "{% for m in messages %}{% if (m.role == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{{ m.content }}{% endfor %}{% if messages[-1].role != 'user' %}{{ raise_exception('No user query found in messages.') }}{% endif %}"
    );
    std::fs::write(strict.join("tokenizer_config.json"), config.to_string()).expect("write");
    let server = Server::start_with(&[strict], |_, _| {}).await;
    let messages = json!([{"role": "user", "content": "Hi"}, {"role": "user", "content": "Again"}]);
    let (status, error) = server
        .call(
            "/v1/chat/completions",
            &json!({"model": "Thinking-SmolLM2", "messages": messages, "max_tokens": 2}),
        )
        .await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["error"]["param"], "messages");
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("roles must alternate"),
        "{error}"
    );
    // Anthropic's API merges consecutive user turns; an assistant turn last
    // is what this template refuses there.
    let messages =
        json!([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]);
    let (status, error) = server
        .call(
            "/v1/messages",
            &json!({"model": "Thinking-SmolLM2", "messages": messages, "max_tokens": 2}),
        )
        .await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("No user query found"),
        "{error}"
    );
}

/// The hybrid architecture serves like any other: a Qwen3-Next model built by
/// mlx-lm's own classes (gated DeltaNet layers, experts), answering three
/// concurrent chat requests, which the model's worker runs as one batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hybrid_model_serves_concurrent_requests() {
    let work = tempfile::tempdir().expect("tempdir");
    let dir = work.path().join("qwen3-next-tiny");
    let python = orchard_core::paths::fixture_models_dir()
        .expect("ORCHARD_DEPS_DIR")
        .join("../venv/bin/python");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/random_model.py");
    let output = std::process::Command::new(python)
        .arg(script)
        .arg(&dir)
        .args(["--type", "qwen3_next", "--hidden", "128", "--layers", "4"])
        .args([
            "--experts",
            "8",
            "--experts-per-token",
            "2",
            "--expert-hidden",
            "64",
        ])
        .output()
        .expect("run random_model.py");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let server = Server::start_with(&[dir], |_, _| {}).await;
    let body = |n: u32| {
        let mut body = chat(&format!("Question {n}"), 6);
        body["model"] = json!("qwen3-next-tiny");
        body["temperature"] = json!(0);
        body
    };
    let (one, two, three) = (body(1), body(2), body(3));
    let (a, b, c) = tokio::join!(
        server.call("/v1/chat/completions", &one),
        server.call("/v1/chat/completions", &two),
        server.call("/v1/chat/completions", &three)
    );
    for (status, reply) in [a, b, c] {
        assert_eq!(status, 200, "{reply}");
        assert_eq!(reply["model"], "qwen3-next-tiny");
        let tokens = reply["usage"]["completion_tokens"].as_u64().expect("usage");
        assert!((1..=6).contains(&tokens), "{reply}");
        assert!(
            reply["choices"][0]["message"]["content"].is_string(),
            "{reply}"
        );
    }
    let metrics = server
        .get("/metrics")
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("orchard_model_sequences{model=\"qwen3-next-tiny\"} 0"),
        "{metrics}"
    );
}
