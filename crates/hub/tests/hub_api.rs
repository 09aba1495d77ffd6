//! The Hub client against a local Hub on 127.0.0.1:0 that answers with the
//! Hub's JSON shapes: search paging and sorting, model details, README through
//! a redirect, the short answer cache, and every error the Hub gives.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use orchard_hub::client::{HubClient, SearchQuery, Sort};
use orchard_hub::{HubError, RepoId};
use serde_json::{Value, json};

#[derive(Clone)]
struct Hub {
    base: String,
    hits: Arc<AtomicUsize>,
    models: Arc<Vec<Value>>,
}

fn catalog() -> Vec<Value> {
    let model = |id: &str, downloads: u64, likes: u64| {
        json!({"id": id, "downloads": downloads, "likes": likes, "lastModified": "2026-10-01T00:00:00.000Z",
               "tags": ["mlx", "safetensors"], "pipeline_tag": "text-generation", "library_name": "mlx", "gated": false})
    };
    vec![
        model("mlx-community/Qwen3-4B-4bit", 900, 10),
        model("mlx-community/Llama-3.2-1B-Instruct-4bit", 700, 50),
        model("mlx-community/SmolLM2-135M-Instruct-4bit", 500, 5),
        model("mlx-community/gemma-3-1b-it-4bit", 300, 40),
        model("mlx-community/Qwen3-0.6B-8bit", 100, 1),
        model("someone/Qwen3-4B-custom", 1000, 0),
    ]
}

async fn search(State(hub): State<Hub>, Query(q): Query<Vec<(String, String)>>) -> Response {
    hub.hits.fetch_add(1, Ordering::SeqCst);
    let param = |name: &str| q.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let mut models: Vec<Value> = hub
        .models
        .iter()
        .filter(|m| {
            let id = m["id"].as_str().unwrap_or_default();
            param("author").is_none_or(|a| id.starts_with(&format!("{a}/")))
                && param("search").is_none_or(|s| id.to_lowercase().contains(&s.to_lowercase()))
        })
        .cloned()
        .collect();
    let key = match param("sort").as_deref() {
        Some("likes") => "likes",
        _ => "downloads",
    };
    models.sort_by_key(|m| std::cmp::Reverse(m[key].as_u64().unwrap_or(0)));
    let limit: usize = param("limit").and_then(|l| l.parse().ok()).unwrap_or(20);
    let start: usize = param("cursor").and_then(|c| c.parse().ok()).unwrap_or(0);
    let page: Vec<Value> = models.iter().skip(start).take(limit).cloned().collect();
    let mut headers = HeaderMap::new();
    if start + limit < models.len() {
        let mut next: Vec<(String, String)> =
            q.iter().filter(|(k, _)| k != "cursor").cloned().collect();
        next.push(("cursor".into(), (start + limit).to_string()));
        let query: Vec<String> = next.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let link = format!(
            "<{}/api/models?{}>; rel=\"next\"",
            hub.base,
            query.join("&")
        );
        headers.insert(header::LINK, link.parse().expect("header"));
    }
    (headers, axum::Json(page)).into_response()
}

async fn info(
    State(hub): State<Hub>,
    Path((org, name, _rev)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    hub.hits.fetch_add(1, Ordering::SeqCst);
    match (org.as_str(), name.as_str()) {
        ("mlx-community", "SmolLM2-135M-Instruct-4bit") => axum::Json(json!({
            "id": "mlx-community/SmolLM2-135M-Instruct-4bit",
            "sha": "0123456789abcdef0123456789abcdef01234567",
            "downloads": 500, "likes": 5, "lastModified": "2026-10-01T00:00:00.000Z",
            "tags": ["mlx", "safetensors", "llama"], "pipeline_tag": "text-generation",
            "cardData": {"license": "apache-2.0"}, "gated": false, "usedStorage": 76_000_123u64,
            "siblings": [
                {"rfilename": "config.json", "size": 1000},
                {"rfilename": "model.safetensors", "size": 76_000_000u64,
                 "lfs": {"sha256": "a".repeat(64), "size": 76_000_000u64}},
                {"rfilename": "README.md", "size": 123},
            ],
        }))
        .into_response(),
        ("private", _) if !headers.contains_key(header::AUTHORIZATION) => {
            StatusCode::UNAUTHORIZED.into_response()
        }
        ("private", _) => axum::Json(json!({"id": "private/x", "siblings": []})).into_response(),
        ("gated", _) => StatusCode::FORBIDDEN.into_response(),
        ("busy", _) => {
            (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "7")]).into_response()
        }
        ("broken", _) => "{\"id\": ".into_response(),
        ("evil", _) => {
            axum::Json(json!({"id": "evil/x", "siblings": [{"rfilename": "../../outside"}]}))
                .into_response()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn resolve(Path((org, name, rev, file)): Path<(String, String, String, String)>) -> Response {
    // As the Hub does for large files: a redirect to a file host.
    Redirect::temporary(&format!("/files/{org}/{name}/{rev}/{file}")).into_response()
}

async fn file_host(
    Path((_org, name, _rev, file)): Path<(String, String, String, String)>,
) -> Response {
    let fixture = std::env::var_os("ORCHARD_DEPS_DIR")
        .map(|d| std::path::PathBuf::from(d).join("models/SmolLM2-135M-Instruct-4bit"));
    match file.as_str() {
        "README.md" => {
            format!("---\ntags:\n- mlx\n- function-calling\n---\n# {name}\n").into_response()
        }
        // The real SmolLM2 config, as the Hub would serve it.
        "config.json" => {
            match fixture.and_then(|dir| std::fs::read_to_string(dir.join("config.json")).ok()) {
                Some(text) => text.into_response(),
                None => StatusCode::NOT_FOUND.into_response(),
            }
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn start_hub() -> Hub {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let hub = Hub {
        base,
        hits: Arc::new(AtomicUsize::new(0)),
        models: Arc::new(catalog()),
    };
    let app = Router::new()
        .route("/api/models", get(search))
        .route("/api/models/{org}/{name}/revision/{rev}", get(info))
        .route("/{org}/{name}/resolve/{rev}/{*file}", get(resolve))
        .route("/files/{org}/{name}/{rev}/{*file}", get(file_host))
        .with_state(hub.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    hub
}

fn ids(page: &orchard_hub::SearchPage) -> Vec<&str> {
    page.models.iter().map(|m| m.id.as_str()).collect()
}

#[tokio::test]
async fn search_pages_sorts_and_filters() {
    let hub = start_hub().await;
    let client = HubClient::new(&hub.base, None).expect("client");
    let query = SearchQuery {
        limit: 2,
        ..SearchQuery::default()
    };
    let first = client.search(&query).await.expect("page 1");
    assert_eq!(
        ids(&first),
        [
            "mlx-community/Qwen3-4B-4bit",
            "mlx-community/Llama-3.2-1B-Instruct-4bit"
        ]
    );
    let second = client
        .search_next(first.next.as_deref().expect("more"))
        .await
        .expect("page 2");
    assert_eq!(
        ids(&second),
        [
            "mlx-community/SmolLM2-135M-Instruct-4bit",
            "mlx-community/gemma-3-1b-it-4bit"
        ]
    );
    let third = client
        .search_next(second.next.as_deref().expect("more"))
        .await
        .expect("page 3");
    assert_eq!(ids(&third), ["mlx-community/Qwen3-0.6B-8bit"]);
    assert!(third.next.is_none());

    let by_likes = client
        .search(&SearchQuery {
            sort: Sort::Likes,
            limit: 1,
            ..SearchQuery::default()
        })
        .await
        .expect("likes");
    assert_eq!(ids(&by_likes), ["mlx-community/Llama-3.2-1B-Instruct-4bit"]);
    let everyone = SearchQuery {
        text: Some("qwen3-4b".into()),
        author: None,
        ..SearchQuery::default()
    };
    let found = client.search(&everyone).await.expect("any author");
    assert_eq!(
        ids(&found),
        ["someone/Qwen3-4B-custom", "mlx-community/Qwen3-4B-4bit"]
    );
    assert!(
        client
            .search_next("http://elsewhere/api/models")
            .await
            .is_err()
    );
    assert!(
        client
            .search(&SearchQuery {
                limit: 0,
                ..SearchQuery::default()
            })
            .await
            .is_err()
    );
}

#[tokio::test]
async fn answers_are_reused_for_a_while() {
    let hub = start_hub().await;
    let client = HubClient::new(&hub.base, None).expect("client");
    let query = SearchQuery {
        text: Some("smol".into()),
        ..SearchQuery::default()
    };
    for _ in 0..5 {
        client.search(&query).await.expect("search");
    }
    assert_eq!(hub.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn model_details_files_sizes_and_readme() {
    let hub = start_hub().await;
    let client = HubClient::new(&hub.base, None).expect("client");
    let repo = RepoId::parse("mlx-community/SmolLM2-135M-Instruct-4bit").expect("id");
    let info = client.model_info(&repo, None).await.expect("info");
    assert_eq!(info.total_size, 76_000_123);
    assert_eq!(info.license.as_deref(), Some("apache-2.0"));
    assert!(!info.gated);
    let weights = info
        .files
        .iter()
        .find(|f| f.name == "model.safetensors")
        .expect("weights");
    assert_eq!(weights.size, Some(76_000_000));
    assert_eq!(weights.sha256.as_deref(), Some("a".repeat(64).as_str()));
    let readme = client
        .file_text(&repo, None, "README.md")
        .await
        .expect("readme through a redirect");
    assert!(readme.contains("# SmolLM2-135M-Instruct-4bit"));
    assert!(
        client
            .file_text(&repo, None, "../../etc/passwd")
            .await
            .is_err()
    );
}

#[tokio::test]
async fn every_hub_error_is_clear() {
    let hub = start_hub().await;
    let client = HubClient::new(&hub.base, None).expect("client");
    let info = |id: &'static str| {
        let client = &client;
        let repo = RepoId::parse(id).expect("id");
        async move { client.model_info(&repo, None).await.expect_err(id) }
    };
    assert!(matches!(info("private/x").await, HubError::Auth(m) if m.contains("token")));
    assert!(matches!(info("gated/x").await, HubError::Auth(m) if m.contains("gated")));
    assert!(matches!(info("nobody/x").await, HubError::NotFound(_)));
    let limited = info("busy/x").await;
    assert!(matches!(limited, HubError::RateLimited(Some(7))));
    assert!(limited.to_string().contains("in 7 s"));
    assert!(matches!(info("broken/x").await, HubError::Network(m) if m.contains("malformed")));
    assert!(matches!(info("evil/x").await, HubError::Invalid(m) if m.contains("leave")));
    assert!(
        client
            .model_info(&RepoId::parse("a/b").expect("id"), Some("../main"))
            .await
            .is_err()
    );

    let with_token = HubClient::new(&hub.base, Some("hf_token".into())).expect("client");
    let private = with_token
        .model_info(&RepoId::parse("private/x").expect("id"), None)
        .await
        .expect("token accepted");
    assert_eq!(private.id, "private/x");

    let unreachable = HubClient::new("http://127.0.0.1:9", None).expect("client");
    assert!(
        matches!(unreachable.search(&SearchQuery::default()).await, Err(HubError::Network(m)) if m.contains("cannot reach"))
    );
}

#[tokio::test]
async fn capabilities_of_a_remote_model_from_its_small_files() {
    let hub = start_hub().await;
    let client = HubClient::new(&hub.base, None).expect("client");
    let repo = RepoId::parse("mlx-community/SmolLM2-135M-Instruct-4bit").expect("id");
    let info = client.model_info(&repo, None).await.expect("info");
    let files = client.model_files(&repo, &info).await.expect("small files");
    let caps = orchard_hub::capabilities::detect(&files, &["llama"]);
    assert_eq!(caps.model_type.as_deref(), Some("llama"));
    assert!(caps.supported);
    assert_eq!(caps.weight_bytes, 76_000_000);
    assert!(caps.tool_use, "the README tags it function-calling");
    assert_eq!(caps.context_length, Some(8192));
}
