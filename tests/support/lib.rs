//! Helpers shared by the cross-crate tests: deterministic inputs and plain-Rust
//! reference maths to check MLX against, and a fake Hugging Face Hub.

pub mod fake_hub;

/// Deterministic pseudo-random numbers in [-1, 1) (a 64-bit LCG), so that every
/// run and every machine checks the same inputs.
pub fn uniform(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// `a` (m x k) times `b` (k x n), row-major, accumulated in f64.
pub fn matmul(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let sum: f64 = (0..k)
                .map(|t| f64::from(a[i * k + t]) * f64::from(b[t * n + j]))
                .sum();
            out[i * n + j] = sum as f32;
        }
    }
    out
}

/// Softmax of each row of length `n`.
pub fn softmax_rows(x: &[f32], n: usize) -> Vec<f32> {
    x.chunks(n)
        .flat_map(|row| {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let exps: Vec<f64> = row.iter().map(|&v| f64::from(v - max).exp()).collect();
            let total: f64 = exps.iter().sum();
            exps.into_iter().map(move |e| (e / total) as f32)
        })
        .collect()
}

/// The largest absolute difference between two equally long slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "compared slices differ in length");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
