//! Shared by the engine's tests: small random-weight models of each
//! architecture, written to disk, and mlx-lm's answers for them.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use mlx_rs::{Array, Dtype};
use serde_json::{Value, json};

pub const HIDDEN: i32 = 64;
pub const INTERMEDIATE: i32 = 128;
pub const HEADS: i32 = 4;
pub const KV_HEADS: i32 = 2;
/// Small, so random logits are far apart and argmax is stable.
pub const VOCAB: i32 = 512;
pub const GROUP: i32 = 64;
pub const PROMPT: [u32; 12] = [1, 17, 300, 45, 9, 511, 260, 3, 77, 128, 400, 12];
pub const GREEDY: usize = 24;

pub fn deps_dir() -> PathBuf {
    PathBuf::from(
        std::env::var_os("ORCHARD_DEPS_DIR")
            .expect("ORCHARD_DEPS_DIR is unset: run after `make setup`"),
    )
}

/// Deterministic values in [-scale, scale).
pub fn random(len: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut state = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0) * scale
        })
        .collect()
}

/// One architecture's config, beyond the sizes every test model shares.
pub struct Arch {
    pub name: &'static str,
    config: Value,
    head_dim: i32,
    qkv_bias: bool,
    o_bias: bool,
    qk_norm: bool,
    tied: bool,
    /// Gemma's extra norms around the MLP.
    feedforward_norms: bool,
    /// Mixture-of-experts layers, if any.
    experts: Option<Experts>,
    /// A learned attention sink logit per head (gpt-oss).
    sinks: bool,
}

/// The sparse layers of a test model.
#[derive(Clone, Copy)]
pub struct Experts {
    count: i32,
    /// Each expert's hidden size.
    hidden: i32,
    /// The router's name under `mlp` and the stacked experts'.
    router: &'static str,
    stack: &'static str,
    /// Biases on the router and the experts.
    bias: bool,
    /// Every layer is sparse; otherwise layer 0 is, and layer 1 is dense.
    every_layer: bool,
}

pub fn architectures() -> Vec<Arch> {
    vec![
        Arch {
            name: "llama",
            config: json!({
                "model_type": "llama", "attention_bias": true, "tie_word_embeddings": false,
                "rope_theta": 500000.0,
                "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                  "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
            }),
            head_dim: 16,
            qkv_bias: true,
            o_bias: true,
            qk_norm: false,
            tied: false,
            feedforward_norms: false,
            experts: None,
            sinks: false,
        },
        Arch {
            name: "mistral",
            config: json!({"model_type": "mistral", "tie_word_embeddings": false, "rope_theta": 1000000.0}),
            head_dim: 16,
            qkv_bias: false,
            o_bias: false,
            qk_norm: false,
            tied: false,
            feedforward_norms: false,
            experts: None,
            sinks: false,
        },
        Arch {
            name: "qwen2",
            config: json!({"model_type": "qwen2", "tie_word_embeddings": true, "rope_theta": 1000000.0}),
            head_dim: 16,
            qkv_bias: true,
            o_bias: false,
            qk_norm: false,
            tied: true,
            feedforward_norms: false,
            experts: None,
            sinks: false,
        },
        Arch {
            name: "qwen3",
            // A head size other than hidden / heads, as Qwen3 models have.
            config: json!({"model_type": "qwen3", "tie_word_embeddings": true, "rope_theta": 1000000.0, "head_dim": 32}),
            head_dim: 32,
            qkv_bias: false,
            o_bias: false,
            qk_norm: true,
            tied: true,
            feedforward_norms: false,
            experts: None,
            sinks: false,
        },
        Arch {
            name: "gemma3_text",
            // A window shorter than the test sequence, so the sliding layer
            // really slides; layer 0 slides, layer 1 attends globally.
            config: json!({
                "model_type": "gemma3_text", "head_dim": 16, "query_pre_attn_scalar": 16,
                "sliding_window": 8, "sliding_window_pattern": 2,
                "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0, "rms_norm_eps": 1e-6,
            }),
            head_dim: 16,
            qkv_bias: false,
            o_bias: false,
            qk_norm: true,
            tied: true,
            feedforward_norms: true,
            experts: None,
            sinks: false,
        },
        Arch {
            name: "qwen3_moe",
            // 12 prompt tokens x 6 experts each reach mlx-lm's threshold (64)
            // for sorting tokens by expert; one token at a time does not, so
            // both paths are compared. Layer 1 stays dense.
            config: json!({
                "model_type": "qwen3_moe", "tie_word_embeddings": false, "rope_theta": 1000000.0,
                "head_dim": 32, "num_experts": 16, "num_experts_per_tok": 6,
                "moe_intermediate_size": 64, "decoder_sparse_step": 1, "mlp_only_layers": [1],
                "norm_topk_prob": true,
            }),
            head_dim: 32,
            qkv_bias: false,
            o_bias: false,
            qk_norm: true,
            tied: false,
            feedforward_norms: false,
            experts: Some(Experts {
                count: 16,
                hidden: 64,
                router: "gate",
                stack: "switch_mlp",
                bias: false,
                every_layer: false,
            }),
            sinks: false,
        },
        Arch {
            name: "gpt_oss",
            // Layer 0 slides over a window shorter than the prompt, layer 1
            // attends to all; YaRN rope; 12 tokens x 6 experts sort by expert.
            config: json!({
                "model_type": "gpt_oss", "head_dim": 16, "num_local_experts": 16,
                "num_experts_per_tok": 6, "intermediate_size": 64, "sliding_window": 8,
                "layer_types": ["sliding_attention", "full_attention"], "rope_theta": 150000.0,
                "rope_scaling": {"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0,
                                 "beta_slow": 1.0, "truncate": false,
                                 "original_max_position_embeddings": 64},
            }),
            head_dim: 16,
            qkv_bias: true,
            o_bias: true,
            qk_norm: false,
            tied: false,
            feedforward_norms: false,
            experts: Some(Experts {
                count: 16,
                hidden: 64,
                router: "router",
                stack: "experts",
                bias: true,
                every_layer: true,
            }),
            sinks: true,
        },
    ]
}

fn tensors(arch: &Arch) -> Vec<(String, Vec<i32>)> {
    let (d, hd) = (HIDDEN, arch.head_dim);
    let mut list = vec![("model.embed_tokens.weight".to_string(), vec![VOCAB, d])];
    for i in 0..2 {
        let p = format!("model.layers.{i}");
        let attn = [
            ("q_proj", HEADS * hd, d, arch.qkv_bias),
            ("k_proj", KV_HEADS * hd, d, arch.qkv_bias),
            ("v_proj", KV_HEADS * hd, d, arch.qkv_bias),
            ("o_proj", d, HEADS * hd, arch.o_bias),
        ];
        for (name, out, inp, bias) in attn {
            list.push((format!("{p}.self_attn.{name}.weight"), vec![out, inp]));
            if bias {
                list.push((format!("{p}.self_attn.{name}.bias"), vec![out]));
            }
        }
        if arch.qk_norm {
            list.push((format!("{p}.self_attn.q_norm.weight"), vec![hd]));
            list.push((format!("{p}.self_attn.k_norm.weight"), vec![hd]));
        }
        if arch.sinks {
            list.push((format!("{p}.self_attn.sinks"), vec![HEADS]));
        }
        match arch.experts {
            Some(e) if i == 0 || e.every_layer => {
                list.push((format!("{p}.mlp.{}.weight", e.router), vec![e.count, d]));
                if e.bias {
                    list.push((format!("{p}.mlp.{}.bias", e.router), vec![e.count]));
                }
                for (name, out, inp) in [
                    ("gate_proj", e.hidden, d),
                    ("up_proj", e.hidden, d),
                    ("down_proj", d, e.hidden),
                ] {
                    let at = format!("{p}.mlp.{}.{name}", e.stack);
                    list.push((format!("{at}.weight"), vec![e.count, out, inp]));
                    if e.bias {
                        list.push((format!("{at}.bias"), vec![e.count, out]));
                    }
                }
            }
            _ => {
                for (name, out, inp) in [
                    ("gate_proj", INTERMEDIATE, d),
                    ("up_proj", INTERMEDIATE, d),
                    ("down_proj", d, INTERMEDIATE),
                ] {
                    list.push((format!("{p}.mlp.{name}.weight"), vec![out, inp]));
                }
            }
        }
        list.push((format!("{p}.input_layernorm.weight"), vec![d]));
        list.push((format!("{p}.post_attention_layernorm.weight"), vec![d]));
        if arch.feedforward_norms {
            list.push((format!("{p}.pre_feedforward_layernorm.weight"), vec![d]));
            list.push((format!("{p}.post_feedforward_layernorm.weight"), vec![d]));
        }
    }
    list.push(("model.norm.weight".to_string(), vec![d]));
    if !arch.tied {
        list.push(("lm_head.weight".to_string(), vec![VOCAB, d]));
    }
    list
}

/// Writes config, weights and (from the SmolLM2 fixture) the tokenizer.
/// How a test model is stored.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Affine quantization (group size, bits) of every matrix, or none.
    pub quantization: Option<(i32, i32)>,
    /// The dtype of the unquantized tensors.
    pub dtype: Dtype,
    /// Split the weights over this many files with an index (1 = a single file).
    pub shards: usize,
    /// Experts as Hugging Face stores them, one tensor each
    /// (`mlp.experts.E.NAME.weight`), instead of mlx-community's stacks.
    pub per_expert: bool,
    /// With `quantization`, the experts' stacked matrices in MXFP4 (as
    /// gpt-oss ships them) and the rest affine.
    pub mxfp4_experts: bool,
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            quantization: None,
            dtype: Dtype::Float32,
            shards: 1,
            per_expert: false,
            mxfp4_experts: false,
        }
    }
}

/// Writes config, weights (dense float32, or 4-bit) and the tokenizer.
pub fn write_model(dir: &Path, arch: &Arch, quantized: bool) {
    let layout = Layout {
        quantization: quantized.then_some((GROUP, 4)),
        ..Layout::default()
    };
    write_model_with(dir, arch, &layout);
}

/// Writes config, weights in `layout` and (from the SmolLM2 fixture) the tokenizer.
pub fn write_model_with(dir: &Path, arch: &Arch, layout: &Layout) {
    std::fs::create_dir_all(dir).expect("model dir");
    let mut config = json!({
        "hidden_size": HIDDEN, "num_hidden_layers": 2, "intermediate_size": INTERMEDIATE,
        "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS, "rms_norm_eps": 1e-5,
        "vocab_size": VOCAB, "max_position_embeddings": 4096,
    });
    for (key, value) in arch.config.as_object().expect("object") {
        config[key] = value.clone();
    }
    if let Some((group, bits)) = layout.quantization {
        config["quantization"] = json!({"group_size": group, "bits": bits});
    }
    std::fs::write(dir.join("config.json"), config.to_string()).expect("config");

    let mut arrays: Vec<(String, Array)> = Vec::new();
    for (i, (name, shape)) in tensors(arch).into_iter().enumerate() {
        let len = shape.iter().product::<i32>() as usize;
        let is_norm = shape.len() == 1 && name.contains("norm");
        let values = if is_norm {
            random(len, i as u64, 0.2).iter().map(|v| 1.0 + v).collect()
        } else {
            random(len, i as u64, 0.35)
        };
        let array = Array::from_slice(&values, &shape)
            .as_dtype(layout.dtype)
            .expect("cast");
        let mut parts = vec![(name.clone(), array)];
        let matrix = name.ends_with(".weight") && matches!(shape.len(), 2 | 3);
        if let (Some((group, bits)), true) = (layout.quantization, matrix) {
            let prefix = name.trim_end_matches(".weight");
            let mxfp4 = layout.mxfp4_experts && shape.len() == 3;
            let q = orchard_engine::quant::Quantization {
                group_size: if mxfp4 { 32 } else { group },
                bits: if mxfp4 { 4 } else { bits },
                mode: if mxfp4 {
                    orchard_engine::quant::QuantMode::Mxfp4
                } else {
                    orchard_engine::quant::QuantMode::Affine
                },
            };
            let (w, scales, biases) =
                orchard_engine::quant::quantize(&parts[0].1, q).expect("quantize");
            parts = vec![(name.clone(), w), (format!("{prefix}.scales"), scales)];
            if let Some(biases) = biases {
                parts.push((format!("{prefix}.biases"), biases));
            }
        }
        for (part, tensor) in parts {
            if layout.per_expert && part.contains(".switch_mlp.") {
                // One tensor per expert: mlp.experts.E.NAME.{weight,scales,biases}.
                for (e, one) in tensor
                    .split_equal(shape[0], 0)
                    .expect("experts")
                    .into_iter()
                    .enumerate()
                {
                    let one = one.squeeze_axes(&[0]).expect("squeeze");
                    arrays.push((part.replace(".switch_mlp.", &format!(".experts.{e}.")), one));
                }
            } else {
                arrays.push((part, tensor));
            }
        }
    }
    let metadata = HashMap::from([("format".to_string(), "mlx".to_string())]);
    if layout.shards <= 1 {
        Array::save_safetensors(
            arrays.iter().map(|(n, a)| (n.as_str(), a)),
            &metadata,
            dir.join("model.safetensors"),
        )
        .expect("save weights");
    } else {
        let per_shard = arrays.len().div_ceil(layout.shards);
        let mut weight_map = serde_json::Map::new();
        for (i, chunk) in arrays.chunks(per_shard).enumerate() {
            let file = format!("model-{:05}-of-{:05}.safetensors", i + 1, layout.shards);
            Array::save_safetensors(
                chunk.iter().map(|(n, a)| (n.as_str(), a)),
                &metadata,
                dir.join(&file),
            )
            .expect("save shard");
            for (name, _) in chunk {
                weight_map.insert(name.clone(), json!(file));
            }
        }
        let index = json!({"metadata": {}, "weight_map": weight_map});
        std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).expect("index");
    }
    let fixture = deps_dir().join("models/SmolLM2-135M-Instruct-4bit");
    for file in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(fixture.join(file), dir.join(file)).expect("tokenizer");
    }
}

/// Writes a random-weight model of `kind` built by mlx-lm's own classes
/// (`scripts/random_model.py` with `args`) to `dir`.
pub fn random_model(dir: &Path, kind: &str, args: &[&str]) {
    let output = Command::new(deps_dir().join("venv/bin/python"))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/random_model.py"))
        .arg(dir)
        .args(["--type", kind])
        .args(args)
        .output()
        .expect("run random_model.py");
    assert!(
        output.status.success(),
        "random_model.py: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The hybrid test models' shape: hidden size 128, 4 layers (three gated
/// DeltaNet, one attention), 8 experts of which 2 per token, float32
/// weights; `bits` "0" leaves them unquantized.
pub fn hybrid_args(bits: &'static str) -> Vec<&'static str> {
    vec![
        "--hidden",
        "128",
        "--layers",
        "4",
        "--experts",
        "8",
        "--experts-per-token",
        "2",
        "--expert-hidden",
        "64",
        "--dtype",
        "float32",
        "--bits",
        bits,
    ]
}

/// mlx-lm's last-position logits and greedy tokens for the test prompt.
pub fn reference(dir: &Path) -> (Vec<f32>, Vec<u32>) {
    let request = json!({
        "model": dir,
        "cases": [{"name": "case", "tokens": PROMPT, "greedy_tokens": GREEDY}],
    });
    let request_path = dir.join("request.json");
    std::fs::write(&request_path, request.to_string()).expect("request");
    let out = dir.join("reference");
    let output = Command::new(deps_dir().join("venv/bin/python"))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/reference.py"))
        .arg(&request_path)
        .arg(&out)
        .output()
        .expect("run reference.py");
    assert!(
        output.status.success(),
        "reference.py: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: Value =
        serde_json::from_slice(&std::fs::read(out.join("result.json")).expect("result"))
            .expect("json");
    let logits = std::fs::read(out.join("case.logits.f32"))
        .expect("logits")
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let greedy = result["cases"]["case"]["greedy"]
        .as_array()
        .expect("greedy")
        .iter()
        .map(|v| v.as_u64().expect("id") as u32)
        .collect();
    (logits, greedy)
}

/// The architecture of that name, from [`architectures`].
pub fn arch(name: &str) -> Arch {
    architectures()
        .into_iter()
        .find(|a| a.name == name)
        .expect("a known architecture")
}

/// Loads the test model in `dir` with Orchard and with mlx-lm and requires
/// their last-position logits within 1e-3 and the same greedy tokens.
pub fn assert_matches_mlx_lm(dir: &Path, label: &str) {
    let model = orchard_engine::Model::load(dir).expect("Orchard loads the test model");
    let (expected_logits, expected_greedy) = reference(dir);
    let logits = model
        .last_logits(&PROMPT, &mut model.new_cache())
        .expect("logits");
    assert_eq!(
        logits.len(),
        expected_logits.len(),
        "{label}: vocabulary size"
    );
    assert!(
        logits.iter().chain(&expected_logits).all(|v| v.is_finite()),
        "{label}: logits not finite"
    );
    let diff = logits
        .iter()
        .zip(&expected_logits)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    eprintln!("{label}: max |logit difference| {diff:e}");
    assert!(diff <= 1e-3, "{label}: logits differ by {diff}");
    let options = orchard_engine::GenerateOptions {
        max_tokens: GREEDY,
        ..Default::default()
    };
    let output = orchard_engine::generate(&model, &PROMPT, options).expect("generate");
    assert_eq!(output.tokens, expected_greedy, "{label}: greedy tokens");
}
