//! What the reference tests share: the test images' bytes, and running a
//! reference script in the venv.
// Each test binary uses its part.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Noise bytes from a linear congruential generator: the same as
/// `pixels()` in noise.py, so Rust and the reference see one image.
pub fn pixels(count: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    (0..count)
        .map(|_| {
            state = (state * 1_103_515_245 + 12_345) % (1 << 31);
            ((state >> 16) & 255) as u8
        })
        .collect()
}

/// Runs `script` (in this folder) with the venv's Python (`make setup`) and
/// `args`, and fails the test with its stderr when it fails.
pub fn run_reference(script: &str, args: &[&Path]) {
    let deps = std::env::var_os("ORCHARD_DEPS_DIR").expect("set by .cargo/config.toml");
    let output = Command::new(PathBuf::from(deps).join("venv/bin/python"))
        .arg(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests")
                .join(script),
        )
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {script} with the venv's Python (run `make setup`): {e}"));
    assert!(
        output.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
