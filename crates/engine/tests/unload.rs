//! Unloading a model gives its memory back. Alone in its test binary, since
//! MLX's memory counters are per process.

mod common;

use orchard_engine::{Event, GenerateOptions, ModelWorker, WorkerOptions};

fn mlx_memory() -> usize {
    mlx_rs::memory::active_memory().expect("active memory")
        + mlx_rs::memory::cache_memory().expect("cache memory")
}

#[test]
fn unloading_returns_mlx_memory_to_what_it_was_before_loading() {
    let model = common::deps_dir().join("models/SmolLM2-135M-Instruct-float16");
    let before = mlx_memory();
    let worker = ModelWorker::spawn(&model, WorkerOptions::default()).expect("load");
    let prompt = vec![1, 9690, 198, 2683, 359, 253, 5356];
    let events = worker
        .submit(
            prompt,
            GenerateOptions {
                max_tokens: 16,
                ..Default::default()
            },
        )
        .expect("submit");
    assert!(events.iter().any(|e| matches!(e, Ok(Event::Done(_)))));
    let loaded = mlx_memory();
    worker.unload();
    let after = mlx_memory();
    eprintln!(
        "MLX memory: {before} bytes before loading, {loaded} loaded, {after} after unloading"
    );
    assert!(
        loaded > before + 200_000_000,
        "the float16 weights (~270 MB) were not counted: {loaded}"
    );
    let allowed = before + before / 20;
    assert!(
        after <= allowed.max(1 << 20),
        "{after} bytes still held after unloading (before: {before})"
    );
}
