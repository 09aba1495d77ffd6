//! Facts about the MLX runtime this process links, and the choice of device.
//!
//! The same code runs on Metal (macOS), CUDA and CPU (Linux): which one depends
//! only on the MLX runtime wheel the build linked (`mlx_sys::BACKEND`) and on
//! whether that runtime finds a GPU at run time.

use std::ffi::CStr;
use std::fmt;

use mlx_rs::{Array, Device, DeviceType};
use serde::Serialize;

use crate::EngineError;

/// The kind of device MLX computes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    Cpu,
    Gpu,
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeviceKind::Cpu => "cpu",
            DeviceKind::Gpu => "gpu",
        })
    }
}

/// What the linked MLX runtime is and where it will compute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuntimeInfo {
    /// The version the loaded MLX library reports about itself.
    pub mlx_version: String,
    /// The runtime wheel the build linked: `cpu`, `cuda` or `metal`.
    pub backend: &'static str,
    /// The device the engine computes on: the GPU when the runtime has one.
    pub device: DeviceKind,
}

/// Reads the runtime facts from the loaded MLX library itself.
pub fn runtime_info() -> Result<RuntimeInfo, EngineError> {
    Ok(RuntimeInfo {
        mlx_version: mlx_version()?,
        backend: mlx_sys::BACKEND,
        device: preferred_device(),
    })
}

/// The device the engine uses: the GPU when this runtime can reach one (Metal on
/// a Mac, CUDA with an NVIDIA card), else the CPU. `Device::gpu()` alone cannot
/// tell: on a CPU-only runtime it still builds a handle, and using it aborts.
pub fn preferred_device() -> DeviceKind {
    if gpu_available() {
        DeviceKind::Gpu
    } else {
        DeviceKind::Cpu
    }
}

/// Makes [`preferred_device`] MLX's default device for this process.
pub fn use_preferred_device() -> DeviceKind {
    let kind = preferred_device();
    let device = match kind {
        DeviceKind::Gpu => Device::new(DeviceType::Gpu, 0),
        DeviceKind::Cpu => Device::new(DeviceType::Cpu, 0),
    };
    Device::set_default(&device);
    kind
}

fn gpu_available() -> bool {
    let mut available = false;
    // SAFETY: the device handle is created, queried and freed here; the query
    // writes one bool through a valid pointer.
    let status = unsafe {
        let gpu = mlx_sys::mlx_device_new_type(mlx_sys::mlx_device_type__MLX_GPU, 0);
        let status = mlx_sys::mlx_device_is_available(&mut available, gpu);
        mlx_sys::mlx_device_free(gpu);
        status
    };
    status == 0 && available
}

/// The GPU working set the runtime recommends, in bytes: Metal reports it
/// (`max_recommended_working_set_size`); None on the CPU backend, or where
/// the runtime does not say. (Runs only where a GPU is present; on a Mac,
/// check that the Servers screen's GPU gauge has a maximum.)
pub fn gpu_recommended_working_set() -> Option<u64> {
    if !gpu_available() {
        return None;
    }
    let mut size: usize = 0;
    // SAFETY: the device and info handles are created, read and freed here;
    // the key is a NUL-terminated literal and the size is written through a
    // valid pointer.
    let status = unsafe {
        let gpu = mlx_sys::mlx_device_new_type(mlx_sys::mlx_device_type__MLX_GPU, 0);
        let mut info = mlx_sys::mlx_device_info_new();
        let mut status = mlx_sys::mlx_device_info_get(&mut info, gpu);
        if status == 0 {
            status = mlx_sys::mlx_device_info_get_size(
                &mut size,
                info,
                c"max_recommended_working_set_size".as_ptr(),
            );
        }
        mlx_sys::mlx_device_info_free(info);
        mlx_sys::mlx_device_free(gpu);
        status
    };
    (status == 0 && size > 0).then_some(size as u64)
}

/// Multiplies two small matrices on the preferred device and checks the result,
/// proving that the runtime (and on CPU, its BLAS) loads and computes.
pub fn self_test() -> Result<(), EngineError> {
    use_preferred_device();
    let a = Array::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let b = Array::from_slice(&[7.0f32, 8.0, 9.0, 10.0, 11.0, 12.0], &[3, 2]);
    let product = a.matmul(&b)?;
    product.eval()?;
    let expected = [58.0f32, 64.0, 139.0, 154.0];
    if product.as_slice::<f32>() != expected {
        return Err(EngineError::WrongResult(format!(
            "[[1,2,3],[4,5,6]] x [[7,8],[9,10],[11,12]] gave {:?}, expected {expected:?}",
            product.as_slice::<f32>()
        )));
    }
    Ok(())
}

/// The version string of the MLX library loaded at run time (not the pin).
pub fn mlx_version() -> Result<String, EngineError> {
    // SAFETY: the string is created and freed here; its data is copied out
    // before the free.
    unsafe {
        let mut text = mlx_sys::mlx_string_new();
        let status = mlx_sys::mlx_version(&mut text);
        let result = if status == 0 && !mlx_sys::mlx_string_data(text).is_null() {
            Ok(CStr::from_ptr(mlx_sys::mlx_string_data(text))
                .to_string_lossy()
                .into_owned())
        } else {
            Err(EngineError::Mlx {
                call: "mlx_version",
            })
        };
        mlx_sys::mlx_string_free(text);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linked_runtime_is_the_pinned_version() {
        let info = runtime_info().expect("runtime info");
        assert_eq!(info.mlx_version, mlx_sys::MLX_VERSION);
        assert!(["cpu", "cuda", "metal"].contains(&info.backend));
    }

    #[test]
    fn the_gpu_working_set_is_known_only_on_metal() {
        let size = gpu_recommended_working_set();
        match mlx_sys::BACKEND {
            "cpu" => assert_eq!(size, None),
            "metal" => assert!(size.is_some_and(|s| s > 0), "{size:?}"),
            // CUDA's device info may or may not carry the key.
            _ => {}
        }
    }

    #[test]
    fn self_test_passes_on_this_runtime() {
        self_test().expect("MLX computes a 2x3 by 3x2 matmul");
    }

    #[test]
    fn cpu_runtime_computes_on_the_cpu() {
        // A CPU-only runtime must never pick the GPU; the others may or may not
        // have one at run time.
        if mlx_sys::BACKEND == "cpu" {
            assert_eq!(preferred_device(), DeviceKind::Cpu);
        }
        let chosen = use_preferred_device();
        let default = Device::try_default().expect("default device");
        let is_gpu = matches!(default.get_type().expect("type"), DeviceType::Gpu);
        assert_eq!(is_gpu, chosen == DeviceKind::Gpu);
    }
}
