//! `orchard bench`: prompt and decode speed and peak memory of a model, measured
//! the way `mlx_lm.benchmark` measures them (random prompt tokens, end-of-sequence
//! ignored, one warm-up run, then the average of the trials).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use orchard_engine::{GenerateOptions, GenerationStats, Model, generate};
use serde::Serialize;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// A model folder (config.json, safetensors weights, tokenizer).
    #[arg(long)]
    model: PathBuf,
    /// Length of the (random) prompt.
    #[arg(long, default_value_t = 512)]
    prompt_tokens: usize,
    /// Tokens to generate.
    #[arg(long, default_value_t = 128)]
    gen_tokens: usize,
    /// Timed runs after the warm-up.
    #[arg(long, default_value_t = 3)]
    trials: usize,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// Averages over the trials.
#[derive(Debug, Serialize)]
struct BenchResult {
    model: PathBuf,
    prompt_tokens: usize,
    gen_tokens: usize,
    trials: usize,
    prompt_tps: f64,
    generation_tps: f64,
    time_to_first_token_ms: f64,
    peak_memory_gb: f64,
}

pub fn run(args: BenchArgs) -> ExitCode {
    match bench(&args) {
        Ok(result) if args.json => match serde_json::to_string_pretty(&result) {
            Ok(text) => {
                println!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("orchard bench: cannot encode the result: {e}");
                ExitCode::FAILURE
            }
        },
        Ok(r) => {
            println!(
                "prompt_tps={:.3}, generation_tps={:.3}, ttft_ms={:.1}, peak_memory={:.3} GB \
                 ({} prompt + {} generated tokens, {} trials)",
                r.prompt_tps,
                r.generation_tps,
                r.time_to_first_token_ms,
                r.peak_memory_gb,
                r.prompt_tokens,
                r.gen_tokens,
                r.trials
            );
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("orchard bench: {message}");
            ExitCode::FAILURE
        }
    }
}

fn bench(args: &BenchArgs) -> Result<BenchResult, String> {
    if args.prompt_tokens == 0 || args.gen_tokens == 0 || args.trials == 0 {
        return Err("--prompt-tokens, --gen-tokens and --trials must be at least 1".into());
    }
    let model = Model::load(&args.model).map_err(|e| e.to_string())?;
    let vocab = model
        .config()
        .raw
        .get("vocab_size")
        .and_then(|v| v.as_u64())
        .ok_or("config.json has no vocab_size")?;
    let prompt = random_tokens(args.prompt_tokens, vocab);
    let options = GenerateOptions {
        max_tokens: args.gen_tokens,
        ignore_eos: true,
        ..GenerateOptions::default()
    };
    let run = || {
        generate(&model, &prompt, options.clone())
            .map(|g| g.stats)
            .map_err(|e| e.to_string())
    };
    run()?;
    let stats: Vec<GenerationStats> = (0..args.trials).map(|_| run()).collect::<Result<_, _>>()?;
    let mean =
        |f: fn(&GenerationStats) -> f64| stats.iter().map(f).sum::<f64>() / stats.len() as f64;
    Ok(BenchResult {
        model: args.model.clone(),
        prompt_tokens: args.prompt_tokens,
        gen_tokens: args.gen_tokens,
        trials: args.trials,
        prompt_tps: mean(|s| s.prompt_tokens_per_second),
        generation_tps: mean(|s| s.decode_tokens_per_second),
        time_to_first_token_ms: mean(|s| s.time_to_first_token.as_secs_f64() * 1000.0),
        peak_memory_gb: mean(|s| s.peak_memory_bytes as f64 / 1e9),
    })
}

/// Reproducible prompt tokens spread over the vocabulary.
fn random_tokens(count: usize, vocab: u64) -> Vec<u32> {
    let mut state = 0x5EED_u64;
    (0..count)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) % vocab) as u32
        })
        .collect()
}
