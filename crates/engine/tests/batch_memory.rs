//! A sequence that leaves a batch takes only its own memory with it: its
//! cache goes to the prompt cache, and the batch's buffers must not live on
//! behind it. One test in its own process, since MLX counts memory per
//! process.

mod common;

use common::{random, write_model};
use orchard_engine::Model;
use orchard_engine::batch::{Batch, Prefill};
use orchard_engine::sampler::SamplingParams;

#[test]
fn a_sequence_leaving_a_batch_keeps_only_its_own_memory() {
    let work = tempfile::tempdir().expect("tempdir");
    write_model(work.path(), &common::arch("llama"), false);
    let model = Model::load(work.path()).expect("load");
    let prompts: Vec<Vec<u32>> = [40, 200, 120, 300]
        .iter()
        .enumerate()
        .map(|(i, &len)| {
            random(len, i as u64, 0.5)
                .iter()
                .map(|v| ((v + 0.5) * 500.0) as u32)
                .collect()
        })
        .collect();
    let before = mlx_rs::memory::active_memory().expect("active memory");
    let mut batch = Batch::new(&model);
    let mut ids = Vec::new();
    for prompt in &prompts {
        let prefill = Prefill::start(&model, prompt, None).expect("prefill");
        ids.push(
            batch
                .join(prefill, SamplingParams::default(), 0, None)
                .expect("join")
                .0,
        );
    }
    for _ in 0..4 {
        batch.step().expect("step");
    }
    let batch_bytes = batch.kv_bytes();
    let (_, kept) = batch.leave(ids[0]).expect("leave");
    drop(batch);
    let held = mlx_rs::memory::active_memory().expect("active memory") - before;
    // The shortest sequence's keys and values, not the batch's.
    assert!(
        held <= kept.nbytes() + (1 << 20),
        "{held} bytes still held for a sequence of {} bytes (the batch had {batch_bytes})",
        kept.nbytes()
    );
    assert!(
        kept.nbytes() * 3 < batch_bytes,
        "{} of {batch_bytes}",
        kept.nbytes()
    );
}
