//! Gemma 3's and Qwen-VL's `pixel_values` from `orchard_vision` are the
//! reference's, bit for bit: mlx-vlm 0.6.17's image processors run in the
//! venv (`make setup`) on the same RGB images, with the configurations of
//! the released checkpoints and small ones (so that the data stays small
//! and every rule of smart_resize is met: growing to min_pixels, shrinking
//! to max_pixels, rounding ties to even).

mod common;

use base64::Engine;
use common::{pixels, run_reference};
use orchard_vision::{Filter, Normalize, QwenVision, gemma3_pixel_values, qwen_pixel_values};
use serde_json::json;

const CLIP_MEAN: [f64; 3] = [0.48145466, 0.4578275, 0.40821073];
const CLIP_STD: [f64; 3] = [0.26862954, 0.26130258, 0.27577711];
const RESCALE: f64 = 0.00392156862745098;

enum Family {
    Gemma {
        target: (usize, usize),
        filter: Filter,
    },
    Qwen(QwenVision),
}

struct Case {
    size: (usize, usize),
    seed: u64,
    family: Family,
}

fn qwen(min_pixels: usize, max_pixels: usize) -> QwenVision {
    QwenVision {
        patch_size: 14,
        merge_size: 2,
        temporal_patch_size: 2,
        min_pixels,
        max_pixels,
        normalize: Normalize {
            rescale: RESCALE,
            mean: CLIP_MEAN,
            std: CLIP_STD,
        },
    }
}

fn cases() -> Vec<Case> {
    let sizes = [(37, 23), (64, 48), (98, 70), (30, 50), (300, 200), (56, 56)];
    let mut cases = Vec::new();
    for (n, &size) in sizes.iter().enumerate() {
        let seed = 7 + n as u64;
        cases.push(Case {
            size,
            seed,
            family: Family::Gemma {
                target: (32, 32),
                filter: Filter::Bilinear,
            },
        });
        cases.push(Case {
            size,
            seed,
            family: Family::Qwen(qwen(56 * 56, 28 * 28 * 16)),
        });
        // The released Qwen2.5-VL limits (no image here reaches max_pixels).
        cases.push(Case {
            size,
            seed,
            family: Family::Qwen(qwen(3136, 12_845_056)),
        });
    }
    // One full-size Gemma 3 image: 896 x 896.
    cases.push(Case {
        size: (300, 200),
        seed: 99,
        family: Family::Gemma {
            target: (896, 896),
            filter: Filter::Bilinear,
        },
    });
    cases
}

fn config(family: &Family) -> serde_json::Value {
    match family {
        Family::Gemma { target, filter } => json!({
            "size": {"width": target.0, "height": target.1},
            "resample": match filter { Filter::Bilinear => 2, Filter::Bicubic => 3 },
            "rescale_factor": RESCALE,
            "image_mean": [0.5, 0.5, 0.5],
            "image_std": [0.5, 0.5, 0.5],
            "do_pan_and_scan": false,
            "do_convert_rgb": null,
        }),
        Family::Qwen(v) => json!({
            "patch_size": v.patch_size,
            "merge_size": v.merge_size,
            "temporal_patch_size": v.temporal_patch_size,
            "min_pixels": v.min_pixels,
            "max_pixels": v.max_pixels,
            "rescale_factor": v.normalize.rescale,
            "image_mean": v.normalize.mean,
            "image_std": v.normalize.std,
        }),
    }
}

#[test]
fn pixel_values_are_the_reference_processors_bit_for_bit() {
    let cases = cases();
    let scratch = tempfile::tempdir().expect("scratch folder");
    let request: Vec<serde_json::Value> = cases
        .iter()
        .map(|c| {
            json!({
                "width": c.size.0, "height": c.size.1, "seed": c.seed,
                "family": match c.family { Family::Gemma { .. } => "gemma3", Family::Qwen(_) => "qwen" },
                "config": config(&c.family),
            })
        })
        .collect();
    let request_path = scratch.path().join("cases.json");
    let answer_path = scratch.path().join("reference.json");
    std::fs::write(&request_path, serde_json::to_vec(&request).expect("json")).expect("write");
    run_reference("vlm_pixel_values.py", &[&request_path, &answer_path]);
    let answers: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&answer_path).expect("read")).expect("json");
    assert_eq!(answers.len(), cases.len());
    let mut checked_qwen_grids = Vec::new();
    for (case, answer) in cases.iter().zip(&answers) {
        let rgb = pixels(case.size.0 * case.size.1 * 3, case.seed);
        let (ours, grid) = match &case.family {
            Family::Gemma { target, filter } => (
                gemma3_pixel_values(
                    &rgb,
                    case.size,
                    *target,
                    *filter,
                    &Normalize {
                        rescale: RESCALE,
                        mean: [0.5; 3],
                        std: [0.5; 3],
                    },
                ),
                None,
            ),
            Family::Qwen(vision) => {
                let (values, grid) = qwen_pixel_values(&rgb, case.size, vision).expect("qwen");
                checked_qwen_grids.push(grid);
                (values, Some(grid.to_vec()))
            }
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(answer["pixel_values"].as_str().expect("pixel_values"))
            .expect("base64");
        let reference: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let label = format!("{:?} {}", case.size, request_label(&case.family));
        assert_eq!(ours.len(), reference.len(), "{label}: length");
        let differing = ours
            .iter()
            .zip(&reference)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        assert_eq!(
            differing,
            0,
            "{label}: {differing} of {} values differ",
            ours.len()
        );
        let expected_grid: Option<Vec<usize>> =
            serde_json::from_value(answer["grid"].clone()).expect("grid");
        assert_eq!(grid, expected_grid, "{label}: grid");
    }
    // The cases cover growing to min_pixels and a tie rounded to even.
    assert!(
        checked_qwen_grids.contains(&[1, 4, 6]),
        "{checked_qwen_grids:?}"
    );
    assert!(
        checked_qwen_grids.contains(&[1, 4, 8]),
        "{checked_qwen_grids:?}"
    );
}

fn request_label(family: &Family) -> String {
    match family {
        Family::Gemma { target, .. } => format!("gemma3 -> {target:?}"),
        Family::Qwen(v) => format!("qwen {}..{}", v.min_pixels, v.max_pixels),
    }
}
