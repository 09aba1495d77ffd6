//! The port's defences against the web pages a user has open. A local port is
//! reachable from any of them, so before anything else:
//! - `Host` must name this machine's loopback interface (or an allowed host
//!   when bound beyond it): a DNS-rebinding page sends its own name;
//! - an `Origin` header must be one of the app's origins (or allowed ones):
//!   a page's script sends its own;
//! - a POST body must be `application/json`: a form or a `text/plain` post
//!   needs no CORS preflight, so it would otherwise reach a handler.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, Flavor};

/// Which hosts and origins may call.
#[derive(Debug)]
pub struct Guard {
    /// Lower-case host names, without port.
    hosts: Vec<String>,
    origins: Vec<String>,
}

impl Guard {
    pub fn new(origins: Vec<String>, extra_hosts: Vec<String>) -> Self {
        let hosts = crate::LOOPBACK_HOSTS
            .iter()
            .map(|h| h.to_string())
            .chain(extra_hosts)
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        Guard { hosts, origins }
    }

    fn host_allowed(&self, host: &str) -> bool {
        let host = host.trim().to_ascii_lowercase();
        // `[::1]:8080`, `127.0.0.1:8080`, `localhost`: drop the port.
        let name = match host.rfind(':') {
            Some(colon)
                if !host.ends_with(']')
                    && host[colon + 1..].bytes().all(|b| b.is_ascii_digit()) =>
            {
                &host[..colon]
            }
            _ => host.as_str(),
        };
        self.hosts.iter().any(|h| h == name)
    }
}

fn refuse(status: StatusCode, path: &str, message: String) -> Response {
    ApiError::new(status, message)
        .with_flavor(Flavor::for_path(path))
        .into_response()
}

/// Refuses requests from other hosts and origins, and POSTs that are not JSON.
pub async fn check(State(guard): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    let headers = request.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| request.uri().authority().map(|a| a.to_string()));
    let host = match host {
        Some(host) if guard.host_allowed(&host) => host,
        Some(host) => {
            return refuse(
                StatusCode::FORBIDDEN,
                &path,
                format!(
                    "the Host {host:?} is not this server's; call it as 127.0.0.1 or localhost, or add the name to the allowed_hosts setting when serving beyond this machine"
                ),
            );
        }
        None => {
            return refuse(
                StatusCode::BAD_REQUEST,
                &path,
                "the request has no Host header".into(),
            );
        }
    };
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or_default();
        // The web UI this port serves calls it from its own origin; the Host
        // was checked above, so that origin is this server's.
        let same_origin = origin.eq_ignore_ascii_case(&format!("http://{host}"));
        if !same_origin && !guard.origins.iter().any(|o| o == origin) {
            return refuse(
                StatusCode::FORBIDDEN,
                &path,
                format!(
                    "requests from the web origin {origin:?} are not allowed; only Orchard's own windows may call from a browser"
                ),
            );
        }
    }
    if request.method() == Method::POST {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if essence != "application/json" {
            let given = if content_type.is_empty() {
                "no Content-Type".to_string()
            } else {
                format!("Content-Type {content_type:?}")
            };
            return refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                &path,
                format!(
                    "the body must be JSON: send `Content-Type: application/json` (the request had {given})"
                ),
            );
        }
    }
    next.run(request).await
}
