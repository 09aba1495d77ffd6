//! The model manager with the real SmolLM2 fixtures: just-in-time loading,
//! one load for concurrent requests, LRU eviction, the memory budget, the
//! idle TTL, and cancellation when a generation is dropped.

use std::sync::Arc;
use std::time::Duration;

mod common;

use common::{LARGE, SMALL, chat, fixture, manager, options};
use orchard_core::chat::ToolChoice;
use orchard_core::{
    ChatMessage, CoreError, Finish, GenerateOptions, GenerationRequest, ManagerOptions, Output,
};

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
    let _reaper = manager.spawn_idle_reaper();
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
    // The prompt runs, then the first text comes; then the client hangs up.
    let started = long.next().await.expect("an output").expect("ok");
    assert!(matches!(started, Output::Started { .. }), "{started:?}");
    let first = long.next().await.expect("an output").expect("ok");
    assert!(matches!(first, Output::Delta(_)), "{first:?}");
    drop(long);
    // The next request runs only once the first has stopped.
    let next = orchard_core::start(Arc::clone(&model), chat("Say hi.", 3))
        .await
        .expect("start");
    let mut next = next;
    let mut finish = None;
    while let Some(output) = next.next().await {
        if let Output::Done { finish: f, stats } = output.expect("ok") {
            assert_eq!(stats.generated_tokens, 3);
            finish = Some(f);
        }
    }
    assert_eq!(finish, Some(Finish::Length));
    assert_eq!(model.info().active_requests, 0);
    // The hung-up request stopped within a step or two of its first output,
    // far short of the 2000 tokens it asked for.
    let generated = model.work().generated_tokens;
    assert!(generated <= 3 + 8, "{generated} tokens were generated");
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
        reasoning_budget: None,
        single_tool_call: false,
        options: GenerateOptions::default(),
        logprobs: false,
        json_output: None,
        images: Vec::new(),
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
    /// When each output of a generation arrived.
    async fn arrivals(mut generation: orchard_core::Generation) -> Vec<std::time::Instant> {
        let mut times = Vec::new();
        while let Some(output) = generation.next().await {
            if let Output::Delta(_) = output.expect("ok") {
                times.push(std::time::Instant::now());
            }
        }
        times
    }
    let a = orchard_core::start(small, chat("Write a long story about a dragon.", 48))
        .await
        .expect("start");
    let b = orchard_core::start(large, chat("Write a long story about a castle.", 48))
        .await
        .expect("start");
    let (a, b) = tokio::join!(tokio::spawn(arrivals(a)), tokio::spawn(arrivals(b)));
    let (a, b) = (a.expect("a"), b.expect("b"));
    assert!(
        a.len() > 4 && b.len() > 4,
        "{} and {} outputs",
        a.len(),
        b.len()
    );
    // Run one after the other, every output of one would precede the other's.
    let b_inside_a = b
        .iter()
        .filter(|t| **t > a[0] && **t < a[a.len() - 1])
        .count();
    let a_inside_b = a
        .iter()
        .filter(|t| **t > b[0] && **t < b[b.len() - 1])
        .count();
    assert!(
        b_inside_a > 0 && a_inside_b > 0,
        "the two models took turns instead of running together ({b_inside_a}, {a_inside_b})"
    );
}
