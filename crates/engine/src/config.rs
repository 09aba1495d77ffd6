//! `config.json`: the parts every architecture shares (its type and the
//! quantization block); each architecture reads the rest itself.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{EngineError, Result};

pub use crate::quant::{QuantMode, Quantization};

impl Quantization {
    fn validate(self, path: &Path, layer: &str) -> Result<Self> {
        if self.mode == QuantMode::Mxfp4 && (self.bits, self.group_size) != (4, 32) {
            return Err(EngineError::invalid(
                path,
                format!(
                    "unsupported quantization for {layer}: mxfp4 is 4 bits in groups of 32, not {} bits in groups of {}",
                    self.bits, self.group_size
                ),
            ));
        }
        let supported_bits = [2, 3, 4, 5, 6, 8];
        let supported_groups = [32, 64, 128];
        if !supported_bits.contains(&self.bits) || !supported_groups.contains(&self.group_size) {
            return Err(EngineError::invalid(
                path,
                format!(
                    "unsupported quantization for {layer}: {} bits, group size {} \
                     (supported: bits {supported_bits:?}, group sizes {supported_groups:?})",
                    self.bits, self.group_size
                ),
            ));
        }
        Ok(self)
    }
}

/// The `quantization` block: a default, and per-layer overrides keyed by the
/// layer's weight prefix (`false` there means "kept in full precision").
#[derive(Debug, Clone, Default)]
pub struct QuantizationConfig {
    pub default: Option<Quantization>,
    pub layers: HashMap<String, Option<Quantization>>,
}

impl QuantizationConfig {
    /// How the layer at `prefix` is quantized, if at all.
    pub fn for_layer(&self, prefix: &str) -> Option<Quantization> {
        match self.layers.get(prefix) {
            Some(layer) => *layer,
            None => self.default,
        }
    }

    fn parse(path: &Path, block: &Value) -> Result<Self> {
        let Some(map) = block.as_object() else {
            return Err(EngineError::invalid(
                path,
                "`quantization` must be an object",
            ));
        };
        if let Some(mode) = map.get("mode").and_then(Value::as_str)
            && !["affine", "mxfp4"].contains(&mode)
        {
            return Err(EngineError::invalid(
                path,
                format!("unsupported quantization mode {mode:?} (supported: affine, mxfp4)"),
            ));
        }
        let default = match (map.get("group_size"), map.get("bits")) {
            (Some(_), Some(_)) => Some(
                serde_json::from_value::<Quantization>(block.clone())
                    .map_err(|e| EngineError::invalid(path, format!("`quantization`: {e}")))?
                    .validate(path, "the model")?,
            ),
            _ => None,
        };
        let mut layers = HashMap::new();
        for (key, value) in map {
            match value {
                Value::Object(_) => {
                    let q = serde_json::from_value::<Quantization>(value.clone())
                        .map_err(|e| {
                            EngineError::invalid(path, format!("`quantization.{key}`: {e}"))
                        })?
                        .validate(path, key)?;
                    layers.insert(key.clone(), Some(q));
                }
                Value::Bool(false) => {
                    layers.insert(key.clone(), None);
                }
                _ => {}
            }
        }
        Ok(QuantizationConfig { default, layers })
    }
}

/// A parsed `config.json`, with the raw JSON kept for the architecture.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub path: PathBuf,
    pub model_type: String,
    pub quantization: QuantizationConfig,
    pub raw: Value,
}

impl ModelConfig {
    /// Reads `dir/config.json`.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| EngineError::file(&path, format!("cannot read the model config: {e}")))?;
        let raw: Value = serde_json::from_str(&text)
            .map_err(|e| EngineError::invalid(&path, format!("not valid JSON: {e}")))?;
        let model_type = raw
            .get("model_type")
            .and_then(Value::as_str)
            .ok_or_else(|| EngineError::invalid(&path, "no `model_type`"))?
            .to_string();
        // mlx-community writes `quantization`; some converters only `quantization_config`.
        let quantization = match raw
            .get("quantization")
            .or_else(|| raw.get("quantization_config"))
        {
            Some(block) => QuantizationConfig::parse(&path, block)?,
            None => QuantizationConfig::default(),
        };
        Ok(ModelConfig {
            path,
            model_type,
            quantization,
            raw,
        })
    }

    /// Deserializes the architecture's own view of the config.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_value(self.raw.clone())
            .map_err(|e| EngineError::invalid(&self.path, format!("{e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(block: Value) -> Result<QuantizationConfig> {
        QuantizationConfig::parse(Path::new("config.json"), &block)
    }

    #[test]
    fn per_layer_overrides_win_over_the_default() {
        let q = parse(json!({
            "group_size": 64, "bits": 4,
            "model.layers.0.mlp.down_proj": {"group_size": 32, "bits": 8},
            "lm_head": false
        }))
        .expect("parse");
        let default = Quantization {
            group_size: 64,
            bits: 4,
            mode: QuantMode::Affine,
        };
        assert_eq!(q.for_layer("model.layers.1.mlp.down_proj"), Some(default));
        assert_eq!(
            q.for_layer("model.layers.0.mlp.down_proj"),
            Some(Quantization {
                group_size: 32,
                bits: 8,
                mode: QuantMode::Affine,
            })
        );
        assert_eq!(q.for_layer("lm_head"), None);
    }

    #[test]
    fn unsupported_quantization_is_named() {
        let err = parse(json!({"group_size": 48, "bits": 4})).expect_err("group 48");
        assert!(err.to_string().contains("group size 48"), "{err}");
        let err = parse(json!({"group_size": 64, "bits": 4, "mode": "mxfp4"})).expect_err("mode");
        assert!(err.to_string().contains("mxfp4"), "{err}");
    }
}
