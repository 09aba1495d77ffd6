//! Prompt reuse across requests: the second turn of a conversation computes
//! only its new tokens, and gives the same answer as without reuse.

mod common;

use common::{VOCAB, random, write_model};
use orchard_engine::{Event, GenerateOptions, GenerationStats, Model, PromptCache, TextStream};

/// A 500-token shared prefix, as a long system prompt or earlier turns are.
fn tokens(len: usize, seed: u64) -> Vec<u32> {
    random(len, seed, 0.5)
        .iter()
        .map(|v| ((v + 0.5) * (VOCAB - 1) as f32) as u32)
        .collect()
}

fn tiny_llama() -> (tempfile::TempDir, Model) {
    tiny("llama")
}

fn tiny(arch: &str) -> (tempfile::TempDir, Model) {
    let work = tempfile::tempdir().expect("tempdir");
    let arch = common::arch(arch);
    write_model(work.path(), &arch, false);
    let model = Model::load(work.path()).expect("load");
    (work, model)
}

fn run(
    model: &Model,
    prompt: &[u32],
    cache: Option<&mut PromptCache>,
) -> (Vec<u32>, Vec<f32>, GenerationStats) {
    let options = GenerateOptions {
        max_tokens: 8,
        top_logprobs: 3,
        ignore_eos: true,
        ..Default::default()
    };
    let stream = match cache {
        Some(cache) => TextStream::with_prompt_cache(model, prompt, options, cache),
        None => TextStream::new(model, prompt, options),
    }
    .expect("start");
    let (mut ids, mut logprobs) = (Vec::new(), Vec::new());
    for event in stream {
        match event.expect("event") {
            Event::Delta { tokens, .. } => {
                for t in tokens {
                    ids.push(t.token);
                    logprobs.push(t.logprob);
                    logprobs.extend(t.top.iter().map(|alt| alt.logprob));
                }
            }
            Event::Done(stats) => return (ids, logprobs, stats),
            Event::Prefilled { .. } => panic!("a TextStream never reports Prefilled"),
        }
    }
    panic!("no Done event");
}

#[test]
fn a_second_turn_reuses_the_shared_prefix_and_answers_the_same() {
    let (_dir, model) = tiny_llama();
    let prefix = tokens(500, 1);
    let first: Vec<u32> = prefix.iter().copied().chain(tokens(12, 2)).collect();
    let second: Vec<u32> = prefix.iter().copied().chain(tokens(20, 3)).collect();

    let mut cache = PromptCache::new(256 << 20);
    let (_, _, cold) = run(&model, &first, Some(&mut cache));
    assert_eq!(cold.cached_prompt_tokens, 0);
    assert_eq!(cache.len(), 1);

    let (reused_ids, reused_logprobs, warm) = run(&model, &second, Some(&mut cache));
    let (plain_ids, plain_logprobs, plain) = run(&model, &second, None);
    assert!(warm.cached_prompt_tokens >= 490, "{warm:?}");
    assert_eq!(warm.cached_prompt_tokens, 500);
    assert_eq!(plain.cached_prompt_tokens, 0);
    assert_eq!(reused_ids, plain_ids);
    let diff = reused_logprobs
        .iter()
        .zip(&plain_logprobs)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(diff <= 1e-4, "log-probabilities differ by {diff}");
    eprintln!(
        "time to first token: {:?} with 500 cached tokens, {:?} without",
        warm.time_to_first_token, plain.time_to_first_token
    );
}

#[test]
fn reused_and_fresh_caches_give_the_same_logits() {
    reuse_matches_a_cold_run("llama");
}

/// A mixture of experts routes each token alone, so reuse changes nothing.
#[test]
fn a_mixture_of_experts_gives_the_same_logits_with_a_reused_cache() {
    reuse_matches_a_cold_run("qwen3_moe");
}

/// Sliding-window layers and attention sinks (gpt-oss) see the same keys
/// whether the prefix was cached or not.
#[test]
fn sliding_windows_and_sinks_give_the_same_logits_with_a_reused_cache() {
    reuse_matches_a_cold_run("gpt_oss");
}

fn reuse_matches_a_cold_run(arch: &str) {
    let (_dir, model) = tiny(arch);
    let history = tokens(300, 4);
    let mut cache = PromptCache::new(256 << 20);
    let mut kv = model.new_cache();
    model.last_logits(&history, &mut kv).expect("prefill");
    cache.put(history.clone(), kv);

    // The new prompt diverges after 250 tokens: the cache is cut back to them.
    let prompt: Vec<u32> = history[..250]
        .iter()
        .copied()
        .chain(tokens(30, 5))
        .collect();
    let (mut reused, shared) = cache.take(&prompt).expect("take").expect("a shared prefix");
    assert_eq!(shared, 250);
    // The stored sequence stays whole for a request that continues it.
    assert_eq!(cache.len(), 1);
    let with_reuse = model
        .last_logits(&prompt[shared..], &mut reused)
        .expect("rest");
    let without = model
        .last_logits(&prompt, &mut model.new_cache())
        .expect("all");
    let diff = with_reuse
        .iter()
        .zip(&without)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(diff <= 1e-4, "logits differ by {diff}");

    let continued: Vec<u32> = history.iter().copied().chain(tokens(5, 6)).collect();
    let (mut whole, shared) = cache
        .take(&continued)
        .expect("take")
        .expect("the whole history");
    assert_eq!(shared, 300);
    assert!(cache.is_empty(), "a continuing request takes the sequence");
    let continued_logits = model
        .last_logits(&continued[shared..], &mut whole)
        .expect("rest");
    let fresh = model
        .last_logits(&continued, &mut model.new_cache())
        .expect("all");
    let diff = continued_logits
        .iter()
        .zip(&fresh)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(diff <= 1e-4, "logits differ by {diff}");
}

/// Qwen3-Next's recurrent layers cannot be cut back: a later request reuses
/// the state of a checkpoint (each prompt but its last token) or of the whole
/// stored sequence, says how much it reused, and answers as a cold run does.
#[test]
fn a_hybrid_model_reuses_its_recurrent_checkpoints_and_answers_the_same() {
    let work = tempfile::tempdir().expect("tempdir");
    common::random_model(work.path(), "qwen3_next", &common::hybrid_args("0"));
    let model = Model::load(work.path()).expect("load");
    let mut cache = PromptCache::new(256 << 20);
    let check = |cache: &mut PromptCache, prompt: &[u32], cached: usize, what: &str| {
        let (ids, logprobs, stats) = run(&model, prompt, Some(cache));
        let (plain_ids, plain_logprobs, _) = run(&model, prompt, None);
        assert_eq!(stats.cached_prompt_tokens, cached, "{what}");
        assert_eq!(ids, plain_ids, "{what}");
        let diff = logprobs
            .iter()
            .zip(&plain_logprobs)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(diff <= 1e-4, "{what}: log-probabilities differ by {diff}");
        ids
    };

    let first: Vec<u32> = tokens(200, 20).into_iter().chain(tokens(12, 21)).collect();
    let answer = check(&mut cache, &first, 0, "a cold first turn");
    // The next turn renders the answer otherwise (a template that drops the
    // reasoning): it leaves the stored sequence where the first prompt ended.
    let second: Vec<u32> = first
        .iter()
        .copied()
        .chain(tokens(10, 22))
        .chain(tokens(8, 23))
        .collect();
    assert_ne!(second[first.len()], answer[0]);
    let answer = check(&mut cache, &second, first.len() - 1, "an agent's next turn");
    // A turn that continues the whole stored sequence (its prompt and the
    // answer's tokens that ran) takes the current state.
    let third: Vec<u32> = second
        .iter()
        .chain(&answer[..answer.len() - 1])
        .copied()
        .chain(tokens(6, 24))
        .collect();
    check(
        &mut cache,
        &third,
        second.len() + answer.len() - 1,
        "a turn continuing the sequence",
    );
    // The same prompt again stops at its own checkpoint.
    check(&mut cache, &third, third.len() - 1, "the same prompt again");
    // A prompt leaving the history before any checkpoint starts cold.
    let edited: Vec<u32> = first[..150].iter().copied().chain(tokens(20, 25)).collect();
    check(&mut cache, &edited, 0, "an edit before every checkpoint");
}

#[test]
fn conversations_sharing_a_system_prompt_keep_their_own_caches() {
    let (_dir, model) = tiny_llama();
    let system = tokens(200, 7);
    let a: Vec<u32> = system.iter().copied().chain(tokens(40, 8)).collect();
    let b: Vec<u32> = system.iter().copied().chain(tokens(40, 9)).collect();
    let mut cache = PromptCache::new(256 << 20);
    run(&model, &a, Some(&mut cache));
    let (_, _, b_stats) = run(&model, &b, Some(&mut cache));
    assert_eq!(
        b_stats.cached_prompt_tokens, 200,
        "b reuses the system prompt"
    );
    // a's own cache survived b: asking a again reuses all of it.
    let (a_ids, _, a_again) = run(&model, &a, Some(&mut cache));
    assert_eq!(a_again.cached_prompt_tokens, a.len() - 1);
    let (plain_ids, _, _) = run(&model, &a, None);
    assert_eq!(a_ids, plain_ids);
}

#[test]
fn the_memory_budget_evicts_the_least_recently_used_sequence() {
    let (_dir, model) = tiny_llama();
    let store = |budget: usize| {
        let mut cache = PromptCache::new(budget);
        for seed in 10..13 {
            let prompt = tokens(64, seed);
            let mut kv = model.new_cache();
            model.last_logits(&prompt, &mut kv).expect("prefill");
            cache.put(prompt, kv);
        }
        cache
    };
    let roomy = store(usize::MAX);
    assert_eq!(roomy.len(), 3);
    let one_sequence = roomy.bytes() / 3;
    let tight = store(one_sequence * 2);
    assert_eq!(tight.len(), 2);
    assert!(tight.bytes() <= one_sequence * 2);
    // The oldest (seed 10) went first.
    let mut tight = tight;
    assert!(tight.take(&tokens(64, 10)).expect("take").is_none());
    assert!(tight.take(&tokens(64, 12)).expect("take").is_some());
}
