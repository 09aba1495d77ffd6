//! Every supported architecture against mlx-lm: the test writes a small model
//! with random weights (dense float32, and 4-bit quantized), both engines load
//! the same folder, and their logits and greedy tokens must agree.

mod common;

use common::{GREEDY, PROMPT, architectures, reference, write_model};
use orchard_engine::{GenerateOptions, Model, generate};

fn check(name: &str) {
    let arch = architectures()
        .into_iter()
        .find(|a| a.name == name)
        .expect("architecture");
    let work = tempfile::tempdir().expect("tempdir");
    for quantized in [false, true] {
        let dir = work.path().join(if quantized { "4bit" } else { "float32" });
        write_model(&dir, &arch, quantized);
        let model = Model::load(&dir).expect("Orchard loads the test model");
        let (expected_logits, expected_greedy) = reference(&dir);

        let logits = model
            .last_logits(&PROMPT, &mut model.new_cache())
            .expect("logits");
        let diff = logits
            .iter()
            .zip(&expected_logits)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        eprintln!("{name} quantized={quantized}: max |logit difference| {diff:e}");
        assert!(
            diff <= 1e-3,
            "{name} quantized={quantized}: logits differ by {diff}"
        );

        let options = GenerateOptions {
            max_tokens: GREEDY,
            ..Default::default()
        };
        let output = generate(&model, &PROMPT, options).expect("generate");
        assert_eq!(
            output.tokens, expected_greedy,
            "{name} quantized={quantized}: greedy tokens"
        );
    }
}

#[test]
fn llama_with_llama3_rope_biases_and_untied_head_matches_mlx_lm() {
    check("llama");
}

#[test]
fn mistral_matches_mlx_lm() {
    check("mistral");
}

#[test]
fn qwen2_with_qkv_biases_matches_mlx_lm() {
    check("qwen2");
}

#[test]
fn qwen3_with_qk_norm_matches_mlx_lm() {
    check("qwen3");
}

#[test]
fn gemma3_text_with_a_sliding_window_matches_mlx_lm() {
    check("gemma3_text");
}
