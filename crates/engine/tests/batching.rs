//! Sequences decoding together in one batch: each gets the tokens it gets
//! alone, whoever joins or leaves around it, for every architecture.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{PROMPT, random, write_model};
use orchard_engine::batch::{Batch, Prefill, SequenceId};
use orchard_engine::sampler::SamplingParams;
use orchard_engine::{Event, FinishReason, GenerateOptions, Model, ModelWorker, WorkerOptions};

const TOKENS: usize = 12;

fn prompt(len: usize, seed: u64) -> Vec<u32> {
    random(len, seed, 0.5)
        .iter()
        .map(|v| ((v + 0.5) * 500.0) as u32)
        .collect()
}

/// Three prompts of different lengths (so the batch pads its rows).
fn prompts() -> Vec<Vec<u32>> {
    vec![PROMPT.to_vec(), prompt(30, 1), prompt(5, 2)]
}

fn alone(model: &Model, prompt: &[u32], sampling: SamplingParams) -> (Vec<u32>, Vec<f32>) {
    let options = GenerateOptions {
        max_tokens: TOKENS,
        ignore_eos: true,
        sampling,
        top_logprobs: 0,
        ..Default::default()
    };
    let mut tokens = Vec::new();
    let mut logprobs = Vec::new();
    for event in orchard_engine::TextStream::new(model, prompt, options).expect("start") {
        if let Event::Delta {
            tokens: sampled, ..
        } = event.expect("event")
        {
            tokens.extend(sampled.iter().map(|s| s.token));
            logprobs.extend(sampled.iter().map(|s| s.logprob));
        }
    }
    (tokens, logprobs)
}

/// The first prompt joins alone; the second after 3 steps, the third after 5
/// more; each leaves once it has its tokens.
fn batched(
    model: &Model,
    prompts: &[Vec<u32>],
    sampling: &[SamplingParams],
) -> Vec<Vec<(u32, f32)>> {
    let mut batch = Batch::new(model);
    let mut out: HashMap<SequenceId, Vec<(u32, f32)>> = HashMap::new();
    let mut order = Vec::new();
    let mut steps = 0;
    let join_at = [0, 3, 8];
    let mut joined = 0;
    loop {
        while joined < prompts.len() && steps >= join_at[joined] {
            let prefill = Prefill::start(model, &prompts[joined], None).expect("prefill");
            let (id, first) = batch
                .join(prefill, sampling[joined].clone(), 0, None)
                .expect("join");
            out.insert(id, vec![(first.token, first.logprob)]);
            order.push(id);
            joined += 1;
        }
        if batch.is_empty() && joined == prompts.len() {
            break;
        }
        for (id, sampled) in batch.step().expect("step") {
            let tokens = out.get_mut(&id).expect("a known sequence");
            if tokens.len() < TOKENS {
                tokens.push((sampled.token, sampled.logprob));
            }
        }
        for (&id, tokens) in &out {
            if tokens.len() == TOKENS && order.contains(&id) {
                let (kept, cache) = batch.leave(id).expect("leave");
                assert_eq!(kept.len(), cache.offset() as usize);
                order.retain(|&o| o != id);
            }
        }
        steps += 1;
        assert!(steps < 200, "the batch never finished");
    }
    let mut ids: Vec<SequenceId> = out.keys().copied().collect();
    ids.sort_unstable();
    ids.into_iter()
        .map(|id| out.remove(&id).expect("out"))
        .collect()
}

fn check(model: &Model, label: &str, sampling: &[SamplingParams]) {
    let prompts = prompts();
    let together = batched(model, &prompts, sampling);
    for ((prompt, sampling), got) in prompts.iter().zip(sampling).zip(&together) {
        let (tokens, logprobs) = alone(model, prompt, sampling.clone());
        let batched_tokens: Vec<u32> = got.iter().map(|(t, _)| *t).collect();
        assert_eq!(
            batched_tokens,
            tokens,
            "{label}: prompt of {} tokens",
            prompt.len()
        );
        let diff = got
            .iter()
            .zip(&logprobs)
            .map(|((_, a), b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(diff <= 1e-4, "{label}: log-probabilities differ by {diff}");
    }
}

fn greedy() -> Vec<SamplingParams> {
    vec![SamplingParams::default(); 3]
}

/// Two greedy sequences and one sampled with a seed: the batch samples that
/// one on the host with its own generator, the same draws as alone.
fn mixed() -> Vec<SamplingParams> {
    let sampled = SamplingParams {
        temperature: 0.8,
        top_p: 0.9,
        seed: Some(7),
        ..SamplingParams::default()
    };
    vec![
        SamplingParams::default(),
        sampled,
        SamplingParams::default(),
    ]
}

fn tiny(arch: &str) -> (tempfile::TempDir, Model) {
    let work = tempfile::tempdir().expect("tempdir");
    write_model(work.path(), &common::arch(arch), false);
    let model = Model::load(work.path()).expect("load");
    (work, model)
}

#[test]
fn llama_sequences_joining_and_leaving_decode_as_alone() {
    let (_dir, model) = tiny("llama");
    check(&model, "llama greedy", &greedy());
    check(&model, "llama mixed", &mixed());
}

/// Sliding-window layers see the same window in a padded row.
#[test]
fn gemma3_sliding_windows_decode_as_alone_in_a_batch() {
    let (_dir, model) = tiny("gemma3_text");
    check(&model, "gemma3_text", &greedy());
}

/// Sinks, windows and experts (gpt-oss), experts with dense layers (Qwen3 MoE).
#[test]
fn mixtures_of_experts_decode_as_alone_in_a_batch() {
    for arch in ["gpt_oss", "qwen3_moe"] {
        let (_dir, model) = tiny(arch);
        check(&model, arch, &greedy());
    }
}

/// Recurrent states are rows of the batch too (Qwen3-Next and Qwen3.5's MoE,
/// built by mlx-lm).
#[test]
fn hybrid_models_decode_as_alone_in_a_batch() {
    for kind in ["qwen3_next", "qwen3_5_moe"] {
        let work = tempfile::tempdir().expect("tempdir");
        common::random_model(work.path(), kind, &common::hybrid_args("0"));
        let model = Model::load(work.path()).expect("load");
        check(&model, kind, &mixed());
    }
}

fn worker(max_sequences: usize) -> (tempfile::TempDir, ModelWorker) {
    let work = tempfile::tempdir().expect("tempdir");
    write_model(work.path(), &common::arch("qwen3"), true);
    let options = WorkerOptions {
        max_sequences,
        ..WorkerOptions::default()
    };
    let worker = ModelWorker::spawn(work.path(), options).expect("spawn");
    (work, worker)
}

fn collect(
    events: std::sync::mpsc::Receiver<orchard_engine::Result<Event>>,
) -> (Vec<u32>, FinishReason) {
    let mut tokens = Vec::new();
    for event in events {
        match event.expect("event") {
            Event::Delta {
                tokens: sampled, ..
            } => tokens.extend(sampled.iter().map(|s| s.token)),
            Event::Done(stats) => return (tokens, stats.finish_reason),
            Event::Prefilled { .. } => {}
        }
    }
    panic!("no Done");
}

/// Eight requests at once through the worker: all generate together (the
/// counters show one batch), each gets its tokens as alone, and cancelling
/// one leaves the others as they were.
#[test]
fn the_worker_batches_concurrent_requests_and_cancels_one_alone() {
    let (dir, worker) = worker(32);
    let model = Model::load(dir.path()).expect("load");
    let prompts: Vec<Vec<u32>> = (0..8).map(|i| prompt(6 + 5 * i, 10 + i as u64)).collect();
    let cancel = Arc::new(AtomicBool::new(false));
    let receivers: Vec<_> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let options = GenerateOptions {
                max_tokens: if i == 3 { 100_000 } else { TOKENS },
                ignore_eos: true,
                cancel: (i == 3).then(|| Arc::clone(&cancel)),
                ..Default::default()
            };
            worker.submit(p.clone(), options).expect("submit")
        })
        .collect();
    let mut results = Vec::new();
    for (i, events) in receivers.into_iter().enumerate() {
        if i == 3 {
            // Let it generate alongside the others, then cancel it.
            let first = events.recv().expect("event").expect("ok");
            assert!(matches!(first, Event::Prefilled { .. }));
            let _ = events.recv();
            cancel.store(true, Ordering::Relaxed);
        }
        results.push(collect(events));
    }
    for (i, (prompt, (tokens, reason))) in prompts.iter().zip(results).enumerate() {
        if i == 3 {
            assert_eq!(reason, FinishReason::Cancelled);
            continue;
        }
        assert_eq!(reason, FinishReason::Length, "request {i}");
        let (expected, _) = alone(&model, prompt, SamplingParams::default());
        assert_eq!(tokens, expected, "request {i}");
    }
    // Prompts join one per tick while the others decode, so all (or all but
    // the cancelled one) were in the batch at once.
    let peak = worker.gauges().peak_sequences.load(Ordering::Relaxed);
    assert!(peak >= 7, "at most {peak} sequences generated together");
}

/// With room for one sequence, a second request waits for the first.
#[test]
fn max_sequences_one_runs_requests_one_after_another() {
    let (_dir, worker) = worker(1);
    let options = || GenerateOptions {
        max_tokens: TOKENS,
        ignore_eos: true,
        ..Default::default()
    };
    let first = worker.submit(PROMPT.to_vec(), options()).expect("first");
    let second = worker.submit(prompt(9, 3), options()).expect("second");
    // The second prompt runs only once the first request has ended.
    let started = second.recv().expect("event").expect("ok");
    assert!(matches!(started, Event::Prefilled { .. }), "{started:?}");
    let first_events: Vec<Event> = first.try_iter().map(|e| e.expect("ok")).collect();
    assert!(
        matches!(first_events.last(), Some(Event::Done(_))),
        "the first had not ended: {first_events:?}"
    );
    let (b, _) = collect(second);
    assert_eq!(b.len(), TOKENS);
    assert_eq!(worker.gauges().peak_sequences.load(Ordering::Relaxed), 1);
}
