//! Weights in the Hugging Face / mlx-community layout: `model.safetensors`, or
//! the shards that `model.safetensors.index.json` lists; dense (float16,
//! bfloat16, float32) or quantized layers (`.weight` packed in u32 with
//! `.scales`, and `.biases` for affine; MXFP4 has none), mirroring mlx-lm's
//! `nn.Linear`, `nn.QuantizedLinear`, `nn.Embedding` and `nn.QuantizedEmbedding`.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use mlx_rs::{Array, Dtype, ops};

use crate::config::{QuantMode, Quantization, QuantizationConfig};
use crate::error::{EngineError, Result};
use crate::quant;

/// A LayerNorm's weight and bias (`nn.LayerNorm`), with its epsilon.
#[derive(Debug)]
pub struct LayerNorm {
    weight: Array,
    bias: Array,
    eps: f32,
}

impl LayerNorm {
    pub fn forward(&self, x: &Array) -> Result<Array> {
        Ok(mlx_rs::fast::layer_norm(
            x,
            &self.weight,
            &self.bias,
            self.eps,
        )?)
    }
}

/// A linear layer `y = x W^T + b`, dense or quantized.
#[derive(Debug)]
pub enum Linear {
    Dense {
        weight: Array,
        bias: Option<Array>,
    },
    Quantized {
        weight: Array,
        scales: Array,
        biases: Option<Array>,
        bias: Option<Array>,
        q: Quantization,
    },
}

impl Linear {
    pub fn forward(&self, x: &Array) -> Result<Array> {
        Ok(match self {
            Linear::Dense { weight, bias: None } => ops::matmul(x, weight.t())?,
            Linear::Dense {
                weight,
                bias: Some(b),
            } => ops::addmm(b, x, weight.t(), None, None)?,
            Linear::Quantized {
                weight,
                scales,
                biases,
                bias,
                q,
            } => {
                let y = quant::matmul(x, weight, scales, biases.as_ref(), *q)?;
                match bias {
                    Some(b) => y.add(b)?,
                    None => y,
                }
            }
        })
    }
}

/// A quantized layer's packed weight, scales, biases (affine only) and how
/// they are packed.
type QuantizedParams = (Array, Array, Option<Array>, Quantization);

/// One linear layer per expert, `(experts, out, in)`, dense or quantized,
/// as mlx-lm's `SwitchLinear` and `QuantizedSwitchLinear`: each token row is
/// multiplied by the experts `indices` choose for it.
#[derive(Debug)]
pub struct SwitchLinear {
    matrices: SwitchMatrices,
    /// One bias row per expert, `(experts, out)`.
    bias: Option<Array>,
}

#[derive(Debug)]
enum SwitchMatrices {
    Dense(Array),
    Quantized {
        weight: Array,
        scales: Array,
        biases: Option<Array>,
        q: Quantization,
    },
}

impl SwitchLinear {
    /// `x` (..., 1, in) by the experts `indices` name (the same leading
    /// shape, broadcast), giving (..., 1, out). `sorted` says the indices
    /// are in ascending order, which lets MLX read each expert once.
    pub fn forward(&self, x: &Array, indices: &Array, sorted: bool) -> Result<Array> {
        let y = match &self.matrices {
            SwitchMatrices::Dense(weight) => {
                ops::gather_mm(x, weight.swap_axes(-1, -2)?, None, indices, sorted)?
            }
            SwitchMatrices::Quantized {
                weight,
                scales,
                biases,
                q,
            } => quant::gather_matmul(x, weight, scales, biases.as_ref(), indices, sorted, *q)?,
        };
        Ok(match &self.bias {
            Some(bias) => y.add(bias.take_axis(indices, 0)?.expand_dims(-2)?)?,
            None => y,
        })
    }
}

/// A token embedding table, dense or quantized; tied models also use it as
/// the output projection.
#[derive(Debug)]
pub enum Embedding {
    Dense(Array),
    Quantized {
        weight: Array,
        scales: Array,
        biases: Option<Array>,
        q: Quantization,
    },
}

impl Embedding {
    /// Looks up the rows of `ids`.
    pub fn forward(&self, ids: &Array) -> Result<Array> {
        Ok(match self {
            Embedding::Dense(table) => table.take_axis(ids, 0)?,
            Embedding::Quantized {
                weight,
                scales,
                biases,
                q,
            } => {
                let biases = biases.as_ref().map(|b| b.take_axis(ids, 0)).transpose()?;
                quant::dequantize(
                    &weight.take_axis(ids, 0)?,
                    &scales.take_axis(ids, 0)?,
                    biases.as_ref(),
                    *q,
                )?
            }
        })
    }

    /// `x E^T`: logits over the vocabulary from hidden states.
    pub fn as_linear(&self, x: &Array) -> Result<Array> {
        Ok(match self {
            Embedding::Dense(table) => ops::matmul(x, table.t())?,
            Embedding::Quantized {
                weight,
                scales,
                biases,
                q,
            } => quant::matmul(x, weight, scales, biases.as_ref(), *q)?,
        })
    }
}

/// The tensors of a model folder, handed out layer by layer with their shapes
/// checked against the config.
#[derive(Debug)]
pub struct Weights {
    dir: PathBuf,
    tensors: HashMap<String, Array>,
    quantization: QuantizationConfig,
    /// Upcast quantization scales and biases to float32 (see [`Weights::load`]).
    upcast_quant_params: bool,
    /// Every tensor handed out, to be evaluated together by [`Weights::eval_loaded`].
    handed_out: Vec<Array>,
    /// Hand out quantized layers dequantized to float32 (the CPU fast path).
    dequantize: bool,
}

impl Weights {
    /// Loads every safetensors file of `dir`. With `upcast_quant_params`,
    /// float16/bfloat16 quantization scales and biases become float32: MLX's
    /// CPU quantized matmul is ~50x slower with half-precision scales, while
    /// Metal is fastest with them as stored.
    pub fn load(
        dir: &Path,
        quantization: QuantizationConfig,
        upcast_quant_params: bool,
    ) -> Result<Self> {
        let mut tensors = HashMap::new();
        for file in weight_files(dir)? {
            check_safetensors(&file)?;
            let loaded = Array::load_safetensors(&file).map_err(|e| {
                EngineError::invalid(&file, format!("cannot load the weights: {e}"))
            })?;
            tensors.extend(loaded);
        }
        Ok(Weights {
            dir: dir.to_path_buf(),
            tensors,
            quantization,
            upcast_quant_params,
            handed_out: Vec::new(),
            dequantize: false,
        })
    }

    /// From now on, quantized layers are handed out dequantized to float32
    /// dense matrices: on the CPU backend MLX multiplies those through BLAS
    /// at memory speed, while its quantized kernels are compute-bound there.
    pub fn dequantize_all(&mut self) {
        self.dequantize = true;
    }

    /// Whether the folder has any quantized layer.
    pub fn is_quantized(&self) -> bool {
        self.tensors.keys().any(|k| k.ends_with(".scales"))
    }

    /// Bytes the weights take with every quantized layer dequantized to
    /// float32 (the other tensors as stored).
    pub fn dequantized_bytes(&self) -> u64 {
        let mut total = 0u64;
        for (name, tensor) in &self.tensors {
            let prefix = name.rsplit_once('.').map_or(name.as_str(), |(p, _)| p);
            let quantized = self.tensors.contains_key(&format!("{prefix}.scales"));
            total += match name.rsplit_once('.').map(|(_, part)| part) {
                Some("scales" | "biases") if quantized => 0,
                Some("weight") if quantized => {
                    let bits = self.bits_of(prefix).max(1) as u64;
                    tensor.size() as u64 * 32 / bits * 4
                }
                _ => tensor.nbytes() as u64,
            };
        }
        total
    }

    /// A quantized layer's bits per weight: from the config, or read off its
    /// tensors (packed 32-bit words over the scales' groups).
    fn bits_of(&self, prefix: &str) -> i32 {
        if let Some(Some(q)) = self.quantization.layers.get(prefix) {
            return q.bits;
        }
        self.quantization.default.map_or(4, |q| q.bits)
    }

    /// A quantized layer's weights as a float32 dense matrix (or stack).
    fn dense_from(&mut self, params: QuantizedParams) -> Result<Array> {
        let (weight, scales, biases, q) = params;
        let dense =
            quant::dequantize(&weight, &scales, biases.as_ref(), q)?.as_dtype(Dtype::Float32)?;
        Ok(self.hand_out(dense))
    }

    /// Reads every tensor handed out so far into memory (and applies the
    /// upcast), so that loading errors surface now and the first request
    /// does not pay for it.
    pub fn eval_loaded(&mut self) -> Result<()> {
        mlx_rs::transforms::eval(self.handed_out.iter())?;
        self.handed_out.clear();
        Ok(())
    }

    /// Puts `prefix` before every tensor's name when the folder has
    /// `marker` bare and not under `prefix` (a bare model's checkpoint).
    pub fn add_prefix_where_missing(&mut self, prefix: &str, marker: &str) {
        if !self.tensors.contains_key(marker)
            || self.tensors.contains_key(&format!("{prefix}{marker}"))
        {
            return;
        }
        self.tensors = std::mem::take(&mut self.tensors)
            .into_iter()
            .map(|(name, tensor)| (format!("{prefix}{name}"), tensor))
            .collect();
    }

    /// Renames every tensor that starts with one of the `(from, to)`
    /// prefixes (the first that matches): another layout's names for the
    /// same layers.
    pub fn rename_prefixes(&mut self, renames: &[(&str, &str)]) {
        self.tensors = std::mem::take(&mut self.tensors)
            .into_iter()
            .map(|(name, tensor)| {
                let renamed = renames.iter().find_map(|(from, to)| {
                    name.strip_prefix(from).map(|rest| format!("{to}{rest}"))
                });
                (renamed.unwrap_or(name), tensor)
            })
            .collect();
    }

    /// True when the folder has a tensor of that name.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    fn take(&mut self, name: &str) -> Result<Array> {
        self.tensors.remove(name).ok_or_else(|| {
            EngineError::invalid(&self.dir, format!("the weights have no tensor {name}"))
        })
    }

    fn hand_out(&mut self, tensor: Array) -> Array {
        self.handed_out.push(tensor.clone());
        tensor
    }

    fn take_shaped(&mut self, name: &str, expected: &[i32]) -> Result<Array> {
        let tensor = self.take(name)?;
        if tensor.shape() != expected {
            return Err(EngineError::invalid(
                &self.dir,
                format!(
                    "tensor {name} has shape {:?}, but the config implies {expected:?}",
                    tensor.shape()
                ),
            ));
        }
        Ok(self.hand_out(tensor))
    }

    /// The tensor `name`, which must have `shape`.
    pub fn tensor(&mut self, name: &str, shape: &[i32]) -> Result<Array> {
        self.take_shaped(name, shape)
    }

    /// The shape of the tensor `name`, if the folder has it.
    pub fn shape(&self, name: &str) -> Option<&[i32]> {
        self.tensors.get(name).map(Array::shape)
    }

    /// The LayerNorm at `prefix` (`.weight` and `.bias` of length `dim`).
    pub fn layer_norm(&mut self, prefix: &str, dim: i32, eps: f32) -> Result<LayerNorm> {
        Ok(LayerNorm {
            weight: self.vector(&format!("{prefix}.weight"), dim)?,
            bias: self.vector(&format!("{prefix}.bias"), dim)?,
            eps,
        })
    }

    /// A norm's weight vector of length `dim`.
    pub fn vector(&mut self, name: &str, dim: i32) -> Result<Array> {
        self.take_shaped(name, &[dim])
    }

    /// The linear layer at `prefix` mapping `in_dim` to `out_dim` features.
    pub fn linear(
        &mut self,
        prefix: &str,
        in_dim: i32,
        out_dim: i32,
        bias: bool,
    ) -> Result<Linear> {
        let bias = if bias {
            Some(self.take_shaped(&format!("{prefix}.bias"), &[out_dim])?)
        } else {
            None
        };
        match self.quantized_params(prefix, out_dim, in_dim)? {
            Some(params) if self.dequantize => Ok(Linear::Dense {
                weight: self.dense_from(params)?,
                bias,
            }),
            Some((weight, scales, biases, q)) => Ok(Linear::Quantized {
                weight,
                scales,
                biases,
                bias,
                q,
            }),
            None => Ok(Linear::Dense {
                weight: self.take_shaped(&format!("{prefix}.weight"), &[out_dim, in_dim])?,
                bias,
            }),
        }
    }

    /// The experts' linear layers at `prefix` (`experts` of them, each
    /// `in_dim` to `out_dim`), stored stacked as mlx-community checkpoints
    /// do. A Hugging Face checkpoint keeps one tensor per expert at
    /// `{experts_prefix}.{e}.{name}`; pass that as `per_expert` and they are
    /// stacked here, as mlx-lm's `sanitize` does.
    pub fn switch_linear(
        &mut self,
        prefix: &str,
        per_expert: Option<(&str, &str)>,
        experts: i32,
        in_dim: i32,
        out_dim: i32,
        bias: bool,
    ) -> Result<SwitchLinear> {
        if let Some((experts_prefix, name)) = per_expert
            && !self.contains(&format!("{prefix}.weight"))
        {
            for part in ["weight", "scales", "biases"] {
                let first = format!("{experts_prefix}.0.{name}.{part}");
                if !self.contains(&first) {
                    continue;
                }
                let mut each = Vec::with_capacity(experts as usize);
                for e in 0..experts {
                    each.push(self.take(&format!("{experts_prefix}.{e}.{name}.{part}"))?);
                }
                let stacked = ops::stack(&each, 0)?;
                self.tensors.insert(format!("{prefix}.{part}"), stacked);
            }
        }
        let bias = if bias {
            Some(self.take_shaped(&format!("{prefix}.bias"), &[experts, out_dim])?)
        } else {
            None
        };
        let matrices = match self.quantized_params_with(prefix, &[experts], out_dim, in_dim)? {
            Some(params) if self.dequantize => SwitchMatrices::Dense(self.dense_from(params)?),
            Some((weight, scales, biases, q)) => SwitchMatrices::Quantized {
                weight,
                scales,
                biases,
                q,
            },
            None => SwitchMatrices::Dense(
                self.take_shaped(&format!("{prefix}.weight"), &[experts, out_dim, in_dim])?,
            ),
        };
        Ok(SwitchLinear { matrices, bias })
    }

    /// The embedding table at `prefix` with `vocab` rows of `dim` features.
    pub fn embedding(&mut self, prefix: &str, vocab: i32, dim: i32) -> Result<Embedding> {
        match self.quantized_params(prefix, vocab, dim)? {
            Some(params) if self.dequantize => Ok(Embedding::Dense(self.dense_from(params)?)),
            Some((weight, scales, biases, q)) => Ok(Embedding::Quantized {
                weight,
                scales,
                biases,
                q,
            }),
            None => Ok(Embedding::Dense(
                self.take_shaped(&format!("{prefix}.weight"), &[vocab, dim])?,
            )),
        }
    }

    /// The packed weight, scales and (affine) biases of a quantized layer,
    /// or `None` for a dense one (no `.scales` tensor).
    fn quantized_params(
        &mut self,
        prefix: &str,
        rows: i32,
        cols: i32,
    ) -> Result<Option<QuantizedParams>> {
        self.quantized_params_with(prefix, &[], rows, cols)
    }

    /// [`Weights::quantized_params`] of a stack of matrices: `batch` leads
    /// every shape.
    fn quantized_params_with(
        &mut self,
        prefix: &str,
        batch: &[i32],
        rows: i32,
        cols: i32,
    ) -> Result<Option<QuantizedParams>> {
        if !self.contains(&format!("{prefix}.scales")) {
            return Ok(None);
        }
        let q = self.quantization_of(prefix, cols)?;
        if cols % q.group_size != 0 || (cols * q.bits) % 32 != 0 {
            return Err(EngineError::invalid(
                &self.dir,
                format!(
                    "{prefix}: {cols} input features cannot be split in groups of {} at {} bits",
                    q.group_size, q.bits
                ),
            ));
        }
        let shape = |last: [i32; 2]| [batch, &last[..]].concat();
        let weight = self.take_shaped(
            &format!("{prefix}.weight"),
            &shape([rows, cols * q.bits / 32]),
        )?;
        let groups = shape([rows, cols / q.group_size]);
        let mut scales = self.take_shaped(&format!("{prefix}.scales"), &groups)?;
        let mut biases = match q.mode {
            QuantMode::Affine => Some(self.take_shaped(&format!("{prefix}.biases"), &groups)?),
            QuantMode::Mxfp4 => None,
        };
        if self.upcast_quant_params
            && q.mode == QuantMode::Affine
            && scales.dtype() != Dtype::Float32
        {
            scales = self.hand_out(scales.as_dtype(Dtype::Float32)?);
            biases = biases
                .map(|b| b.as_dtype(Dtype::Float32).map(|b| self.hand_out(b)))
                .transpose()?;
        }
        Ok(Some((weight, scales, biases, q)))
    }

    /// How the layer at `prefix` (with `cols` input features) is quantized:
    /// as `config.json` lists it, or else read off its tensors as mlx-lm
    /// does (group size from the scales, bits from the packed weight, MXFP4
    /// when the scales are 8-bit exponents).
    fn quantization_of(&self, prefix: &str, cols: i32) -> Result<Quantization> {
        let invalid = |message: String| EngineError::invalid(&self.dir, message);
        match self.quantization.layers.get(prefix) {
            Some(Some(q)) => return Ok(*q),
            Some(None) => {
                return Err(invalid(format!(
                    "{prefix} is quantized in the weights, but config.json says it is not"
                )));
            }
            None => {}
        }
        let Some(default) = self.quantization.default else {
            return Err(invalid(format!(
                "{prefix} is quantized in the weights, but config.json has no quantization for it"
            )));
        };
        let (Some(weight), Some(scales)) = (
            self.tensors.get(&format!("{prefix}.weight")),
            self.tensors.get(&format!("{prefix}.scales")),
        ) else {
            return Ok(default);
        };
        let (Some(&packed), Some(&groups)) = (weight.shape().last(), scales.shape().last()) else {
            return Ok(default);
        };
        if groups <= 0 || cols % groups != 0 || (packed * 32) % cols != 0 {
            return Ok(default);
        }
        let (group_size, bits) = (cols / groups, packed * 32 / cols);
        let mode = if scales.dtype() == Dtype::Uint8 {
            if (bits, group_size) != (4, 32) {
                return Err(invalid(format!(
                    "{prefix}: {bits}-bit floating-point quantization in groups of {group_size} \
                     is not supported (supported: mxfp4, 4 bits in groups of 32)"
                )));
            }
            QuantMode::Mxfp4
        } else {
            QuantMode::Affine
        };
        Ok(Quantization {
            group_size,
            bits,
            mode,
        })
    }
}

/// `model.safetensors`, or every shard the index lists.
fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let text = std::fs::read_to_string(&index)
            .map_err(|e| EngineError::file(&index, format!("cannot read: {e}")))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| EngineError::invalid(&index, format!("not valid JSON: {e}")))?;
        let shards: BTreeSet<&str> = json
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| EngineError::invalid(&index, "no `weight_map`"))?
            .values()
            .filter_map(|v| v.as_str())
            .collect();
        let mut files = Vec::new();
        for shard in shards {
            // A shard name is a plain file name inside the folder, never a path.
            if shard.contains('/') || shard.contains('\\') || shard.starts_with('.') {
                return Err(EngineError::invalid(
                    &index,
                    format!("shard name {shard:?} is not a file name"),
                ));
            }
            let file = dir.join(shard);
            if !file.is_file() {
                return Err(EngineError::file(
                    &file,
                    "a weight shard listed in the index is missing",
                ));
            }
            files.push(file);
        }
        return Ok(files);
    }
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    Err(EngineError::file(
        single,
        "no weights: expected model.safetensors or model.safetensors.index.json",
    ))
}

/// Checks the safetensors header against the file's length before MLX maps
/// it: MLX reads tensor data lazily, so a truncated file would otherwise fail
/// deep inside a forward pass.
fn check_safetensors(path: &Path) -> Result<()> {
    let invalid = |message: String| EngineError::invalid(path, message);
    let mut file =
        File::open(path).map_err(|e| EngineError::file(path, format!("cannot open: {e}")))?;
    let len = file
        .metadata()
        .map_err(|e| EngineError::file(path, format!("cannot stat: {e}")))?
        .len();
    let mut size = [0u8; 8];
    file.read_exact(&mut size)
        .map_err(|_| invalid(format!("not a safetensors file ({len} bytes, no header)")))?;
    let header_len = u64::from_le_bytes(size);
    if header_len > 100 * 1024 * 1024 || 8 + header_len > len {
        return Err(invalid(format!(
            "truncated or not a safetensors file: header of {header_len} bytes in a {len}-byte file"
        )));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header)
        .map_err(|e| invalid(format!("cannot read the header: {e}")))?;
    let header: serde_json::Value =
        serde_json::from_slice(&header).map_err(|e| invalid(format!("corrupt header: {e}")))?;
    let data_end = header
        .as_object()
        .ok_or_else(|| invalid("corrupt header: not a JSON object".into()))?
        .iter()
        .filter(|(name, _)| name.as_str() != "__metadata__")
        .filter_map(|(_, info)| info.get("data_offsets")?.get(1)?.as_u64())
        .max()
        .unwrap_or(0);
    let needed = 8 + header_len + data_end;
    if needed > len {
        return Err(invalid(format!(
            "truncated: the tensors need {needed} bytes but the file has {len}; download it again"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_safetensors_is_reported_before_loading() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("model.safetensors");
        let a = Array::from_slice(&[1.0f32; 64], &[8, 8]);
        Array::save_safetensors([("w", &a)], None, &path).expect("save");
        let bytes = std::fs::read(&path).expect("read");
        std::fs::write(&path, &bytes[..bytes.len() - 10]).expect("truncate");
        let err = check_safetensors(&path).expect_err("truncated");
        assert!(err.to_string().contains("truncated"), "{err}");
        assert!(err.to_string().contains("model.safetensors"), "{err}");
    }

    #[test]
    fn garbage_is_not_a_safetensors_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("model.safetensors");
        std::fs::write(&path, b"hello").expect("write");
        let err = check_safetensors(&path).expect_err("garbage");
        assert!(err.to_string().contains("not a safetensors file"), "{err}");
    }
}
