//! Orchard's engine against mlx-lm, the reference implementation, on the real
//! SmolLM2-135M-Instruct fixtures (4-bit and float16) that `make setup` builds.
//! mlx-lm runs in the project venv through `scripts/reference.py`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::deps_dir;
use orchard_engine::{
    ChatMessage, FinishReason, GenerateOptions, Model, TemplateOptions, generate,
};
use serde_json::{Value, json};

fn fixture(name: &str) -> PathBuf {
    let dir = deps_dir().join("models").join(name);
    assert!(
        dir.join("config.json").is_file(),
        "{} is missing: run `make setup`",
        dir.display()
    );
    dir
}

/// One prompt for both engines.
struct Case {
    name: &'static str,
    prompt: &'static str,
    chat: bool,
    greedy_tokens: usize,
}

const CASES: &[Case] = &[
    Case {
        name: "france",
        prompt: "What is the capital of France?",
        chat: true,
        greedy_tokens: 64,
    },
    Case {
        name: "raw",
        prompt: "The capital of France is",
        chat: false,
        greedy_tokens: 64,
    },
    Case {
        name: "code",
        prompt: "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
        chat: false,
        greedy_tokens: 0,
    },
    Case {
        name: "unicode",
        prompt: "Les élèves écrivent « 東京は日本の首都です » 🍎",
        chat: false,
        greedy_tokens: 0,
    },
];

/// What mlx-lm computed for one case.
struct Reference {
    prompt_tokens: Vec<u32>,
    logits: Vec<f32>,
    greedy: Vec<u32>,
}

fn ids(value: &Value) -> Vec<u32> {
    value
        .as_array()
        .expect("id list")
        .iter()
        .map(|v| v.as_u64().expect("id") as u32)
        .collect()
}

fn run_reference(model: &Path) -> Vec<Reference> {
    let work = tempfile::tempdir().expect("tempdir");
    let request = json!({
        "model": model,
        "cases": CASES.iter().map(|c| json!({
            "name": c.name, "prompt": c.prompt, "chat": c.chat, "greedy_tokens": c.greedy_tokens,
        })).collect::<Vec<_>>(),
    });
    let request_path = work.path().join("request.json");
    std::fs::write(&request_path, request.to_string()).expect("write request");
    let out = work.path().join("out");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/reference.py");
    let output = Command::new(deps_dir().join("venv/bin/python"))
        .arg(script)
        .arg(&request_path)
        .arg(&out)
        .output()
        .expect("run scripts/reference.py (is the venv set up? run `make setup`)");
    assert!(
        output.status.success(),
        "reference.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: Value =
        serde_json::from_slice(&std::fs::read(out.join("result.json")).expect("result.json"))
            .expect("json");
    CASES
        .iter()
        .map(|case| {
            let r = &result["cases"][case.name];
            let bytes =
                std::fs::read(out.join(r["logits_file"].as_str().expect("file"))).expect("logits");
            Reference {
                prompt_tokens: ids(&r["prompt_tokens"]),
                logits: bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
                greedy: ids(&r["greedy"]),
            }
        })
        .collect()
}

fn prompt_tokens(model: &Model, case: &Case) -> Vec<u32> {
    let tokenizer = model.tokenizer();
    if case.chat {
        let options = TemplateOptions {
            add_generation_prompt: true,
            ..Default::default()
        };
        tokenizer
            .encode_chat(&[ChatMessage::text("user", case.prompt)], &options)
            .expect("chat prompt")
    } else {
        tokenizer.encode(case.prompt, true).expect("prompt")
    }
}

fn check_against_mlx_lm(fixture_name: &str) {
    let dir = fixture(fixture_name);
    let model = Model::load(&dir).expect("load the fixture");
    let references = run_reference(&dir);
    for (case, reference) in CASES.iter().zip(references) {
        let tokens = prompt_tokens(&model, case);
        assert_eq!(
            tokens, reference.prompt_tokens,
            "{fixture_name}/{}: prompt tokens",
            case.name
        );

        let mut cache = model.new_cache();
        let logits = model.last_logits(&tokens, &mut cache).expect("logits");
        assert_eq!(logits.len(), reference.logits.len());
        let diff = logits
            .iter()
            .zip(&reference.logits)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        eprintln!(
            "{fixture_name}/{}: {} prompt tokens, max |logit difference| {diff:e}",
            case.name,
            tokens.len()
        );
        assert!(
            diff <= 1e-3,
            "{fixture_name}/{}: logits differ by up to {diff}",
            case.name
        );

        if case.greedy_tokens > 0 {
            let options = GenerateOptions {
                max_tokens: case.greedy_tokens,
                ..Default::default()
            };
            let output = generate(&model, &tokens, options).expect("generate");
            assert_eq!(
                output.tokens, reference.greedy,
                "{fixture_name}/{}: greedy tokens",
                case.name
            );
            let expected_finish = if reference.greedy.len() < case.greedy_tokens {
                FinishReason::Stop
            } else {
                FinishReason::Length
            };
            assert_eq!(output.stats.finish_reason, expected_finish);
            assert_eq!(
                output.stats.generated_tokens,
                output.tokens.len() + usize::from(expected_finish == FinishReason::Stop)
            );
        }
    }
}

#[test]
fn smollm2_4bit_matches_mlx_lm() {
    check_against_mlx_lm("SmolLM2-135M-Instruct-4bit");
}

#[test]
fn smollm2_float16_matches_mlx_lm() {
    check_against_mlx_lm("SmolLM2-135M-Instruct-float16");
}

#[test]
fn chat_answers_that_paris_is_the_capital_of_france() {
    let model = Model::load(&fixture("SmolLM2-135M-Instruct-4bit")).expect("load");
    let prompt = prompt_tokens(&model, &CASES[0]);
    let output = generate(
        &model,
        &prompt,
        GenerateOptions {
            max_tokens: 32,
            ..Default::default()
        },
    )
    .expect("generate");
    assert!(output.text.contains("Paris"), "{:?}", output.text);
    assert_eq!(output.stats.finish_reason, FinishReason::Stop);
    assert_eq!(output.stats.prompt_tokens, prompt.len());
    assert!(output.stats.decode_tokens_per_second > 0.0);
    assert!(output.stats.peak_memory_bytes > 0);
}
