//! `orchard bench`: prompt and decode speed and peak memory of a model, measured
//! the way `mlx_lm.benchmark` measures them (random prompt tokens, end-of-sequence
//! ignored, one warm-up run, then the average of the trials). With `--server`,
//! a prompt set against a running OpenAI-compatible server instead (see
//! `bench_server`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use orchard_engine::{GenerateOptions, GenerationStats, Model, generate};
use serde::Serialize;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// A model folder (config.json, safetensors weights, tokenizer).
    #[arg(long, required_unless_present = "server", conflicts_with = "server")]
    model: Option<PathBuf>,
    /// Instead of a model folder: a running OpenAI-compatible server
    /// (`http://127.0.0.1:10240`), sent a prompt set as streamed chat
    /// completions; prints time to first token, token gaps and latency
    /// percentiles, throughput and (for Orchard) peak memory.
    #[arg(long)]
    server: Option<String>,
    /// With --server: a JSON list of prompts (strings, or message lists);
    /// a built-in set of 12 by default.
    #[arg(long, requires = "server")]
    prompts: Option<PathBuf>,
    /// With --server: requests in flight at once.
    #[arg(long, default_value_t = 1, requires = "server")]
    concurrency: usize,
    /// With --server: requests in all (the prompts are reused in turn).
    #[arg(long, default_value_t = 12, requires = "server")]
    requests: usize,
    /// With --server: the most tokens each answer may have.
    #[arg(long, default_value_t = 128, requires = "server")]
    max_tokens: usize,
    /// With --server: the model to ask for (default: the server's first loaded one).
    #[arg(long, requires = "server")]
    model_name: Option<String>,
    /// With --server: its API key (default: $ORCHARD_API_KEY, then $OPENAI_API_KEY).
    #[arg(long, requires = "server")]
    api_key: Option<String>,
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
    if let Some(server) = args.server.clone() {
        return run_server(server, args);
    }
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

fn run_server(url: String, args: BenchArgs) -> ExitCode {
    let api_key = args.api_key.clone().or_else(|| {
        ["ORCHARD_API_KEY", "OPENAI_API_KEY"]
            .iter()
            .find_map(|name| std::env::var(name).ok().filter(|k| !k.is_empty()))
    });
    let bench = crate::bench_server::ServerBench {
        url,
        api_key,
        model: args.model_name.clone(),
        prompts: args.prompts.clone(),
        concurrency: args.concurrency,
        requests: args.requests,
        max_tokens: args.max_tokens,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("orchard bench: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = match runtime.block_on(crate::bench_server::run(bench)) {
        Ok(report) => report,
        Err(message) => {
            eprintln!("orchard bench: {message}");
            return ExitCode::FAILURE;
        }
    };
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("orchard bench: cannot encode the result: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{}", crate::bench_server::table(&report));
    }
    if report.failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn bench(args: &BenchArgs) -> Result<BenchResult, String> {
    if args.prompt_tokens == 0 || args.gen_tokens == 0 || args.trials == 0 {
        return Err("--prompt-tokens, --gen-tokens and --trials must be at least 1".into());
    }
    let path = args.model.clone().ok_or("--model or --server is needed")?;
    let model = Model::load(&path).map_err(|e| e.to_string())?;
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
        model: path,
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
