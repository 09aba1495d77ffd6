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

/// Structured output inside batched decoding: two sequences constrained to
/// different schemas (one greedy, one sampled) and one free sequence decode
/// in one batch. Each constrained answer is JSON of its own schema and the
/// same as when it runs alone, and the free one is untouched by its
/// neighbours' masks.
#[test]
fn constrained_sequences_in_one_batch_follow_their_own_schemas() {
    use orchard_engine::batch::{Batch, Prefill};
    use orchard_engine::{ChatMessage, OnComplete, TemplateOptions};
    use serde_json::{Value, json};

    let model = model();
    let tokenizer = model.tokenizer();
    let chat = |text: &str| {
        let options = TemplateOptions {
            add_generation_prompt: true,
            ..Default::default()
        };
        let prompt = tokenizer
            .apply_chat_template(&[ChatMessage::text("user", text)], &options)
            .expect("template");
        tokenizer.encode(&prompt, false).expect("encode")
    };
    let cat = json!({"type": "object", "properties": {"name": {"type": "string", "maxLength": 20},
        "age": {"type": "integer", "minimum": 0, "maximum": 30}}, "required": ["name", "age"],
        "additionalProperties": false});
    let colors = json!({"type": "array", "items": {"enum": ["red", "green", "blue"]},
        "minItems": 2, "maxItems": 3});
    let grammars = tokenizer.grammars().expect("grammars");
    let greedy = SamplingParams {
        temperature: 0.0,
        ..Default::default()
    };
    let sampled = SamplingParams {
        temperature: 0.9,
        seed: Some(7),
        ..Default::default()
    };
    let sequences = [
        (chat("Describe a cat in JSON."), greedy.clone(), Some(&cat)),
        (chat("List some colors in JSON."), sampled, Some(&colors)),
        (chat("Tell me about the sea."), greedy, None),
    ];
    let constraint = |schema: Option<&Value>| {
        schema.map(|s| grammars.json_schema(s, OnComplete::End).expect("schema"))
    };
    let eos = tokenizer.eos_ids().to_vec();
    let limit = 60;

    // Alone: each sequence in its own batch.
    let mut alone = Vec::new();
    for (prompt, sampling, schema) in &sequences {
        let mut batch = Batch::new(&model);
        let prefill = Prefill::start(&model, prompt, None).expect("prefill");
        let (_, first) = batch
            .join(prefill, sampling.clone(), 0, constraint(*schema))
            .expect("join");
        let mut tokens = vec![first.token];
        while !eos.contains(tokens.last().expect("token")) && tokens.len() < limit {
            tokens.extend(batch.step().expect("step").iter().map(|(_, s)| s.token));
        }
        alone.push(tokens);
    }

    // Together.
    let mut batch = Batch::new(&model);
    let mut together: Vec<Vec<u32>> = Vec::new();
    let mut ids = Vec::new();
    for (prompt, sampling, schema) in &sequences {
        let prefill = Prefill::start(&model, prompt, None).expect("prefill");
        let (id, first) = batch
            .join(prefill, sampling.clone(), 0, constraint(*schema))
            .expect("join");
        ids.push(id);
        together.push(vec![first.token]);
    }
    let done =
        |tokens: &Vec<u32>| eos.contains(tokens.last().expect("token")) || tokens.len() >= limit;
    while !together.iter().all(done) {
        for (id, sampled) in batch.step().expect("step") {
            let index = ids.iter().position(|&i| i == id).expect("known");
            if !done(&together[index]) {
                together[index].push(sampled.token);
            }
        }
    }
    for (index, (tokens, alone)) in together.iter().zip(&alone).enumerate() {
        assert_eq!(tokens, alone, "sequence {index} differs batched and alone");
    }
    let text = |tokens: &[u32]| {
        let body: Vec<u32> = tokens
            .iter()
            .copied()
            .filter(|t| !eos.contains(t))
            .collect();
        tokenizer.decode(&body).expect("decode")
    };
    let cat_answer: Value = serde_json::from_str(&text(&together[0])).expect("the cat is JSON");
    assert!(
        cat_answer["name"].is_string() && cat_answer["age"].is_u64(),
        "{cat_answer}"
    );
    assert_eq!(
        cat_answer.as_object().map(|o| o.len()),
        Some(2),
        "{cat_answer}"
    );
    let colors_answer: Value =
        serde_json::from_str(&text(&together[1])).expect("the colors are JSON");
    let listed = colors_answer.as_array().expect("a list");
    assert!((2..=3).contains(&listed.len()), "{colors_answer}");
    assert!(
        listed
            .iter()
            .all(|c| ["red", "green", "blue"].contains(&c.as_str().unwrap_or("")))
    );
    // The free answer is prose, not bent into JSON by its neighbours.
    assert!(!text(&together[2]).trim_start().starts_with(['{', '[']));
}

/// A token the grammar refuses (only a forced one could be) makes the
/// constraint let go, with the reason kept, instead of failing the step and
/// with it every sequence in the batch.
#[test]
fn a_refused_token_lets_the_constraint_go_and_says_why() {
    use orchard_engine::OnComplete;
    let model = model();
    let tokenizer = model.tokenizer();
    let schema = serde_json::json!({"type": "object"});
    let mut constraint = tokenizer
        .grammars()
        .expect("grammars")
        .json_schema(&schema, OnComplete::End)
        .expect("schema");
    let vocab = tokenizer.vocab_size();
    let bias = constraint.bias(vocab).expect("a mask");
    let open = tokenizer.encode("{", false).expect("encode")[0] as usize;
    let word = tokenizer.encode("Hello", false).expect("encode")[0];
    assert_eq!(bias[open], 0.0, "an object starts with a brace");
    assert_eq!(bias[word as usize], f32::NEG_INFINITY);
    constraint.commit(word);
    assert!(constraint.failure().is_some());
    assert_eq!(constraint.bias(vocab), None);
}
