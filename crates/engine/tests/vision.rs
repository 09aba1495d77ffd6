//! Gemma 3 with images against the reference, mlx-vlm: a small random-weight
//! model built and saved by mlx-vlm's own classes (scripts/vision_reference.py),
//! loaded by both, given the same prompt ids and `pixel_values`. The logits
//! of the last prompt position must agree within 1e-4 and greedy decoding
//! must give the same tokens, with one image and with two, in float32 and
//! quantized to 4 bits.

mod common;

use std::path::Path;
use std::process::Command;

use mlx_rs::Array;
use orchard_engine::{GenerateOptions, Model, PromptCache, PromptImage, TextStream, generate};
use serde_json::{Value, json};

const IMAGE: u32 = 262_144;
const BOI: u32 = 255_999;
const EOI: u32 = 256_000;
/// The test model's `mm_tokens_per_image` and image side.
const TOKENS_PER_IMAGE: usize = 16;
const SIDE: usize = 32;
const GREEDY: usize = 12;

fn script() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/vision_reference.py")
}

fn python(args: &[&std::ffi::OsStr]) {
    let output = Command::new(common::deps_dir().join("venv/bin/python"))
        .arg(script())
        .args(args)
        .output()
        .expect("run vision_reference.py");
    assert!(
        output.status.success(),
        "vision_reference.py: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A chat turn around `images` images: `<start_of_image>`, the image's
/// tokens and `<end_of_image>` for each, between text tokens.
fn prompt(images: usize) -> Vec<u32> {
    let mut ids = vec![2, 105, 2364, 107, 82858, 1117, 236761, 108];
    for i in 0..images {
        ids.push(BOI);
        ids.extend(std::iter::repeat_n(IMAGE, TOKENS_PER_IMAGE));
        ids.extend([EOI, 108, 8922 + i as u32]);
    }
    ids.extend([106, 107, 105, 4368, 107]);
    ids
}

fn image(seed: u64) -> PromptImage {
    let pixels = common::random(3 * SIDE * SIDE, seed, 1.0);
    PromptImage::new(pixels, [3, SIDE, SIDE]).expect("image")
}

struct Case {
    name: &'static str,
    tokens: Vec<u32>,
    images: Vec<PromptImage>,
}

/// mlx-vlm's last-position logits and greedy tokens for each case.
fn reference(dir: &Path, cases: &[Case]) -> Vec<(Vec<f32>, Vec<u32>)> {
    let work = dir.join("reference");
    std::fs::create_dir_all(&work).expect("reference dir");
    let mut requests = Vec::new();
    for case in cases {
        let pixels = work.join(format!("{}.pixels.f32", case.name));
        let bytes: Vec<u8> = case
            .images
            .iter()
            .flat_map(|image| image.pixels.iter().flat_map(|v| v.to_le_bytes()))
            .collect();
        std::fs::write(&pixels, bytes).expect("pixels");
        requests.push(json!({
            "name": case.name,
            "tokens": case.tokens,
            "pixel_values": pixels,
            "shape": [case.images.len(), 3, SIDE, SIDE],
            "greedy_tokens": GREEDY,
        }));
    }
    let request = work.join("request.json");
    std::fs::write(
        &request,
        json!({"model": dir, "cases": requests}).to_string(),
    )
    .expect("request");
    python(&["run".as_ref(), request.as_os_str(), work.as_os_str()]);
    let result: Value =
        serde_json::from_slice(&std::fs::read(work.join("result.json")).expect("result"))
            .expect("json");
    cases
        .iter()
        .map(|case| {
            let logits = std::fs::read(work.join(format!("{}.logits.f32", case.name)))
                .expect("logits")
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            let greedy = result["cases"][case.name]["greedy"]
                .as_array()
                .expect("greedy")
                .iter()
                .map(|t| t.as_u64().expect("id") as u32)
                .collect();
            (logits, greedy)
        })
        .collect()
}

/// Orchard's last-position logits: the whole prompt in one forward pass
/// with the vision tower's features in place of the image tokens.
fn logits(model: &Model, case: &Case) -> Vec<f32> {
    let pixels: Vec<f32> = case
        .images
        .iter()
        .flat_map(|image| image.pixels.iter().copied())
        .collect();
    let n = case.images.len() as i32;
    let pixels = Array::from_slice(&pixels, &[n, 3, SIDE as i32, SIDE as i32]);
    let features = model.encode_images(&pixels).expect("vision tower");
    assert_eq!(
        features.shape(),
        [n, TOKENS_PER_IMAGE as i32, 64],
        "one feature per image token"
    );
    let features = features.reshape(&[-1, 64]).expect("rows");
    let positions: Vec<usize> = (0..case.tokens.len())
        .filter(|&i| case.tokens[i] == IMAGE)
        .collect();
    let out = model
        .forward_with_images(&case.tokens, &positions, &features, &mut model.new_cache())
        .expect("forward");
    let last = out.shape()[1] - 1;
    let last = out
        .take_axis(Array::from_int(last), 1)
        .expect("last")
        .as_dtype(mlx_rs::Dtype::Float32)
        .expect("f32");
    last.eval().expect("eval");
    last.as_slice::<f32>().to_vec()
}

fn greedy_options(images: &[PromptImage]) -> GenerateOptions {
    GenerateOptions {
        max_tokens: GREEDY,
        ignore_eos: true,
        images: images.to_vec(),
        // Chunks that cut through images: features are placed by position.
        prefill_chunk: 7,
        ..Default::default()
    }
}

#[test]
fn gemma3_with_images_matches_mlx_vlm() {
    check_gemma3("0");
}

/// Quantized as mlx-vlm's conversion does by default: the vision tower's
/// linear layers and its position table too.
#[test]
fn gemma3_with_images_quantized_to_4_bits_matches_mlx_vlm() {
    check_gemma3("4");
}

fn check_gemma3(bits: &str) {
    let work = tempfile::tempdir().expect("tempdir");
    let dir = work.path().join("gemma3");
    python(&["model".as_ref(), dir.as_os_str(), bits.as_ref()]);
    let model = Model::load(&dir).expect("Orchard loads Gemma 3 with images");
    assert_eq!(model.image_token(), Some(IMAGE));
    let cases = [
        Case {
            name: "one_image",
            tokens: prompt(1),
            images: vec![image(1)],
        },
        Case {
            name: "two_images",
            tokens: prompt(2),
            images: vec![image(2), image(3)],
        },
    ];
    let expected = reference(&dir, &cases);
    for (case, (expected_logits, expected_greedy)) in cases.iter().zip(expected) {
        let ours = logits(&model, case);
        assert_eq!(
            ours.len(),
            expected_logits.len(),
            "{}: vocabulary",
            case.name
        );
        let diff = ours
            .iter()
            .zip(&expected_logits)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        eprintln!(
            "{} ({bits} bits): max |logit difference| {diff:e}",
            case.name
        );
        assert!(diff <= 1e-4, "{}: logits differ by {diff}", case.name);
        let output =
            generate(&model, &case.tokens, greedy_options(&case.images)).expect("generate");
        assert_eq!(
            output.tokens, expected_greedy,
            "{}: greedy tokens",
            case.name
        );
    }
}

/// The same image after the same text is a prompt-cache hit: the vision
/// tower is skipped and the tokens are the same. Another image at the same
/// place is a miss from its first token.
#[test]
fn the_prompt_cache_tells_images_apart() {
    let work = tempfile::tempdir().expect("tempdir");
    let dir = work.path().join("gemma3");
    python(&["model".as_ref(), dir.as_os_str()]);
    let model = Model::load(&dir).expect("load");
    let mut store = PromptCache::new(64 << 20);
    let tokens = prompt(1);
    let first_image = tokens.iter().position(|&t| t == IMAGE).expect("image");
    let run = |store: &mut PromptCache, image: PromptImage| {
        let mut stream =
            TextStream::with_prompt_cache(&model, &tokens, greedy_options(&[image]), store)
                .expect("stream");
        let cached = stream.cached_tokens();
        let mut out = Vec::new();
        for event in stream.by_ref() {
            if let orchard_engine::Event::Delta { tokens, .. } = event.expect("event") {
                out.extend(tokens.iter().map(|t| t.token));
            }
        }
        (cached, out)
    };
    let (cold, cold_tokens) = run(&mut store, image(1));
    assert_eq!(cold, 0);
    let (warm, warm_tokens) = run(&mut store, image(1));
    assert_eq!(
        warm,
        tokens.len() - 1,
        "the whole prompt but its last token"
    );
    assert_eq!(warm_tokens, cold_tokens);
    let (other, other_tokens) = run(&mut store, image(9));
    assert_eq!(other, first_image, "reuse stops where the images differ");
    let alone = generate(&model, &tokens, greedy_options(&[image(9)])).expect("generate");
    assert_eq!(
        other_tokens, alone.tokens,
        "a partial hit decodes as a cold run"
    );
    assert_ne!(other_tokens, cold_tokens, "the image changes the answer");
}

/// Transformers saves the same model with other names (`model.language_model.`,
/// `model.vision_tower.`, ...) and the patch kernel as (out, in, kh, kw):
/// such a checkpoint gives the same logits.
#[test]
fn a_checkpoint_in_the_transformers_layout_loads_the_same() {
    let work = tempfile::tempdir().expect("tempdir");
    let mlx = work.path().join("mlx");
    python(&["model".as_ref(), mlx.as_os_str()]);
    let hf = work.path().join("hf");
    std::fs::create_dir_all(&hf).expect("dir");
    for entry in std::fs::read_dir(&mlx).expect("files") {
        let path = entry.expect("file").path();
        if path.extension().is_none_or(|e| e != "safetensors") {
            std::fs::copy(&path, hf.join(path.file_name().expect("name"))).expect("copy");
        }
    }
    let tensors = Array::load_safetensors(mlx.join("model.safetensors")).expect("weights");
    let renamed: Vec<(String, Array)> = tensors
        .into_iter()
        .map(|(name, tensor)| {
            let name = if let Some(rest) = name.strip_prefix("language_model.model.") {
                format!("model.language_model.{rest}")
            } else {
                format!("model.{name}")
            };
            let tensor = if name.ends_with("patch_embedding.weight") {
                tensor.transpose_axes(&[0, 3, 1, 2]).expect("OIHW")
            } else {
                tensor
            };
            (name, tensor)
        })
        .collect();
    Array::save_safetensors(
        renamed.iter().map(|(n, a)| (n.as_str(), a)),
        &std::collections::HashMap::new(),
        hf.join("model.safetensors"),
    )
    .expect("save");
    let case = Case {
        name: "one_image",
        tokens: prompt(1),
        images: vec![image(4)],
    };
    let expected = logits(&Model::load(&mlx).expect("mlx layout"), &case);
    let got = logits(&Model::load(&hf).expect("transformers layout"), &case);
    assert_eq!(got, expected);
}

fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .expect("read")
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// The Qwen2.5-VL vision tower (windowed and full attention, 2D rotary
/// positions, the 2 x 2 merger) on two images and a two-frame video, against
/// mlx-vlm's `VisionModel` with the same random weights and pixels.
#[test]
fn the_qwen2_5_vl_vision_tower_matches_mlx_vlm() {
    let work = tempfile::tempdir().expect("tempdir");
    let dir = work.path().join("tower");
    python(&["qwen-tower".as_ref(), dir.as_os_str()]);
    let tower = orchard_engine::models::qwen_vision::load_tower(&dir).expect("tower");
    let grids: Vec<[usize; 3]> =
        serde_json::from_slice(&std::fs::read(dir.join("grids.json")).expect("grids"))
            .expect("json");
    let pixels = read_f32(&dir.join("pixels.f32"));
    let patches: usize = grids.iter().map(|g| g.iter().product::<usize>()).sum();
    let width = (pixels.len() / patches) as i32;
    let features = tower
        .forward(
            &Array::from_slice(&pixels, &[patches as i32, width]),
            &grids,
        )
        .expect("forward")
        .as_dtype(mlx_rs::Dtype::Float32)
        .expect("f32");
    features.eval().expect("eval");
    let expected = read_f32(&dir.join("features.f32"));
    assert_eq!(features.shape(), [(patches / 4) as i32, 48]);
    let diff = features
        .as_slice::<f32>()
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    eprintln!("qwen2.5-vl tower: max |difference| {diff:e}");
    assert!(diff <= 1e-4, "features differ by {diff}");
}
