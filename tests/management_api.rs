//! The management API (`/api`) end to end over real HTTP on 127.0.0.1:0: a
//! real SQLite file, a Hugging Face cache in a temp folder, the fake Hub
//! serving the real SmolLM2 files, and the real model loaded. What a browser
//! does in the Models screens: details, download with pushed progress, the
//! library, load, unload, delete; and the web UI served at `/`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use orchard_core::catalog::Catalog;
use orchard_core::ops::{Orchard, OrchardParts};
use orchard_core::secrets::Secrets;
use orchard_core::{ManagerOptions, ModelManager};
use orchard_hub::HubClient;
use orchard_server::{AuthConfig, ServerConfig};
use orchard_store::Store;
use orchard_tests::fake_hub::FakeHub;
use serde_json::{Value, json};

const REPO: &str = "mlx-community/SmolLM2-135M-Instruct-4bit";

struct Api {
    base: String,
    key: String,
    http: reqwest::Client,
    cache: PathBuf,
    _dir: tempfile::TempDir,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl Api {
    /// A server whose Hub is `hub` (an address) and whose cache starts empty.
    async fn start(hub: &str) -> Api {
        Api::start_with(
            hub,
            ManagerOptions {
                idle_ttl: None,
                ..ManagerOptions::default()
            },
        )
        .await
    }

    async fn start_with(hub: &str, options: ManagerOptions) -> Api {
        let dir = tempfile::tempdir().expect("temp dir");
        let cache = dir.path().join("hub");
        std::fs::create_dir_all(&cache).expect("cache");
        let store = Store::open(&dir.path().join("orchard.db")).expect("store");
        let key = store.create_api_key("test").expect("key").secret;
        let catalog = Catalog::new().with_hub_cache(Some(cache.clone()));
        let manager = ModelManager::new(catalog, options);
        let orchard = Orchard::new(OrchardParts {
            manager,
            store,
            hub: HubClient::new(hub, None).expect("hub client"),
            cache_root: Some(cache.clone()),
            secrets: Some(Secrets::new(dir.path().to_path_buf())),
        });
        let config = ServerConfig {
            auth: AuthConfig::required(&[]),
            ..ServerConfig::default()
        };
        let app = orchard_server::router_for(orchard, config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(orchard_server::serve(listener, app, async {
            let _ = stop.await;
        }));
        Api {
            base,
            key,
            http: reqwest::Client::new(),
            cache,
            _dir: dir,
            _shutdown: shutdown,
        }
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .send()
            .await
            .expect("GET");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON body"))
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .json(&body)
            .send()
            .await
            .expect("POST");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON body"))
    }
}

/// The fixture's files, served by the fake Hub as `REPO`.
fn fake_hub_with_the_fixture() -> FakeHub {
    let fixture = orchard_core::paths::fixture_models_dir()
        .expect("ORCHARD_DEPS_DIR is set by .cargo/config.toml")
        .join("SmolLM2-135M-Instruct-4bit");
    let read = |name: &str| std::fs::read(fixture.join(name)).expect("fixture: run `make setup`");
    let small = ["config.json", "tokenizer.json", "tokenizer_config.json"]
        .into_iter()
        .map(|name| (name, read(name)))
        .collect();
    FakeHub::with_small_files(REPO, read("model.safetensors"), small, Duration::ZERO)
}

/// Reads server-sent events from `/api/downloads/events` until one for
/// `REPO` says `done` (or `failed`); returns every event seen.
async fn events_until_finished(api: &Api, response: reqwest::Response) -> Vec<Value> {
    let _ = api;
    let mut response = response;
    let mut buffer = String::new();
    let mut events = Vec::new();
    loop {
        let chunk = tokio::time::timeout(Duration::from_secs(120), response.chunk())
            .await
            .expect("an event within 120 s")
            .expect("read the stream")
            .expect("the stream stays open");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            for line in block.lines() {
                if let Some(data) = line.strip_prefix("data:") {
                    let event: Value = serde_json::from_str(data.trim()).expect("event JSON");
                    let finished = event["repo"] == REPO
                        && (event["state"] == "done" || event["state"] == "failed");
                    events.push(event);
                    if finished {
                        return events;
                    }
                }
            }
        }
    }
}

fn model_in<'a>(library: &'a Value, id: &str) -> Option<&'a Value> {
    library.as_array()?.iter().find(|m| m["id"] == id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_is_found_downloaded_loaded_unloaded_and_deleted_through_the_api() {
    let hub = fake_hub_with_the_fixture();
    let api = Api::start(&hub.base).await;

    let (status, library) = api.get("/api/library").await;
    assert_eq!(status, 200, "{library}");
    assert_eq!(library, json!([]));

    let (status, details) = api
        .post("/api/models/details", json!({"model": REPO}))
        .await;
    assert_eq!(status, 200, "{details}");
    assert_eq!(details["id"], REPO);
    assert_eq!(details["facts"]["architecture"], "llama");
    assert_eq!(details["facts"]["supported"], true);
    assert_eq!(details["facts"]["quantization_bits"], 4);
    assert_eq!(details["downloaded"], false);
    assert_eq!(details["needs_token"], false);
    assert!(
        details["files"]
            .as_array()
            .expect("files")
            .iter()
            .any(|f| f["name"] == "model.safetensors"
                && f["size_bytes"].as_u64() == Some(hub.content.len() as u64)),
        "{details}"
    );
    assert!(
        details["memory_estimate_bytes"].as_u64().expect("estimate") > hub.content.len() as u64
    );

    // Subscribed before the start, as the page is.
    let stream = api
        .http
        .get(format!("{}/api/downloads/events", api.base))
        .bearer_auth(&api.key)
        .send()
        .await
        .expect("events");
    assert_eq!(stream.status(), 200);
    assert!(
        stream.headers()["content-type"]
            .to_str()
            .expect("type")
            .starts_with("text/event-stream")
    );
    let (status, started) = api
        .post("/api/downloads/start", json!({"model": REPO}))
        .await;
    assert_eq!(status, 200, "{started}");
    assert_eq!(started["repo"], REPO);
    let events = events_until_finished(&api, stream).await;
    let last = events.last().expect("events");
    assert_eq!(last["state"], "done", "{events:?}");
    let weights = hub.content.len() as u64;
    assert!(
        events.iter().any(|e| e["state"] == "running"
            && e["file"] == "model.safetensors"
            && e["downloaded"].as_u64().is_some_and(|d| d > 0)),
        "no progress on the weights was pushed: {events:?}"
    );
    assert!(
        last["downloaded"].as_u64().expect("bytes") >= weights,
        "{last}"
    );
    let (_, downloads) = api.get("/api/downloads").await;
    assert_eq!(downloads[0]["state"], "done", "{downloads}");

    let (status, library) = api.get("/api/library").await;
    assert_eq!(status, 200);
    let model = model_in(&library, REPO).unwrap_or_else(|| panic!("{REPO} not in {library}"));
    assert_eq!(model["source"], "hugging_face");
    assert_eq!(model["loaded"], false);
    assert!(model["size_bytes"].as_u64().expect("size") >= weights);
    assert_eq!(model["facts"]["architecture"], "llama");
    assert_eq!(model["revisions"].as_array().expect("revisions").len(), 1);

    let (status, loaded) = api.post("/api/library/load", json!({"model": REPO})).await;
    assert_eq!(status, 200, "{loaded}");
    assert_eq!(loaded["loaded"], true);
    assert!(loaded["memory_bytes"].as_u64().expect("memory") > 0);
    assert!(loaded["last_used"].as_u64().is_some(), "{loaded}");
    // The port serves it now.
    let (_, models) = api.get("/v1/models").await;
    assert!(
        models["data"]
            .as_array()
            .expect("data")
            .iter()
            .any(|m| m["id"] == REPO)
    );

    let (status, unloaded) = api
        .post("/api/library/unload", json!({"model": REPO}))
        .await;
    assert_eq!(status, 200, "{unloaded}");
    assert_eq!(unloaded["loaded"], false);
    assert_eq!(unloaded["memory_bytes"], Value::Null);

    let (status, deleted) = api
        .post("/api/library/delete", json!({"model": REPO}))
        .await;
    assert_eq!(status, 200, "{deleted}");
    assert!(
        deleted["freed_bytes"].as_u64().expect("freed") >= weights,
        "{deleted}"
    );
    let (_, library) = api.get("/api/library").await;
    assert!(model_in(&library, REPO).is_none(), "{library}");
    assert!(
        !api.cache
            .join("models--mlx-community--SmolLM2-135M-Instruct-4bit")
            .exists(),
        "the cache folder is still there"
    );
}

#[tokio::test]
async fn failures_are_a_code_and_a_message() {
    // Nothing listens on port 9: the Hub cannot be reached.
    let api = Api::start("http://127.0.0.1:9").await;

    let unauthorized = api
        .http
        .get(format!("{}/api/library", api.base))
        .send()
        .await
        .expect("GET");
    assert_eq!(unauthorized.status(), 401);
    let body: Value = unauthorized.json().await.expect("json");
    assert_eq!(body["code"], "unauthorized", "{body}");

    let (status, body) = api
        .post("/api/models/search", json!({"text": "smol"}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "invalid_input");
    assert!(
        body["message"].as_str().expect("message").contains("sort"),
        "{body}"
    );

    let search = json!({"text": "smol", "author": null, "sort": "downloads", "architecture": null,
                        "bits": null, "capabilities": [], "fits_only": false});
    let (status, body) = api.post("/api/models/search", search).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["code"], "hub_unreachable");

    let (status, body) = api
        .post("/api/library/load", json!({"model": "no/such-model"}))
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["code"], "not_found");

    let (status, body) = api
        .post("/api/downloads/start", json!({"model": "../etc"}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "invalid_input");

    let (status, body) = api
        .post("/api/library/add_folder", json!({"path": "/nonexistent"}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .expect("message")
            .contains("config.json"),
        "{body}"
    );

    let form = api
        .http
        .post(format!("{}/api/library/load", api.base))
        .bearer_auth(&api.key)
        .header("content-type", "text/plain")
        .body("{\"model\": \"x\"}")
        .send()
        .await
        .expect("POST");
    assert_eq!(form.status(), 415);
    let body: Value = form.json().await.expect("json");
    assert_eq!(body["code"], "invalid_input", "{body}");

    let (status, body) = api.get("/api/nothing-here").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["code"], "not_found");

    let (status, body) = api.get("/api/library/load").await;
    assert_eq!(status, 405, "{body}");
    assert_eq!(body["code"], "invalid_input", "{body}");
}

#[tokio::test]
async fn a_token_is_kept_but_never_sent_back() {
    let api = Api::start("http://127.0.0.1:9").await;
    let (status, settings) = api.get("/api/settings").await;
    assert_eq!(status, 200);
    assert_eq!(settings["hf_token_set"], false, "{settings}");
    let (status, settings) = api
        .post(
            "/api/settings/hf_token",
            json!({"token": "hf_secret_value"}),
        )
        .await;
    assert_eq!(status, 200, "{settings}");
    assert_eq!(settings["hf_token_set"], true);
    assert!(!settings.to_string().contains("hf_secret_value"));
    // A misspelt field is refused, not read as "remove the token".
    let (status, body) = api
        .post("/api/settings/hf_token", json!({"tokn": "x"}))
        .await;
    assert_eq!(status, 400, "{body}");
    let (_, settings) = api.get("/api/settings").await;
    assert_eq!(settings["hf_token_set"], true);
    let (_, settings) = api
        .post("/api/settings/hf_token", json!({"token": null}))
        .await;
    assert_eq!(settings["hf_token_set"], false);
}

/// The first `assets/...` file `index.html` loads.
fn first_asset(index: &str) -> String {
    let start = index.find("assets/").expect("index.html loads an asset");
    let end = index[start..]
        .find(['"', '\''])
        .map(|e| start + e)
        .expect("quoted");
    index[start..end].to_string()
}

#[tokio::test]
async fn the_web_ui_is_served_at_the_root_with_a_strict_policy() {
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ui/dist/index.html");
    let built = std::fs::read_to_string(&dist).expect("ui/dist: run `make ui`");
    let api = Api::start("http://127.0.0.1:9").await;

    // No key: the page itself is public; it asks for the key before /api.
    let page = api
        .http
        .get(format!("{}/", api.base))
        .send()
        .await
        .expect("GET /");
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .expect("type")
            .starts_with("text/html")
    );
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_string();
    assert!(
        policy.contains("default-src 'self'") && policy.contains("connect-src 'self'"),
        "{policy}"
    );
    let body = page.text().await.expect("body");
    assert_eq!(body, built, "the served page is not the built one");

    let asset = first_asset(&body);
    let file = api
        .http
        .get(format!("{}/{asset}", api.base))
        .send()
        .await
        .expect("asset");
    assert_eq!(file.status(), 200, "{asset}");
    assert!(
        file.headers()["cache-control"]
            .to_str()
            .expect("cache")
            .contains("immutable")
    );

    // A route of the page's own is the page.
    let deep = api
        .http
        .get(format!("{}/models/library", api.base))
        .send()
        .await
        .expect("GET");
    assert_eq!(deep.text().await.expect("body"), built);
    // An API path never is.
    let missing = api
        .http
        .get(format!("{}/v1/nothing", api.base))
        .send()
        .await
        .expect("GET");
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.expect("JSON error");
    assert!(body["error"]["message"].is_string(), "{body}");
}

#[tokio::test]
async fn an_added_folder_can_be_removed_from_the_library_and_its_files_stay() {
    let api = Api::start("http://127.0.0.1:9").await;
    let fixture = orchard_core::paths::fixture_models_dir()
        .expect("ORCHARD_DEPS_DIR is set by .cargo/config.toml")
        .join("SmolLM2-135M-Instruct-4bit");
    let (status, added) = api
        .post(
            "/api/library/add_folder",
            json!({"path": fixture.to_string_lossy()}),
        )
        .await;
    assert_eq!(status, 200, "{added}");
    assert_eq!(added["id"], "SmolLM2-135M-Instruct-4bit");
    assert_eq!(added["source"], "local");
    // Added twice: the same folder is refused by name.
    let (status, again) = api
        .post(
            "/api/library/add_folder",
            json!({"path": fixture.to_string_lossy()}),
        )
        .await;
    assert_eq!(status, 409, "{again}");

    let (status, removed) = api
        .post(
            "/api/library/delete",
            json!({"model": "SmolLM2-135M-Instruct-4bit"}),
        )
        .await;
    assert_eq!(status, 200, "{removed}");
    assert_eq!(removed["freed_bytes"], 0);
    let (_, library) = api.get("/api/library").await;
    assert_eq!(library, json!([]));
    assert!(
        fixture.join("model.safetensors").is_file(),
        "the user's files were deleted"
    );
}

/// Reads the first server-sent event's data from `response`.
async fn first_event(response: &mut reqwest::Response) -> Value {
    let mut buffer = String::new();
    loop {
        let chunk = tokio::time::timeout(Duration::from_secs(30), response.chunk())
            .await
            .expect("an event within 30 s")
            .expect("read")
            .expect("open");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        if let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data:")) {
                return serde_json::from_str(data.trim()).expect("event JSON");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_served_models_tile_counts_its_work_and_stop_gives_its_memory_back() {
    let api = Api::start("http://127.0.0.1:9").await;
    let fixture = orchard_core::paths::fixture_models_dir()
        .expect("ORCHARD_DEPS_DIR is set by .cargo/config.toml")
        .join("SmolLM2-135M-Instruct-4bit");
    let model = "SmolLM2-135M-Instruct-4bit";
    let (status, _) = api
        .post(
            "/api/library/add_folder",
            json!({"path": fixture.to_string_lossy()}),
        )
        .await;
    assert_eq!(status, 200);

    let (status, before) = api.get("/api/servers").await;
    assert_eq!(status, 200, "{before}");
    assert_eq!(before["servers"], json!([]));
    let system = &before["system"];
    assert!(system["total_memory_bytes"].as_u64().expect("total") > 0);
    assert!(system["process_memory_bytes"].as_u64().expect("rss") > 0);
    assert!(system["memory_budget_bytes"].as_u64().expect("budget") > 0);
    assert_eq!(system["backend"], mlx_sys::BACKEND);

    let (status, started) = api
        .post("/api/servers/start", json!({"model": model}))
        .await;
    assert_eq!(status, 200, "{started}");
    let tile = &started["servers"][0];
    assert_eq!(tile["model"], model);
    assert_eq!(tile["state"], "running");
    assert!(
        tile["memory"]["weights"].as_u64().expect("weights") > 0,
        "{tile}"
    );
    assert_eq!(tile["prompt_cache_hit_rate"], Value::Null);

    // Two identical requests: the second finds its prompt in the cache.
    let chat = json!({"model": model, "messages": [{"role": "user", "content": "Hi"}],
                      "max_tokens": 3, "temperature": 0});
    for _ in 0..2 {
        let (status, answer) = api.post("/v1/chat/completions", chat.clone()).await;
        assert_eq!(status, 200, "{answer}");
    }
    let (_, after) = api.get("/api/servers").await;
    let tile = &after["servers"][0];
    assert!(
        tile["generated_tokens"].as_u64().expect("tokens") >= 2,
        "{tile}"
    );
    assert!(
        tile["tokens_per_second"].as_f64().expect("rate") > 0.0,
        "{tile}"
    );
    assert!(
        tile["cached_prompt_tokens"].as_u64().expect("cached") > 0,
        "{tile}"
    );
    let rate = tile["prompt_cache_hit_rate"].as_f64().expect("hit rate");
    assert!(rate > 0.0 && rate < 1.0, "{tile}");

    // The stream sends the same figures, pushed.
    let mut events = api
        .http
        .get(format!("{}/api/servers/events", api.base))
        .bearer_auth(&api.key)
        .send()
        .await
        .expect("events");
    let event = first_event(&mut events).await;
    assert_eq!(event["servers"][0]["model"], model, "{event}");
    assert_eq!(
        event["servers"][0]["generated_tokens"], tile["generated_tokens"],
        "{event}"
    );

    let (status, stopped) = api.post("/api/servers/stop", json!({"model": model})).await;
    assert_eq!(status, 200, "{stopped}");
    assert_eq!(stopped["servers"], json!([]), "{stopped}");
    let (status, again) = api.post("/api/servers/stop", json!({"model": model})).await;
    assert_eq!(status, 404, "{again}");
    let (status, missing) = api
        .post("/api/servers/start", json!({"model": "no-such"}))
        .await;
    assert_eq!(status, 404, "{missing}");
}

#[tokio::test]
async fn a_key_made_in_settings_works_until_it_is_revoked() {
    let api = Api::start("http://127.0.0.1:9").await;
    let (status, made) = api
        .post("/api/keys/create", json!({"name": "editor"}))
        .await;
    assert_eq!(status, 200, "{made}");
    let secret = made["secret"].as_str().expect("secret").to_string();
    let id = made["key"]["id"].as_i64().expect("id");
    assert!(
        secret.starts_with(
            made["key"]["prefix"]
                .as_str()
                .expect("prefix")
                .trim_end_matches('.')
        )
    );
    let (_, keys) = api.get("/api/keys").await;
    assert!(
        !keys.to_string().contains(&secret),
        "a listing shows a secret"
    );
    assert_eq!(keys.as_array().expect("keys").len(), 2, "{keys}");

    let models = |key: String| {
        let http = api.http.clone();
        let url = format!("{}/v1/models", api.base);
        async move {
            http.get(url)
                .bearer_auth(key)
                .send()
                .await
                .expect("GET")
                .status()
                .as_u16()
        }
    };
    assert_eq!(models(secret.clone()).await, 200);
    let (status, after) = api.post("/api/keys/revoke", json!({"id": id})).await;
    assert_eq!(status, 200, "{after}");
    assert!(
        after
            .as_array()
            .expect("keys")
            .iter()
            .any(|k| k["id"] == id && k["revoked_at"].is_string())
    );
    assert_eq!(models(secret).await, 401);
    // The session's own key still works.
    assert_eq!(models(api.key.clone()).await, 200);

    let (status, blank) = api.post("/api/keys/create", json!({"name": "  "})).await;
    assert_eq!(
        (status, blank["code"].as_str()),
        (400, Some("invalid_input")),
        "{blank}"
    );
    let (status, unknown) = api.post("/api/keys/revoke", json!({"id": 9999})).await;
    assert_eq!(
        (status, unknown["code"].as_str()),
        (404, Some("not_found")),
        "{unknown}"
    );
}

#[tokio::test]
async fn server_settings_are_checked_together_and_apply_at_the_next_start() {
    let api = Api::start("http://127.0.0.1:9").await;
    let (_, settings) = api.get("/api/settings").await;
    assert_eq!(settings["restart_required"], false, "{settings}");
    let mut server = settings["server"].clone();
    server["port"] = json!(10500);
    server["idle_ttl_minutes"] = json!(5);
    let (status, saved) = api.post("/api/settings/update", server.clone()).await;
    assert_eq!(status, 200, "{saved}");
    assert_eq!(saved["server"]["port"], 10500);
    assert_eq!(saved["restart_required"], true);

    // One bad value: nothing of the request is stored.
    server["port"] = json!(10600);
    server["memory_budget_percent"] = json!(250);
    let (status, refused) = api.post("/api/settings/update", server).await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (400, Some("invalid_input")),
        "{refused}"
    );
    let (_, kept) = api.get("/api/settings").await;
    assert_eq!(kept["server"]["port"], 10500, "{kept}");
}

fn fixture(name: &str) -> String {
    orchard_core::paths::fixture_models_dir()
        .expect("ORCHARD_DEPS_DIR is set by .cargo/config.toml")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

fn profile(name: &str, model: &str) -> Value {
    json!({
        "name": name, "model": model, "description": "", "system_prompt": "",
        "temperature": null, "top_p": null, "top_k": null, "min_p": null,
        "repetition_penalty": null, "max_tokens": null, "context_length": null,
        "idle_ttl_minutes": null, "keep_loaded": false,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_is_a_model_name_with_its_own_system_prompt_and_defaults() {
    let api = Api::start("http://127.0.0.1:9").await;
    let model = "SmolLM2-135M-Instruct-4bit";
    let (status, _) = api
        .post("/api/library/add_folder", json!({"path": fixture(model)}))
        .await;
    assert_eq!(status, 200);
    let system = "You are a terse assistant. Answer in one word.";
    let mut coder = profile("terse", model);
    coder["system_prompt"] = json!(system);
    coder["temperature"] = json!(0.0);
    coder["max_tokens"] = json!(3);
    coder["context_length"] = json!(64);
    let (status, made) = api.post("/api/profiles/create", coder.clone()).await;
    assert_eq!(status, 200, "{made}");

    // Refusals: a duplicate, a library model's name, a repo-like name, an unknown model.
    let (status, body) = api.post("/api/profiles/create", coder.clone()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("conflict")),
        "{body}"
    );
    let (status, body) = api
        .post("/api/profiles/create", profile(model, model))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("conflict")),
        "{body}"
    );
    let (status, body) = api
        .post("/api/profiles/create", profile("a/b", model))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_input")),
        "{body}"
    );
    let (status, body) = api
        .post("/api/profiles/create", profile("x", "no-such"))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_input")),
        "{body}"
    );

    let (_, models) = api.get("/v1/models").await;
    let listed = models["data"]
        .as_array()
        .expect("data")
        .iter()
        .find(|m| m["id"] == "terse")
        .unwrap_or_else(|| panic!("the profile is not in {models}"));
    assert_eq!(listed["model"], model);

    // The profile's system prompt is there exactly when the request has none:
    // the prompt counts as the same request with that system message.
    let user = json!({"role": "user", "content": "Hi"});
    let chat = |model: &str, messages: Value| json!({"model": model, "messages": messages, "temperature": 0});
    let (status, by_profile) = api
        .post("/v1/chat/completions", chat("terse", json!([user])))
        .await;
    assert_eq!(status, 200, "{by_profile}");
    let spelled_out = json!([{"role": "system", "content": system}, user]);
    let (_, by_hand) = api
        .post(
            "/v1/chat/completions",
            json!({"model": model, "messages": spelled_out, "temperature": 0, "max_tokens": 3}),
        )
        .await;
    assert_eq!(
        by_profile["usage"]["prompt_tokens"], by_hand["usage"]["prompt_tokens"],
        "{by_profile} vs {by_hand}"
    );
    // Its max_tokens applies when the request sets none.
    assert!(
        by_profile["usage"]["completion_tokens"]
            .as_u64()
            .expect("tokens")
            <= 3
    );
    assert_eq!(
        by_profile["choices"][0]["message"]["content"], by_hand["choices"][0]["message"]["content"],
        "temperature 0 from the profile, as by hand"
    );
    let own = json!([{"role": "system", "content": "Be kind."}, user]);
    let (_, with_own) = api
        .post("/v1/chat/completions", chat("terse", own.clone()))
        .await;
    let (_, own_by_hand) = api
        .post(
            "/v1/chat/completions",
            json!({"model": model, "messages": own, "max_tokens": 1}),
        )
        .await;
    assert_eq!(
        with_own["usage"]["prompt_tokens"], own_by_hand["usage"]["prompt_tokens"],
        "the request's own system prompt was not kept"
    );
    // Anthropic's token count sees the profile's system prompt too.
    let count =
        |model: &str| json!({"model": model, "messages": [{"role": "user", "content": "Hi"}]});
    let (_, profile_count) = api.post("/v1/messages/count_tokens", count("terse")).await;
    let mut with_system = count(model);
    with_system["system"] = json!(system);
    let (_, by_hand_count) = api.post("/v1/messages/count_tokens", with_system).await;
    let (_, plain_count) = api.post("/v1/messages/count_tokens", count(model)).await;
    assert_eq!(profile_count, by_hand_count);
    // (SmolLM2's template has a default system prompt of its own, replaced here.)
    assert_ne!(profile_count, plain_count);

    // Its context length is a limit.
    let long = "word ".repeat(80);
    let (status, body) = api
        .post(
            "/v1/chat/completions",
            chat("terse", json!([{"role": "user", "content": long}])),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "context_length_exceeded", "{body}");

    // The Servers screen names the profile on its model's tile.
    let (_, servers) = api.get("/api/servers").await;
    assert_eq!(
        servers["servers"][0]["profiles"],
        json!(["terse"]),
        "{servers}"
    );

    // Renamed, then deleted: the old and then the new name stop working.
    let mut renamed = coder.clone();
    renamed["name"] = json!("brief");
    let (status, body) = api
        .post(
            "/api/profiles/update",
            json!({"name": "terse", "profile": renamed}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = api
        .post("/v1/chat/completions", chat("terse", json!([user])))
        .await;
    assert_eq!(status, 404);
    let (status, left) = api
        .post("/api/profiles/delete", json!({"name": "brief"}))
        .await;
    assert_eq!((status, left), (200, json!([])));
    let (status, _) = api
        .post("/v1/chat/completions", chat("brief", json!([user])))
        .await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_kept_loaded_by_its_profile_is_never_evicted() {
    let api = Api::start_with(
        "http://127.0.0.1:9",
        ManagerOptions {
            idle_ttl: None,
            max_loaded_models: 1,
            ..ManagerOptions::default()
        },
    )
    .await;
    for name in [
        "SmolLM2-135M-Instruct-4bit",
        "SmolLM2-135M-Instruct-float16",
    ] {
        let (status, body) = api
            .post("/api/library/add_folder", json!({"path": fixture(name)}))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let mut pinned = profile("always", "SmolLM2-135M-Instruct-4bit");
    pinned["keep_loaded"] = json!(true);
    let (status, body) = api.post("/api/profiles/create", pinned).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = api
        .post("/api/servers/start", json!({"model": "always"}))
        .await;
    assert_eq!(status, 200, "{body}");

    // One model at most, and that one is pinned: the other cannot push it out.
    let (status, body) = api
        .post(
            "/api/servers/start",
            json!({"model": "SmolLM2-135M-Instruct-float16"}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["message"]
            .as_str()
            .expect("message")
            .contains("kept loaded"),
        "{body}"
    );
    let (_, servers) = api.get("/api/servers").await;
    let tiles = servers["servers"].as_array().expect("tiles");
    assert!(
        tiles
            .iter()
            .any(|t| t["model"] == "SmolLM2-135M-Instruct-4bit" && t["state"] == "running"),
        "{servers}"
    );
    assert!(
        tiles
            .iter()
            .any(|t| t["model"] == "SmolLM2-135M-Instruct-float16" && t["state"] == "failed"),
        "the failed start keeps a tile saying why: {servers}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_start_keeps_a_tile_with_the_reason_and_the_loads_log() {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    // What the app and `orchard serve` install next to their stderr log.
    let _ = tracing_subscriber::registry()
        .with(orchard_core::logs::layer())
        .try_init();

    // The fixture with its weights cut short: it is listed, but cannot load.
    let dir = tempfile::tempdir().expect("temp dir");
    let broken = dir.path().join("SmolLM2-cut-short");
    std::fs::create_dir(&broken).expect("folder");
    let source = PathBuf::from(fixture("SmolLM2-135M-Instruct-4bit"));
    for file in [
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
    ] {
        std::fs::copy(source.join(file), broken.join(file)).expect("copy");
    }
    let weights = std::fs::read(source.join("model.safetensors")).expect("weights");
    std::fs::write(
        broken.join("model.safetensors"),
        &weights[..weights.len() / 2],
    )
    .expect("half the weights");

    let api = Api::start("http://127.0.0.1:9").await;
    let (status, body) = api
        .post(
            "/api/library/add_folder",
            json!({"path": broken.to_string_lossy()}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, failure) = api
        .post("/api/servers/start", json!({"model": "SmolLM2-cut-short"}))
        .await;
    assert!(status >= 400, "{status} {failure}");
    let reason = failure["message"].as_str().expect("message");

    let (_, servers) = api.get("/api/servers").await;
    let tile = servers["servers"]
        .as_array()
        .expect("tiles")
        .iter()
        .find(|t| t["model"] == "SmolLM2-cut-short")
        .unwrap_or_else(|| panic!("no tile for the failed start: {servers}"))
        .clone();
    assert_eq!(tile["state"], "failed", "{tile}");
    assert_eq!(tile["error"], reason, "{tile}");
    let log: Vec<&str> = tile["log"]
        .as_array()
        .expect("log")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    // The load's own lines, in order: where it loaded from, then the failure
    // with the engine's reason.
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(log[0].starts_with("INFO loading dir="), "{log:?}");
    assert!(log[0].contains("SmolLM2-cut-short"), "{log:?}");
    assert!(log[1].starts_with("WARN the load failed error="), "{log:?}");
    assert!(log[1].contains("safetensors"), "{log:?}");

    // Stop dismisses the failed tile.
    let (status, after) = api
        .post("/api/servers/stop", json!({"model": "SmolLM2-cut-short"}))
        .await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(after["servers"], json!([]), "{after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_row_orchard_cannot_read_is_its_own_failure_not_the_callers() {
    let api = Api::start("http://127.0.0.1:9").await;
    let (status, _) = api.get("/api/settings").await;
    assert_eq!(status, 200);
    // Another program (or a bad downgrade) left a value that is not JSON.
    let db = rusqlite::Connection::open(api._dir.path().join("orchard.db")).expect("open");
    db.execute(
        "INSERT OR REPLACE INTO settings (key, value) VALUES ('port', 'ten thousand')",
        [],
    )
    .expect("write");

    let (status, body) = api.get("/api/settings").await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["code"], "internal", "{body}");
    let message = body["message"].as_str().expect("message");
    assert!(message.contains("setting port holds bad JSON"), "{body}");
}
