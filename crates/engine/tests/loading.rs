//! The storage variants of a model folder, each loaded by Orchard and by
//! mlx-lm with the same answers: bfloat16 weights, 8-bit quantization with
//! another group size, weights split in shards, and a `chat_template.jinja`.

mod common;

use common::{Layout, arch, assert_matches_mlx_lm, write_model_with};
use mlx_rs::Dtype;
use orchard_engine::{ChatMessage, Model, TemplateOptions};

fn check_layout(arch_name: &str, layout: Layout) {
    let work = tempfile::tempdir().expect("tempdir");
    write_model_with(work.path(), &arch(arch_name), &layout);
    assert_matches_mlx_lm(work.path(), &format!("{arch_name} {layout:?}"));
}

#[test]
fn bfloat16_weights_match_mlx_lm() {
    check_layout(
        "llama",
        Layout {
            dtype: Dtype::Bfloat16,
            ..Layout::default()
        },
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
    );
}

#[test]
fn a_chat_template_file_wins_over_the_tokenizer_config() {
    let work = tempfile::tempdir().expect("tempdir");
    write_model_with(work.path(), &arch("llama"), &Layout::default());
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

/// The CPU fast path: a quantized model dequantized to float32 at load
/// gives mlx-lm's greedy tokens, as the quantized kernels do (the values are
/// the same; only the order of the sums differs), and takes the float32 size.
#[test]
fn the_cpu_fast_path_dequantizes_and_keeps_mlx_lm_answers() {
    use orchard_engine::{CpuFastPath, LoadOptions};
    let work = tempfile::tempdir().expect("tempdir");
    common::write_model(work.path(), &arch("qwen3"), true);
    let load = |cpu_fast_path, dense_budget_bytes| {
        Model::load_with(
            work.path(),
            LoadOptions {
                cpu_fast_path,
                dense_budget_bytes,
            },
        )
        .expect("load")
    };
    let quantized = load(CpuFastPath::Off, None);
    let dense = load(CpuFastPath::On, None);
    assert!(!quantized.is_dequantized());
    assert!(dense.is_dequantized());
    let file_bytes = std::fs::metadata(work.path().join("model.safetensors"))
        .expect("weights")
        .len();
    let dense_bytes = dense.dequantized_bytes().expect("dense bytes");
    assert!(
        dense_bytes > 2 * file_bytes,
        "{dense_bytes} vs {file_bytes}"
    );
    // Auto takes the fast path only when the float32 weights fit the budget.
    assert!(!load(CpuFastPath::Auto, Some(dense_bytes - 1)).is_dequantized());
    assert!(load(CpuFastPath::Auto, Some(dense_bytes)).is_dequantized());

    let logits = |model: &Model| {
        model
            .last_logits(&common::PROMPT, &mut model.new_cache())
            .expect("logits")
    };
    let diff = logits(&quantized)
        .iter()
        .zip(logits(&dense))
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    eprintln!("fast path: max |logit difference| to the quantized kernels {diff:e}");
    assert!(diff <= 1e-3, "{diff}");
    // Model::load's default (Auto, no budget) runs the fast path on the CPU.
    assert_matches_mlx_lm(work.path(), "qwen3 4-bit, fast path");
}
