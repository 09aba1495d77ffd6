//! Image files to RGB bytes, as the reference receives them: turned upright
//! by their EXIF orientation, converted to RGB with any alpha channel
//! dropped (not blended onto white), the first frame of an animation.
//! PNG, JPEG, WebP and GIF; anything else, or a broken file, is an error
//! that says so.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageReader, Limits};

use crate::VisionError;

/// The largest image accepted, in pixels per side (larger images are
/// refused before they are decoded).
pub const MAX_SIDE: u32 = 16_384;
/// The most memory decoding one image may take.
const MAX_ALLOC: u64 = 1 << 30;

/// A decoded image: `width * height` RGB pixels, row by row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rgb {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

/// Decodes an image file's bytes.
pub fn decode(bytes: &[u8]) -> Result<Rgb, VisionError> {
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| VisionError(format!("cannot read the image: {e}")))?;
    if reader.format().is_none() {
        return Err(VisionError(
            "the data is not a PNG, JPEG, WebP or GIF image".into(),
        ));
    }
    let mut reader = reader;
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(describe)?;
    // A file whose orientation cannot be read is shown as stored.
    let orientation = decoder.orientation().ok();
    let mut image = DynamicImage::from_decoder(decoder).map_err(describe)?;
    if let Some(orientation) = orientation {
        image.apply_orientation(orientation);
    }
    let rgb = image.to_rgb8();
    Ok(Rgb {
        width: rgb.width() as usize,
        height: rgb.height() as usize,
        pixels: rgb.into_raw(),
    })
}

fn describe(error: image::ImageError) -> VisionError {
    match error {
        image::ImageError::Limits(_) => VisionError(format!(
            "the image is too large: at most {MAX_SIDE} pixels a side"
        )),
        image::ImageError::Unsupported(e) => VisionError(format!(
            "the image uses a format or feature Orchard cannot read: {e}"
        )),
        other => VisionError(format!("the image cannot be decoded: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn what_is_not_an_image_is_an_error_that_says_so() {
        let error = decode(b"hello, this is text").expect_err("text");
        assert!(error.0.contains("not a PNG, JPEG, WebP or GIF"), "{error}");
        // A PNG signature followed by garbage.
        let mut broken = b"\x89PNG\r\n\x1a\n".to_vec();
        broken.extend_from_slice(&[0u8; 40]);
        let error = decode(&broken).expect_err("broken");
        assert!(
            error.0.contains("cannot be decoded") || error.0.contains("cannot read"),
            "{error}"
        );
    }
}
