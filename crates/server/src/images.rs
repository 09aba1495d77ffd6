//! Images in chat requests (issue 12): the file bytes of an OpenAI
//! `image_url` part (a `data:` URL) or an Anthropic `image` block (a base64
//! source). The model decodes and checks them; here only the transport is
//! read, and anything that cannot carry an image is refused with what to
//! send instead.

use base64::Engine;
use orchard_core::ImageInput;

use crate::error::ApiError;

/// The image a URL carries. `data:` URLs with base64 data are read; `http`
/// and `https` URLs are not fetched (yet), and `file:` URLs never are: a
/// request cannot make the server read its disk.
pub fn from_url(url: &str, param: &str) -> Result<ImageInput, ApiError> {
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
        Some("http" | "https") => Err(ApiError::unsupported(
            param,
            "an image at an http(s) URL (send the image itself as a data: URL)",
        )),
        Some("file") => Err(ApiError::invalid(
            param,
            "file: URLs are refused: the server does not read its own files for a request; send the image as a data: URL",
        )),
        _ => Err(ApiError::invalid(
            param,
            "an image URL must be a data: URL (data:image/png;base64,...)",
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
        let image = from_url("data:image/png;base64,iVBO Rw==", "p").expect("data URL");
        assert_eq!(image.bytes, [0x89, 0x50, 0x4E, 0x47]);
        assert_eq!(image.param, "p");
        for (url, says) in [
            ("https://example.com/a.png", "data: URL"),
            ("file:///etc/passwd", "refused"),
            ("data:image/png,raw", "must be base64"),
            ("data:image/png;base64", "comma"),
            ("data:image/png;base64,!!", "not valid"),
            ("data:image/png;base64,", "empty"),
            ("ftp://x", "must be a data: URL"),
        ] {
            let error = from_url(url, "p").expect_err(url);
            assert!(error.message.contains(says), "{url}: {}", error.message);
        }
    }
}
