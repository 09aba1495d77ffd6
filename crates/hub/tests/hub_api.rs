//! The Hub client against a local Hub on 127.0.0.1:0 that answers as the
//! real one does: search paging and sorting, model details, every error the
//! Hub gives, and `resolve` with the Hub's redirects. A small file is a `307`
//! to a relative `/api/resolve-cache/...` URL on the Hub's host, whose answer
//! carries the `ETag` (the git blob SHA-1), `X-Repo-Commit` and the length;
//! an LFS file is a `302` to a second listener standing in for the CDN, with
//! `X-Linked-Etag` (the SHA-256) and `X-Linked-Size` on the redirect itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use orchard_hub::client::{HubClient, SearchQuery, Sort};
use orchard_hub::integrity::git_blob_sha1;
use orchard_hub::{HubError, RepoId};
use serde_json::{Value, json};

/// A file request: the file and its Range header.
type Fetch = (String, Option<String>);

#[derive(Clone)]
struct Hub {
    base: String,
    /// The CDN that LFS files redirect to: another origin.
    cdn: String,
    hits: Arc<AtomicUsize>,
    models: Arc<Vec<Value>>,
    /// (file, Range header) of every GET of a file's content, on either host.
    ranges: Arc<std::sync::Mutex<Vec<Fetch>>>,
    /// Whether a request to the CDN carried the token (it must not).
    cdn_saw_token: Arc<AtomicBool>,
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
            "cardData": {"license": "apache-2.0"}, "gated": false, "usedStorage": repo_files().iter().map(|(_, c)| c.len()).sum::<usize>(),
            "siblings": siblings(),
        }))
        .into_response(),
        ("private", _) if !headers.contains_key(header::AUTHORIZATION) => {
            StatusCode::UNAUTHORIZED.into_response()
        }
        ("private", _) => axum::Json(json!({"id": "private/x", "siblings": []})).into_response(),
        ("gated", _) => StatusCode::FORBIDDEN.into_response(),
        // A model larger than any disk here.
        ("huge", _) => axum::Json(json!({"id": "huge/x", "siblings": [
            {"rfilename": "model.safetensors", "size": 1u64 << 60}]}))
        .into_response(),
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

/// The repo's files as the Hub lists them, LFS metadata on the weights.
fn siblings() -> Vec<Value> {
    repo_files()
        .into_iter()
        .map(|(name, content)| {
            let mut entry = json!({"rfilename": name, "size": content.len()});
            if name.ends_with(".safetensors") {
                entry["lfs"] = json!({"sha256": sha256_hex(&content), "size": content.len()});
            }
            entry
        })
        .collect()
}

/// The commit every revision of the fake repo resolves to.
const COMMIT: &str = "c0ffee0000000000000000000000000000000001";

/// The fake repo's files: (name, content).
fn repo_files() -> Vec<(&'static str, Vec<u8>)> {
    let fixture = std::env::var_os("ORCHARD_DEPS_DIR")
        .map(|d| std::path::PathBuf::from(d).join("models/SmolLM2-135M-Instruct-4bit"));
    let config = fixture
        .and_then(|dir| std::fs::read(dir.join("config.json")).ok())
        .unwrap_or_default();
    // Deterministic bytes standing in for weights.
    let weights: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    vec![
        (
            "README.md",
            b"---\ntags:\n- mlx\n- function-calling\n---\n# SmolLM2-135M-Instruct-4bit\n".to_vec(),
        ),
        ("config.json", config),
        ("model.safetensors", weights),
    ]
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// As the Hub answers `resolve` (GET or HEAD): an LFS file redirects to the
/// CDN with its metadata on the redirect; a small file redirects, relatively,
/// to the Hub's own resolve cache, which carries the metadata.
async fn resolve(
    State(hub): State<Hub>,
    Path((org, name, rev, file)): Path<(String, String, String, String)>,
) -> Response {
    let Some((_, content)) = repo_files().into_iter().find(|(n, _)| *n == file) else {
        return (StatusCode::NOT_FOUND, [("x-error-code", "EntryNotFound")]).into_response();
    };
    let commit = (
        header::HeaderName::from_static("x-repo-commit"),
        COMMIT.to_string(),
    );
    if file.ends_with(".safetensors") {
        return (
            StatusCode::FOUND,
            [
                (
                    header::LOCATION,
                    format!("{}/files/{org}/{name}/{COMMIT}/{file}", hub.cdn),
                ),
                commit,
                (
                    header::HeaderName::from_static("x-linked-etag"),
                    format!("\"{}\"", sha256_hex(&content)),
                ),
                (
                    header::HeaderName::from_static("x-linked-size"),
                    content.len().to_string(),
                ),
            ],
        )
            .into_response();
    }
    // The real Hub's Location: a path on its own host, with a query naming the request.
    let location = format!(
        "/api/resolve-cache/models/{org}/{name}/{COMMIT}/{file}?%2F{org}%2F{name}%2Fresolve%2F{rev}%2F{file}=&etag=%22{}%22",
        git_blob_sha1(&content)
    );
    (
        StatusCode::TEMPORARY_REDIRECT,
        [(header::LOCATION, location), commit],
    )
        .into_response()
}

/// The Hub's resolve cache: a small file's content and metadata.
async fn resolve_cache(
    State(hub): State<Hub>,
    method: Method,
    Path((_org, _name, _rev, file)): Path<(String, String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let Some((_, content)) = repo_files().into_iter().find(|(n, _)| *n == file) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let etag = format!("\"{}\"", git_blob_sha1(&content));
    let mut response = serve_bytes(&hub, &method, &file, content, &headers);
    for (name, value) in [("etag", etag.as_str()), ("x-repo-commit", COMMIT)] {
        response
            .headers_mut()
            .insert(name, value.parse().expect("header"));
    }
    response
}

/// The CDN: LFS files' content, no metadata of the Hub's.
async fn file_host(
    State(hub): State<Hub>,
    method: Method,
    Path((_org, _name, _rev, file)): Path<(String, String, String, String)>,
    headers: HeaderMap,
) -> Response {
    if headers.contains_key(header::AUTHORIZATION) {
        hub.cdn_saw_token.store(true, Ordering::SeqCst);
    }
    let Some((_, content)) = repo_files().into_iter().find(|(n, _)| *n == file) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    serve_bytes(&hub, &method, &file, content, &headers)
}

/// Whole files, or the byte range asked for; GETs are recorded.
fn serve_bytes(
    hub: &Hub,
    method: &Method,
    file: &str,
    content: Vec<u8>,
    headers: &HeaderMap,
) -> Response {
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if method == Method::GET {
        hub.ranges
            .lock()
            .expect("lock")
            .push((file.to_string(), range.clone()));
    }
    let start: usize = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let len = content.len();
    if start == 0 {
        return (
            [
                (header::CONTENT_LENGTH, len.to_string()),
                (header::ACCEPT_RANGES, "bytes".to_string()),
            ],
            content,
        )
            .into_response();
    }
    if start >= len {
        return StatusCode::RANGE_NOT_SATISFIABLE.into_response();
    }
    (
        StatusCode::PARTIAL_CONTENT,
        [
            (
                header::CONTENT_RANGE,
                format!("bytes {start}-{}/{len}", len - 1),
            ),
            (header::CONTENT_LENGTH, (len - start).to_string()),
        ],
        content[start..].to_vec(),
    )
        .into_response()
}

async fn start_hub() -> Hub {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let cdn_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hub = Hub {
        base: format!("http://{}", listener.local_addr().expect("address")),
        cdn: format!("http://{}", cdn_listener.local_addr().expect("address")),
        hits: Arc::new(AtomicUsize::new(0)),
        models: Arc::new(catalog()),
        ranges: Arc::default(),
        cdn_saw_token: Arc::default(),
    };
    let app = Router::new()
        .route("/api/models", get(search))
        .route("/api/models/{org}/{name}/revision/{rev}", get(info))
        .route("/{org}/{name}/resolve/{rev}/{*file}", get(resolve))
        .route(
            "/api/resolve-cache/models/{org}/{name}/{rev}/{*file}",
            get(resolve_cache),
        )
        .with_state(hub.clone());
    let cdn = Router::new()
        .route("/files/{org}/{name}/{rev}/{*file}", get(file_host))
        .with_state(hub.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    tokio::spawn(async move { axum::serve(cdn_listener, cdn).await });
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
    let all: usize = repo_files().iter().map(|(_, c)| c.len()).sum();
    assert_eq!(info.total_size, all as u64);
    assert_eq!(info.license.as_deref(), Some("apache-2.0"));
    assert!(!info.gated);
    let weights = info
        .files
        .iter()
        .find(|f| f.name == "model.safetensors")
        .expect("weights");
    assert_eq!(weights.size, Some(300_000));
    assert_eq!(
        weights.sha256.as_deref(),
        Some(sha256_hex(&self::weights()).as_str())
    );
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
    assert_eq!(caps.weight_bytes, 300_000);
    assert!(caps.tool_use, "the README tags it function-calling");
    assert_eq!(caps.context_length, Some(8192));
}

fn weights() -> Vec<u8> {
    repo_files()
        .into_iter()
        .find(|(n, _)| *n == "model.safetensors")
        .expect("weights")
        .1
}

#[tokio::test]
async fn a_download_lands_in_the_cache_layout_with_progress() {
    let hub = start_hub().await;
    let cache = tempfile::tempdir().expect("cache");
    let client = HubClient::new(&hub.base, None).expect("client");
    let repo = RepoId::parse("mlx-community/SmolLM2-135M-Instruct-4bit").expect("id");
    let mut seen = Vec::new();
    let path = client
        .download_file(cache.path(), &repo, "main", "model.safetensors", |p| {
            seen.push(p)
        })
        .await
        .expect("download");
    assert_eq!(std::fs::read(&path).expect("read"), weights());
    let folder = cache
        .path()
        .join("models--mlx-community--SmolLM2-135M-Instruct-4bit");
    assert_eq!(
        path,
        folder
            .join("snapshots")
            .join(COMMIT)
            .join("model.safetensors")
    );
    assert!(
        std::fs::symlink_metadata(&path)
            .expect("meta")
            .file_type()
            .is_symlink()
    );
    assert!(folder.join("blobs").join(sha256_hex(&weights())).is_file());
    assert_eq!(
        std::fs::read_to_string(folder.join("refs/main")).expect("ref"),
        COMMIT
    );
    assert_eq!(
        seen.last().map(|p| (p.downloaded, p.total)),
        Some((300_000, Some(300_000)))
    );
    assert!(seen.windows(2).all(|w| w[0].downloaded <= w[1].downloaded));

    // The cache reader sees it, and a second download fetches nothing.
    let cached = orchard_hub::HubCache::new(cache.path())
        .model(&repo)
        .expect("cached");
    assert_eq!(cached.size_on_disk, 300_000);
    let before = hub.ranges.lock().expect("lock").len();
    client
        .download_file(cache.path(), &repo, "main", "model.safetensors", |_| {})
        .await
        .expect("again");
    assert_eq!(hub.ranges.lock().expect("lock").len(), before);
}

#[tokio::test]
async fn a_partial_file_resumes_with_a_range_and_a_corrupt_one_is_fetched_again() {
    let hub = start_hub().await;
    let client = HubClient::new(&hub.base, None).expect("client");
    let repo = RepoId::parse("mlx-community/SmolLM2-135M-Instruct-4bit").expect("id");
    let blobs = |root: &std::path::Path| {
        root.join("models--mlx-community--SmolLM2-135M-Instruct-4bit/blobs")
    };
    let incomplete = format!("{}.incomplete", sha256_hex(&weights()));

    // What a killed download leaves: the first 120 000 bytes.
    let cache = tempfile::tempdir().expect("cache");
    std::fs::create_dir_all(blobs(cache.path())).expect("blobs");
    std::fs::write(blobs(cache.path()).join(&incomplete), &weights()[..120_000]).expect("partial");
    let path = client
        .download_file(cache.path(), &repo, "main", "model.safetensors", |_| {})
        .await
        .expect("resume");
    assert_eq!(std::fs::read(&path).expect("read"), weights());
    let ranges = hub.ranges.lock().expect("lock").clone();
    assert_eq!(
        ranges,
        [(
            "model.safetensors".to_string(),
            Some("bytes=120000-".to_string())
        )]
    );
    assert!(!blobs(cache.path()).join(&incomplete).exists());

    // A partial file with wrong bytes: the hash fails, the file is fetched whole again.
    let cache = tempfile::tempdir().expect("cache");
    std::fs::create_dir_all(blobs(cache.path())).expect("blobs");
    std::fs::write(blobs(cache.path()).join(&incomplete), vec![0xAB; 50_000]).expect("corrupt");
    hub.ranges.lock().expect("lock").clear();
    let path = client
        .download_file(cache.path(), &repo, "main", "model.safetensors", |_| {})
        .await
        .expect("refetch");
    assert_eq!(std::fs::read(&path).expect("read"), weights());
    let ranges = hub.ranges.lock().expect("lock").clone();
    assert_eq!(ranges.len(), 2, "{ranges:?}");
    assert_eq!(
        ranges[1].1, None,
        "the second fetch starts from the beginning"
    );
}

#[tokio::test]
async fn download_errors_and_bad_names() {
    let hub = start_hub().await;
    let cache = tempfile::tempdir().expect("cache");
    let client = HubClient::new(&hub.base, None).expect("client");
    let repo = RepoId::parse("mlx-community/SmolLM2-135M-Instruct-4bit").expect("id");
    let missing = client
        .download_file(cache.path(), &repo, "main", "nope.bin", |_| {})
        .await;
    assert!(matches!(missing, Err(HubError::NotFound(_))), "{missing:?}");
    let escape = client
        .download_file(cache.path(), &repo, "main", "../../../etc/passwd", |_| {})
        .await;
    assert!(matches!(escape, Err(HubError::Invalid(_))), "{escape:?}");
    let revision = client
        .download_file(cache.path(), &repo, "../main", "config.json", |_| {})
        .await;
    assert!(
        matches!(revision, Err(HubError::Invalid(_))),
        "{revision:?}"
    );
}

/// huggingface_hub (Python) reads what Orchard downloaded, offline.
#[tokio::test]
async fn huggingface_hub_reads_the_download_offline() {
    let hub = start_hub().await;
    let cache = tempfile::tempdir().expect("cache");
    let client = HubClient::new(&hub.base, None).expect("client");
    let repo = RepoId::parse("mlx-community/SmolLM2-135M-Instruct-4bit").expect("id");
    for file in ["config.json", "model.safetensors"] {
        client
            .download_file(cache.path(), &repo, "main", file, |_| {})
            .await
            .expect("download");
    }
    let deps = std::env::var_os("ORCHARD_DEPS_DIR").expect("set by .cargo/config.toml");
    let python = std::path::Path::new(&deps).join("venv/bin/python");
    let script = "import hashlib, sys\nfrom huggingface_hub import hf_hub_download\nfor name in ('config.json', 'model.safetensors'):\n    path = hf_hub_download('mlx-community/SmolLM2-135M-Instruct-4bit', name)\n    print(name, hashlib.sha256(open(path, 'rb').read()).hexdigest())";
    let output = std::process::Command::new(python)
        .args(["-c", script])
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_HUB_CACHE", cache.path())
        .output()
        .expect("run python: `make setup` makes the venv");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    assert!(
        stdout.contains(&format!("model.safetensors {}", sha256_hex(&weights()))),
        "{stdout}"
    );
}

#[tokio::test]
async fn a_whole_model_downloads_with_progress_over_all_files() {
    let hub = start_hub().await;
    let cache = tempfile::tempdir().expect("cache");
    let client = HubClient::new(&hub.base, None).expect("client");
    let repo = RepoId::parse("mlx-community/SmolLM2-135M-Instruct-4bit").expect("id");
    let mut events = Vec::new();
    let snapshot = client
        .download_model(
            cache.path(),
            &repo,
            "main",
            orchard_hub::download::DEFAULT_PATTERNS,
            |p| events.push(p.clone()),
        )
        .await
        .expect("download");
    assert!(snapshot.ends_with(format!("snapshots/{COMMIT}")));
    let mut names: Vec<String> = std::fs::read_dir(&snapshot)
        .expect("snapshot")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["README.md", "config.json", "model.safetensors"]);
    assert_eq!(
        std::fs::read(snapshot.join("model.safetensors")).expect("read"),
        weights()
    );
    let last = events.last().expect("progress");
    assert_eq!((last.index, last.files), (3, 3));
    assert_eq!(last.downloaded, last.total);
    assert!(
        events
            .windows(2)
            .all(|w| w[0].downloaded <= w[1].downloaded)
    );
    // The capabilities of what was downloaded.
    let files = orchard_hub::capabilities::ModelFiles::read_dir(&snapshot).expect("files");
    assert_eq!(
        orchard_hub::capabilities::detect(&files, &["llama"]).weight_bytes,
        300_000
    );
}

#[tokio::test]
async fn a_model_larger_than_the_free_space_is_refused_up_front() {
    let hub = start_hub().await;
    let cache = tempfile::tempdir().expect("cache");
    let client = HubClient::new(&hub.base, None).expect("client");
    let repo = RepoId::parse("huge/x").expect("id");
    let err = client
        .download_model(
            cache.path(),
            &repo,
            "main",
            orchard_hub::download::DEFAULT_PATTERNS,
            |_| {},
        )
        .await
        .expect_err("too big");
    assert!(matches!(err, HubError::DiskFull { .. }), "{err}");
    assert!(err.to_string().contains("MiB are free"), "{err}");
    assert!(
        hub.ranges.lock().expect("lock").is_empty(),
        "nothing was fetched"
    );
}

#[tokio::test]
async fn offline_mode_uses_the_cache_and_never_asks_the_hub() {
    let hub = start_hub().await;
    let cache = tempfile::tempdir().expect("cache");
    let mut client = HubClient::new(&hub.base, None).expect("client");
    let repo = RepoId::parse("mlx-community/SmolLM2-135M-Instruct-4bit").expect("id");
    let online = client
        .download_model(
            cache.path(),
            &repo,
            "main",
            orchard_hub::download::DEFAULT_PATTERNS,
            |_| {},
        )
        .await
        .expect("download");
    client.set_offline(true);
    let hits = hub.hits.load(std::sync::atomic::Ordering::SeqCst);
    let offline = client
        .download_model(
            cache.path(),
            &repo,
            "main",
            orchard_hub::download::DEFAULT_PATTERNS,
            |_| {},
        )
        .await
        .expect("served from the cache");
    assert_eq!(offline, online);
    assert_eq!(hub.hits.load(std::sync::atomic::Ordering::SeqCst), hits);
    let other = RepoId::parse("mlx-community/Qwen3-4B-4bit").expect("id");
    let err = client
        .download_model(
            cache.path(),
            &other,
            "main",
            orchard_hub::download::DEFAULT_PATTERNS,
            |_| {},
        )
        .await
        .expect_err("not cached");
    assert!(err.to_string().contains("offline mode"), "{err}");
    assert!(client.search(&SearchQuery::default()).await.is_err());
}

fn config() -> Vec<u8> {
    repo_files()
        .into_iter()
        .find(|(n, _)| *n == "config.json")
        .expect("config")
        .1
}

/// The Hub's answers for a small file: a 307 to a relative URL on its host,
/// the metadata on the final answer; for an LFS file, the redirect to the CDN.
#[tokio::test]
async fn file_metadata_follows_the_hubs_redirects_and_stops_at_the_cdn() {
    let hub = start_hub().await;
    let client = HubClient::new(&hub.base, Some("hf_secret".into())).expect("client");
    let repo = RepoId::parse("mlx-community/SmolLM2-135M-Instruct-4bit").expect("id");
    let small = client
        .file_meta(&repo, "main", "config.json")
        .await
        .expect("metadata of a small file");
    assert_eq!(small.commit, COMMIT);
    assert_eq!(small.etag, git_blob_sha1(&config()));
    assert_eq!(small.size, Some(config().len() as u64));

    let lfs = client
        .file_meta(&repo, "main", "model.safetensors")
        .await
        .expect("metadata of an LFS file");
    assert_eq!(lfs.etag, sha256_hex(&weights()));
    assert_eq!(lfs.size, Some(300_000));
    // The HEAD stopped at the redirect: the CDN was not asked, nor given the token.
    let path = client
        .download_file(
            tempfile::tempdir().expect("cache").path(),
            &repo,
            "main",
            "model.safetensors",
            |_| {},
        )
        .await
        .expect("download through the CDN");
    assert!(path.ends_with("model.safetensors"));
    assert!(
        !hub.cdn_saw_token.load(Ordering::SeqCst),
        "the token went to the CDN"
    );

    let missing = client.file_meta(&repo, "main", "nope.json").await;
    assert!(matches!(missing, Err(HubError::NotFound(_))), "{missing:?}");
}

/// A small file is checked against its git SHA-1: a corrupt partial file of
/// the right length is deleted and the file fetched again.
#[tokio::test]
async fn a_corrupt_small_file_is_caught_by_its_git_sha1_and_fetched_again() {
    let hub = start_hub().await;
    let client = HubClient::new(&hub.base, None).expect("client");
    let repo = RepoId::parse("mlx-community/SmolLM2-135M-Instruct-4bit").expect("id");
    let cache = tempfile::tempdir().expect("cache");
    let blobs = cache
        .path()
        .join("models--mlx-community--SmolLM2-135M-Instruct-4bit/blobs");
    std::fs::create_dir_all(&blobs).expect("blobs");
    let etag = git_blob_sha1(&config());
    let mut wrong = config();
    wrong.iter_mut().for_each(|b| *b = b.wrapping_add(1));
    std::fs::write(blobs.join(format!("{etag}.incomplete")), &wrong).expect("corrupt");
    let path = client
        .download_file(cache.path(), &repo, "main", "config.json", |_| {})
        .await
        .expect("fetched again");
    assert!(
        std::fs::read(&path).expect("read") == config(),
        "the corrupt bytes were kept"
    );
    assert!(blobs.join(&etag).is_file());
    let ranges = hub.ranges.lock().expect("lock").clone();
    assert_eq!(ranges, [("config.json".to_string(), None)]);
}
