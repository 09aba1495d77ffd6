//! The model manager with the real SmolLM2 fixtures: just-in-time loading,
//! one load for concurrent requests, LRU eviction, the memory budget, the
//! idle TTL, and cancellation when a generation is dropped.

use std::sync::Arc;
use std::time::Duration;

use orchard_core::catalog::Catalog;
use orchard_core::chat::ToolChoice;
use orchard_core::{
    ChatMessage, CoreError, Finish, GenerateOptions, GenerationRequest, ManagerOptions,
    ModelManager, Output,
};

fn fixture(name: &str) -> String {
    let dir = orchard_core::paths::fixture_models_dir()
        .expect("ORCHARD_DEPS_DIR is set by .cargo/config.toml")
        .join(name);
    assert!(
        dir.join("config.json").is_file(),
        "{} is missing: run `make setup`",
        dir.display()
    );
    dir.to_string_lossy().into_owned()
}

const SMALL: &str = "SmolLM2-135M-Instruct-4bit";
const LARGE: &str = "SmolLM2-135M-Instruct-float16";

fn manager(options: ManagerOptions) -> ModelManager {
    let mut catalog = Catalog::new();
    catalog.add_folder(&fixture(SMALL)).expect("4-bit fixture");
    catalog
        .add_folder(&fixture(LARGE))
        .expect("float16 fixture");
    ModelManager::new(catalog, options)
}

fn options() -> ManagerOptions {
    ManagerOptions {
        jit_loading: true,
        idle_ttl: None,
        memory_budget_bytes: 8 << 30,
        max_loaded_models: 4,
        worker: Default::default(),
    }
}

fn chat(text: &str, max_tokens: usize) -> GenerationRequest {
    GenerationRequest::Chat {
        messages: vec![ChatMessage::text("user", text)],
        tools: Vec::new(),
        tool_choice: ToolChoice::Auto,
        enable_thinking: None,
        options: GenerateOptions {
            max_tokens,
            ..GenerateOptions::default()
        },
        logprobs: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_share_one_load() {
    let manager = manager(options());
    assert!(manager.loaded().is_empty());
    let path = fixture(SMALL);
    let (a, b, c) = tokio::join!(manager.get(SMALL), manager.get(SMALL), manager.get(&path));
    let (a, b, c) = (a.expect("a"), b.expect("b"), c.expect("by path"));
    assert!(
        Arc::ptr_eq(&a, &b) && Arc::ptr_eq(&a, &c),
        "one load serves every waiter"
    );
    assert_eq!(manager.loaded().len(), 1);

    let missing = manager.get("no-such-model").await.expect_err("unknown");
    assert!(matches!(missing, CoreError::ModelNotFound { .. }));
    assert!(
        missing.to_string().contains(SMALL),
        "lists what exists: {missing}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_jit_an_unloaded_model_is_an_error() {
    let manager = manager(ManagerOptions {
        jit_loading: false,
        ..options()
    });
    let err = manager.get(SMALL).await.expect_err("not loaded");
    assert!(matches!(err, CoreError::NotLoaded(_)), "{err}");
    manager.load_now(SMALL).await.expect("explicit load");
    manager.get(SMALL).await.expect("now loaded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_limit_evicts_the_least_recently_used() {
    let manager = manager(ManagerOptions {
        max_loaded_models: 1,
        ..options()
    });
    let small = manager.get(SMALL).await.expect("small");
    drop(small);
    manager.get(LARGE).await.expect("large");
    let loaded: Vec<String> = manager.loaded().iter().map(|m| m.id.clone()).collect();
    assert_eq!(loaded, [LARGE]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_budget_evicts_and_refuses_what_cannot_fit() {
    let small_bytes = manager(options())
        .entries()
        .iter()
        .find(|e| e.id == SMALL)
        .expect("entry")
        .weight_bytes;
    let large_bytes = manager(options())
        .entries()
        .iter()
        .find(|e| e.id == LARGE)
        .expect("entry")
        .weight_bytes;
    assert!(large_bytes > small_bytes);
    // Room for the larger model alone, not for both.
    let manager = manager(ManagerOptions {
        memory_budget_bytes: large_bytes + small_bytes / 2,
        ..options()
    });
    drop(manager.get(SMALL).await.expect("small"));
    drop(manager.get(LARGE).await.expect("large"));
    assert_eq!(manager.loaded().len(), 1);

    let tiny = self::manager(ManagerOptions {
        memory_budget_bytes: small_bytes / 2,
        ..options()
    });
    let err = tiny.get(SMALL).await.expect_err("over budget");
    assert!(matches!(err, CoreError::OverBudget { .. }), "{err}");
    assert!(tiny.loaded().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_model_is_unloaded_after_the_ttl() {
    let manager = manager(ManagerOptions {
        idle_ttl: Some(Duration::from_millis(600)),
        ..options()
    });
    let _reaper = manager.spawn_idle_reaper().expect("a TTL is set");
    let model = manager.get(SMALL).await.expect("load");
    let mut generation = orchard_core::start(model, chat("Hi", 4))
        .await
        .expect("start");
    while let Some(output) = generation.next().await {
        output.expect("output");
    }
    drop(generation);
    assert_eq!(manager.loaded().len(), 1);
    let mut waited = Duration::ZERO;
    while !manager.loaded().is_empty() && waited < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += Duration::from_millis(100);
    }
    assert!(manager.loaded().is_empty(), "still loaded after {waited:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_generation_stops_it_and_frees_the_worker() {
    let manager = manager(options());
    let model = manager.get(SMALL).await.expect("load");
    let mut long = orchard_core::start(
        Arc::clone(&model),
        chat("Write a long story about a dragon.", 2000),
    )
    .await
    .expect("start");
    // Wait for the first output, then hang up.
    let first = long.next().await.expect("an output").expect("ok");
    assert!(matches!(first, Output::Delta(_)));
    drop(long);
    // The next request runs only once the first has stopped; it must finish
    // long before 2000 tokens could have been generated.
    let mut next = orchard_core::start(Arc::clone(&model), chat("Say hi.", 3))
        .await
        .expect("start");
    let mut finish = None;
    while let Some(output) = tokio::time::timeout(Duration::from_secs(120), next.next())
        .await
        .expect("the worker was freed")
    {
        if let Output::Done { finish: f, stats } = output.expect("ok") {
            assert_eq!(stats.generated_tokens, 3);
            finish = Some(f);
        }
    }
    assert_eq!(finish, Some(Finish::Length));
    assert_eq!(model.info().active_requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_fail_before_queueing() {
    let manager = manager(options());
    let model = manager.get(SMALL).await.expect("load");
    let mut bad = chat("Hi", 4);
    if let GenerationRequest::Chat { options, .. } = &mut bad {
        options.sampling.temperature = -1.0;
    }
    let err = orchard_core::start(Arc::clone(&model), bad)
        .await
        .expect_err("bad temperature");
    assert!(
        matches!(err, CoreError::Invalid { ref param, .. } if param == "temperature"),
        "{err}"
    );

    let long = "word ".repeat(model.context_length() + 10);
    let err = orchard_core::start(Arc::clone(&model), chat(&long, 4))
        .await
        .expect_err("too long");
    assert!(matches!(err, CoreError::PromptTooLong { .. }), "{err}");

    let unknown_tool = GenerationRequest::Chat {
        messages: vec![ChatMessage::text("user", "Hi")],
        tools: vec![serde_json::json!({"type": "function", "function": {"name": "a"}})],
        tool_choice: ToolChoice::Function("b".into()),
        enable_thinking: None,
        options: GenerateOptions::default(),
        logprobs: false,
    };
    let err = orchard_core::start(model, unknown_tool)
        .await
        .expect_err("unknown tool");
    assert!(err.to_string().contains("\"b\""), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn different_models_generate_at_the_same_time() {
    let manager = manager(options());
    let small = manager.get(SMALL).await.expect("small");
    let large = manager.get(LARGE).await.expect("large");
    let mut long = orchard_core::start(small, chat("Write a long story about a dragon.", 400))
        .await
        .expect("start");
    assert!(matches!(long.next().await, Some(Ok(Output::Delta(_)))));
    // The other model answers in full while the first is still generating.
    let mut short = orchard_core::start(large, chat("Say hi.", 2))
        .await
        .expect("start");
    let mut finished = false;
    while let Some(output) = short.next().await {
        finished |= matches!(output.expect("ok"), Output::Done { .. });
    }
    assert!(finished);
    assert!(
        matches!(long.next().await, Some(Ok(Output::Delta(_)))),
        "the first model is still mid-answer"
    );
}
