//! What the window shows of the installation and the settings it changes.

use orchard_hub::HubClient;

use super::{ErrorCode, OpError, Orchard, RuntimeInfo, SettingsView, TokenRequest};
use crate::secrets::{HF_TOKEN, hf_token};

/// Orchard's version, the MLX version and backend, and the device the engine uses.
pub async fn runtime_info(_orchard: &Orchard) -> Result<RuntimeInfo, OpError> {
    let info = orchard_engine::runtime_info().map_err(|e| {
        OpError::new(
            ErrorCode::Internal,
            format!("{e}. Run `orchard doctor` for the fix."),
        )
    })?;
    Ok(RuntimeInfo {
        orchard_version: env!("CARGO_PKG_VERSION").to_string(),
        mlx_version: info.mlx_version,
        backend: info.backend.to_string(),
        device: info.device.to_string(),
    })
}

/// The settings the window shows.
pub async fn get_settings(orchard: &Orchard) -> Result<SettingsView, OpError> {
    let hub = orchard.hub();
    Ok(SettingsView {
        hf_token_set: hf_token(orchard.inner.secrets.as_ref()).is_some(),
        hub_endpoint: hub.endpoint().to_string(),
        offline: hub.is_offline(),
        memory_budget_bytes: orchard.manager().options().memory_budget_bytes,
        total_memory_bytes: crate::system::total_memory(),
    })
}

/// Keeps (or, with null, removes) the Hugging Face token; searches and
/// downloads started from now on use it.
pub async fn set_hf_token(orchard: &Orchard, input: TokenRequest) -> Result<SettingsView, OpError> {
    let secrets = orchard.inner.secrets.as_ref().ok_or_else(|| {
        OpError::new(
            ErrorCode::Internal,
            "Orchard has no data folder to keep the token in; set ORCHARD_HOME",
        )
    })?;
    match input.token.as_deref().map(str::trim) {
        Some(token) if !token.is_empty() => {
            if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(OpError::new(
                    ErrorCode::InvalidInput,
                    "token: a Hugging Face token has no spaces; paste it again from the Hub's settings",
                ));
            }
            secrets
                .set(HF_TOKEN, token)
                .map_err(|e| OpError::new(ErrorCode::Internal, e))?;
        }
        _ => {
            secrets
                .delete(HF_TOKEN)
                .map_err(|e| OpError::new(ErrorCode::Internal, e))?;
        }
    }
    let offline = orchard.hub().is_offline();
    let mut hub = HubClient::new(orchard.hub().endpoint(), hf_token(Some(secrets)))?;
    hub.set_offline(offline);
    orchard.set_hub(hub);
    get_settings(orchard).await
}
