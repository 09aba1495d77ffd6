//! Embeddings: a model's final hidden states pooled into one vector per
//! input, as sentence-transformers describes the model in its own files:
//! `modules.json` lists the modules (Transformer, Pooling, Normalize) and
//! `1_Pooling/config.json` says how to pool. Qwen3-Embedding is a qwen3
//! decoder pooled on its last token and L2-normalized; BERT models are
//! mostly mean-pooled (some on their first, CLS, token).
//!
//! Inputs run together, right-padded, in forward passes of at most
//! [`EMBED_BATCH_TOKENS`] tokens: in a causal model a token never sees the
//! padding after it, and a bidirectional one (BERT) masks it, so each
//! input's vector is the one it gets alone.

use std::path::Path;

use mlx_rs::{Array, Dtype, ops};
use serde_json::Value;

use crate::error::{EngineError, Result};
use crate::model::Model;

/// Padded tokens per forward pass (rows times the longest input).
pub const EMBED_BATCH_TOKENS: usize = 8192;

/// How a sequence's hidden states become one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The last token's (Qwen3-Embedding).
    LastToken,
    /// The mean over the tokens.
    Mean,
    /// The first token's.
    Cls,
}

/// An embedding model's pooling, from its sentence-transformers files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbeddingSpec {
    pub pooling: Pooling,
    /// Vectors are scaled to length 1 (a Normalize module follows).
    pub normalize: bool,
}

impl EmbeddingSpec {
    /// Reads `modules.json` and its Pooling module's config in `dir`; None
    /// when the folder does not describe an embedding model.
    pub fn read(dir: &Path) -> Result<Option<EmbeddingSpec>> {
        let modules = dir.join("modules.json");
        let Ok(text) = std::fs::read_to_string(&modules) else {
            return Ok(None);
        };
        let bad = |message: String| EngineError::invalid(&modules, message);
        let list: Vec<Value> =
            serde_json::from_str(&text).map_err(|e| bad(format!("not a JSON list: {e}")))?;
        let kind = |m: &Value| {
            m.get("type")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let Some(pooling_module) = list.iter().find(|m| kind(m).ends_with(".Pooling")) else {
            return Ok(None);
        };
        let normalize = list.iter().any(|m| kind(m).ends_with(".Normalize"));
        let folder = pooling_module
            .get("path")
            .and_then(Value::as_str)
            .unwrap_or("1_Pooling");
        let config_path = dir.join(folder).join("config.json");
        let config: Value = serde_json::from_str(
            &std::fs::read_to_string(&config_path)
                .map_err(|e| EngineError::invalid(&config_path, format!("cannot read: {e}")))?,
        )
        .map_err(|e| EngineError::invalid(&config_path, format!("not JSON: {e}")))?;
        let on = |key: &str| config.get(key).and_then(Value::as_bool).unwrap_or(false);
        let pooling = if on("pooling_mode_lasttoken") {
            Pooling::LastToken
        } else if on("pooling_mode_cls_token") {
            Pooling::Cls
        } else if on("pooling_mode_mean_tokens") {
            Pooling::Mean
        } else {
            return Err(EngineError::invalid(
                &config_path,
                "no pooling mode Orchard knows is on (it takes pooling_mode_lasttoken, pooling_mode_mean_tokens or pooling_mode_cls_token)",
            ));
        };
        Ok(Some(EmbeddingSpec { pooling, normalize }))
    }
}

impl Model {
    /// One vector per input, pooled and (when `spec` says) normalized.
    pub fn embed(&self, inputs: &[Vec<u32>], spec: EmbeddingSpec) -> Result<Vec<Vec<f32>>> {
        if let Some(index) = inputs.iter().position(Vec::is_empty) {
            return Err(EngineError::InvalidParameter {
                name: "input",
                message: format!("input {index} is empty"),
            });
        }
        let mut out = Vec::with_capacity(inputs.len());
        let mut start = 0;
        while start < inputs.len() {
            // As many inputs as fit the token budget, at least one.
            let mut end = start + 1;
            let mut longest = inputs[start].len();
            while end < inputs.len() {
                let longer = longest.max(inputs[end].len());
                if longer * (end + 1 - start) > EMBED_BATCH_TOKENS {
                    break;
                }
                longest = longer;
                end += 1;
            }
            out.extend(self.embed_batch(&inputs[start..end], longest, spec)?);
            start = end;
        }
        Ok(out)
    }

    fn embed_batch(
        &self,
        inputs: &[Vec<u32>],
        longest: usize,
        spec: EmbeddingSpec,
    ) -> Result<Vec<Vec<f32>>> {
        let rows = inputs.len();
        let mut ids = vec![0i32; rows * longest];
        for (row, input) in inputs.iter().enumerate() {
            for (column, &token) in input.iter().enumerate() {
                ids[row * longest + column] = token as i32;
            }
        }
        let ids = Array::from_slice(&ids, &[rows as i32, longest as i32]);
        let lengths: Vec<usize> = inputs.iter().map(Vec::len).collect();
        let hidden = self.encode(&ids, &lengths)?.as_dtype(Dtype::Float32)?;
        let pooled = match spec.pooling {
            Pooling::LastToken => {
                let last: Vec<i32> = inputs.iter().map(|i| i.len() as i32 - 1).collect();
                let index = Array::from_slice(&last, &[rows as i32, 1, 1]);
                hidden.take_along_axis(&index, 1)?.squeeze_axes(&[1])?
            }
            Pooling::Cls => hidden.take_axis(Array::from_int(0), 1)?,
            Pooling::Mean => {
                let mut mask = vec![0f32; rows * longest];
                for (row, input) in inputs.iter().enumerate() {
                    mask[row * longest..row * longest + input.len()].fill(1.0);
                }
                let mask = Array::from_slice(&mask, &[rows as i32, longest as i32, 1]);
                let lengths: Vec<f32> = inputs.iter().map(|i| i.len() as f32).collect();
                let lengths = Array::from_slice(&lengths, &[rows as i32, 1]);
                hidden
                    .multiply(&mask)?
                    .sum_axis(1, false)?
                    .divide(&lengths)?
            }
        };
        let pooled = if spec.normalize {
            let norm = ops::sqrt(&pooled.square()?.sum_axis(-1, true)?)?;
            pooled.divide(&ops::maximum(&norm, Array::from_f32(1e-12))?)?
        } else {
            pooled
        };
        pooled.eval()?;
        let width = pooled.shape()[1] as usize;
        Ok(pooled
            .as_slice::<f32>()
            .chunks_exact(width)
            .map(<[f32]>::to_vec)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(modules: &str, pooling: Option<&str>) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("modules.json"), modules).expect("modules");
        if let Some(pooling) = pooling {
            std::fs::create_dir(dir.path().join("1_Pooling")).expect("mkdir");
            std::fs::write(dir.path().join("1_Pooling/config.json"), pooling).expect("pooling");
        }
        dir
    }

    const WITH_NORMALIZE: &str = r#"[{"idx": 0, "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]"#;

    #[test]
    fn sentence_transformers_files_say_how_to_pool() {
        let last = folder(WITH_NORMALIZE, Some(r#"{"pooling_mode_lasttoken": true}"#));
        assert_eq!(
            EmbeddingSpec::read(last.path()).expect("read"),
            Some(EmbeddingSpec {
                pooling: Pooling::LastToken,
                normalize: true
            })
        );
        let without_normalize =
            r#"[{"path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]"#;
        let mean = folder(
            without_normalize,
            Some(r#"{"pooling_mode_mean_tokens": true}"#),
        );
        assert_eq!(
            EmbeddingSpec::read(mean.path()).expect("read"),
            Some(EmbeddingSpec {
                pooling: Pooling::Mean,
                normalize: false
            })
        );
        let cls = folder(
            without_normalize,
            Some(r#"{"pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false}"#),
        );
        assert_eq!(
            EmbeddingSpec::read(cls.path())
                .expect("read")
                .map(|s| s.pooling),
            Some(Pooling::Cls)
        );

        // A chat model has no modules.json; one without a Pooling module is not ours either.
        let chat = tempfile::tempdir().expect("dir");
        assert_eq!(EmbeddingSpec::read(chat.path()).expect("read"), None);
        let no_pooling = folder(
            r#"[{"path": "", "type": "sentence_transformers.models.Transformer"}]"#,
            None,
        );
        assert_eq!(EmbeddingSpec::read(no_pooling.path()).expect("read"), None);

        // Max pooling (or none on) is refused, naming the file.
        let max = folder(WITH_NORMALIZE, Some(r#"{"pooling_mode_max_tokens": true}"#));
        let error = EmbeddingSpec::read(max.path()).expect_err("max pooling");
        assert!(error.to_string().contains("config.json"), "{error}");
        let broken = folder("{not json", None);
        assert!(EmbeddingSpec::read(broken.path()).is_err());
    }
}
