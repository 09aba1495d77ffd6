//! The storage variants of a model folder, each loaded by Orchard and by
//! mlx-lm with the same answers: bfloat16 weights, 8-bit quantization with
//! another group size, weights split in shards, and a `chat_template.jinja`.

mod common;

use common::{GREEDY, Layout, PROMPT, architectures, reference, write_model_with};
use mlx_rs::Dtype;
use orchard_engine::{ChatMessage, GenerateOptions, Model, TemplateOptions, generate};

fn check_layout(arch_name: &str, layout: Layout, tolerance: f32) {
    let arch = architectures()
        .into_iter()
        .find(|a| a.name == arch_name)
        .expect("architecture");
    let work = tempfile::tempdir().expect("tempdir");
    write_model_with(work.path(), &arch, &layout);
    let model = Model::load(work.path()).expect("Orchard loads the folder");
    let (expected_logits, expected_greedy) = reference(work.path());
    let logits = model
        .last_logits(&PROMPT, &mut model.new_cache())
        .expect("logits");
    let diff = logits
        .iter()
        .zip(&expected_logits)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    eprintln!("{arch_name} {layout:?}: max |logit difference| {diff:e}");
    assert!(diff <= tolerance, "{layout:?}: logits differ by {diff}");
    let output = generate(
        &model,
        &PROMPT,
        GenerateOptions {
            max_tokens: GREEDY,
            ..Default::default()
        },
    )
    .expect("generate");
    assert_eq!(output.tokens, expected_greedy, "{layout:?}: greedy tokens");
}

#[test]
fn bfloat16_weights_match_mlx_lm() {
    check_layout(
        "llama",
        Layout {
            dtype: Dtype::Bfloat16,
            ..Layout::default()
        },
        1e-3,
    );
}

#[test]
fn eight_bit_quantization_with_groups_of_32_matches_mlx_lm() {
    check_layout(
        "qwen2",
        Layout {
            quantization: Some((32, 8)),
            ..Layout::default()
        },
        1e-3,
    );
}

#[test]
fn sharded_weights_with_an_index_match_mlx_lm() {
    check_layout(
        "mistral",
        Layout {
            shards: 3,
            ..Layout::default()
        },
        1e-3,
    );
}

#[test]
fn a_chat_template_file_wins_over_the_tokenizer_config() {
    let arch = architectures()
        .into_iter()
        .find(|a| a.name == "llama")
        .expect("llama");
    let work = tempfile::tempdir().expect("tempdir");
    write_model_with(work.path(), &arch, &Layout::default());
    std::fs::write(
        work.path().join("chat_template.jinja"),
        "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}",
    )
    .expect("template");
    let model = Model::load(work.path()).expect("load");
    let options = TemplateOptions {
        add_generation_prompt: true,
        ..Default::default()
    };
    let text = model
        .tokenizer()
        .apply_chat_template(&[ChatMessage::text("user", "hello")], &options)
        .expect("render");
    assert_eq!(text, "[user] hello\n[assistant]");
}
