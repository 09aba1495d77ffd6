//! From decoded RGB to a model's `pixel_values`, with the reference's
//! arithmetic (mlx-vlm: transformers' Gemma 3 image processor, mlx-vlm's
//! own Qwen-VL one). The float steps differ between the two on purpose:
//! Gemma rescales in f64 and rounds to f32, Qwen multiplies in f32.

use crate::resample::{Filter, resize};
use crate::{VisionError, smart_resize};

/// How resized 8-bit values become model inputs: `(v * rescale - mean) /
/// std` per channel, as `preprocessor_config.json` gives them.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalize {
    pub rescale: f64,
    pub mean: [f64; 3],
    pub std: [f64; 3],
}

/// Gemma 3's input for one RGB image (`width` x `height`, HWC bytes): the
/// image resized to exactly `target` (width, height; the aspect ratio is not
/// kept) with `filter`, normalised, laid out (3, height, width).
pub fn gemma3_pixel_values(
    rgb: &[u8],
    size: (usize, usize),
    target: (usize, usize),
    filter: Filter,
    normalize: &Normalize,
) -> Vec<f32> {
    let resized = if size == target {
        rgb.to_vec()
    } else {
        resize(rgb, size, 3, target, filter)
    };
    let (width, height) = target;
    let plane = width * height;
    let mut out = vec![0f32; 3 * plane];
    for (i, pixel) in resized.chunks_exact(3).enumerate() {
        for c in 0..3 {
            // transformers rescales in f64 and stores f32.
            let value = (f64::from(pixel[c]) * normalize.rescale) as f32;
            out[c * plane + i] = (value - normalize.mean[c] as f32) / normalize.std[c] as f32;
        }
    }
    out
}

/// The Qwen-VL families' patch geometry and size limits.
#[derive(Debug, Clone, PartialEq)]
pub struct QwenVision {
    pub patch_size: usize,
    pub merge_size: usize,
    pub temporal_patch_size: usize,
    pub min_pixels: usize,
    pub max_pixels: usize,
    pub normalize: Normalize,
}

/// A Qwen-VL model's input for one RGB image: one row per patch, rows by
/// merge block (raster order) then raster order inside the block; each row
/// holds channel, then frame (the image repeated `temporal_patch_size`
/// times), then the patch's rows and columns. With the grid (t, h, w) in
/// patches.
pub fn qwen_pixel_values(
    rgb: &[u8],
    size: (usize, usize),
    vision: &QwenVision,
) -> Result<(Vec<f32>, [usize; 3]), VisionError> {
    let (width, height) = size;
    let patch = vision.patch_size;
    let merge = vision.merge_size;
    let temporal = vision.temporal_patch_size;
    if patch == 0 || merge == 0 || temporal == 0 {
        return Err(VisionError(
            "patch_size, merge_size and temporal_patch_size must not be zero".into(),
        ));
    }
    let (new_height, new_width) = smart_resize(
        height,
        width,
        patch * merge,
        vision.min_pixels,
        vision.max_pixels,
    )?;
    let resized = if (new_width, new_height) == size {
        rgb.to_vec()
    } else {
        resize(rgb, size, 3, (new_width, new_height), Filter::Bicubic)
    };
    let n = &vision.normalize;
    let rescale = n.rescale as f32;
    let normalized: Vec<f32> = resized
        .chunks_exact(3)
        .flat_map(|pixel| {
            (0..3).map(move |c| {
                // mlx-vlm multiplies in f32.
                (f32::from(pixel[c]) * rescale - n.mean[c] as f32) / n.std[c] as f32
            })
        })
        .collect();
    let (grid_h, grid_w) = (new_height / patch, new_width / patch);
    let columns = 3 * temporal * patch * patch;
    let mut out = vec![0f32; grid_h * grid_w * columns];
    let mut row = 0;
    for block_y in 0..grid_h / merge {
        for block_x in 0..grid_w / merge {
            for i in 0..merge {
                for j in 0..merge {
                    let (py0, px0) = ((block_y * merge + i) * patch, (block_x * merge + j) * patch);
                    let mut column = row * columns;
                    for c in 0..3 {
                        for _frame in 0..temporal {
                            for y in 0..patch {
                                for x in 0..patch {
                                    out[column] =
                                        normalized[((py0 + y) * new_width + px0 + x) * 3 + c];
                                    column += 1;
                                }
                            }
                        }
                    }
                    row += 1;
                }
            }
        }
    }
    Ok((out, [1, grid_h, grid_w]))
}
