//! What the window shows of the installation and the settings it changes.

use orchard_hub::HubClient;

use serde_json::{Value, json};

use super::{
    ApiKeyView, ErrorCode, KeyIdRequest, KeyRequest, NewKeyView, OpError, Orchard, RuntimeInfo,
    ServerSettings, SettingsView, TokenRequest, TokenSource,
};
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
    let stored = orchard.store().settings()?;
    let server = server_settings(&stored);
    Ok(SettingsView {
        hf_token_set: hf_token(orchard.inner.secrets.as_ref()).is_some(),
        token_source: token_source(orchard),
        hub_endpoint: hub.endpoint().to_string(),
        offline: hub.is_offline(),
        memory_budget_bytes: orchard.manager().options().memory_budget_bytes,
        total_memory_bytes: crate::system::total_memory(),
        restart_required: server != server_settings(&orchard.inner.started),
        server,
        data_dir: crate::paths::data_dir().map(|d| d.display().to_string()),
        hub_cache_dir: orchard.cache().map(|c| c.root().display().to_string()),
        model_folders: orchard
            .store()
            .local_models()?
            .into_iter()
            .map(|m| m.path)
            .collect(),
    })
}

fn server_settings(settings: &orchard_store::Settings) -> ServerSettings {
    ServerSettings {
        host: settings.host.clone(),
        port: settings.port,
        require_api_key: settings.require_api_key,
        jit_loading: settings.jit_loading,
        idle_ttl_minutes: settings.idle_ttl_minutes,
        memory_budget_percent: settings.memory_budget_percent,
        max_loaded_models: u32::try_from(settings.max_loaded_models).unwrap_or(u32::MAX),
        queue_capacity: u32::try_from(settings.queue_capacity).unwrap_or(u32::MAX),
    }
}

/// Where the token in use comes from, in the order [`hf_token`] looks.
fn token_source(orchard: &Orchard) -> TokenSource {
    let set = |v: Option<String>| v.is_some_and(|t| !t.trim().is_empty());
    if set(std::env::var("HF_TOKEN").ok()) {
        TokenSource::Environment
    } else if set(orchard.inner.secrets.as_ref().and_then(|s| s.get(HF_TOKEN))) {
        TokenSource::Stored
    } else if set(orchard_hub::client::read_token()) {
        TokenSource::HuggingfaceHub
    } else {
        TokenSource::None
    }
}

/// Stores the API server's settings (checked together); they apply when
/// Orchard starts again, which the answer's `restart_required` says.
pub async fn update_settings(
    orchard: &Orchard,
    input: ServerSettings,
) -> Result<SettingsView, OpError> {
    let Value::Object(values) = json!({
        "host": input.host.trim(),
        "port": input.port,
        "require_api_key": input.require_api_key,
        "jit_loading": input.jit_loading,
        "idle_ttl_minutes": input.idle_ttl_minutes,
        "memory_budget_percent": input.memory_budget_percent,
        "max_loaded_models": input.max_loaded_models,
        "queue_capacity": input.queue_capacity,
    }) else {
        unreachable!("a JSON object literal");
    };
    orchard.store().set_settings(&values)?;
    get_settings(orchard).await
}

fn key_view(key: orchard_store::ApiKeyInfo) -> ApiKeyView {
    ApiKeyView {
        id: key.id,
        name: key.name,
        prefix: key.prefix,
        created_at: key.created_at,
        last_used_at: key.last_used_at,
        revoked_at: key.revoked_at,
    }
}

/// The API keys, revoked ones included; never their secrets.
pub async fn list_keys(orchard: &Orchard) -> Result<Vec<ApiKeyView>, OpError> {
    Ok(orchard
        .store()
        .list_api_keys()?
        .into_iter()
        .map(key_view)
        .collect())
}

/// Makes an API key; its secret is in this answer and nowhere else.
pub async fn create_key(orchard: &Orchard, input: KeyRequest) -> Result<NewKeyView, OpError> {
    let made = orchard.store().create_api_key(&input.name)?;
    let key = orchard
        .store()
        .list_api_keys()?
        .into_iter()
        .find(|k| k.id == made.id)
        .map(key_view)
        .ok_or_else(|| OpError::new(ErrorCode::Internal, "the new key was not stored"))?;
    tracing::info!(id = key.id, name = %key.name, "API key created");
    Ok(NewKeyView {
        key,
        secret: made.secret,
    })
}

/// Revokes an API key: requests with it get 401 from now on.
pub async fn revoke_key(
    orchard: &Orchard,
    input: KeyIdRequest,
) -> Result<Vec<ApiKeyView>, OpError> {
    orchard.store().revoke_api_key(input.id)?;
    tracing::info!(id = input.id, "API key revoked");
    list_keys(orchard).await
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
