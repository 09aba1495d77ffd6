//! Capability detection on the real SmolLM2 fixture that `make setup` converts.

use orchard_hub::capabilities::{ModelFiles, detect};

#[test]
fn smollm2_is_a_supported_4bit_llama_of_about_135m_parameters() {
    let deps = std::env::var_os("ORCHARD_DEPS_DIR").expect("set by .cargo/config.toml");
    let dir = std::path::Path::new(&deps).join("models/SmolLM2-135M-Instruct-4bit");
    let files = ModelFiles::read_dir(&dir).expect("the fixture: run `make setup`");
    let caps = detect(&files, &["llama", "qwen3"]);
    assert_eq!(caps.model_type.as_deref(), Some("llama"));
    assert!(caps.supported);
    let quant = caps.quantization.expect("4-bit");
    assert_eq!(quant.bits, 4);
    let params = caps.parameters.expect("estimated");
    assert!((125_000_000..145_000_000).contains(&params), "{params}");
    assert_eq!(caps.context_length, Some(8192));
    assert!(caps.weight_bytes > 50_000_000);
    // SmolLM2's template renders neither tools nor reasoning.
    assert!(!caps.tool_use && !caps.reasoning && !caps.vision && !caps.embedding);
    let kv = caps.kv_bytes_per_token.expect("attention shape");
    assert_eq!(kv, 2 * 30 * 3 * 64 * 2);
    assert_eq!(
        caps.memory_estimate(2048),
        Some(caps.weight_bytes + kv * 2048)
    );
}

fn template_files(name: &str, model_type: &str) -> ModelFiles {
    let deps = std::env::var_os("ORCHARD_DEPS_DIR").expect("set by .cargo/config.toml");
    let path = std::path::Path::new(&deps)
        .join("templates")
        .join(name)
        .join("tokenizer_config.json");
    let text = std::fs::read_to_string(&path).expect("the npm tokenizer configs: run `make setup`");
    ModelFiles {
        config: serde_json::json!({"model_type": model_type}),
        tokenizer_config: Some(serde_json::from_str(&text).expect("json")),
        ..ModelFiles::default()
    }
}

#[test]
fn qwen3s_template_means_tools_and_reasoning_and_llama3s_neither() {
    let qwen = detect(&template_files("qwen3", "qwen3"), &["llama", "qwen3"]);
    assert!(qwen.supported && qwen.tool_use && qwen.reasoning);
    let llama = detect(&template_files("llama3", "llama"), &["llama", "qwen3"]);
    assert!(llama.supported && !llama.tool_use && !llama.reasoning);
}
