//! Quantized products in each of MLX's modes. mlx-rs 0.33 fixes the mode to
//! affine; these call MLX's C API (through the project's `mlx-sys`) with the
//! mode a layer is stored in: affine (mlx-community's usual 4 and 8 bits) or
//! MXFP4 (gpt-oss's experts: 4-bit floats in groups of 32 sharing a
//! power-of-two scale, no biases).

use std::ffi::CStr;

use mlx_rs::{Array, Stream};
use serde::Deserialize;

use crate::error::{EngineError, Result};
use crate::ffi::Optional;

/// How a layer's weights are quantized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuantMode {
    /// `bits` per weight, a scale and a bias per group.
    #[default]
    Affine,
    /// 4-bit floats, a shared 8-bit exponent per group of 32.
    Mxfp4,
}

impl QuantMode {
    fn c_name(self) -> &'static CStr {
        match self {
            QuantMode::Affine => c"affine",
            QuantMode::Mxfp4 => c"mxfp4",
        }
    }

    /// The mode's name in `config.json`.
    pub fn name(self) -> &'static str {
        match self {
            QuantMode::Affine => "affine",
            QuantMode::Mxfp4 => "mxfp4",
        }
    }
}

/// One layer's quantization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Quantization {
    pub group_size: i32,
    pub bits: i32,
    /// Per-layer entries without one are affine, as mlx-lm reads them.
    #[serde(default)]
    pub mode: QuantMode,
}

fn optional_int(value: i32) -> mlx_sys::mlx_optional_int {
    mlx_sys::mlx_optional_int {
        value,
        has_value: true,
    }
}

/// Runs one C API call for a product or conversion in quantization `q`.
fn call(
    what: &str,
    q: Quantization,
    op: impl FnOnce(*mut mlx_sys::mlx_array, mlx_sys::mlx_stream) -> i32,
) -> Result<Array> {
    crate::ffi::call(
        || {
            format!(
                "{what} ({} {}-bit, group size {})",
                q.mode.name(),
                q.bits,
                q.group_size
            )
        },
        op,
    )
}

/// `x W^T` with `W` quantized as `q` says.
pub fn matmul(
    x: &Array,
    w: &Array,
    scales: &Array,
    biases: Option<&Array>,
    q: Quantization,
) -> Result<Array> {
    let b = Optional::new(biases);
    call("a quantized matmul", q, |res, stream| unsafe {
        mlx_sys::mlx_quantized_matmul(
            res,
            x.as_ptr(),
            w.as_ptr(),
            scales.as_ptr(),
            b.handle,
            true,
            optional_int(q.group_size),
            optional_int(q.bits),
            q.mode.c_name().as_ptr(),
            stream,
        )
    })
}

/// `x` by the stacked matrices `indices` choose (`gather_qmm`, transposed).
pub fn gather_matmul(
    x: &Array,
    w: &Array,
    scales: &Array,
    biases: Option<&Array>,
    indices: &Array,
    sorted: bool,
    q: Quantization,
) -> Result<Array> {
    let (b, lhs) = (Optional::new(biases), Optional::new(None));
    call("a quantized expert matmul", q, |res, stream| unsafe {
        mlx_sys::mlx_gather_qmm(
            res,
            x.as_ptr(),
            w.as_ptr(),
            scales.as_ptr(),
            b.handle,
            lhs.handle,
            indices.as_ptr(),
            true,
            optional_int(q.group_size),
            optional_int(q.bits),
            q.mode.c_name().as_ptr(),
            sorted,
            stream,
        )
    })
}

/// The weights back in floating point.
pub fn dequantize(
    w: &Array,
    scales: &Array,
    biases: Option<&Array>,
    q: Quantization,
) -> Result<Array> {
    let (b, global) = (Optional::new(biases), Optional::new(None));
    call("a dequantize", q, |res, stream| unsafe {
        mlx_sys::mlx_dequantize(
            res,
            w.as_ptr(),
            scales.as_ptr(),
            b.handle,
            optional_int(q.group_size),
            optional_int(q.bits),
            q.mode.c_name().as_ptr(),
            global.handle,
            mlx_sys::mlx_optional_dtype {
                value: mlx_sys::mlx_dtype__MLX_FLOAT32,
                has_value: false,
            },
            stream,
        )
    })
}

/// Quantizes `w` (its last axis in groups): the packed weights, the scales,
/// and the biases (affine only). For writing test models.
pub fn quantize(w: &Array, q: Quantization) -> Result<(Array, Array, Option<Array>)> {
    let global = Optional::new(None);
    let stream = Stream::thread_local_or_default();
    // SAFETY: `parts` is a fresh vector the call fills and we free; the
    // arrays taken out of it are new references owned by the results.
    let parts = unsafe {
        let mut parts = mlx_sys::mlx_vector_array_new();
        let status = mlx_sys::mlx_quantize(
            &mut parts,
            w.as_ptr(),
            optional_int(q.group_size),
            optional_int(q.bits),
            q.mode.c_name().as_ptr(),
            global.handle,
            stream.as_ptr(),
        );
        let mut out = Vec::new();
        if status == 0 {
            for i in 0..mlx_sys::mlx_vector_array_size(parts) {
                let mut a = mlx_sys::mlx_array_new();
                if mlx_sys::mlx_vector_array_get(&mut a, parts, i) == 0 {
                    out.push(Array::from_ptr(a));
                } else {
                    mlx_sys::mlx_array_free(a);
                }
            }
        }
        mlx_sys::mlx_vector_array_free(parts);
        out
    };
    let mut parts = parts.into_iter();
    match (parts.next(), parts.next(), parts.next()) {
        (Some(w), Some(scales), biases) => Ok((w, scales, biases)),
        _ => Err(EngineError::Exception(format!(
            "MLX could not quantize ({} {}-bit, group size {})",
            q.mode.name(),
            q.bits,
            q.group_size
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mxfp4_weights_multiply_like_their_dequantized_floats() {
        let q = Quantization {
            group_size: 32,
            bits: 4,
            mode: QuantMode::Mxfp4,
        };
        let values: Vec<f32> = (0..64 * 64)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 40.0)
            .collect();
        let w = Array::from_slice(&values, &[64, 64]);
        let (packed, scales, biases) = quantize(&w, q).expect("quantize");
        assert!(biases.is_none(), "MXFP4 has no biases");
        assert_eq!(scales.dtype(), mlx_rs::Dtype::Uint8);
        assert_eq!(packed.shape(), &[64, 8]);
        let x = Array::from_slice(&values[..128], &[2, 64]);
        let product = matmul(&x, &packed, &scales, None, q).expect("matmul");
        let dense = dequantize(&packed, &scales, None, q).expect("dequantize");
        let expected = mlx_rs::ops::matmul(&x, dense.t()).expect("dense matmul");
        let diff = product
            .subtract(&expected)
            .and_then(|d| d.abs())
            .and_then(|d| d.max(None))
            .expect("diff")
            .item_exact::<f32>();
        assert!(diff < 1e-3, "{diff}");
        // Quantizing loses precision, but not the weights' shape.
        let error = dense
            .subtract(&w)
            .and_then(|d| d.abs())
            .and_then(|d| d.max(None))
            .expect("error")
            .item_exact::<f32>();
        assert!(error > 0.0 && error < 0.5, "{error}");
    }
}
