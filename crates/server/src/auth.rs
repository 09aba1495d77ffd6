//! API keys: `Authorization: Bearer KEY` or `x-api-key: KEY` (Anthropic's
//! header). [`require_key`] is the layer over every protected route (see
//! `protected_routes` in lib.rs); [`Authorized`] is the same check as an
//! extractor.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::error::{ApiError, Flavor};

/// Who may call the API.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// Whether a key is needed at all.
    pub required: bool,
    /// SHA-256 of keys given on the command line (`--api-key`), valid besides the stored ones.
    pub extra_key_hashes: Vec<[u8; 32]>,
}

impl AuthConfig {
    /// Requires a key; `extra` keys are accepted besides the stored ones.
    pub fn required(extra: &[String]) -> Self {
        AuthConfig {
            required: true,
            extra_key_hashes: extra
                .iter()
                .map(|k| Sha256::digest(k.as_bytes()).into())
                .collect(),
        }
    }

    pub fn open() -> Self {
        AuthConfig::default()
    }
}

/// Proof that the request carried a valid key (or that none is needed), with
/// the stored key's id (`key_12`); `None` for a key given on the command line
/// or when no key is needed.
#[derive(Debug, Clone)]
pub struct Authorized(pub Option<String>);

impl FromRequestParts<AppState> for Authorized {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let auth = &state.auth;
        if !auth.required {
            return Ok(Authorized(None));
        }
        let flavor = Flavor::for_path(parts.uri.path());
        let reject = |message: &str| {
            ApiError::unauthorized(message)
                .with_flavor(flavor)
                .into_response()
        };
        let key = parts
            .headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .or_else(|| {
                parts
                    .headers
                    .get(axum::http::header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| {
                        v.strip_prefix("Bearer ")
                            .or_else(|| v.strip_prefix("bearer "))
                    })
                    .map(str::trim)
            });
        let Some(key) = key.filter(|k| !k.is_empty()) else {
            return Err(reject(
                "an API key is required: send it as `Authorization: Bearer KEY` or `x-api-key: KEY` (`orchard keys create` makes one)",
            ));
        };
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        if auth.extra_key_hashes.contains(&digest) {
            return Ok(Authorized(None));
        }
        match state.store.verify_api_key(key) {
            Ok(Some(id)) => Ok(Authorized(Some(format!("key_{id}")))),
            Ok(None) => Err(reject("the API key is not valid or has been revoked")),
            Err(e) => Err(ApiError::internal(e).with_flavor(flavor).into_response()),
        }
    }
}

/// The layer over protected routes: the request goes on only with a valid key.
/// The key's id goes with it (for the MCP audit log).
pub async fn require_key(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    match Authorized::from_request_parts(&mut parts, &state).await {
        Err(rejection) => return rejection,
        Ok(Authorized(key)) => {
            parts
                .extensions
                .insert(orchard_mcp::aggregator::Caller(key));
        }
    }
    next.run(Request::from_parts(parts, body)).await
}
