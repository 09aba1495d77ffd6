//! Orchard's inference engine: models run in-process on MLX through mlx-rs.

pub mod runtime;

pub use runtime::{DeviceKind, EngineError, RuntimeInfo, runtime_info};
