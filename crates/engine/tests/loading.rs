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
