//! Images in chat requests (issue 12): the file bytes of an OpenAI
//! `image_url` part or an Anthropic `image` block: a `data:` URL, base64,
//! or an `http(s)` URL fetched before the request is read ([`fetch`]). The
//! model decodes and checks the bytes; here only the transport is read, and
//! anything that cannot carry an image is refused with what to send instead.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine;
use orchard_core::ImageInput;
use orchard_store::Store;
use serde_json::{Value, json};

use crate::error::ApiError;

/// The largest image fetched from a URL.
pub const MAX_FETCHED_BYTES: usize = 20 << 20;
/// The longest one fetch may take, connecting included.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(15);

/// The bodies of a request's `http(s)` image URLs, by URL.
pub type Fetched = HashMap<String, Vec<u8>>;

/// Whether `url` is one [`fetch`] gets.
pub fn is_remote(url: &str) -> bool {
    let scheme = url.split_once(':').map(|(s, _)| s.to_ascii_lowercase());
    matches!(scheme.as_deref(), Some("http" | "https"))
}

/// A message's content as the chat template takes it, built part by part:
/// its text alone, or, once it holds an image, its parts in order
/// (`{"type": "text", "text": ...}` and `{"type": "image"}`).
#[derive(Debug, Default)]
pub struct Content {
    parts: Vec<Value>,
    text: String,
}

impl Content {
    pub fn push_text(&mut self, text: &str) {
        self.text.push_str(text);
    }

    /// An image after the text so far.
    pub fn push_image(&mut self) {
        if !self.text.is_empty() {
            let text = std::mem::take(&mut self.text);
            self.parts.push(json!({"type": "text", "text": text}));
        }
        self.parts.push(json!({"type": "image"}));
    }

    pub fn is_empty(&self) -> bool {
        self.parts.is_empty() && self.text.is_empty()
    }

    pub fn into_value(mut self) -> Value {
        if self.parts.is_empty() {
            return Value::String(self.text);
        }
        if !self.text.is_empty() {
            self.parts.push(json!({"type": "text", "text": self.text}));
        }
        Value::Array(self.parts)
    }
}

/// The URL of an OpenAI `image_url` part: `{"url": ...}`, or the URL alone
/// as some clients send it.
pub fn image_url(part: &Value) -> Option<&str> {
    match part.get("image_url")? {
        Value::String(url) => Some(url),
        object => object.get("url").and_then(Value::as_str),
    }
}

/// Fetches each `(url, param)` with a size limit and a timeout, all at once,
/// unless the store's `fetch_image_urls` setting is off; a URL that cannot
/// be read is a 400 naming its part.
pub async fn fetch(store: &Store, urls: Vec<(String, String)>) -> Result<Fetched, ApiError> {
    let mut fetched = Fetched::new();
    if urls.is_empty() {
        return Ok(fetched);
    }
    let allowed = store.settings().map_or(true, |s| s.fetch_image_urls);
    if !allowed {
        let (_, param) = &urls[0];
        return Err(ApiError::invalid(
            param,
            "fetching image URLs is turned off (the fetch_image_urls setting); send the image itself as a data: URL",
        ));
    }
    let client = reqwest::Client::builder()
        .timeout(FETCH_TIMEOUT)
        .redirect(reqwest::redirect::Policy::limited(5))
        .build()
        .map_err(ApiError::internal)?;
    let tasks: Vec<_> = urls
        .into_iter()
        .map(|(url, param)| {
            let client = client.clone();
            tokio::spawn(async move {
                let body = get(&client, &url).await.map_err(|why| {
                    ApiError::invalid(&param, format!("cannot fetch the image at {url}: {why}"))
                })?;
                Ok::<_, ApiError>((url, body))
            })
        })
        .collect();
    for task in tasks {
        let (url, body) = task.await.map_err(ApiError::internal)??;
        fetched.insert(url, body);
    }
    Ok(fetched)
}

/// One URL's body, at most [`MAX_FETCHED_BYTES`].
async fn get(client: &reqwest::Client, url: &str) -> Result<Vec<u8>, String> {
    let too_large = || format!("it is larger than {} MiB", MAX_FETCHED_BYTES >> 20);
    let mut response = client.get(url).send().await.map_err(|e| describe(&e))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("the server answered {status}"));
    }
    if response
        .content_length()
        .is_some_and(|n| n > MAX_FETCHED_BYTES as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| describe(&e))? {
        if body.len() + chunk.len() > MAX_FETCHED_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        format!("no answer within {} seconds", FETCH_TIMEOUT.as_secs())
    } else if error.is_connect() {
        "cannot connect to its server".into()
    } else {
        error.to_string()
    }
}

/// The image a URL carries: a base64 `data:` URL, or an `http(s)` URL
/// whose body is in `fetched`. `file:` URLs are refused: a request cannot
/// make the server read its disk.
pub fn from_url(url: &str, param: &str, fetched: &Fetched) -> Result<ImageInput, ApiError> {
    let scheme = url.split_once(':').map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("data") => {
            let rest = &url["data:".len()..];
            let (meta, data) = rest.split_once(',').ok_or_else(|| {
                ApiError::invalid(param, "a data: URL needs a comma before its data")
            })?;
            if !meta.split(';').any(|p| p.eq_ignore_ascii_case("base64")) {
                return Err(ApiError::invalid(
                    param,
                    "the image's data: URL must be base64 (data:image/png;base64,...)",
                ));
            }
            from_base64(data, param)
        }
        Some("http" | "https") => match fetched.get(url) {
            Some(bytes) if !bytes.is_empty() => Ok(ImageInput {
                bytes: bytes.clone(),
                param: param.to_string(),
            }),
            Some(_) => Err(ApiError::invalid(
                param,
                format!("the image at {url} is empty"),
            )),
            None => Err(ApiError::internal(format!("{url} was not fetched"))),
        },
        Some("file") => Err(ApiError::invalid(
            param,
            "file: URLs are refused: the server does not read its own files for a request; send the image as a data: URL",
        )),
        _ => Err(ApiError::invalid(
            param,
            "an image URL must be a data: URL (data:image/png;base64,...) or an http(s) URL",
        )),
    }
}

/// The image in base64 `data`.
pub fn from_base64(data: &str, param: &str) -> Result<ImageInput, ApiError> {
    let compact: String = data.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .map_err(|e| {
            ApiError::invalid(param, format!("the image's base64 data is not valid: {e}"))
        })?;
    if bytes.is_empty() {
        return Err(ApiError::invalid(param, "the image is empty"));
    }
    Ok(ImageInput {
        bytes,
        param: param.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_urls_carry_images_and_other_schemes_say_what_to_send() {
        let none = Fetched::new();
        let image = from_url("data:image/png;base64,iVBO Rw==", "p", &none).expect("data URL");
        assert_eq!(image.bytes, [0x89, 0x50, 0x4E, 0x47]);
        assert_eq!(image.param, "p");
        for (url, says) in [
            ("file:///etc/passwd", "refused"),
            ("data:image/png,raw", "must be base64"),
            ("data:image/png;base64", "comma"),
            ("data:image/png;base64,!!", "not valid"),
            ("data:image/png;base64,", "empty"),
            ("ftp://x", "must be a data: URL"),
        ] {
            let error = from_url(url, "p", &none).expect_err(url);
            assert!(error.message.contains(says), "{url}: {}", error.message);
        }
    }
}
