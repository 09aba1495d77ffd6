//! MLX through mlx-rs and Orchard's own `mlx-sys`, checked number by number
//! against plain-Rust reference maths on deterministic inputs.
//!
//! These are the operations a llama-family forward pass is made of: if the
//! runtime, its BLAS or the bindings were wrong, it would show here first.

use mlx_rs::Array;
use mlx_rs::error::Exception;
use mlx_rs::fast::{self, ScaledDotProductAttentionMask};
use mlx_rs::ops;
use orchard_tests::{matmul, max_abs_diff, softmax_rows, uniform};

type Result<T> = std::result::Result<T, Exception>;

fn array(data: &[f32], shape: &[i32]) -> Array {
    Array::from_slice(data, shape)
}

fn values(a: &Array) -> Result<Vec<f32>> {
    a.eval()?;
    Ok(a.as_slice::<f32>().to_vec())
}

#[test]
fn matmul_matches_reference() -> Result<()> {
    // Odd sizes, so that no kernel gets only the friendly aligned case.
    let (m, k, n) = (37, 129, 23);
    let a = uniform(m * k, 1);
    let b = uniform(k * n, 2);
    let got = values(&ops::matmul(
        array(&a, &[m as i32, k as i32]),
        array(&b, &[k as i32, n as i32]),
    )?)?;
    let diff = max_abs_diff(&got, &matmul(&a, &b, m, k, n));
    assert!(diff < 1e-4, "max abs diff {diff}");
    Ok(())
}

#[test]
fn large_matmul_goes_through_blas_correctly() -> Result<()> {
    // Big enough that MLX hands it to BLAS (OpenBLAS here) rather than a loop.
    let (m, k, n) = (256, 512, 192);
    let a = uniform(m * k, 3);
    let b = uniform(k * n, 4);
    let got = values(&ops::matmul(
        array(&a, &[m as i32, k as i32]),
        array(&b, &[k as i32, n as i32]),
    )?)?;
    let diff = max_abs_diff(&got, &matmul(&a, &b, m, k, n));
    assert!(diff < 1e-3, "max abs diff {diff}");
    Ok(())
}

#[test]
fn softmax_matches_reference() -> Result<()> {
    let (rows, n) = (7, 50);
    // Spread the logits out, as a model's are.
    let x: Vec<f32> = uniform(rows * n, 5).iter().map(|v| v * 12.0).collect();
    let got = values(&ops::softmax_axis(
        array(&x, &[rows as i32, n as i32]),
        -1,
        true,
    )?)?;
    let diff = max_abs_diff(&got, &softmax_rows(&x, n));
    assert!(diff < 1e-6, "max abs diff {diff}");
    Ok(())
}

#[test]
fn rms_norm_matches_reference() -> Result<()> {
    let (rows, n, eps) = (5, 96, 1e-5f32);
    let x = uniform(rows * n, 6);
    let w: Vec<f32> = uniform(n, 7).iter().map(|v| 1.0 + v * 0.5).collect();
    let got = values(&fast::rms_norm(
        array(&x, &[rows as i32, n as i32]),
        Some(&array(&w, &[n as i32])),
        eps,
    )?)?;
    let expected: Vec<f32> = x
        .chunks(n)
        .flat_map(|row| {
            let mean_sq = row.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / n as f64;
            let inv = 1.0 / (mean_sq + f64::from(eps)).sqrt();
            row.iter()
                .zip(&w)
                .map(move |(v, g)| (f64::from(*v) * inv * f64::from(*g)) as f32)
                .collect::<Vec<_>>()
        })
        .collect();
    let diff = max_abs_diff(&got, &expected);
    assert!(diff < 1e-5, "max abs diff {diff}");
    Ok(())
}

/// Rotary embedding of `x` laid out as (heads, seq, dim), rotating all `dim`
/// features. `traditional` pairs neighbours (x[2i], x[2i+1]); otherwise the
/// two halves are paired (x[i], x[i + dim/2]) as Llama's Hugging Face weights expect.
fn rope_reference(
    x: &[f32],
    heads: usize,
    seq: usize,
    dim: usize,
    base: f32,
    offset: usize,
    traditional: bool,
) -> Vec<f32> {
    let half = dim / 2;
    let mut out = x.to_vec();
    for h in 0..heads {
        for p in 0..seq {
            let row = &x[(h * seq + p) * dim..][..dim];
            let dst = &mut out[(h * seq + p) * dim..][..dim];
            for i in 0..half {
                let freq = f64::from(base).powf(-(2.0 * i as f64) / dim as f64);
                let angle = (offset + p) as f64 * freq;
                let (sin, cos) = angle.sin_cos();
                let (a, b) = if traditional {
                    (2 * i, 2 * i + 1)
                } else {
                    (i, i + half)
                };
                let (xa, xb) = (f64::from(row[a]), f64::from(row[b]));
                dst[a] = (xa * cos - xb * sin) as f32;
                dst[b] = (xa * sin + xb * cos) as f32;
            }
        }
    }
    out
}

#[test]
fn rope_matches_reference_in_both_layouts() -> Result<()> {
    let (heads, seq, dim, base, offset) = (3, 11, 64, 10_000.0f32, 5);
    let x = uniform(heads * seq * dim, 8);
    let input = array(&x, &[1, heads as i32, seq as i32, dim as i32]);
    for traditional in [false, true] {
        let got = values(&fast::rope(
            &input,
            dim as i32,
            traditional,
            base,
            1.0,
            offset as i32,
            None,
        )?)?;
        let expected = rope_reference(&x, heads, seq, dim, base, offset, traditional);
        let diff = max_abs_diff(&got, &expected);
        assert!(
            diff < 1e-5,
            "traditional={traditional}: max abs diff {diff}"
        );
    }
    Ok(())
}

#[test]
fn causal_attention_with_grouped_kv_heads_matches_reference() -> Result<()> {
    // 4 query heads share 2 key/value heads, as in grouped-query attention.
    let (heads, kv_heads, seq, dim) = (4, 2, 9, 32);
    let q = uniform(heads * seq * dim, 9);
    let k = uniform(kv_heads * seq * dim, 10);
    let v = uniform(kv_heads * seq * dim, 11);
    let scale = 1.0 / (dim as f32).sqrt();
    let got = values(&fast::scaled_dot_product_attention(
        array(&q, &[1, heads as i32, seq as i32, dim as i32]),
        array(&k, &[1, kv_heads as i32, seq as i32, dim as i32]),
        array(&v, &[1, kv_heads as i32, seq as i32, dim as i32]),
        scale,
        ScaledDotProductAttentionMask::Causal,
        None,
    )?)?;

    let mut expected = vec![0.0f32; heads * seq * dim];
    for h in 0..heads {
        let kv = h / (heads / kv_heads);
        for i in 0..seq {
            let qi = &q[(h * seq + i) * dim..][..dim];
            // Position i attends to positions 0..=i only.
            let scores: Vec<f32> = (0..=i)
                .map(|j| {
                    let kj = &k[(kv * seq + j) * dim..][..dim];
                    qi.iter().zip(kj).map(|(a, b)| a * b).sum::<f32>() * scale
                })
                .collect();
            let weights = softmax_rows(&scores, scores.len());
            for (j, w) in weights.iter().enumerate() {
                let vj = &v[(kv * seq + j) * dim..][..dim];
                for d in 0..dim {
                    expected[(h * seq + i) * dim + d] += w * vj[d];
                }
            }
        }
    }
    let diff = max_abs_diff(&got, &expected);
    assert!(diff < 1e-5, "max abs diff {diff}");
    Ok(())
}

/// Unpacks MLX's affine 4-bit format: each u32 holds 8 codes, lowest nibble
/// first; each group of `group` weights along a row shares a scale and a bias.
fn dequantize_4bit(
    packed: &[u32],
    scales: &[f32],
    biases: &[f32],
    rows: usize,
    cols: usize,
    group: usize,
) -> Vec<f32> {
    let words_per_row = cols / 8;
    let groups_per_row = cols / group;
    let mut out = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        for c in 0..cols {
            let word = packed[r * words_per_row + c / 8];
            let code = (word >> (4 * (c % 8))) & 0xF;
            let g = r * groups_per_row + c / group;
            out.push(scales[g] * code as f32 + biases[g]);
        }
    }
    out
}

#[test]
fn four_bit_quantize_and_quantized_matmul_match_reference() -> Result<()> {
    let (out_features, in_features, group, tokens) = (48, 256, 32, 5);
    let w = uniform(out_features * in_features, 12);
    let (packed, scales, biases) = ops::quantize(
        array(&w, &[out_features as i32, in_features as i32]),
        group as i32,
        4,
    )?;
    packed.eval()?;
    assert_eq!(
        packed.shape(),
        [out_features as i32, (in_features / 8) as i32]
    );
    let scales_v = values(&scales)?;
    let biases_v = values(&biases)?;
    assert_eq!(scales_v.len(), out_features * in_features / group);

    // Quantization itself: every weight comes back within one step of its group.
    let deq = dequantize_4bit(
        packed.as_slice::<u32>(),
        &scales_v,
        &biases_v,
        out_features,
        in_features,
        group,
    );
    for (i, (orig, back)) in w.iter().zip(&deq).enumerate() {
        let step = scales_v[i / group].abs();
        assert!(
            (orig - back).abs() <= step + 1e-6,
            "weight {i}: {orig} came back as {back} (step {step})"
        );
    }

    // The quantized matmul equals a plain matmul with the dequantized weights.
    let x = uniform(tokens * in_features, 13);
    let got = values(&ops::quantized_matmul(
        array(&x, &[tokens as i32, in_features as i32]),
        &packed,
        &scales,
        &biases,
        true,
        group as i32,
        4,
    )?)?;
    // x (tokens x in) times deq^T (in x out).
    let mut deq_t = vec![0.0f32; in_features * out_features];
    for o in 0..out_features {
        for i in 0..in_features {
            deq_t[i * out_features + o] = deq[o * in_features + i];
        }
    }
    let diff = max_abs_diff(&got, &matmul(&x, &deq_t, tokens, in_features, out_features));
    assert!(diff < 1e-4, "max abs diff {diff}");
    Ok(())
}
