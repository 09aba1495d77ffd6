//! What the server's integration tests share: a real server on
//! 127.0.0.1:0 over a real SQLite file and the SmolLM2 fixture.
#![allow(dead_code)]

use orchard_core::catalog::Catalog;
use orchard_core::{ManagerOptions, ModelManager};
use orchard_server::{AuthConfig, ServerConfig};
use orchard_store::Store;
use serde_json::{Value, json};

pub const MODEL: &str = "SmolLM2-135M-Instruct-4bit";

pub struct Server {
    pub base: String,
    pub key: String,
    pub store: Store,
    /// The manager the server runs on, for looking inside.
    pub manager: ModelManager,
    pub client: reqwest::Client,
    pub _dir: tempfile::TempDir,
    pub _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl Server {
    pub async fn start(config: impl FnOnce(&mut ServerConfig, &mut ManagerOptions)) -> Server {
        Server::start_with(&[], config).await
    }

    /// Serves the fixture and the model folders in `extra`.
    pub async fn start_with(
        extra: &[std::path::PathBuf],
        config: impl FnOnce(&mut ServerConfig, &mut ManagerOptions),
    ) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("orchard.db")).expect("store");
        let key = store.create_api_key("test").expect("key").secret;
        let fixture = orchard_core::paths::fixture_models_dir()
            .expect("ORCHARD_DEPS_DIR is set by .cargo/config.toml")
            .join(MODEL);
        let mut catalog = Catalog::new();
        catalog
            .add_folder(&fixture.to_string_lossy())
            .expect("fixture: run `make setup`");
        for folder in extra {
            catalog
                .add_folder(&folder.to_string_lossy())
                .expect("extra model");
        }
        let mut server_config = ServerConfig {
            auth: AuthConfig::required(&[]),
            ..ServerConfig::default()
        };
        let mut options = ManagerOptions {
            idle_ttl: None,
            ..ManagerOptions::default()
        };
        config(&mut server_config, &mut options);
        let manager = ModelManager::new(catalog, options);
        let app = orchard_server::router(manager.clone(), store.clone(), server_config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let (shutdown, signal) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(orchard_server::serve(listener, app, async {
            let _ = signal.await;
        }));
        Server {
            base,
            key,
            store,
            manager,
            client: reqwest::Client::new(),
            _dir: dir,
            _shutdown: shutdown,
        }
    }

    pub fn post(&self, path: &str, body: &Value) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .json(body)
    }

    /// POSTs `body` with `stream: true`; the whole event stream as text.
    pub async fn stream_text(&self, path: &str, body: &Value) -> String {
        let mut streamed = body.clone();
        streamed["stream"] = json!(true);
        self.post(path, &streamed)
            .send()
            .await
            .expect("send")
            .text()
            .await
            .expect("the event stream")
    }

    /// POSTs `body`; the status and the JSON answer.
    pub async fn call(&self, path: &str, body: &Value) -> (u16, Value) {
        error_of(self.post(path, body).send().await.expect("send")).await
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
    }
}

pub fn chat(content: &str, max_tokens: u32) -> Value {
    json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "temperature": 0,
    })
}

pub async fn error_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (
        status,
        response.json::<Value>().await.expect("a JSON error body"),
    )
}

/// A copy of the fixture whose chat template opens a `<think>` block after the
/// assistant header, as reasoning models' templates do: what the model writes
/// then is reasoning until `</think>`.
pub fn thinking_model(dir: &std::path::Path) -> std::path::PathBuf {
    let source = orchard_core::paths::fixture_models_dir()
        .expect("deps")
        .join(MODEL);
    let target = dir.join("Thinking-SmolLM2");
    std::fs::create_dir_all(&target).expect("mkdir");
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "generation_config.json",
    ] {
        std::fs::copy(source.join(file), target.join(file)).expect("copy");
    }
    let mut config: Value = serde_json::from_str(
        &std::fs::read_to_string(source.join("tokenizer_config.json")).expect("read"),
    )
    .expect("json");
    config["chat_template"] = json!(
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}"
    );
    std::fs::write(target.join("tokenizer_config.json"), config.to_string()).expect("write");
    target
}
