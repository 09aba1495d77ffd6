//! The port's defences, over real HTTP: every protected route of the real
//! router needs a key, `Host` and `Origin` from other sites are refused, POST
//! bodies must be JSON, and event streams stay alive while a request waits.

mod common;

use std::time::Duration;

use common::{MODEL, Server, chat};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_protected_route_refuses_a_request_without_a_key() {
    let server = Server::start(|_, _| {}).await;
    let routes = orchard_server::routes();
    assert!(routes.iter().any(|r| r.protected), "no protected routes?");
    for route in routes {
        let url = format!("{}{}", server.base, route.path);
        let request = match route.method {
            "GET" => server.client.get(&url),
            "POST" => server.client.post(&url).json(&chat("Hi", 1)),
            "DELETE" => server.client.delete(&url),
            other => panic!("unexpected method {other}"),
        };
        let status = request.send().await.expect("send").status().as_u16();
        if route.protected {
            assert_eq!(
                status, 401,
                "{} {} answered without a key",
                route.method, route.path
            );
        } else {
            assert_ne!(status, 401, "{} {} is public", route.method, route.path);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_naming_another_host_are_refused() {
    let server = Server::start(|_, _| {}).await;
    let port = server.base.rsplit(':').next().expect("port").to_string();
    let health = |host: String| {
        server
            .client
            .get(format!("{}/health", server.base))
            .header("Host", host)
            .send()
    };
    for good in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("LOCALHOST:{port}"),
    ] {
        let status = health(good.clone()).await.expect("send").status();
        assert_eq!(status, 200, "Host {good}");
    }
    // A DNS-rebinding page reaches 127.0.0.1 under its own name.
    for bad in [
        format!("evil.example:{port}"),
        "attacker.test".to_string(),
        format!("127.0.0.1.evil.example:{port}"),
    ] {
        let response = health(bad.clone()).await.expect("send");
        assert_eq!(response.status(), 403, "Host {bad}");
        let body: serde_json::Value = response.json().await.expect("json");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("allowed_hosts"),
            "{body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_hosts_and_origins_are_let_in() {
    let server = Server::start(|config, _| {
        config.extra_hosts = vec!["studio.local".into()];
        config.extra_origins = vec!["https://app.example".into()];
    })
    .await;
    let port = server.base.rsplit(':').next().expect("port").to_string();
    let status = server
        .get("/v1/models")
        .header("Host", format!("studio.local:{port}"))
        .header("Origin", "https://app.example")
        .send()
        .await
        .expect("send")
        .status();
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_requests_from_other_origins_are_refused() {
    let server = Server::start(|_, _| {}).await;
    let models = |origin: &'static str| server.get("/v1/models").header("Origin", origin).send();
    assert_eq!(
        models("tauri://localhost").await.expect("send").status(),
        200
    );
    assert_eq!(
        models("https://evil.example").await.expect("send").status(),
        403
    );
    assert_eq!(models("null").await.expect("send").status(), 403);
    // Anthropic's path answers in Anthropic's format.
    let response = server
        .post(
            "/v1/messages",
            &json!({"model": MODEL, "max_tokens": 1, "messages": []}),
        )
        .header("Origin", "http://localhost:3000")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 403);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["type"], "error", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_bodies_must_be_json() {
    let server = Server::start(|_, _| {}).await;
    let body = chat("Hi", 1).to_string();
    let send = |content_type: Option<&'static str>| {
        let mut request = server
            .client
            .post(format!("{}/v1/chat/completions", server.base))
            .bearer_auth(&server.key)
            .body(body.clone());
        if let Some(content_type) = content_type {
            request = request.header("Content-Type", content_type);
        }
        request.send()
    };
    // What a cross-site form or fetch can send without a preflight.
    for simple in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let response = send(simple).await.expect("send");
        assert_eq!(response.status(), 415, "{simple:?}");
        let error: serde_json::Value = response.json().await.expect("json");
        assert!(
            error["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("application/json"),
            "{error}"
        );
    }
    let ok = send(Some("application/json; charset=utf-8"))
        .await
        .expect("send");
    assert_eq!(ok.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_stream_gets_keep_alive_comments() {
    let server = Server::start(|config, _| config.keep_alive = Duration::from_millis(50)).await;
    let (status, _) = server.call("/v1/chat/completions", &chat("Hi", 1)).await;
    assert_eq!(status, 200, "warm-up");
    // The first request holds the model while the second waits in the queue.
    let first = server.post("/v1/chat/completions", &chat("Tell me a long story.", 24));
    let running = tokio::spawn(async move { first.send().await.expect("send").text().await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let text = server
        .stream_text("/v1/chat/completions", &chat("Hi", 2))
        .await;
    running.await.expect("join").expect("first body");
    let first_data = text.find("data:").expect("events");
    assert!(
        text[..first_data].contains(": keep-alive"),
        "no keep-alive before the first event:\n{text}"
    );
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
}
