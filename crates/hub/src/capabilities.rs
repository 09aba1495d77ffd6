//! What a model can do, read from its small files: `config.json`,
//! `tokenizer_config.json` (or `chat_template.jinja`) and the README's front
//! matter. The same reading serves a local folder and, once fetched, a remote
//! model's files.

use std::path::Path;

use orchard_template_facts::ChatTemplates;
use serde::Serialize;
use serde_json::Value;

use crate::{HubError, Result};

/// How the weights are quantized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Quantization {
    pub bits: u32,
    pub group_size: u32,
}

/// A model's capabilities and sizes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Capabilities {
    pub model_type: Option<String>,
    /// Whether Orchard's engine implements `model_type`.
    pub supported: bool,
    /// Estimated from the config's dimensions (None when they are missing).
    pub parameters: Option<u64>,
    pub quantization: Option<Quantization>,
    /// Bytes of weight files.
    pub weight_bytes: u64,
    pub context_length: Option<u64>,
    pub vision: bool,
    pub audio: bool,
    pub tool_use: bool,
    pub reasoning: bool,
    pub embedding: bool,
    /// Bytes of keys and values per token of context (float16), when the
    /// config gives the attention shape.
    pub kv_bytes_per_token: Option<u64>,
}

impl Capabilities {
    /// Memory to run the model with `context` tokens: weights plus the KV cache.
    pub fn memory_estimate(&self, context: u64) -> Option<u64> {
        Some(self.weight_bytes + self.kv_bytes_per_token? * context)
    }
}

/// The inputs of [`detect`]: the parsed small files and the file list.
#[derive(Debug, Default, Clone)]
pub struct ModelFiles {
    pub config: Value,
    pub tokenizer_config: Option<Value>,
    /// `chat_template.jinja`, which wins over the tokenizer config's template.
    pub chat_template: Option<String>,
    pub readme: Option<String>,
    /// File names in the repo or folder.
    pub files: Vec<String>,
    pub weight_bytes: u64,
    /// Tags and pipeline the Hub lists for the repo, read like the README's
    /// front matter (a search result has these but no README).
    pub hub_tags: Vec<String>,
    pub hub_pipeline_tag: Option<String>,
}

impl ModelFiles {
    /// What a Hub search listing tells of a model: the digest of its config
    /// (which carries the tokenizer config and so the chat template), its
    /// tags, pipeline and size.
    pub fn from_listing(
        config: Option<&Value>,
        tags: &[String],
        pipeline_tag: Option<&str>,
        weight_bytes: u64,
    ) -> ModelFiles {
        let config = config.cloned().unwrap_or(Value::Null);
        ModelFiles {
            tokenizer_config: config.get("tokenizer_config").cloned(),
            config,
            hub_tags: tags.to_vec(),
            hub_pipeline_tag: pipeline_tag.map(str::to_string),
            weight_bytes,
            ..ModelFiles::default()
        }
    }

    /// Reads a model folder. Only `config.json` is required.
    pub fn read_dir(dir: &Path) -> Result<ModelFiles> {
        let json = |name: &str, required: bool| -> Result<Option<Value>> {
            let path = dir.join(name);
            match std::fs::read_to_string(&path) {
                Ok(text) => serde_json::from_str(&text)
                    .map(Some)
                    .map_err(|e| HubError::File {
                        path: path.display().to_string(),
                        message: format!("not valid JSON: {e}"),
                    }),
                Err(_) if !required => Ok(None),
                Err(e) => Err(HubError::File {
                    path: path.display().to_string(),
                    message: format!("cannot read: {e}"),
                }),
            }
        };
        let config = json("config.json", true)?.unwrap_or(Value::Null);
        let tokenizer_config = json("tokenizer_config.json", false)?;
        let text = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
        let mut files = Vec::new();
        let mut weight_bytes = 0;
        for entry in std::fs::read_dir(dir).map_err(|e| HubError::File {
            path: dir.display().to_string(),
            message: format!("cannot list: {e}"),
        })? {
            let Ok(entry) = entry else { continue };
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_weight_file(&name) {
                weight_bytes += std::fs::metadata(entry.path())
                    .map(|m| m.len())
                    .unwrap_or(0);
            }
            files.push(name);
        }
        files.sort();
        Ok(ModelFiles {
            config,
            tokenizer_config,
            chat_template: text("chat_template.jinja"),
            readme: text("README.md"),
            files,
            weight_bytes,
            ..ModelFiles::default()
        })
    }
}

/// Whether a file holds weights (counted in the on-disk size).
pub fn is_weight_file(name: &str) -> bool {
    name.ends_with(".safetensors") || name.ends_with(".gguf") || name.ends_with(".bin")
}

/// Reads the capabilities; `supported` lists the `model_type`s the engine runs.
pub fn detect(files: &ModelFiles, supported: &[&str]) -> Capabilities {
    let config = &files.config;
    // Multimodal configs keep the language model's dimensions in `text_config`.
    let text = config
        .get("text_config")
        .filter(|v| v.is_object())
        .unwrap_or(config);
    let number = |v: &Value, key: &str| v.get(key).and_then(Value::as_u64);
    let model_type = config
        .get("model_type")
        .and_then(Value::as_str)
        .map(str::to_string);
    // The same reading of the template as the engine's and the server's.
    let template =
        ChatTemplates::from_files(files.chat_template.clone(), files.tokenizer_config.as_ref())
            .facts();
    let mut front = front_matter(files.readme.as_deref().unwrap_or(""));
    front.tags.extend(files.hub_tags.iter().cloned());
    let pipeline = front
        .pipeline_tag
        .as_deref()
        .or(files.hub_pipeline_tag.as_deref())
        .unwrap_or("");
    let tagged = |names: &[&str]| front.tags.iter().any(|t| names.contains(&t.as_str()));
    let has_file = |pred: &dyn Fn(&str) -> bool| files.files.iter().any(|f| pred(f));

    let quantization = config
        .get("quantization")
        .or_else(|| config.get("quantization_config"))
        .and_then(|q| {
            Some(Quantization {
                bits: u32::try_from(q.get("bits")?.as_u64()?).ok()?,
                group_size: u32::try_from(q.get("group_size")?.as_u64()?).ok()?,
            })
        });

    let hidden = number(text, "hidden_size");
    let layers = number(text, "num_hidden_layers");
    let heads = number(text, "num_attention_heads");
    let kv_heads = number(text, "num_key_value_heads").or(heads);
    let head_dim = number(text, "head_dim").or_else(|| Some(hidden? / heads.filter(|h| *h > 0)?));
    let kv_bytes_per_token = (|| Some(2 * layers? * kv_heads? * head_dim? * 2))();
    let parameters = (|| {
        let (h, l, n, kv, d) = (hidden?, layers?, heads?, kv_heads?, head_dim?);
        let vocab = number(text, "vocab_size")?;
        let intermediate = number(text, "intermediate_size").unwrap_or(4 * h);
        let tied = text
            .get("tie_word_embeddings")
            .or_else(|| config.get("tie_word_embeddings"))
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let embeddings = vocab * h * if tied { 1 } else { 2 };
        let attention = h * n * d * 2 + h * kv * d * 2;
        let mlp = 3 * h * intermediate;
        Some(embeddings + l * (attention + mlp + 2 * h) + h)
    })();

    let architectures: Vec<String> = config
        .get("architectures")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_lowercase)
                .collect()
        })
        .unwrap_or_default();
    Capabilities {
        supported: model_type
            .as_deref()
            .is_some_and(|t| supported.contains(&t)),
        model_type,
        parameters,
        quantization,
        weight_bytes: files.weight_bytes,
        context_length: number(text, "max_position_embeddings")
            .or_else(|| number(config, "max_position_embeddings")),
        vision: config.get("vision_config").is_some()
            || has_file(&|f| f == "preprocessor_config.json" || f == "processor_config.json")
            || pipeline == "image-text-to-text"
            || tagged(&["vision", "image-text-to-text"]),
        audio: config.get("audio_config").is_some()
            || pipeline.contains("speech")
            || pipeline.starts_with("audio")
            || tagged(&["audio", "speech"]),
        tool_use: template.tools || tagged(&["tool-use", "function-calling", "tools"]),
        reasoning: template.thinking || tagged(&["reasoning", "thinking"]),
        embedding: matches!(pipeline, "feature-extraction" | "sentence-similarity")
            || tagged(&["sentence-transformers", "embeddings"])
            // sentence-transformers' description of its modules (Qwen3-Embedding).
            || has_file(&|f| f == "modules.json")
            || architectures.iter().any(|a| {
                a.ends_with("model")
                    && !a.contains("causallm")
                    && !a.contains("conditionalgeneration")
            }),
        kv_bytes_per_token,
    }
}

/// The fields of a README's YAML front matter that capabilities use.
#[derive(Debug, Default, PartialEq)]
struct FrontMatter {
    tags: Vec<String>,
    pipeline_tag: Option<String>,
}

/// Reads `tags` (block or inline list) and `pipeline_tag` from the `---` block
/// at the top of a README; anything else in it is ignored.
fn front_matter(readme: &str) -> FrontMatter {
    let mut out = FrontMatter::default();
    let mut lines = readme.lines();
    if lines.next().map(str::trim) != Some("---") {
        return out;
    }
    let mut in_tags = false;
    for line in lines {
        if line.trim() == "---" {
            break;
        }
        let unquote = |s: &str| s.trim().trim_matches(|c| c == '"' || c == '\'').to_string();
        if in_tags {
            if let Some(item) = line.trim_start().strip_prefix("- ") {
                out.tags.push(unquote(item));
                continue;
            }
            in_tags = false;
        }
        if let Some(value) = line.strip_prefix("tags:") {
            let value = value.trim();
            if let Some(list) = value.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
                out.tags
                    .extend(list.split(',').map(unquote).filter(|t| !t.is_empty()));
            } else if value.is_empty() {
                in_tags = true;
            } else {
                out.tags.push(unquote(value));
            }
        } else if let Some(value) = line.strip_prefix("pipeline_tag:") {
            out.pipeline_tag = Some(unquote(value));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ENGINE: &[&str] = &["llama", "qwen3"];

    #[test]
    fn front_matter_tags_in_both_list_styles() {
        let block = "---\nlicense: mit\ntags:\n- mlx\n- 'tool-use'\npipeline_tag: text-generation\n---\n# Model";
        assert_eq!(
            front_matter(block),
            FrontMatter {
                tags: vec!["mlx".into(), "tool-use".into()],
                pipeline_tag: Some("text-generation".into()),
            }
        );
        assert_eq!(front_matter("---\ntags: [a, \"b\"]\n---").tags, ["a", "b"]);
        assert_eq!(
            front_matter("# no front matter\ntags: [x]"),
            FrontMatter::default()
        );
    }

    #[test]
    fn a_vision_config_is_vision_and_uses_its_text_config() {
        let files = ModelFiles {
            config: json!({
                "model_type": "qwen2_5_vl",
                "vision_config": {"depth": 32},
                "text_config": {"hidden_size": 2048, "num_hidden_layers": 36, "num_attention_heads": 16,
                                "num_key_value_heads": 2, "vocab_size": 151936, "intermediate_size": 11008,
                                "max_position_embeddings": 128000},
                "quantization": {"bits": 4, "group_size": 64},
            }),
            files: vec!["config.json".into(), "preprocessor_config.json".into()],
            weight_bytes: 2_000_000_000,
            ..ModelFiles::default()
        };
        let caps = detect(&files, ENGINE);
        assert!(caps.vision && !caps.supported && !caps.audio);
        assert_eq!(caps.context_length, Some(128000));
        assert_eq!(
            caps.quantization,
            Some(Quantization {
                bits: 4,
                group_size: 64
            })
        );
        // 2 (K and V) x 36 layers x 2 heads x 128 dims x 2 bytes.
        assert_eq!(caps.kv_bytes_per_token, Some(2 * 36 * 2 * 128 * 2));
        assert_eq!(caps.memory_estimate(1000), Some(2_000_000_000 + 36_864_000));
        let params = caps.parameters.expect("estimated");
        assert!((2_500_000_000..3_500_000_000).contains(&params), "{params}");
    }

    #[test]
    fn templates_and_tags_give_tools_and_reasoning() {
        let files = ModelFiles {
            config: json!({"model_type": "qwen3"}),
            tokenizer_config: Some(json!({"chat_template": "{% if tools %}...{% endif %}<think>"})),
            ..ModelFiles::default()
        };
        let caps = detect(&files, ENGINE);
        assert!(caps.supported && caps.tool_use && caps.reasoning && !caps.vision);
        assert_eq!(caps.parameters, None, "no dimensions, no estimate");

        let embedding = ModelFiles {
            config: json!({"model_type": "bert", "architectures": ["BertModel"]}),
            readme: Some("---\npipeline_tag: feature-extraction\n---".into()),
            ..ModelFiles::default()
        };
        assert!(detect(&embedding, ENGINE).embedding);
    }
}
