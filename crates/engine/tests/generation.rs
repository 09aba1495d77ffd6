//! The text stream on the real SmolLM2 fixture: stop strings, seeds, and
//! deltas that never split a character.

mod common;

use orchard_engine::{
    Event, FinishReason, GenerateOptions, Model, SamplingParams, TextStream, generate,
};

fn model() -> Model {
    Model::load(&common::deps_dir().join("models/SmolLM2-135M-Instruct-4bit"))
        .expect("load the fixture")
}

fn stream_text(
    model: &Model,
    prompt: &[u32],
    options: GenerateOptions,
) -> (Vec<String>, Vec<u32>, FinishReason) {
    let (mut deltas, mut tokens) = (Vec::new(), Vec::new());
    for event in TextStream::new(model, prompt, options).expect("start") {
        match event.expect("event") {
            Event::Delta {
                text,
                tokens: sampled,
            } => {
                deltas.push(text);
                tokens.extend(sampled.iter().map(|s| s.token));
            }
            Event::Done(stats) => return (deltas, tokens, stats.finish_reason),
            Event::Prefilled { .. } => panic!("a TextStream never reports Prefilled"),
        }
    }
    panic!("no Done event");
}

/// Generates from `prompt`, then again with a stop string taken from the
/// middle of that text: the second stream must end right before it.
fn check_stop_string(prompt_text: &str) {
    let model = model();
    let prompt = model.tokenizer().encode(prompt_text, true).expect("prompt");
    let options = GenerateOptions {
        max_tokens: 32,
        ignore_eos: true,
        ..Default::default()
    };
    let full = generate(&model, &prompt, options.clone())
        .expect("generate")
        .text;
    // Likely across a token boundary, and across multi-byte characters.
    let chars: Vec<char> = full.chars().collect();
    let start = chars.len() / 2;
    let stop: String = chars[start..start + 3].iter().collect();
    let cut = full.find(&stop).expect("the stop string occurs");

    let options = GenerateOptions {
        stop: vec![stop.clone()],
        ..options
    };
    let (deltas, _, reason) = stream_text(&model, &prompt, options);
    assert_eq!(reason, FinishReason::Stop);
    assert_eq!(deltas.concat(), full[..cut], "stop string {stop:?}");
}

#[test]
fn a_stop_string_ends_generation_and_none_of_it_is_emitted() {
    check_stop_string("The capital of France is");
}

#[test]
fn a_stop_string_of_multibyte_characters_is_found() {
    check_stop_string("Fruits en japonais : りんご 🍎, みかん 🍊,");
}

#[test]
fn the_same_seed_samples_the_same_text() {
    let model = model();
    let prompt = model
        .tokenizer()
        .encode("Once upon a time", true)
        .expect("prompt");
    let sampled = |seed| {
        let sampling = SamplingParams {
            temperature: 0.9,
            top_p: 0.95,
            seed: Some(seed),
            ..Default::default()
        };
        let options = GenerateOptions {
            max_tokens: 24,
            ignore_eos: true,
            sampling,
            ..Default::default()
        };
        generate(&model, &prompt, options).expect("generate").tokens
    };
    assert_eq!(sampled(42), sampled(42));
    assert_ne!(sampled(42), sampled(7));
}

#[test]
fn deltas_never_split_a_character() {
    let model = model();
    let tokenizer = model.tokenizer();
    let prompt = tokenizer
        .encode(
            "Voici des fruits en japonais et en emoji : りんご 🍎, みかん 🍊,",
            true,
        )
        .expect("prompt");
    let options = GenerateOptions {
        max_tokens: 48,
        ignore_eos: true,
        ..Default::default()
    };
    let (deltas, tokens, _) = stream_text(&model, &prompt, options);
    let text = deltas.concat();
    // A character cut off by max_tokens is never sent half-made.
    let decoded = tokenizer.decode(&tokens).expect("decode");
    assert_eq!(text, decoded.trim_end_matches('\u{FFFD}'));
    assert!(deltas.iter().all(|d| !d.contains('\u{FFFD}')), "{deltas:?}");
}
