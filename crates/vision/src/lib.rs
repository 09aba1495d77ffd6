//! Image preprocessing for vision-language models (issue 12), built to give
//! the same `pixel_values` as the reference (mlx-vlm), which resizes with
//! Pillow on 8-bit images:
//! - [`resample`]: Pillow's bilinear and bicubic resampling, to the bit;
//! - [`smart_resize`]: the Qwen-VL families' choice of the resized size;
//! - [`preprocess`]: Gemma 3's and Qwen-VL's `pixel_values` from RGB;
//! - [`decode`]: image files to upright RGB, as the reference reads them.
//!
//! No MLX here: the tests build and run in seconds.

pub mod decode;
pub mod preprocess;
pub mod resample;

pub use decode::{Rgb, decode};
pub use preprocess::{Normalize, QwenVision, gemma3_pixel_values, qwen_pixel_values};
pub use resample::{Filter, resize};

/// Why an image cannot be prepared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisionError(pub String);

impl std::fmt::Display for VisionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for VisionError {}

/// The size (height, width) a Qwen-VL model resizes an image of `height` x
/// `width` to: each side a multiple of `factor` (the patch size times the
/// merge size, 28 for Qwen2.5-VL), the area kept between `min_pixels` and
/// `max_pixels`, the aspect ratio kept as well as those allow. Rounding is
/// to the nearest multiple, ties to even, as the reference's Python does.
pub fn smart_resize(
    height: usize,
    width: usize,
    factor: usize,
    min_pixels: usize,
    max_pixels: usize,
) -> Result<(usize, usize), VisionError> {
    if height == 0 || width == 0 || factor == 0 {
        return Err(VisionError(format!(
            "an image of {width}x{height} pixels has nothing to resize"
        )));
    }
    let (h, w, f) = (height as f64, width as f64, factor as f64);
    if h.max(w) / h.min(w) > 200.0 {
        return Err(VisionError(format!(
            "an image of {width}x{height} pixels is too narrow: its sides may differ by at most 200 times"
        )));
    }
    let mut h_bar = (h / f).round_ties_even() * f;
    let mut w_bar = (w / f).round_ties_even() * f;
    if h_bar * w_bar > max_pixels as f64 {
        let beta = (h * w / max_pixels as f64).sqrt();
        h_bar = f.max((h / beta / f).floor() * f);
        w_bar = f.max((w / beta / f).floor() * f);
    } else if h_bar * w_bar < min_pixels as f64 {
        let beta = (min_pixels as f64 / (h * w)).sqrt();
        h_bar = (h * beta / f).ceil() * f;
        w_bar = (w * beta / f).ceil() * f;
    }
    Ok((h_bar as usize, w_bar as usize))
}

#[cfg(test)]
mod tests {
    use super::smart_resize;

    #[test]
    fn qwen_sizes_round_to_the_grid_with_ties_to_even() {
        // 70/28 = 2.5 rounds to 2 and 98/28 = 3.5 to 4 (ties to even).
        assert_eq!(
            smart_resize(70, 98, 28, 56 * 56, 28 * 28 * 1280),
            Ok((56, 112))
        );
        // Small images grow to min_pixels, keeping the aspect ratio.
        assert_eq!(
            smart_resize(23, 37, 28, 56 * 56, 28 * 28 * 16),
            Ok((56, 84))
        );
        // Large ones shrink below max_pixels.
        let (h, w) = smart_resize(2000, 3000, 28, 3136, 28 * 28 * 16).expect("fits");
        assert!(
            h * w <= 28 * 28 * 16 && h % 28 == 0 && w % 28 == 0,
            "{h}x{w}"
        );
        assert_eq!((h, w), (84, 112));
        assert!(smart_resize(1, 300, 28, 3136, 1 << 20).is_err());
        assert!(smart_resize(0, 10, 28, 3136, 1 << 20).is_err());
    }
}
