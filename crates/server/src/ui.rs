//! The web UI (`ui/dist`, built by `make ui`) served at `/`, so a browser on
//! this machine gets the same app as the desktop window. The files are inside
//! the binary; any GET that is not an API path gets `index.html`, whose
//! script asks for an API key before it calls `/api`.

use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

#[derive(rust_embed::RustEmbed)]
#[folder = "../../ui/dist"]
// A checkout where the UI was not built yet still compiles; `/` then says so.
#[allow_missing = true]
struct Assets;

/// The page may load only its own files (and Hub images in model cards);
/// it may call only this origin.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: https:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// Whether `path` belongs to an API rather than to the page: `/api`,
/// `/health`, `/metrics` and any versioned prefix (`/v1`, `/v2`, ...), so a
/// client that calls a wrong API path gets a JSON error, not the page.
pub fn is_api_path(path: &str) -> bool {
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    let versioned = first
        .strip_prefix('v')
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    versioned || matches!(first, "api" | "health" | "metrics")
}

/// Answers a GET of the page or one of its files; None for anything else.
pub fn serve(request: &Request) -> Option<Response> {
    let path = request.uri().path();
    if !(request.method() == Method::GET || request.method() == Method::HEAD) || is_api_path(path) {
        return None;
    }
    let name = path.trim_start_matches('/');
    let (file, name) = match Assets::get(name).filter(|_| !name.is_empty()) {
        Some(file) => (file, name),
        // The app routes in the page, so every other path is the page.
        None => match Assets::get("index.html") {
            Some(file) => (file, "index.html"),
            None => {
                return Some(
                    (
                        StatusCode::NOT_FOUND,
                        "The web UI was not built into this binary: run `make ui`, then build Orchard again.",
                    )
                        .into_response(),
                );
            }
        },
    };
    let mime = file.metadata.mimetype().to_string();
    // Vite names built assets by their hash: they never change under a name.
    let cache = if name.starts_with("assets/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut response = (StatusCode::OK, file.data.into_owned()).into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&mime) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::is_api_path;

    #[test]
    fn api_paths_are_told_from_the_pages_own() {
        for api in [
            "/v1/models",
            "/v2/nothing",
            "/api",
            "/api/library",
            "/health",
            "/metrics",
        ] {
            assert!(is_api_path(api), "{api}");
        }
        for page in [
            "/",
            "/index.html",
            "/assets/index.js",
            "/models/library",
            "/variants",
        ] {
            assert!(!is_api_path(page), "{page}");
        }
    }
}
