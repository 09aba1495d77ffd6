//! Import of llama-family GGUF files (llama.cpp's format) into MLX model folders
//! in the Hugging Face / mlx-community layout. MLX reads the tensors: F32 and
//! F16 as they are, Q4_0 and Q4_1 as affine 4-bit and Q8_0 as affine 8-bit, all
//! with groups of 32, exactly. This module renames them, undoes llama.cpp's
//! reordering of the query/key rows, and rebuilds config.json, tokenizer.json,
//! tokenizer_config.json (with the chat template) and generation_config.json
//! from the GGUF metadata.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use mlx_rs::io::{GgufFile, GgufMetadataValue};
use mlx_rs::{Array, Dtype, ops};
use serde_json::{Value, json};

use crate::error::{EngineError, Result};

/// What to do with the tensors on the way.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Dequantize every tensor to this dtype (float16, bfloat16, float32);
    /// `None` keeps the quantized tensors quantized, losslessly.
    pub dequantize_to: Option<Dtype>,
    /// Store quantization scales and biases in this dtype instead of as read
    /// (float32 makes MLX's CPU kernels much faster).
    pub scales_dtype: Option<Dtype>,
}

/// What an import wrote.
#[derive(Debug, Clone)]
pub struct ImportReport {
    pub out_dir: PathBuf,
    pub tensors: usize,
    /// Bits of the quantized layers, by layer prefix.
    pub quantized_layers: BTreeMap<String, i32>,
}

const GROUP_SIZE: i32 = 32;

/// Converts `gguf` into an MLX model folder at `out_dir` (which must not exist
/// yet, or be empty). The folder is written beside and renamed into place, so
/// a failed import leaves nothing half-written behind.
pub fn import(gguf: &Path, out_dir: &Path, options: &ImportOptions) -> Result<ImportReport> {
    if out_dir.exists()
        && std::fs::read_dir(out_dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(EngineError::file(
            out_dir,
            "already exists and is not empty; choose another folder",
        ));
    }
    let file = GgufFile::load(gguf)
        .map_err(|e| EngineError::invalid(gguf, format!("cannot read the GGUF file: {e}")))?;
    let meta = Metadata {
        file: &file,
        path: gguf,
    };
    let arch = meta.string("general.architecture")?;
    if arch != "llama" {
        return Err(EngineError::invalid(
            gguf,
            format!("architecture {arch:?} is not supported for import (supported: llama)"),
        ));
    }
    let hp = Hyper::read(&meta)?;
    let tokenizer = build_tokenizer(&meta)?;

    let arrays = file
        .arrays()
        .map_err(|e| EngineError::invalid(gguf, format!("cannot read the tensors: {e}")))?;
    let (tensors, quantized_layers) = convert_tensors(arrays, &hp, options, gguf)?;
    let tied = !tensors.contains_key("lm_head.weight") && !tensors.contains_key("lm_head.scales");

    let staging = staging_dir(out_dir)?;
    let written = write_folder(
        &staging,
        &tensors,
        &hp,
        tied,
        &quantized_layers,
        &tokenizer,
        &meta,
    );
    if let Err(e) = written.and_then(|()| {
        if out_dir.exists() {
            std::fs::remove_dir(out_dir)
                .map_err(|e| EngineError::file(out_dir, format!("cannot replace: {e}")))?;
        }
        std::fs::rename(&staging, out_dir)
            .map_err(|e| EngineError::file(out_dir, format!("cannot create: {e}")))
    }) {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    Ok(ImportReport {
        out_dir: out_dir.to_path_buf(),
        tensors: tensors.len(),
        quantized_layers,
    })
}

/// Typed access to the GGUF metadata, with errors that name the key.
struct Metadata<'a> {
    file: &'a GgufFile,
    path: &'a Path,
}

impl Metadata<'_> {
    fn get(&self, key: &str) -> Result<Option<GgufMetadataValue>> {
        self.file
            .get_metadata(key)
            .map_err(|e| EngineError::invalid(self.path, format!("metadata {key}: {e}")))
    }

    fn missing(&self, key: &str) -> EngineError {
        EngineError::invalid(self.path, format!("the GGUF metadata has no {key}"))
    }

    fn string(&self, key: &str) -> Result<String> {
        match self.get(key)? {
            Some(GgufMetadataValue::String(s)) => Ok(s),
            Some(_) => Err(EngineError::invalid(
                self.path,
                format!("metadata {key} is not a string"),
            )),
            None => Err(self.missing(key)),
        }
    }

    fn strings(&self, key: &str) -> Result<Vec<String>> {
        match self.get(key)? {
            Some(GgufMetadataValue::Strings(s)) => Ok(s),
            Some(_) => Err(EngineError::invalid(
                self.path,
                format!("metadata {key} is not a list of strings"),
            )),
            None => Err(self.missing(key)),
        }
    }

    fn numbers(&self, key: &str) -> Result<Option<Vec<f64>>> {
        match self.get(key)? {
            Some(GgufMetadataValue::Array(a)) => {
                let a = a.as_dtype(Dtype::Float64)?;
                a.eval()?;
                Ok(Some(a.as_slice::<f64>().to_vec()))
            }
            Some(_) => Err(EngineError::invalid(
                self.path,
                format!("metadata {key} is not a number"),
            )),
            None => Ok(None),
        }
    }

    fn number(&self, key: &str) -> Result<f64> {
        self.optional_number(key)?.ok_or_else(|| self.missing(key))
    }

    fn optional_number(&self, key: &str) -> Result<Option<f64>> {
        Ok(self.numbers(key)?.and_then(|v| v.first().copied()))
    }
}

/// The hyperparameters config.json needs.
struct Hyper {
    heads: i32,
    kv_heads: i32,
    hidden: i32,
    layers: i32,
    intermediate: i32,
    context: i32,
    eps: f64,
    rope_theta: f64,
    vocab: i32,
    bos: Option<i64>,
    eos: Option<i64>,
    pad: Option<i64>,
}

impl Hyper {
    fn read(meta: &Metadata) -> Result<Hyper> {
        let int = |key: &str| -> Result<i32> { Ok(meta.number(key)? as i32) };
        let id =
            |key: &str| -> Result<Option<i64>> { Ok(meta.optional_number(key)?.map(|v| v as i64)) };
        let heads = int("llama.attention.head_count")?;
        let hidden = int("llama.embedding_length")?;
        if heads <= 0 || hidden % heads != 0 {
            return Err(EngineError::invalid(
                meta.path,
                format!("{hidden} features cannot split into {heads} heads"),
            ));
        }
        let tokens = meta.strings("tokenizer.ggml.tokens")?.len() as i32;
        Ok(Hyper {
            heads,
            kv_heads: meta
                .optional_number("llama.attention.head_count_kv")?
                .map_or(heads, |v| v as i32),
            hidden,
            layers: int("llama.block_count")?,
            intermediate: int("llama.feed_forward_length")?,
            context: int("llama.context_length")?,
            eps: meta.number("llama.attention.layer_norm_rms_epsilon")?,
            rope_theta: meta
                .optional_number("llama.rope.freq_base")?
                .unwrap_or(10_000.0),
            vocab: meta
                .optional_number("llama.vocab_size")?
                .map_or(tokens, |v| v as i32),
            bos: id("tokenizer.ggml.bos_token_id")?,
            eos: id("tokenizer.ggml.eos_token_id")?,
            pad: id("tokenizer.ggml.padding_token_id")?,
        })
    }

    fn head_dim(&self) -> i32 {
        self.hidden / self.heads
    }
}

/// The Hugging Face name of a GGUF tensor (`blk.3.attn_q` -> `model.layers.3.self_attn.q_proj`).
fn hf_name(gguf: &str) -> Option<String> {
    Some(match gguf {
        "token_embd" => "model.embed_tokens".into(),
        "output_norm" => "model.norm".into(),
        "output" => "lm_head".into(),
        _ => {
            let rest = gguf.strip_prefix("blk.")?;
            let (layer, part) = rest.split_once('.')?;
            let part = match part {
                "attn_norm" => "input_layernorm",
                "ffn_norm" => "post_attention_layernorm",
                "attn_q" => "self_attn.q_proj",
                "attn_k" => "self_attn.k_proj",
                "attn_v" => "self_attn.v_proj",
                "attn_output" => "self_attn.o_proj",
                "ffn_gate" => "mlp.gate_proj",
                "ffn_up" => "mlp.up_proj",
                "ffn_down" => "mlp.down_proj",
                _ => return None,
            };
            format!("model.layers.{layer}.{part}")
        }
    })
}

/// llama.cpp stores the rows of Q and K with each head's two rotary halves
/// interleaved; put every head's rows back in Hugging Face order.
fn unpermute_rows(a: &Array, heads: i32) -> Result<Array> {
    let shape = a.shape().to_vec();
    let rows = shape[0];
    let mut split = vec![heads, rows / heads / 2, 2];
    split.extend_from_slice(&shape[1..]);
    Ok(a.reshape(&split)?.swap_axes(1, 2)?.reshape(&shape)?)
}

type Tensors = BTreeMap<String, Array>;

fn convert_tensors(
    arrays: HashMap<String, Array>,
    hp: &Hyper,
    options: &ImportOptions,
    path: &Path,
) -> Result<(Tensors, BTreeMap<String, i32>)> {
    let mut out = Tensors::new();
    let mut quantized = BTreeMap::new();
    // Group each layer's weight with its scales and biases.
    let mut layers: BTreeMap<String, HashMap<String, Array>> = BTreeMap::new();
    for (name, array) in arrays {
        let (base, suffix) = name
            .rsplit_once('.')
            .ok_or_else(|| EngineError::invalid(path, format!("unexpected tensor name {name}")))?;
        layers
            .entry(base.to_string())
            .or_default()
            .insert(suffix.to_string(), array);
    }
    for (base, mut parts) in layers {
        let hf = hf_name(&base)
            .ok_or_else(|| EngineError::invalid(path, format!("unknown tensor {base}")))?;
        let permute_heads = if base.ends_with(".attn_q") {
            Some(hp.heads)
        } else if base.ends_with(".attn_k") {
            Some(hp.kv_heads)
        } else {
            None
        };
        let fix = |a: Array| -> Result<Array> {
            match permute_heads {
                Some(heads) => unpermute_rows(&a, heads),
                None => Ok(a),
            }
        };
        let weight = parts
            .remove("weight")
            .ok_or_else(|| EngineError::invalid(path, format!("{base} has no weight")))?;
        match (parts.remove("scales"), parts.remove("biases")) {
            (Some(scales), Some(biases)) => {
                let cols_packed = weight.shape()[1];
                let groups = scales.shape()[1];
                let bits = cols_packed * 32 / (groups * GROUP_SIZE);
                if let Some(dtype) = options.dequantize_to {
                    let full = ops::dequantize(&weight, &scales, &biases, GROUP_SIZE, bits)?;
                    out.insert(format!("{hf}.weight"), fix(full)?.as_dtype(dtype)?);
                } else {
                    let cast = |a: Array| -> Result<Array> {
                        match options.scales_dtype {
                            Some(dtype) => Ok(a.as_dtype(dtype)?),
                            None => Ok(a),
                        }
                    };
                    out.insert(format!("{hf}.weight"), fix(weight)?);
                    out.insert(format!("{hf}.scales"), cast(fix(scales)?)?);
                    out.insert(format!("{hf}.biases"), cast(fix(biases)?)?);
                    quantized.insert(hf.clone(), bits);
                }
            }
            (None, None) => {
                let weight = match options.dequantize_to {
                    Some(dtype) => weight.as_dtype(dtype)?,
                    None => weight,
                };
                out.insert(format!("{hf}.weight"), fix(weight)?);
            }
            _ => {
                return Err(EngineError::invalid(
                    path,
                    format!("{base} has scales without biases or the reverse"),
                ));
            }
        }
    }
    Ok((out, quantized))
}

/// The tokenizer files, built from the GGUF vocabulary.
struct TokenizerFiles {
    tokenizer: Value,
    special: Vec<String>,
    tokens: Vec<String>,
    chat_template: Option<String>,
}

fn build_tokenizer(meta: &Metadata) -> Result<TokenizerFiles> {
    let model = meta.string("tokenizer.ggml.model")?;
    if model != "gpt2" {
        return Err(EngineError::invalid(
            meta.path,
            format!(
                "tokenizer model {model:?} is not supported for import (supported: gpt2 byte-level BPE)"
            ),
        ));
    }
    // The split before BPE; llama.cpp names the variants.
    let pre = meta.get("tokenizer.ggml.pre")?.and_then(|v| match v {
        GgufMetadataValue::String(s) => Some(s),
        _ => None,
    });
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    let pre_tokenizer = match pre.as_deref() {
        Some("smollm") => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true}, byte_level]}),
        None | Some("default" | "gpt-2" | "gpt2") => byte_level,
        Some(other) => {
            return Err(EngineError::invalid(
                meta.path,
                format!(
                    "pre-tokenizer {other:?} is not supported for import (supported: smollm, gpt2)"
                ),
            ));
        }
    };
    let tokens = meta.strings("tokenizer.ggml.tokens")?;
    let merges = meta.strings("tokenizer.ggml.merges")?;
    let types = meta
        .numbers("tokenizer.ggml.token_type")?
        .unwrap_or_default();
    // Types 3 (control) and 4 (user-defined) are the special tokens.
    let special: Vec<(usize, String)> = types
        .iter()
        .enumerate()
        .filter(|(_, t)| **t == 3.0 || **t == 4.0)
        .filter_map(|(i, _)| tokens.get(i).map(|t| (i, t.clone())))
        .collect();
    let vocab: serde_json::Map<String, Value> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), json!(i)))
        .collect();
    let merges: Vec<Value> = merges
        .iter()
        .map(|m| {
            let (a, b) = m.split_once(' ').unwrap_or((m.as_str(), ""));
            json!([a, b])
        })
        .collect();
    let added: Vec<Value> = special
        .iter()
        .map(|(id, content)| {
            json!({"id": id, "content": content, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let tokenizer = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "ignore_merges": false, "vocab": vocab, "merges": merges},
    });
    let chat_template = meta.get("tokenizer.chat_template")?.and_then(|v| match v {
        GgufMetadataValue::String(s) => Some(s),
        _ => None,
    });
    Ok(TokenizerFiles {
        tokenizer,
        special: special.into_iter().map(|(_, t)| t).collect(),
        tokens,
        chat_template,
    })
}

fn staging_dir(out_dir: &Path) -> Result<PathBuf> {
    let parent = match out_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)
        .map_err(|e| EngineError::file(&parent, format!("cannot create: {e}")))?;
    let name = out_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let staging = parent.join(format!(".{name}.importing-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir(&staging)
        .map_err(|e| EngineError::file(&staging, format!("cannot create: {e}")))?;
    Ok(staging)
}

fn write_json(path: &Path, value: &Value) -> Result<()> {
    let text =
        serde_json::to_string_pretty(value).map_err(|e| EngineError::Exception(e.to_string()))?;
    std::fs::write(path, text).map_err(|e| EngineError::file(path, format!("cannot write: {e}")))
}

fn write_folder(
    dir: &Path,
    tensors: &Tensors,
    hp: &Hyper,
    tied: bool,
    quantized: &BTreeMap<String, i32>,
    tok: &TokenizerFiles,
    meta: &Metadata,
) -> Result<()> {
    let weights = dir.join("model.safetensors");
    let metadata = HashMap::from([("format".to_string(), "mlx".to_string())]);
    Array::save_safetensors(
        tensors.iter().map(|(n, a)| (n.as_str(), a)),
        &metadata,
        &weights,
    )
    .map_err(|e| EngineError::file(&weights, format!("cannot write the weights: {e}")))?;

    let mut config = json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hp.hidden,
        "intermediate_size": hp.intermediate,
        "num_attention_heads": hp.heads,
        "num_key_value_heads": hp.kv_heads,
        "num_hidden_layers": hp.layers,
        "head_dim": hp.head_dim(),
        // The shortest decimal of the stored float32 (1e-5, not 9.99999974e-6).
        "rms_norm_eps": (hp.eps as f32).to_string().parse::<f64>().unwrap_or(hp.eps),
        "rope_theta": hp.rope_theta,
        "rope_scaling": null,
        "max_position_embeddings": hp.context,
        "vocab_size": hp.vocab,
        "tie_word_embeddings": tied,
        "bos_token_id": hp.bos,
        "eos_token_id": hp.eos,
        "pad_token_id": hp.pad,
    });
    // The most common width is the default; the others are per-layer overrides.
    let mut counts: BTreeMap<i32, usize> = BTreeMap::new();
    for bits in quantized.values() {
        *counts.entry(*bits).or_default() += 1;
    }
    if let Some((&default_bits, _)) = counts.iter().max_by_key(|(_, n)| **n) {
        let mut block = json!({"group_size": GROUP_SIZE, "bits": default_bits, "mode": "affine"});
        for (layer, bits) in quantized.iter().filter(|(_, b)| **b != default_bits) {
            block[layer] = json!({"group_size": GROUP_SIZE, "bits": bits});
        }
        config["quantization"] = block.clone();
        config["quantization_config"] = block;
    }
    write_json(&dir.join("config.json"), &config)?;
    write_json(&dir.join("tokenizer.json"), &tok.tokenizer)?;

    let token = |id: Option<i64>| id.and_then(|i| tok.tokens.get(i as usize)).cloned();
    let mut tokenizer_config = json!({
        "tokenizer_class": "GPT2Tokenizer",
        "bos_token": token(hp.bos),
        "eos_token": token(hp.eos),
        "pad_token": token(hp.pad),
        "unk_token": token(meta.optional_number("tokenizer.ggml.unknown_token_id")?.map(|v| v as i64)),
        "additional_special_tokens": tok.special,
        "add_bos_token": false,
        "add_prefix_space": false,
        "clean_up_tokenization_spaces": false,
        "model_max_length": hp.context,
    });
    if let Some(template) = &tok.chat_template {
        tokenizer_config["chat_template"] = json!(template);
    }
    write_json(&dir.join("tokenizer_config.json"), &tokenizer_config)?;
    write_json(
        &dir.join("generation_config.json"),
        &json!({"bos_token_id": hp.bos, "eos_token_id": hp.eos, "pad_token_id": hp.pad}),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gguf_names_map_to_hugging_face_names() {
        assert_eq!(
            hf_name("blk.12.attn_q").as_deref(),
            Some("model.layers.12.self_attn.q_proj")
        );
        assert_eq!(
            hf_name("blk.0.ffn_down").as_deref(),
            Some("model.layers.0.mlp.down_proj")
        );
        assert_eq!(hf_name("token_embd").as_deref(), Some("model.embed_tokens"));
        assert_eq!(hf_name("blk.0.attn_rot"), None);
    }

    #[test]
    fn unpermuting_restores_each_heads_rotary_halves() {
        // One head of 4 rows, stored interleaved as llama.cpp does: 0, 2, 1, 3.
        let stored = Array::from_slice(&[0.0f32, 2.0, 1.0, 3.0], &[4, 1]);
        let rows = unpermute_rows(&stored, 1).expect("unpermute");
        rows.eval().expect("eval");
        assert_eq!(rows.as_slice::<f32>(), [0.0, 1.0, 2.0, 3.0]);
    }
}
