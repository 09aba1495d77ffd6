//! The Tauri commands: thin adapters over `orchard-core` and `orchard-engine`.
//! Each returns `Result<_, CommandError>`, which the page receives as
//! `{ code, message }`.

use serde::Serialize;

include!("command_names.rs");

/// What went wrong in a command, in a form the page can show and branch on.
#[derive(Debug, Clone, Serialize, thiserror::Error)]
#[error("{message}")]
pub struct CommandError {
    pub code: ErrorCode,
    pub message: String,
}

/// Stable, machine-readable error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The MLX runtime could not be queried.
    MlxUnavailable,
}

impl From<orchard_engine::EngineError> for CommandError {
    fn from(e: orchard_engine::EngineError) -> Self {
        tracing::error!(error = %e, "MLX runtime unavailable");
        CommandError {
            code: ErrorCode::MlxUnavailable,
            message: format!("{e}. Run `orchard doctor` for the fix."),
        }
    }
}

/// The facts the window shows about this installation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuntimeInfoView {
    pub orchard_version: &'static str,
    pub mlx_version: String,
    /// The MLX runtime wheel: `cpu`, `cuda` or `metal`.
    pub backend: &'static str,
    /// Where the engine computes: `cpu` or `gpu`.
    pub device: orchard_engine::DeviceKind,
}

/// Orchard's version, the MLX version, and the device the engine uses.
#[tauri::command]
pub async fn runtime_info() -> Result<RuntimeInfoView, CommandError> {
    let info = orchard_engine::runtime_info()?;
    tracing::info!(mlx = %info.mlx_version, device = %info.device, "runtime_info served");
    Ok(RuntimeInfoView {
        orchard_version: env!("CARGO_PKG_VERSION"),
        mlx_version: info.mlx_version,
        backend: info.backend,
        device: info.device,
    })
}

/// The API server the app hosts: starting, running (URL, whether a key is
/// needed, a key made on this first run) or failed (why). The new key comes
/// in one answer only; the window keeps it on screen from there.
#[tauri::command]
pub async fn server_status(
    server: tauri::State<'_, crate::server::HostedServer>,
) -> Result<crate::server::ServerStatusView, CommandError> {
    Ok(server.take_status())
}
