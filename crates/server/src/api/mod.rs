//! The management API under `/api`: the window's operations for a browser.
//! Each route is generated from [`orchard_core::operations!`] and calls the
//! `orchard_core::ops` function of the same name, as the desktop app's Tauri
//! commands do; only the transport differs. Reads are `GET`, calls `POST`
//! with a JSON body, streams server-sent events. Errors are `{code, message}`.

use std::convert::Infallible;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::sse::{Event, KeepAlive, Sse};
use bytes::Bytes;
use futures_util::Stream;
use orchard_core::ops::{self, OpError};

use crate::error::{ApiError, Flavor, parse_body};
use crate::{AppState, Routes};

macro_rules! api_routes {
    (
        reads { $($read:ident $read_path:literal -> $read_out:ty;)* }
        calls { $($call:ident $call_path:literal ($call_in:ty) -> $call_out:ty;)* }
        streams { $($stream:ident $stream_path:literal -> $event:ty;)* }
    ) => {
        /// Adds every operation's route.
        pub(crate) fn routes(routes: Routes) -> Routes {
            routes
                $(.get($read_path, handlers::$read))*
                $(.post($call_path, handlers::$call))*
                $(.get($stream_path, handlers::$stream))*
        }

        /// One handler per operation, each calling `orchard_core::ops::NAME`.
        mod handlers {
            use super::*;

            $(
                pub(super) async fn $read(
                    State(state): State<AppState>,
                ) -> Result<Json<$read_out>, ApiError> {
                    Ok(Json(ops::$read(&state.orchard).await?))
                }
            )*
            $(
                pub(super) async fn $call(
                    State(state): State<AppState>,
                    body: Result<Bytes, BytesRejection>,
                ) -> Result<Json<$call_out>, ApiError> {
                    let input: $call_in = parse_body(body).map_err(|e| e.with_flavor(Flavor::Management))?;
                    Ok(Json(ops::$call(&state.orchard, input).await?))
                }
            )*
            $(
                pub(super) async fn $stream(
                    State(state): State<AppState>,
                ) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
                    Ok(sse(state.orchard.$stream()?, state.keep_alive))
                }
            )*
        }
    };
}

orchard_core::operations!(api_routes);

/// A stream operation's events as server-sent events, each one's data the
/// event as JSON, with keep-alive comments while nothing happens.
fn sse<E: ops::Events>(
    events: E,
    keep_alive: std::time::Duration,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = futures_util::stream::unfold(events, |mut events| async move {
        let view = events.next().await?;
        let event = Event::default()
            .json_data(&view)
            .unwrap_or_else(|_| Event::default().comment("unserialisable event"));
        Some((Ok(event), events))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(keep_alive).text("keep-alive"))
}

impl From<OpError> for ApiError {
    fn from(error: OpError) -> Self {
        use axum::http::StatusCode;
        use ops::ErrorCode;
        let status = match error.code {
            ErrorCode::InvalidInput => StatusCode::BAD_REQUEST,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::HubUnreachable => StatusCode::BAD_GATEWAY,
            ErrorCode::HubAuth => StatusCode::FORBIDDEN,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::Busy => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::DiskFull => StatusCode::INSUFFICIENT_STORAGE,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if error.code == ErrorCode::Internal {
            tracing::error!(error = %error.message, "management operation failed");
        }
        ApiError {
            code: Some(error.code.as_str()),
            retry_after: matches!(error.code, ErrorCode::Busy | ErrorCode::RateLimited)
                .then_some(5),
            ..ApiError::new(status, error.message)
        }
        .with_flavor(Flavor::Management)
    }
}
