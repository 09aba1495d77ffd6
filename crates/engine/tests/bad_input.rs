//! Broken model folders and requests get errors that name the file and the
//! problem: never a panic or an abort. Each test copies the real SmolLM2
//! fixture and breaks one thing.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use orchard_engine::{ChatMessage, EngineError, GenerateOptions, Model, TemplateOptions, generate};
use serde_json::Value;

fn fixture() -> PathBuf {
    let deps = std::env::var_os("ORCHARD_DEPS_DIR")
        .expect("ORCHARD_DEPS_DIR is unset: run after `make setup`");
    PathBuf::from(deps).join("models/SmolLM2-135M-Instruct-4bit")
}

/// A copy of the fixture to break. Weights are linked, not copied, unless the
/// test rewrites them.
fn broken_copy() -> tempfile::TempDir {
    let copy = tempfile::tempdir().expect("tempdir");
    for entry in fs::read_dir(fixture()).expect("fixture") {
        let entry = entry.expect("entry");
        fs::copy(entry.path(), copy.path().join(entry.file_name())).expect("copy");
    }
    copy
}

fn edit_config(dir: &Path, edit: impl FnOnce(&mut Value)) {
    let path = dir.join("config.json");
    let mut config: Value =
        serde_json::from_str(&fs::read_to_string(&path).expect("read")).expect("json");
    edit(&mut config);
    fs::write(&path, config.to_string()).expect("write");
}

fn load_error(dir: &Path) -> String {
    Model::load(dir)
        .expect_err("the broken folder must not load")
        .to_string()
}

#[test]
fn missing_weights_name_the_file() {
    let dir = broken_copy();
    fs::remove_file(dir.path().join("model.safetensors")).expect("remove");
    let err = load_error(dir.path());
    assert!(
        err.contains("model.safetensors") && err.contains("no weights"),
        "{err}"
    );
}

#[test]
fn missing_tokenizer_names_the_file() {
    let dir = broken_copy();
    fs::remove_file(dir.path().join("tokenizer.json")).expect("remove");
    let err = load_error(dir.path());
    assert!(err.contains("tokenizer.json"), "{err}");
}

#[test]
fn corrupt_config_is_not_valid_json() {
    let dir = broken_copy();
    fs::write(
        dir.path().join("config.json"),
        "{\"model_type\": \"llama\",",
    )
    .expect("write");
    let err = load_error(dir.path());
    assert!(
        err.contains("config.json") && err.contains("not valid JSON"),
        "{err}"
    );
}

#[test]
fn truncated_weights_are_caught_before_mlx_reads_them() {
    let dir = broken_copy();
    let path = dir.path().join("model.safetensors");
    let len = fs::metadata(&path).expect("stat").len();
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_len(len / 2))
        .expect("truncate");
    let err = load_error(dir.path());
    assert!(
        err.contains("model.safetensors") && err.contains("truncated"),
        "{err}"
    );
}

#[test]
fn unknown_model_type_lists_the_supported_ones() {
    let dir = broken_copy();
    edit_config(dir.path(), |c| c["model_type"] = "frobnicator".into());
    let err = load_error(dir.path());
    assert!(
        err.contains("\"frobnicator\" is not supported") && err.contains("llama"),
        "{err}"
    );
}

#[test]
fn shapes_that_disagree_with_the_config_name_the_tensor() {
    let dir = broken_copy();
    edit_config(dir.path(), |c| c["intermediate_size"] = 1000.into());
    let err = load_error(dir.path());
    assert!(
        err.contains("model.layers.0.mlp.gate_proj") && err.contains("shape"),
        "{err}"
    );
}

#[test]
fn unsupported_quantization_is_refused() {
    let dir = broken_copy();
    edit_config(dir.path(), |c| c["quantization"]["bits"] = 7.into());
    let err = load_error(dir.path());
    assert!(
        err.contains("unsupported quantization") && err.contains("7 bits"),
        "{err}"
    );
}

#[test]
fn more_experts_per_token_than_experts_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    common::write_model(dir.path(), &common::arch("qwen3_moe"), false);
    edit_config(dir.path(), |c| c["num_experts_per_tok"] = 17.into());
    let err = load_error(dir.path());
    assert!(
        err.contains("17 experts per token cannot be chosen from 16 experts"),
        "{err}"
    );
}

#[test]
fn a_failing_chat_template_is_a_template_error() {
    let dir = broken_copy();
    let path = dir.path().join("tokenizer_config.json");
    let mut config: Value =
        serde_json::from_str(&fs::read_to_string(&path).expect("read")).expect("json");
    config["chat_template"] = "{{ raise_exception('system messages are not allowed') }}".into();
    fs::write(&path, config.to_string()).expect("write");
    let model = Model::load(dir.path()).expect("the folder itself is fine");
    let err = model
        .tokenizer()
        .encode_chat(
            &[ChatMessage::text("system", "hi")],
            &TemplateOptions::default(),
        )
        .expect_err("the template raises");
    assert!(matches!(err, EngineError::Template(_)), "{err}");
    assert!(
        err.to_string().contains("system messages are not allowed"),
        "{err}"
    );
}

#[test]
fn a_prompt_longer_than_the_context_is_refused() {
    let dir = broken_copy();
    edit_config(dir.path(), |c| c["max_position_embeddings"] = 16.into());
    let model = Model::load(dir.path()).expect("load");
    let prompt: Vec<u32> = (0..20).collect();
    let err = generate(&model, &prompt, GenerateOptions::default()).expect_err("too long");
    assert!(
        matches!(
            err,
            EngineError::PromptTooLong {
                tokens: 20,
                limit: 16
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("shorten it"), "{err}");
}
