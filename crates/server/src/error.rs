//! The one place where failures become HTTP responses: OpenAI's error shape
//! everywhere, Anthropic's on `/v1/messages`. Internal details go to the log;
//! a 500 tells the client only that something failed on the server.

use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use orchard_core::CoreError;
use serde::de::DeserializeOwned;
use serde_json::json;

/// Which API's error format to answer in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    OpenAi,
    Anthropic,
    /// The management API (`/api`): `{code, message}`, as the window's
    /// operations fail in the app too.
    Management,
}

impl Flavor {
    /// The format a path answers errors in.
    pub fn for_path(path: &str) -> Flavor {
        if path.starts_with("/v1/messages") {
            Flavor::Anthropic
        } else if path == "/api" || path.starts_with("/api/") {
            Flavor::Management
        } else {
            Flavor::OpenAi
        }
    }
}

/// An error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// The request field at fault, when there is one.
    pub param: Option<String>,
    /// A stable machine-readable code (`model_not_found`, ...).
    pub code: Option<&'static str>,
    /// Seconds to wait before retrying (429, 503).
    pub retry_after: Option<u64>,
    pub flavor: Flavor,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            param: None,
            code: None,
            retry_after: None,
            flavor: Flavor::OpenAi,
        }
    }

    /// 400 about request field `param`.
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        ApiError {
            param: Some(param.to_string()),
            ..ApiError::new(StatusCode::BAD_REQUEST, message)
        }
    }

    /// 400 for a parameter Orchard does not implement yet.
    pub fn unsupported(param: &str, what: &str) -> Self {
        ApiError {
            code: Some("unsupported_parameter"),
            ..ApiError::invalid(
                param,
                format!(
                    "{what} is not supported by Orchard yet; remove `{param}` from the request"
                ),
            )
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError {
            code: Some("invalid_api_key"),
            ..ApiError::new(StatusCode::UNAUTHORIZED, message)
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError {
            code: Some("not_found"),
            ..ApiError::new(StatusCode::NOT_FOUND, message)
        }
    }

    /// A failure whose details stay in the log.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the server failed to handle the request; its log has the details",
        )
    }

    pub fn with_flavor(mut self, flavor: Flavor) -> Self {
        self.flavor = flavor;
        self
    }

    pub fn anthropic(self) -> Self {
        self.with_flavor(Flavor::Anthropic)
    }

    fn openai_type(&self) -> &'static str {
        match self.status.as_u16() {
            401 => "authentication_error",
            403 => "permission_error",
            429 => "rate_limit_error",
            500..=599 => "server_error",
            _ => "invalid_request_error",
        }
    }

    fn anthropic_type(&self) -> &'static str {
        match self.status.as_u16() {
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            503 => "overloaded_error",
            500..=599 => "api_error",
            _ => "invalid_request_error",
        }
    }

    /// The management API's code: the operation's own, else one for the status.
    fn management_code(&self) -> &'static str {
        use orchard_core::ops::ErrorCode;
        if let Some(code) = self.code
            && ErrorCode::ALL.iter().any(|known| known.as_str() == code)
        {
            return code;
        }
        let code = match self.status.as_u16() {
            401 => ErrorCode::Unauthorized,
            403 => ErrorCode::Forbidden,
            404 => ErrorCode::NotFound,
            409 => ErrorCode::Conflict,
            429 => ErrorCode::RateLimited,
            503 => ErrorCode::Busy,
            400..=499 => ErrorCode::InvalidInput,
            _ => ErrorCode::Internal,
        };
        code.as_str()
    }

    /// The JSON body, as sent and as written into a stream.
    pub fn body(&self) -> serde_json::Value {
        match self.flavor {
            Flavor::OpenAi => json!({
                "error": {
                    "message": self.message,
                    "type": self.openai_type(),
                    "param": self.param,
                    "code": self.code,
                }
            }),
            Flavor::Anthropic => json!({
                "type": "error",
                "error": {"type": self.anthropic_type(), "message": self.message},
            }),
            Flavor::Management => json!({
                "code": self.management_code(),
                "message": self.message,
            }),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<CoreError> for ApiError {
    fn from(error: CoreError) -> Self {
        let message = error.to_string();
        let internal = error.is_internal();
        match error {
            CoreError::ModelNotFound { .. } => ApiError {
                code: Some("model_not_found"),
                param: Some("model".into()),
                ..ApiError::new(StatusCode::NOT_FOUND, message)
            },
            CoreError::NotLoaded(_) => ApiError {
                code: Some("model_not_loaded"),
                param: Some("model".into()),
                ..ApiError::new(StatusCode::NOT_FOUND, message)
            },
            CoreError::OverBudget { .. } => ApiError {
                code: Some("insufficient_memory"),
                ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
            },
            CoreError::Busy { .. } => ApiError {
                code: Some("rate_limit_exceeded"),
                retry_after: Some(1),
                ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, message)
            },
            CoreError::Invalid { param, .. } => ApiError::invalid(&param, message),
            CoreError::PromptTooLong { .. } => ApiError {
                code: Some("context_length_exceeded"),
                ..ApiError::invalid("messages", message)
            },
            CoreError::Load { .. } if !internal => {
                // Unsupported architectures and broken files are the user's to fix.
                ApiError {
                    code: Some("model_load_failed"),
                    param: Some("model".into()),
                    ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message)
                }
            }
            CoreError::Pinned { .. } => ApiError {
                code: Some("insufficient_memory"),
                ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
            },
            CoreError::MemoryBusy { .. } => ApiError {
                code: Some("insufficient_memory"),
                retry_after: Some(5),
                ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
            },
            CoreError::WorkerDied(_) | CoreError::Unloaded => ApiError {
                retry_after: Some(1),
                ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
            },
            CoreError::Load { .. } | CoreError::Engine(_) => ApiError::internal(message),
        }
    }
}

/// Reads a JSON body: 413 when it is over the limit, 400 naming the field
/// and position when it does not parse.
pub fn parse_body<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let bytes = body.map_err(|rejection| {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError {
                code: Some("request_too_large"),
                ..ApiError::new(
                    status,
                    "the request body is larger than the server accepts (max_request_bytes)",
                )
            }
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("cannot read the request body: {rejection}"),
            )
        }
    })?;
    let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let param = if path == "." {
            "body".to_string()
        } else {
            path
        };
        ApiError::invalid(&param, format!("invalid request body at {param}: {inner}"))
    })
}
