//! Images in prompts (issue 12). A model that takes images stands each one
//! in for a run of its image token (Gemma 3: `mm_tokens_per_image` of
//! them); the prefill puts the vision tower's features in place of those
//! tokens' embeddings. The tower runs once per image per request, and not
//! at all when the prompt cache already holds the image's positions.
//!
//! The prompt cache keys a prompt by its tokens, so two different images
//! would look alike there: [`cache_key`] writes each image position as an
//! id made from the image's pixels instead, above every vocabulary's ids.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;
use std::sync::Arc;

use orchard_vision::{Filter, Normalize, VisionError, gemma3_pixel_values};
use serde::Deserialize;

use crate::config::ModelConfig;
use crate::error::{EngineError, Result};
use crate::model::Model;
use crate::tokenizer::Tokenizer;

/// One image of a prompt: its pixels as the model's processor made them,
/// and the prompt positions of its tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptImage {
    /// (channels, height, width), float32.
    pub pixels: Arc<[f32]>,
    pub shape: [usize; 3],
    /// Identifies the pixels in the prompt cache.
    pub hash: u64,
    /// The image's tokens: `len` positions from `start`; set by [`place`].
    pub start: usize,
    pub len: usize,
}

impl PromptImage {
    /// An image of `shape` (channels, height, width) with these pixels, not
    /// yet placed in a prompt.
    pub fn new(pixels: Vec<f32>, shape: [usize; 3]) -> Result<PromptImage> {
        if shape.iter().product::<usize>() != pixels.len() || pixels.is_empty() {
            return Err(EngineError::InvalidParameter {
                name: "images",
                message: format!(
                    "{} pixel values do not make an image of shape {shape:?}",
                    pixels.len()
                ),
            });
        }
        let mut hasher = DefaultHasher::new();
        shape.hash(&mut hasher);
        for value in &pixels {
            value.to_bits().hash(&mut hasher);
        }
        Ok(PromptImage {
            pixels: pixels.into(),
            shape,
            hash: hasher.finish(),
            start: 0,
            len: 0,
        })
    }
}

/// The architectures (`model_type`) Orchard reads images with.
pub const IMAGE_ARCHITECTURES: &[&str] = &["gemma3"];

/// Whether the model in `dir` takes images (by its config's `model_type`).
pub fn takes_images(dir: &Path) -> bool {
    ModelConfig::load(dir).is_ok_and(|c| IMAGE_ARCHITECTURES.contains(&c.model_type.as_str()))
}

/// How a model's images become prompt text and pixels: its processor's
/// settings (`preprocessor_config.json`) and image tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageProcessor {
    /// What the chat template writes where an image goes.
    placeholder: String,
    /// What each placeholder becomes before tokenizing.
    expansion: String,
    /// Images are resized to exactly this (width, height).
    size: (usize, usize),
    filter: Filter,
    normalize: Normalize,
}

/// The keys of `preprocessor_config.json` read (defaults: Gemma 3's).
#[derive(Debug, Deserialize)]
struct Preprocessor {
    size: Option<Size>,
    resample: Option<u32>,
    rescale_factor: Option<f64>,
    image_mean: Option<[f64; 3]>,
    image_std: Option<[f64; 3]>,
    do_pan_and_scan: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct Size {
    height: usize,
    width: usize,
}

impl ImageProcessor {
    /// The processor of the model in `dir`, for an architecture that takes
    /// images; None for the others.
    pub fn load(dir: &Path, config: &ModelConfig, tokenizer: &Tokenizer) -> Result<Option<Self>> {
        if !IMAGE_ARCHITECTURES.contains(&config.model_type.as_str()) {
            return Ok(None);
        }
        let path = dir.join("preprocessor_config.json");
        let pre: Preprocessor = match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| {
                EngineError::invalid(&path, format!("not a valid image processor config: {e}"))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(EngineError::file(
                    &path,
                    "missing: the model takes images and needs its image processor's settings",
                ));
            }
            Err(e) => return Err(EngineError::file(&path, format!("cannot read: {e}"))),
        };
        if pre.do_pan_and_scan == Some(true) {
            return Err(EngineError::invalid(
                &path,
                "pan-and-scan (several crops per image) is not supported yet",
            ));
        }
        let raw = &config.raw;
        let number = |keys: &[&str]| -> Option<u64> {
            keys.iter().find_map(|key| {
                let mut value = raw;
                for part in key.split('.') {
                    value = value.get(part)?;
                }
                value.as_u64()
            })
        };
        let token = |key: &str, default: u32| -> Result<String> {
            let id = number(&[key]).map_or(default, |id| id as u32);
            tokenizer.token_text(id).ok_or_else(|| {
                EngineError::invalid(
                    &config.path,
                    format!("the tokenizer has no token {id} ({key})"),
                )
            })
        };
        let per_image = number(&["text_config.mm_tokens_per_image", "mm_tokens_per_image"])
            .unwrap_or(256) as usize;
        let side = number(&["vision_config.image_size"]).unwrap_or(224) as usize;
        let (start, image, end) = (
            token("boi_token_index", 255_999)?,
            token("image_token_index", 262_144)?,
            token("eoi_token_index", 256_000)?,
        );
        let filter = match pre.resample.unwrap_or(2) {
            2 => Filter::Bilinear,
            3 => Filter::Bicubic,
            other => {
                return Err(EngineError::invalid(
                    &path,
                    format!("resample {other} is not supported: use 2 (bilinear) or 3 (bicubic)"),
                ));
            }
        };
        Ok(Some(ImageProcessor {
            // Gemma 3's processor writes blank lines around each image.
            expansion: format!("\n\n{start}{}{end}\n\n", image.repeat(per_image)),
            placeholder: start,
            size: pre.size.map_or((side, side), |s| (s.width, s.height)),
            filter,
            normalize: Normalize {
                rescale: pre.rescale_factor.unwrap_or(1.0 / 255.0),
                mean: pre.image_mean.unwrap_or([0.5; 3]),
                std: pre.image_std.unwrap_or([0.5; 3]),
            },
        }))
    }

    /// The text the chat template writes where an image goes.
    pub fn placeholder(&self) -> &str {
        &self.placeholder
    }

    /// Decodes an image file and makes the model's pixels of it.
    pub fn prepare(&self, bytes: &[u8]) -> std::result::Result<PromptImage, VisionError> {
        let rgb = orchard_vision::decode(bytes)?;
        let pixels = gemma3_pixel_values(
            &rgb.pixels,
            (rgb.width, rgb.height),
            self.size,
            self.filter,
            &self.normalize,
        );
        let (width, height) = self.size;
        PromptImage::new(pixels, [3, height, width]).map_err(|e| VisionError(e.to_string()))
    }

    /// `text` (a rendered prompt) with each of its `images` placeholders
    /// expanded to the image's tokens; an error when the count differs
    /// (text that writes the placeholder itself).
    pub fn expand(&self, text: &str, images: usize) -> Result<String> {
        let found = text.matches(self.placeholder.as_str()).count();
        if found != images {
            return Err(EngineError::InvalidParameter {
                name: "messages",
                message: format!(
                    "the prompt has {found} image places ({}) for {images} images: remove {} from the text",
                    self.placeholder, self.placeholder
                ),
            });
        }
        Ok(text.replace(self.placeholder.as_str(), &self.expansion))
    }
}

/// Places `images` in `prompt` for `model` (see [`place`]); an error when
/// there are images and the model does not take them.
pub fn place_for(model: &Model, prompt: &[u32], images: &mut [PromptImage]) -> Result<()> {
    if images.is_empty() {
        return Ok(());
    }
    let token = model
        .image_token()
        .ok_or_else(|| EngineError::InvalidParameter {
            name: "images",
            message: "this model does not take images".into(),
        })?;
    place(prompt, token, images)
}

/// Gives each of `images`, in order, the next run of `image_token` in
/// `prompt`: the prompt must hold exactly one run per image, and end after
/// the last one (the last position's logits come from text).
pub fn place(prompt: &[u32], image_token: u32, images: &mut [PromptImage]) -> Result<()> {
    let mut runs = Vec::new();
    let mut i = 0;
    while i < prompt.len() {
        if prompt[i] == image_token {
            let start = i;
            while i < prompt.len() && prompt[i] == image_token {
                i += 1;
            }
            runs.push((start, i - start));
        } else {
            i += 1;
        }
    }
    let mismatch = |message: String| EngineError::InvalidParameter {
        name: "images",
        message,
    };
    if runs.len() != images.len() {
        return Err(mismatch(format!(
            "the prompt has places for {} images but {} were given",
            runs.len(),
            images.len()
        )));
    }
    if runs
        .last()
        .is_some_and(|&(start, len)| start + len >= prompt.len())
    {
        return Err(mismatch("the prompt cannot end with an image".into()));
    }
    for (image, (start, len)) in images.iter_mut().zip(runs) {
        image.start = start;
        image.len = len;
    }
    Ok(())
}

/// `tokens` (a prompt, or a prompt and what followed it) as the prompt
/// cache keys them: each image position holds an id derived from its
/// image's pixels and its place in the image, with the top bit set (no
/// vocabulary reaches 2^31).
pub fn cache_key(tokens: &[u32], images: &[PromptImage]) -> Vec<u32> {
    let mut key = tokens.to_vec();
    for image in images {
        for j in 0..image.len {
            if let Some(slot) = key.get_mut(image.start + j) {
                *slot = 0x8000_0000 | (mix(image.hash ^ j as u64) as u32 & 0x7FFF_FFFF);
            }
        }
    }
    key
}

/// SplitMix64's finalizer: every bit of the input moves every bit out.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(value: f32) -> PromptImage {
        PromptImage::new(vec![value; 12], [3, 2, 2]).expect("image")
    }

    #[test]
    fn images_take_the_runs_of_image_tokens_in_order() {
        let prompt = [2, 9, 7, 7, 7, 5, 7, 7, 7, 4];
        let mut images = vec![image(0.0), image(1.0)];
        place(&prompt, 7, &mut images).expect("placed");
        assert_eq!((images[0].start, images[0].len), (2, 3));
        assert_eq!((images[1].start, images[1].len), (6, 3));
        let err = place(&prompt, 7, &mut images[..1]).expect_err("one image for two places");
        assert!(err.to_string().contains("2 images but 1"), "{err}");
        let err = place(&[2, 7, 7], 7, &mut images[..1]).expect_err("ends in an image");
        assert!(err.to_string().contains("end with an image"), "{err}");
    }

    #[test]
    fn the_cache_key_tells_images_apart_and_keeps_the_text() {
        let prompt = [2, 9, 7, 7, 7, 5];
        let keyed = |value: f32| {
            let mut images = vec![image(value)];
            place(&prompt, 7, &mut images).expect("placed");
            cache_key(&prompt, &images)
        };
        let (a, b) = (keyed(0.25), keyed(0.5));
        assert_eq!(a, keyed(0.25), "the same pixels give the same key");
        assert_ne!(a[2..5], b[2..5], "other pixels, other key");
        assert_eq!(&a[..2], &prompt[..2]);
        assert_eq!(a[5], prompt[5]);
        assert!(a[2..5].iter().all(|&t| t >= 0x8000_0000));
        assert_ne!(a[2], a[3], "each position of an image has its own id");
    }
}
