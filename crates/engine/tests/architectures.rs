//! Every supported architecture against mlx-lm: the test writes a small model
//! with random weights (dense float32, and 4-bit quantized), both engines load
//! the same folder, and their logits and greedy tokens must agree.

mod common;

use common::{arch, assert_matches_mlx_lm, write_model};

fn check(name: &str) {
    let arch = arch(name);
    let work = tempfile::tempdir().expect("tempdir");
    for quantized in [false, true] {
        let dir = work.path().join(if quantized { "4bit" } else { "float32" });
        write_model(&dir, &arch, quantized);
        assert_matches_mlx_lm(&dir, &format!("{name} quantized={quantized}"));
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
