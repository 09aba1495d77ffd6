//! Resampling of 8-bit images that gives the bytes Pillow's `Image.resize`
//! gives (checked against Pillow 13 by `tests/pillow_parity.rs`), because
//! the reference preprocesses images with Pillow and a model sees every
//! difference. Written from the algorithm, not from Pillow's code:
//!
//! - Each output pixel is a weighted sum over a window of input pixels. The
//!   filter is stretched by the reduction factor when shrinking (so every
//!   input pixel counts), and the weights are normalised to sum to one.
//! - Weights are fixed point with 22 fractional bits, rounded half away
//!   from zero; a sum gets half a unit added, is shifted down and clamped to
//!   0..=255.
//! - The two axes are done one after the other through an 8-bit
//!   intermediate image: vertically first only when the height shrinks by
//!   more than twice as many pixels as the width; an axis whose length does
//!   not change is not resampled.

/// The resampling filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// A triangle of support 1 (Pillow's `BILINEAR`, 2; Gemma 3).
    Bilinear,
    /// Keys' cubic with a = -0.5, support 2 (Pillow's `BICUBIC`, 3; Qwen-VL).
    Bicubic,
}

impl Filter {
    /// The filter Pillow's number names (`resample` in a model's
    /// `preprocessor_config.json`), when it is one of these.
    pub fn from_pillow(code: u64) -> Option<Filter> {
        match code {
            2 => Some(Filter::Bilinear),
            3 => Some(Filter::Bicubic),
            _ => None,
        }
    }

    fn support(self) -> f64 {
        match self {
            Filter::Bilinear => 1.0,
            Filter::Bicubic => 2.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        let t = x.abs();
        match self {
            Filter::Bilinear => {
                if t < 1.0 {
                    1.0 - t
                } else {
                    0.0
                }
            }
            Filter::Bicubic => {
                const A: f64 = -0.5;
                if t < 1.0 {
                    ((A + 2.0) * t - (A + 3.0)) * t * t + 1.0
                } else if t < 2.0 {
                    (((t - 5.0) * t + 8.0) * t - 4.0) * A
                } else {
                    0.0
                }
            }
        }
    }
}

/// Fractional bits of the fixed-point weights.
const PRECISION_BITS: u32 = 22;

/// The input window and fixed-point weights of each output index along one
/// axis.
struct Taps {
    first: Vec<usize>,
    weights: Vec<Vec<i32>>,
}

fn taps(n_in: usize, n_out: usize, filter: Filter) -> Taps {
    let scale = n_in as f64 / n_out as f64;
    let stretch = scale.max(1.0);
    let support = filter.support() * stretch;
    let one = f64::from(1u32 << PRECISION_BITS);
    let mut first = Vec::with_capacity(n_out);
    let mut weights = Vec::with_capacity(n_out);
    for i in 0..n_out {
        let center = (i as f64 + 0.5) * scale;
        // Truncation toward zero, then clamped to the image.
        let start = ((center - support + 0.5) as i64).max(0) as usize;
        let end = ((center + support + 0.5) as i64).min(n_in as i64).max(0) as usize;
        let raw: Vec<f64> = (start..end)
            .map(|j| filter.weight((j as f64 - center + 0.5) / stretch))
            .collect();
        let total: f64 = raw.iter().sum();
        let fixed = raw
            .iter()
            .map(|w| {
                let w = if total != 0.0 { w / total } else { *w };
                if w >= 0.0 {
                    (0.5 + w * one) as i32
                } else {
                    (-0.5 + w * one) as i32
                }
            })
            .collect();
        first.push(start);
        weights.push(fixed);
    }
    Taps { first, weights }
}

fn clamp8(sum: i32) -> u8 {
    (sum >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resamples one axis of an image laid out as `outer` blocks of `len`
/// steps of `inner` values each (rows: `height` x `width` x `channels`;
/// columns: 1 x `height` x `width * channels`) to `new_len` steps.
fn pass(
    pixels: &[u8],
    outer: usize,
    len: usize,
    inner: usize,
    new_len: usize,
    filter: Filter,
) -> Vec<u8> {
    let taps = taps(len, new_len, filter);
    let half = 1i32 << (PRECISION_BITS - 1);
    let mut out = vec![0u8; outer * new_len * inner];
    for o in 0..outer {
        let block = &pixels[o * len * inner..(o + 1) * len * inner];
        for x in 0..new_len {
            let start = taps.first[x];
            for i in 0..inner {
                let mut sum = half;
                for (k, w) in taps.weights[x].iter().enumerate() {
                    sum += i32::from(block[(start + k) * inner + i]) * w;
                }
                out[(o * new_len + x) * inner + i] = clamp8(sum);
            }
        }
    }
    out
}

/// Resizes an 8-bit image of `width` x `height` pixels with `channels`
/// interleaved channels (row-major, HWC) to `new_width` x `new_height`.
///
/// # Panics
///
/// When `pixels` is not `width * height * channels` bytes long, or a size
/// is zero.
pub fn resize(
    pixels: &[u8],
    (width, height): (usize, usize),
    channels: usize,
    (new_width, new_height): (usize, usize),
    filter: Filter,
) -> Vec<u8> {
    assert_eq!(pixels.len(), width * height * channels, "image size");
    assert!(
        width > 0 && height > 0 && new_width > 0 && new_height > 0 && channels > 0,
        "sizes must not be zero"
    );
    let shrink_h = height as i64 - new_height as i64;
    let shrink_w = width as i64 - new_width as i64;
    let vertical_first = shrink_h > 0 && shrink_h > 2 * shrink_w;
    let across = |image: &[u8], h: usize| {
        if new_width == width {
            image.to_vec()
        } else {
            pass(image, h, width, channels, new_width, filter)
        }
    };
    let down = |image: &[u8], w: usize| {
        if new_height == height {
            image.to_vec()
        } else {
            pass(image, 1, height, w * channels, new_height, filter)
        }
    };
    if vertical_first {
        across(&down(pixels, width), new_height)
    } else {
        down(&across(pixels, height), new_width)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_size_is_a_copy_and_a_flat_image_stays_flat() {
        let image: Vec<u8> = (0..5 * 4 * 3).map(|i| (i * 37 % 256) as u8).collect();
        assert_eq!(resize(&image, (5, 4), 3, (5, 4), Filter::Bicubic), image);
        let flat = vec![200u8; 9 * 7 * 3];
        for filter in [Filter::Bilinear, Filter::Bicubic] {
            for size in [(3, 2), (20, 30), (9, 1)] {
                let out = resize(&flat, (9, 7), 3, size, filter);
                assert!(out.iter().all(|&v| v == 200), "{filter:?} {size:?}");
            }
        }
    }

    #[test]
    fn bicubic_overshoot_is_clamped() {
        // A hard edge: bicubic rings past 0 and 255, which must clamp.
        let mut image = vec![0u8; 8];
        image[4..].fill(255);
        let out = resize(&image, (8, 1), 1, (20, 1), Filter::Bicubic);
        assert_eq!(out.first(), Some(&0));
        assert_eq!(out.last(), Some(&255));
        assert!(out.windows(2).any(|w| w[0] != w[1]));
    }
}
