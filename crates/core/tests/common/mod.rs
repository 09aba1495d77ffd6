//! What the core tests share: the SmolLM2 fixtures in a manager, requests,
//! and copies of the fixture with other chat templates.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use orchard_core::catalog::Catalog;
use orchard_core::chat::ToolChoice;
use orchard_core::{ChatMessage, GenerateOptions, GenerationRequest, ManagerOptions, ModelManager};

pub fn fixture(name: &str) -> String {
    let dir = orchard_core::paths::fixture_models_dir()
        .expect("ORCHARD_DEPS_DIR is set by .cargo/config.toml")
        .join(name);
    assert!(
        dir.join("config.json").is_file(),
        "{} is missing: run `make setup`",
        dir.display()
    );
    dir.to_string_lossy().into_owned()
}

pub const SMALL: &str = "SmolLM2-135M-Instruct-4bit";
pub const LARGE: &str = "SmolLM2-135M-Instruct-float16";

pub fn manager(options: ManagerOptions) -> ModelManager {
    let mut catalog = Catalog::new();
    catalog.add_folder(&fixture(SMALL)).expect("4-bit fixture");
    catalog
        .add_folder(&fixture(LARGE))
        .expect("float16 fixture");
    ModelManager::new(catalog, options)
}

pub fn options() -> ManagerOptions {
    ManagerOptions {
        jit_loading: true,
        idle_ttl: None,
        memory_budget_bytes: 8 << 30,
        max_loaded_models: 4,
        worker: Default::default(),
    }
}

pub fn chat(text: &str, max_tokens: usize) -> GenerationRequest {
    GenerationRequest::Chat {
        messages: vec![ChatMessage::text("user", text)],
        tools: Vec::new(),
        tool_choice: ToolChoice::Auto,
        enable_thinking: None,
        reasoning_budget: None,
        single_tool_call: false,
        options: GenerateOptions {
            max_tokens,
            ..GenerateOptions::default()
        },
        logprobs: false,
        json_output: None,
        images: Vec::new(),
    }
}

/// A copy of the 4-bit fixture served under `name`, with `template` as its
/// chat template.
pub fn with_template(dir: &Path, name: &str, template: &str) -> PathBuf {
    let source = PathBuf::from(fixture(SMALL));
    let target = dir.join(name);
    std::fs::create_dir_all(&target).expect("mkdir");
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "generation_config.json",
    ] {
        std::fs::copy(source.join(file), target.join(file)).expect("copy");
    }
    let mut config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(source.join("tokenizer_config.json")).expect("read"),
    )
    .expect("json");
    config["chat_template"] = serde_json::Value::String(template.to_string());
    std::fs::write(target.join("tokenizer_config.json"), config.to_string()).expect("write");
    target
}

/// A ChatML template that opens a `<think>` block after the assistant
/// header, as reasoning models' templates do.
pub const THINKING_TEMPLATE: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}";
