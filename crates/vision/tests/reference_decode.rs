//! Image files decode to the RGB the reference reads: mlx-vlm's
//! `load_image` (Pillow: EXIF orientation applied, converted to RGB with
//! alpha dropped), on files Pillow wrote in each mode and format. Lossless
//! formats must match exactly; JPEG decoders may round differently from
//! libjpeg-turbo, so JPEG is held to a small bound (and the preprocessing
//! parity is tested from RGB, in reference_pixel_values.rs).

mod common;

use common::run_reference;

/// The largest difference allowed in a JPEG's decoded values, out of 255:
/// 3 was measured (zune-jpeg against libjpeg-turbo on x86-64); decoders'
/// SIMD paths differ by machine, and a wrong colour conversion or chroma
/// upsampling shows as tens.
const JPEG_MAX_DIFFERENCE: u8 = 8;

#[test]
fn files_decode_to_the_rgb_the_reference_reads() {
    let scratch = tempfile::tempdir().expect("scratch folder");
    let answer_path = scratch.path().join("reference.json");
    run_reference("vlm_load_image.py", &[scratch.path(), &answer_path]);
    let answers: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&answer_path).expect("read")).expect("json");
    assert_eq!(answers.len(), 10, "{:?}", answers.keys());
    for (name, answer) in &answers {
        let file = scratch.path().join(answer["file"].as_str().expect("file"));
        let ours = orchard_vision::decode(&std::fs::read(&file).expect("image file"))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let size = |key: &str| answer[key].as_u64().expect("size") as usize;
        assert_eq!(
            (ours.width, ours.height),
            (size("width"), size("height")),
            "{name}: size"
        );
        let hex = answer["rgb"].as_str().expect("rgb");
        let reference: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
            .collect();
        assert_eq!(ours.pixels.len(), reference.len(), "{name}: length");
        let worst = ours
            .pixels
            .iter()
            .zip(&reference)
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap_or(0);
        let bound = if name.starts_with("jpeg") {
            JPEG_MAX_DIFFERENCE
        } else {
            0
        };
        assert!(
            worst <= bound,
            "{name}: values differ from the reference's by up to {worst} (allowed {bound})"
        );
    }
}
