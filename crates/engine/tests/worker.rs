//! The per-model worker thread: a bounded queue, cancellation within a decode
//! step, and a caller that hangs up.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{PROMPT, write_model};
use orchard_engine::{
    Event, FinishReason, GenerateOptions, ModelWorker, SubmitError, WorkerOptions,
};

fn tiny_worker(queue_capacity: usize) -> (tempfile::TempDir, ModelWorker) {
    let work = tempfile::tempdir().expect("tempdir");
    let arch = common::arch("qwen3");
    write_model(work.path(), &arch, true);
    // One sequence at a time, so that a second request waits in the queue.
    let options = WorkerOptions {
        queue_capacity,
        max_sequences: 1,
        ..WorkerOptions::default()
    };
    let worker = ModelWorker::spawn(work.path(), options).expect("spawn");
    (work, worker)
}

fn endless(cancel: Option<Arc<AtomicBool>>) -> GenerateOptions {
    GenerateOptions {
        max_tokens: 100_000,
        ignore_eos: true,
        cancel,
        ..Default::default()
    }
}

fn finish_reason(
    events: impl Iterator<Item = orchard_engine::Result<Event>>,
) -> (usize, FinishReason) {
    let mut deltas = 0;
    for event in events {
        match event.expect("event") {
            Event::Delta { .. } => deltas += 1,
            Event::Done(stats) => return (deltas, stats.finish_reason),
            // The worker reports the prompt computed before any text.
            Event::Prefilled { .. } => assert_eq!(deltas, 0, "Prefilled after text"),
        }
    }
    panic!("the stream ended without Done");
}

#[test]
fn a_full_queue_is_refused_and_cancelling_frees_it() {
    let (_dir, worker) = tiny_worker(1);
    let cancel_first = Arc::new(AtomicBool::new(false));
    let first = worker
        .submit(PROMPT.to_vec(), endless(Some(cancel_first.clone())))
        .expect("first runs");
    first
        .recv()
        .expect("the first request is running")
        .expect("event");
    let cancel_second = Arc::new(AtomicBool::new(false));
    let second = worker
        .submit(PROMPT.to_vec(), endless(Some(cancel_second.clone())))
        .expect("second waits");
    assert_eq!(worker.queue_depth(), 1);
    assert_eq!(
        worker
            .submit(PROMPT.to_vec(), endless(None))
            .expect_err("the queue is full"),
        SubmitError::QueueFull(1)
    );

    cancel_first.store(true, Ordering::Relaxed);
    let (after_cancel, reason) = finish_reason(first.iter());
    assert_eq!(reason, FinishReason::Cancelled);
    // Tokens already in the channel, plus at most the step under way.
    assert!(
        after_cancel < 1000,
        "{after_cancel} deltas after cancelling"
    );

    cancel_second.store(true, Ordering::Relaxed);
    assert_eq!(finish_reason(second.iter()).1, FinishReason::Cancelled);
}

#[test]
fn a_caller_that_hangs_up_does_not_block_the_next_request() {
    let (_dir, worker) = tiny_worker(4);
    let abandoned = worker
        .submit(PROMPT.to_vec(), endless(None))
        .expect("submit");
    abandoned.recv().expect("running").expect("event");
    drop(abandoned);
    let next = worker
        .submit(
            PROMPT.to_vec(),
            GenerateOptions {
                max_tokens: 5,
                ignore_eos: true,
                ..Default::default()
            },
        )
        .expect("submit");
    assert_eq!(finish_reason(next.iter()).1, FinishReason::Length);
}

#[test]
fn a_model_that_fails_to_load_reports_why() {
    let missing = tempfile::tempdir().expect("tempdir");
    let err = ModelWorker::spawn(missing.path(), WorkerOptions::default()).expect_err("no model");
    assert!(err.to_string().contains("config.json"), "{err}");
}
