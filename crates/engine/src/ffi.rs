//! Calls into MLX's C API (through the project's `mlx-sys`) for what mlx-rs
//! 0.33 does not expose: quantization modes other than affine
//! ([`crate::quant`]) and rotary embeddings at a different position per
//! sequence ([`rope_at`]).

use mlx_rs::{Array, Stream};

use crate::error::{EngineError, Result};

/// Runs one C API call that writes an array into its first argument; the
/// arrays the call takes are borrowed, the absent ones passed empty. `what`
/// names the operation in the error.
pub(crate) fn call(
    what: impl FnOnce() -> String,
    op: impl FnOnce(*mut mlx_sys::mlx_array, mlx_sys::mlx_stream) -> i32,
) -> Result<Array> {
    let stream = Stream::thread_local_or_default();
    // SAFETY: `res` is a fresh handle that `op` fills; on success it is
    // owned by the returned Array, on failure it is freed here.
    unsafe {
        let mut res = mlx_sys::mlx_array_new();
        if op(&mut res, stream.as_ptr()) == 0 {
            Ok(Array::from_ptr(res))
        } else {
            mlx_sys::mlx_array_free(res);
            Err(EngineError::Exception(format!(
                "MLX could not run {}",
                what()
            )))
        }
    }
}

/// The handle for an optional array argument: the array's own, or an empty
/// one (MLX's "none") that is freed when this is dropped.
pub(crate) struct Optional<'a> {
    pub(crate) handle: mlx_sys::mlx_array,
    array: Option<&'a Array>,
}

impl<'a> Optional<'a> {
    pub(crate) fn new(array: Option<&'a Array>) -> Self {
        let handle = match array {
            Some(a) => a.as_ptr(),
            // SAFETY: a new empty handle, owned by this value.
            None => unsafe { mlx_sys::mlx_array_new() },
        };
        Optional { handle, array }
    }
}

impl Drop for Optional<'_> {
    fn drop(&mut self) {
        if self.array.is_none() {
            // SAFETY: made by `new` for this value and not used after it.
            unsafe {
                mlx_sys::mlx_array_free(self.handle);
            }
        }
    }
}

/// Rotary embedding of `x` (batch, heads, length, dims) where each row of the
/// batch starts at its own position: `offsets` holds one per row (MLX's
/// `fast::rope` with an array offset, as mlx-lm's batched caches use it).
pub(crate) fn rope_at(
    x: &Array,
    dims: i32,
    traditional: bool,
    base: Option<f32>,
    scale: f32,
    offsets: &Array,
    freqs: Option<&Array>,
) -> Result<Array> {
    let freqs = Optional::new(freqs);
    let base = mlx_sys::mlx_optional_float {
        value: base.unwrap_or(0.0),
        has_value: base.is_some(),
    };
    call(
        || "rotary embeddings at per-sequence positions".into(),
        |res, stream| unsafe {
            mlx_sys::mlx_fast_rope_dynamic(
                res,
                x.as_ptr(),
                dims,
                traditional,
                base,
                scale,
                offsets.as_ptr(),
                freqs.handle,
                stream,
            )
        },
    )
}
