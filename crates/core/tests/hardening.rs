//! The manager and generation under failure and concurrency, with the real
//! SmolLM2 fixtures: dead workers are replaced, the memory budget holds while
//! models drain and while two load at once, cancelled requests cost no
//! compute, templates that refuse messages are the request's fault, and
//! reasoning budgets and forced tool calls work on templates that open
//! `<think>`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{LARGE, SMALL, THINKING_TEMPLATE, chat, fixture, manager, options, with_template};
use orchard_core::catalog::Catalog;
use orchard_core::chat::ToolChoice;
use orchard_core::{
    ChatMessage, CoreError, Finish, GenerateOptions, GenerationRequest, ManagerOptions,
    ModelManager, Output,
};

/// Runs a generation to its end: the text, the reasoning, the tool calls'
/// names and the finish.
async fn collect(
    mut generation: orchard_core::Generation,
) -> (
    String,
    String,
    Vec<String>,
    Finish,
    orchard_core::GenerationStats,
) {
    let (mut text, mut reasoning, mut calls) = (String::new(), String::new(), Vec::new());
    while let Some(output) = generation.next().await {
        match output.expect("generation") {
            Output::Started { .. } => {}
            Output::Delta(delta) => {
                text.push_str(&delta.content);
                reasoning.push_str(&delta.reasoning);
                calls.extend(delta.tool_calls.into_iter().map(|c| c.name));
            }
            Output::Done { stats, finish } => return (text, reasoning, calls, finish, stats),
        }
    }
    panic!("the generation ended without Done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_worker_is_replaced_and_counted() {
    let manager = manager(options());
    let first = manager.get(SMALL).await.expect("load");
    first.crash_worker();
    let mut waited = 0;
    while first.is_alive() && waited < 600 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += 1;
    }
    assert!(!first.is_alive(), "the worker did not die");
    // A request for the model now gets a fresh copy that answers.
    let second = manager.get(SMALL).await.expect("reload");
    assert!(
        !Arc::ptr_eq(&first, &second),
        "the dead worker was handed out again"
    );
    assert!(second.is_alive());
    let (_, _, _, finish, stats) = collect(
        orchard_core::start(Arc::clone(&second), chat("Hi", 2))
            .await
            .expect("start"),
    )
    .await;
    assert_eq!((finish, stats.generated_tokens), (Finish::Length, 2));
    assert_eq!(manager.worker_deaths(), 1);
    assert_eq!(manager.loaded().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_on_a_dying_worker_gets_an_error_not_a_hang() {
    let manager = manager(options());
    let model = manager.get(SMALL).await.expect("load");
    let generation = orchard_core::start(Arc::clone(&model), chat("Write a long story.", 30))
        .await
        .expect("start");
    // Queued behind the running request: the worker dies when it gets there.
    model.crash_worker();
    let mut generation = generation;
    let mut error = None;
    while let Some(output) = generation.next().await {
        if let Err(e) = output {
            error = Some(e);
        }
    }
    let mut queued = orchard_core::start(Arc::clone(&model), chat("Hi", 2)).await;
    if let Ok(generation) = queued.as_mut() {
        let mut last = None;
        while let Some(output) = generation.next().await {
            last = Some(output);
        }
        queued = match last {
            Some(Err(e)) => Err(e),
            _ => panic!("a request on a dead worker finished"),
        };
    }
    assert!(
        matches!(queued, Err(CoreError::WorkerDied(_))),
        "{queued:?}"
    );
    assert!(
        error.is_none(),
        "the running request was not hurt: {error:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicted_busy_model_keeps_counting_and_is_reused() {
    let manager = manager(ManagerOptions {
        max_loaded_models: 1,
        ..options()
    });
    let small = manager.get(SMALL).await.expect("small");
    let mut busy = orchard_core::start(Arc::clone(&small), chat("Write a long story.", 40))
        .await
        .expect("start");
    assert!(matches!(
        busy.next().await,
        Some(Ok(Output::Started { .. }))
    ));
    assert!(matches!(busy.next().await, Some(Ok(Output::Delta(_)))));
    drop(small);
    // LARGE needs the only slot: SMALL drains, and LARGE waits for it.
    let loading = {
        let manager = manager.clone();
        tokio::spawn(async move { manager.get(LARGE).await.map(|m| m.id.clone()) })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let draining: Vec<String> = manager
        .draining_models()
        .iter()
        .map(|m| m.id.clone())
        .collect();
    assert_eq!(draining, [SMALL], "SMALL should drain, not vanish");
    assert!(
        manager.loaded().is_empty(),
        "LARGE loaded beside a draining model"
    );
    // A request for SMALL meanwhile gets the same weights back, not a copy.
    let again = manager.get(SMALL).await.expect("small again");
    assert!(
        Arc::ptr_eq(&again, &busy.model),
        "a second copy of SMALL was loaded"
    );
    drop(again);
    while busy.next().await.is_some() {}
    drop(busy);
    // SMALL is back in service and idle now, so LARGE evicts it and loads.
    assert_eq!(loading.await.expect("join").expect("large"), LARGE);
    let loaded: Vec<String> = manager.loaded().iter().map(|m| m.id.clone()).collect();
    assert_eq!(loaded, [LARGE]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_models_loading_at_once_cannot_both_pass_the_budget() {
    let entries = manager(options()).entries();
    let bytes = |id: &str| {
        entries
            .iter()
            .find(|e| e.id == id)
            .expect("entry")
            .weight_bytes
    };
    // Room for either model, not both.
    let manager = manager(ManagerOptions {
        memory_budget_bytes: bytes(LARGE) + bytes(SMALL) / 2,
        ..options()
    });
    // Neither caller keeps the model (a held model counts as in use).
    let load = |name: &'static str| {
        let manager = manager.clone();
        tokio::spawn(async move { manager.get(name).await.map(|m| m.id.clone()) })
    };
    let (a, b) = tokio::join!(load(SMALL), load(LARGE));
    a.expect("join").expect("small");
    b.expect("join").expect("large");
    let held: u64 = manager
        .loaded()
        .iter()
        .chain(manager.draining_models().iter())
        .map(|m| m.memory().total())
        .sum();
    assert_eq!(manager.loaded().len(), 1, "both models were loaded");
    let ids = |models: Vec<Arc<orchard_core::LoadedModel>>| {
        models
            .iter()
            .map(|m| format!("{} {:?}", m.id, m.memory()))
            .collect::<Vec<_>>()
    };
    assert!(
        held <= bytes(LARGE) + bytes(SMALL) / 2,
        "loaded {:?} draining {:?} budget {}",
        ids(manager.loaded()),
        ids(manager.draining_models()),
        bytes(LARGE) + bytes(SMALL) / 2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_counts_kv_and_prompt_caches() {
    let manager = manager(options());
    let model = manager.get(SMALL).await.expect("load");
    let before = model.memory();
    assert_eq!(before.kv_cache_bytes + before.prompt_cache_bytes, 0);
    collect(
        orchard_core::start(Arc::clone(&model), chat("Tell me about apples.", 8))
            .await
            .expect("start"),
    )
    .await;
    let after = model.memory();
    assert!(after.prompt_cache_bytes > 0, "{after:?}");
    assert_eq!(after.total(), after.weight_bytes + after.prompt_cache_bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_folders_while_requests_resolve_models_does_not_deadlock() {
    let manager = manager(options());
    let tmp = tempfile::tempdir().expect("tmp");
    let adder = {
        let manager = manager.clone();
        let source = fixture(SMALL);
        let copy = tmp.path().join("copy");
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&copy).expect("mkdir");
            std::fs::copy(
                std::path::Path::new(&source).join("config.json"),
                copy.join("config.json"),
            )
            .expect("copy");
            // A writer that keeps coming back, so readers often find it waiting.
            for _ in 0..20_000 {
                manager.add_folder(&copy.to_string_lossy()).expect("add");
            }
        })
    };
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let manager = manager.clone();
            tokio::spawn(async move {
                for _ in 0..20_000 {
                    // An unknown name reads the catalog twice (to list what exists).
                    let err = manager.get("no-such-model").await.expect_err("unknown");
                    assert!(matches!(err, CoreError::ModelNotFound { .. }));
                }
            })
        })
        .collect();
    let all = async {
        adder.await.expect("adder");
        for reader in readers {
            reader.await.expect("reader");
        }
    };
    tokio::time::timeout(Duration::from_secs(120), all)
        .await
        .expect("the catalog lock deadlocked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_cancelled_while_queued_is_never_prefilled() {
    let manager = manager(options());
    let model = manager.get(SMALL).await.expect("load");
    let running = orchard_core::start(Arc::clone(&model), chat("Write a long story.", 16))
        .await
        .expect("start");
    let queued = orchard_core::start(Arc::clone(&model), chat(&"word ".repeat(200), 4))
        .await
        .expect("queue");
    let queued_prompt = queued.prompt_tokens as u64;
    // The client hangs up while its request waits.
    drop(queued);
    let running_prompt = running.prompt_tokens as u64;
    collect(running).await;
    // One more request makes sure the worker has passed the dropped one.
    let last = orchard_core::start(Arc::clone(&model), chat("Hi", 1))
        .await
        .expect("start");
    let last_prompt = last.prompt_tokens as u64;
    collect(last).await;
    let work = model.work();
    assert_eq!(work.skipped_requests, 1);
    assert!(
        work.prefilled_tokens <= running_prompt + last_prompt,
        "{} tokens prefilled; the dropped request's {queued_prompt} were computed",
        work.prefilled_tokens
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefill_stops_between_chunks_when_cancelled() {
    // Chunks of 16 tokens, so a short prompt has many (the default is 2048,
    // which takes minutes on a small CPU).
    let mut options = options();
    options.worker.prefill_chunk = 16;
    let manager = manager(options);
    let model = manager.get(SMALL).await.expect("load");
    let generation = orchard_core::start(Arc::clone(&model), chat(&"apple pear ".repeat(60), 4))
        .await
        .expect("start");
    let prompt = generation.prompt_tokens as u64;
    assert!(prompt > 6 * 16, "{prompt}");
    while model.work().prefilled_tokens == 0 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    generation.cancel();
    let (_, _, _, finish, stats) = collect(generation).await;
    assert_eq!(finish, Finish::Cancelled);
    assert_eq!(stats.generated_tokens, 0);
    let prefilled = model.work().prefilled_tokens;
    assert!(
        prefilled < prompt,
        "the whole prompt ({prefilled} of {prompt}) was computed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_that_refuses_the_messages_is_a_bad_request() {
    let tmp = tempfile::tempdir().expect("tmp");
    let strict = with_template(
        tmp.path(),
        "Strict",
        "{% for m in messages %}{% if (m.role == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{{ m.content }}{% endfor %}",
    );
    let mut catalog = Catalog::new();
    catalog.add_folder(&strict.to_string_lossy()).expect("add");
    let manager = ModelManager::new(catalog, options());
    let model = manager.get("Strict").await.expect("load");
    let mut request = chat("Hi", 2);
    if let GenerationRequest::Chat { messages, .. } = &mut request {
        messages.push(ChatMessage::text("user", "Again"));
    }
    let err = orchard_core::start(model, request)
        .await
        .expect_err("refused");
    match err {
        CoreError::Invalid { param, message } => {
            assert_eq!(param, "messages");
            assert!(message.contains("roles must alternate"), "{message}");
        }
        other => panic!("not a bad request: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counting_tokens_loads_no_weights() {
    let manager = manager(ManagerOptions {
        max_loaded_models: 1,
        ..options()
    });
    let small = manager.get(SMALL).await.expect("small");
    let prompter = manager.prompter(LARGE).await.expect("prompter");
    let counted = prompter
        .count_chat_tokens(vec![ChatMessage::text("user", "Hello there")], &[])
        .expect("count");
    assert_eq!(
        counted,
        small
            .count_chat_tokens(vec![ChatMessage::text("user", "Hello there")], &[])
            .expect("count")
    );
    let loaded: Vec<String> = manager.loaded().iter().map(|m| m.id.clone()).collect();
    assert_eq!(loaded, [SMALL], "counting loaded or evicted a model");
}

fn thinking_manager(tmp: &std::path::Path) -> ModelManager {
    let thinking = with_template(tmp, "Thinking", THINKING_TEMPLATE);
    let mut catalog = Catalog::new();
    catalog
        .add_folder(&thinking.to_string_lossy())
        .expect("add");
    ModelManager::new(catalog, options())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reasoning_budget_closes_the_think_block() {
    let tmp = tempfile::tempdir().expect("tmp");
    let manager = thinking_manager(tmp.path());
    let model = manager.get("Thinking").await.expect("load");
    let request = |budget: Option<usize>| GenerationRequest::Chat {
        messages: vec![ChatMessage::text(
            "user",
            "What is 17 times 23? Think step by step.",
        )],
        tools: Vec::new(),
        tool_choice: ToolChoice::Auto,
        enable_thinking: None,
        reasoning_budget: budget,
        single_tool_call: false,
        options: GenerateOptions {
            max_tokens: 40,
            ..GenerateOptions::default()
        },
        logprobs: false,
        json_output: None,
        images: Vec::new(),
    };
    let count = |text: &str| model.tokenizer().encode(text, false).expect("encode").len();
    let (_, free, _, _, _) = collect(
        orchard_core::start(Arc::clone(&model), request(None))
            .await
            .expect("start"),
    )
    .await;
    assert!(
        count(&free) > 8,
        "the model reasons past the budget unchecked: {free:?}"
    );
    let (text, limited, _, _, stats) = collect(
        orchard_core::start(Arc::clone(&model), request(Some(8)))
            .await
            .expect("start"),
    )
    .await;
    assert!(
        count(limited.trim()) <= 9,
        "reasoning ran past its budget: {limited:?}"
    );
    assert!(
        stats.generated_tokens > 8,
        "generation stopped at the budget: {text:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_tool_call_after_an_open_think_block_is_a_call() {
    let tmp = tempfile::tempdir().expect("tmp");
    let manager = thinking_manager(tmp.path());
    let model = manager.get("Thinking").await.expect("load");
    let tools = vec![serde_json::json!({"type": "function", "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }})];
    for (choice, single) in [
        (ToolChoice::Function("get_weather".into()), false),
        (ToolChoice::Required, true),
    ] {
        let request = GenerationRequest::Chat {
            messages: vec![ChatMessage::text("user", "What is the weather in Paris?")],
            tools: tools.clone(),
            tool_choice: choice.clone(),
            enable_thinking: None,
            reasoning_budget: None,
            single_tool_call: single,
            options: GenerateOptions {
                max_tokens: 60,
                ..GenerateOptions::default()
            },
            logprobs: false,
            json_output: None,
            images: Vec::new(),
        };
        let (_, reasoning, calls, finish, _) = collect(
            orchard_core::start(Arc::clone(&model), request)
                .await
                .expect("start"),
        )
        .await;
        assert_eq!(
            calls,
            ["get_weather"],
            "{choice:?}; reasoning: {reasoning:?}"
        );
        assert_eq!(finish, Finish::ToolCalls);
        assert!(
            !reasoning.contains("tool_call"),
            "the call was read as reasoning: {reasoning:?}"
        );
    }
}
