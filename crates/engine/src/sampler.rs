//! Choosing the next token from the logits, on the host: penalties and
//! logit_bias first, then greedy or temperature sampling with top-k, top-p and
//! min-p filtering (the order of mlx-lm's `sample_utils.make_sampler`).
//!
//! The vocabulary's logits are copied out once per step (a few hundred KB), so
//! every filter is exact and a seed reproduces the same tokens on every device.

use std::collections::HashMap;

use crate::error::{EngineError, Result};

/// How to pick tokens. The default is greedy decoding.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 picks the most likely token (greedy).
    pub temperature: f32,
    /// Keep the smallest set of tokens whose probability adds up to `top_p` (1 = off).
    pub top_p: f32,
    /// Keep only the `top_k` most likely tokens (0 = off).
    pub top_k: usize,
    /// Drop tokens less likely than `min_p` times the most likely one (0 = off).
    pub min_p: f32,
    /// Divide positive logits (multiply negative ones) of tokens already seen (1 = off).
    pub repetition_penalty: f32,
    /// Subtract this from the logit of every token already generated (0 = off).
    pub presence_penalty: f32,
    /// Subtract this times its count from the logit of every generated token (0 = off).
    pub frequency_penalty: f32,
    /// Added to the logits of the given token ids before anything else.
    pub logit_bias: HashMap<u32, f32>,
    /// Seeds the random choice; `None` draws a seed from the clock.
    pub seed: Option<u64>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            logit_bias: HashMap::new(),
            seed: None,
        }
    }
}

impl SamplingParams {
    /// Rejects values outside their ranges, naming the parameter.
    pub fn validate(&self) -> Result<()> {
        let bad = |name: &'static str, message: String| {
            Err(EngineError::InvalidParameter { name, message })
        };
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return bad(
                "temperature",
                format!("{} must be a finite number >= 0", self.temperature),
            );
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p", format!("{} must be in (0, 1]", self.top_p));
        }
        if !(0.0..1.0).contains(&self.min_p) {
            return bad("min_p", format!("{} must be in [0, 1)", self.min_p));
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return bad(
                "repetition_penalty",
                format!("{} must be > 0", self.repetition_penalty),
            );
        }
        for (name, value) in [
            ("presence_penalty", self.presence_penalty),
            ("frequency_penalty", self.frequency_penalty),
        ] {
            if !(-2.0..=2.0).contains(&value) {
                return bad(name, format!("{value} must be in [-2, 2]"));
            }
        }
        Ok(())
    }
}

/// One alternative token with its log-probability.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenLogprob {
    pub token: u32,
    pub logprob: f32,
}

/// The chosen token, its log-probability and the most likely alternatives,
/// all under the model's distribution after penalties and bias.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampled {
    pub token: u32,
    pub logprob: f32,
    pub top: Vec<TokenLogprob>,
}

/// Stateful sampler for one sequence.
#[derive(Debug)]
pub struct Sampler {
    params: SamplingParams,
    rng: SplitMix64,
    /// How often each generated token occurred (presence/frequency penalties).
    generated: HashMap<u32, u32>,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Result<Self> {
        params.validate()?;
        let seed = params.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
        Ok(Sampler {
            params,
            rng: SplitMix64(seed),
            generated: HashMap::new(),
        })
    }

    /// True when sampling is plain greedy (no penalties, no bias): the choice
    /// then needs no host-side state and can run on the device.
    pub fn is_plain_greedy(&self) -> bool {
        let p = &self.params;
        p.temperature == 0.0
            && p.repetition_penalty == 1.0
            && p.presence_penalty == 0.0
            && p.frequency_penalty == 0.0
            && p.logit_bias.is_empty()
    }

    /// Picks the next token from `logits` (one per vocabulary entry). `context`
    /// is every token so far (prompt and generated), for the repetition penalty.
    /// `top_logprobs` alternatives are reported with it.
    pub fn sample(&mut self, logits: &mut [f32], context: &[u32], top_logprobs: usize) -> Sampled {
        self.adjust(logits, context);
        let logprobs = log_softmax(logits);
        let token = if self.params.temperature == 0.0 {
            argmax(logits)
        } else {
            self.draw(&logprobs)
        };
        *self.generated.entry(token).or_insert(0) += 1;
        Sampled {
            token,
            logprob: logprobs[token as usize],
            top: top_n(&logprobs, top_logprobs),
        }
    }

    fn adjust(&self, logits: &mut [f32], context: &[u32]) {
        let p = &self.params;
        for (&token, &bias) in &p.logit_bias {
            if let Some(l) = logits.get_mut(token as usize) {
                *l += bias;
            }
        }
        if p.repetition_penalty != 1.0 {
            let mut seen = std::collections::HashSet::new();
            for &token in context {
                if seen.insert(token)
                    && let Some(l) = logits.get_mut(token as usize)
                {
                    *l = if *l > 0.0 {
                        *l / p.repetition_penalty
                    } else {
                        *l * p.repetition_penalty
                    };
                }
            }
        }
        if p.presence_penalty != 0.0 || p.frequency_penalty != 0.0 {
            for (&token, &count) in &self.generated {
                if let Some(l) = logits.get_mut(token as usize) {
                    *l -= p.presence_penalty + p.frequency_penalty * count as f32;
                }
            }
        }
    }

    /// Draws from the tempered distribution after top-k, top-p and min-p.
    fn draw(&mut self, logprobs: &[f32]) -> u32 {
        let p = &self.params;
        let mut order: Vec<u32> = (0..logprobs.len() as u32).collect();
        order.sort_unstable_by(|&a, &b| {
            logprobs[b as usize]
                .total_cmp(&logprobs[a as usize])
                .then(a.cmp(&b))
        });
        let mut keep = order.len();
        if p.top_k > 0 {
            keep = keep.min(p.top_k);
        }
        if p.min_p > 0.0 {
            let floor = logprobs[order[0] as usize] + p.min_p.ln();
            keep = keep.min(
                order
                    .iter()
                    .take_while(|&&t| logprobs[t as usize] >= floor)
                    .count()
                    .max(1),
            );
        }
        if p.top_p < 1.0 {
            let mut mass = 0.0f64;
            let mut n = 0;
            for &t in &order[..keep] {
                mass += f64::from(logprobs[t as usize]).exp();
                n += 1;
                if mass >= f64::from(p.top_p) {
                    break;
                }
            }
            keep = n.max(1);
        }
        let kept = &order[..keep];
        let weights: Vec<f64> = kept
            .iter()
            .map(|&t| (f64::from(logprobs[t as usize]) / f64::from(p.temperature)).exp())
            .collect();
        let total: f64 = weights.iter().sum();
        let mut target = self.rng.next_f64() * total;
        for (&t, w) in kept.iter().zip(&weights) {
            if target < *w {
                return t;
            }
            target -= w;
        }
        kept[kept.len() - 1]
    }
}

/// The first index of the largest value (ties go to the lowest id, as MLX's argmax).
pub fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best as u32
}

/// Log-probabilities from logits, computed in f64 for stability.
pub fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| f64::from(l - max).exp()).sum();
    let log_sum = sum.ln() as f32 + max;
    logits.iter().map(|&l| l - log_sum).collect()
}

fn top_n(logprobs: &[f32], n: usize) -> Vec<TokenLogprob> {
    if n == 0 {
        return Vec::new();
    }
    let mut order: Vec<u32> = (0..logprobs.len() as u32).collect();
    let n = n.min(order.len());
    order.select_nth_unstable_by(n - 1, |&a, &b| {
        logprobs[b as usize].total_cmp(&logprobs[a as usize])
    });
    let mut top: Vec<TokenLogprob> = order[..n]
        .iter()
        .map(|&token| TokenLogprob {
            token,
            logprob: logprobs[token as usize],
        })
        .collect();
    top.sort_by(|a, b| b.logprob.total_cmp(&a.logprob).then(a.token.cmp(&b.token)));
    top
}

/// A small, fast generator whose sequence is fixed for a seed on every platform.
#[derive(Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits() -> Vec<f32> {
        vec![1.0, 3.0, 2.0, 0.5, 2.9]
    }

    fn sampler(params: SamplingParams) -> Sampler {
        Sampler::new(params).expect("valid params")
    }

    #[test]
    fn greedy_picks_the_largest_logit() {
        let s = sampler(SamplingParams::default()).sample(&mut logits(), &[], 2);
        assert_eq!(s.token, 1);
        assert_eq!(s.top.iter().map(|t| t.token).collect::<Vec<_>>(), [1, 4]);
        let total: f32 = log_softmax(&logits()).iter().map(|l| l.exp()).sum();
        assert!((total - 1.0).abs() < 1e-6);
    }

    #[test]
    fn same_seed_same_tokens_other_seed_other_tokens() {
        let params = |seed| SamplingParams {
            temperature: 1.5,
            seed: Some(seed),
            ..SamplingParams::default()
        };
        let run = |seed| {
            let mut s = sampler(params(seed));
            (0..64)
                .map(|_| s.sample(&mut logits(), &[], 0).token)
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn top_k_and_top_p_only_ever_pick_the_kept_tokens() {
        let mut k = sampler(SamplingParams {
            temperature: 5.0,
            top_k: 2,
            seed: Some(1),
            ..SamplingParams::default()
        });
        let mut p = sampler(SamplingParams {
            temperature: 5.0,
            top_p: 0.05,
            seed: Some(1),
            ..SamplingParams::default()
        });
        for _ in 0..200 {
            assert!([1, 4].contains(&k.sample(&mut logits(), &[], 0).token));
            assert_eq!(p.sample(&mut logits(), &[], 0).token, 1);
        }
    }

    #[test]
    fn logit_bias_and_penalties_change_the_choice() {
        let mut biased = sampler(SamplingParams {
            logit_bias: HashMap::from([(3, 10.0)]),
            ..SamplingParams::default()
        });
        assert_eq!(biased.sample(&mut logits(), &[], 0).token, 3);
        let mut repeated = sampler(SamplingParams {
            repetition_penalty: 2.0,
            ..SamplingParams::default()
        });
        // Token 1 (3.0) was seen: 1.5 now loses to token 4 (2.9).
        assert_eq!(repeated.sample(&mut logits(), &[1], 0).token, 4);
        let mut present = sampler(SamplingParams {
            presence_penalty: 0.5,
            ..SamplingParams::default()
        });
        assert_eq!(present.sample(&mut logits(), &[], 0).token, 1);
        assert_eq!(present.sample(&mut logits(), &[], 0).token, 4);
    }

    #[test]
    fn out_of_range_parameters_are_named() {
        for (params, name) in [
            (
                SamplingParams {
                    temperature: -1.0,
                    ..Default::default()
                },
                "temperature",
            ),
            (
                SamplingParams {
                    top_p: 0.0,
                    ..Default::default()
                },
                "top_p",
            ),
            (
                SamplingParams {
                    min_p: 1.5,
                    ..Default::default()
                },
                "min_p",
            ),
            (
                SamplingParams {
                    frequency_penalty: 3.0,
                    ..Default::default()
                },
                "frequency_penalty",
            ),
        ] {
            let err = Sampler::new(params).expect_err("invalid");
            assert!(err.to_string().contains(name), "{err}");
        }
    }
}
