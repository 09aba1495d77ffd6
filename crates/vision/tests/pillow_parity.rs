//! `orchard_vision::resize` gives the bytes Pillow gives, for both filters,
//! shrinking and growing, each axis alone and both, on noise (where any
//! error in a weight, a rounding or the order of the passes shows).
//! Pillow runs in the project's venv (`make setup`), as the reference's
//! preprocessing does.

mod common;

use common::{pixels, run_reference};
use orchard_vision::{Filter, resize};

struct Case {
    size: (usize, usize),
    channels: usize,
    new_size: (usize, usize),
    filter: Filter,
    seed: u64,
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    // Chosen sizes: Gemma's square, Qwen's grid, one axis only, tall shrinks
    // (vertical pass first), one-pixel images, large reductions.
    let fixed = [
        ((37, 23), (32, 32)),
        ((64, 48), (56, 84)),
        ((50, 30), (50, 12)),
        ((30, 50), (7, 50)),
        ((20, 90), (18, 10)),
        ((90, 20), (10, 18)),
        ((1, 1), (5, 3)),
        ((7, 1), (1, 1)),
        ((300, 200), (28, 28)),
        ((13, 17), (26, 34)),
    ];
    let mut seed = 1;
    for (size, new_size) in fixed {
        for filter in [Filter::Bilinear, Filter::Bicubic] {
            for channels in [1, 3] {
                cases.push(Case {
                    size,
                    channels,
                    new_size,
                    filter,
                    seed,
                });
                seed += 1;
            }
        }
    }
    // And sizes from a generator, each side 1 to 80.
    let dims = pixels(4 * 60, 977);
    for (n, d) in dims.chunks(4).enumerate() {
        let side = |b: u8| 1 + usize::from(b) % 80;
        cases.push(Case {
            size: (side(d[0]), side(d[1])),
            channels: 3,
            new_size: (side(d[2]), side(d[3])),
            filter: if n % 2 == 0 {
                Filter::Bilinear
            } else {
                Filter::Bicubic
            },
            seed: 1000 + n as u64,
        });
    }
    cases
}

#[test]
fn resizing_gives_the_bytes_pillow_gives() {
    let cases = cases();
    let scratch = tempfile::tempdir().expect("scratch folder");
    let request: Vec<serde_json::Value> = cases
        .iter()
        .map(|c| {
            serde_json::json!({
                "width": c.size.0, "height": c.size.1, "channels": c.channels,
                "new_width": c.new_size.0, "new_height": c.new_size.1,
                "filter": match c.filter { Filter::Bilinear => 2, Filter::Bicubic => 3 },
                "seed": c.seed,
            })
        })
        .collect();
    let request_path = scratch.path().join("cases.json");
    let answer_path = scratch.path().join("pillow.json");
    std::fs::write(&request_path, serde_json::to_vec(&request).expect("json")).expect("write");
    run_reference("pillow_resize.py", &[&request_path, &answer_path]);
    let answers: Vec<String> =
        serde_json::from_slice(&std::fs::read(&answer_path).expect("read")).expect("json");
    assert_eq!(answers.len(), cases.len());
    let mut wrong = Vec::new();
    for (case, expected) in cases.iter().zip(&answers) {
        let image = pixels(case.size.0 * case.size.1 * case.channels, case.seed);
        let ours = resize(&image, case.size, case.channels, case.new_size, case.filter);
        let hex: String = ours.iter().map(|b| format!("{b:02x}")).collect();
        if &hex != expected {
            let differing = hex
                .as_bytes()
                .chunks(2)
                .zip(expected.as_bytes().chunks(2))
                .filter(|(a, b)| a != b)
                .count();
            wrong.push(format!(
                "{:?} x{} -> {:?} {:?}: {differing} of {} bytes differ",
                case.size,
                case.channels,
                case.new_size,
                case.filter,
                ours.len()
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} cases differ from Pillow:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
