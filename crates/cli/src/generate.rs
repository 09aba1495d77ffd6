//! `orchard generate`: one prompt through a local model, text streamed to
//! stdout and the request's statistics to stderr.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use orchard_engine::{
    ChatMessage, Event, GenerateOptions, Model, SamplingParams, TemplateOptions, TextStream,
};

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// A model folder (config.json, safetensors weights, tokenizer).
    #[arg(long)]
    model: PathBuf,
    /// The prompt text.
    #[arg(long)]
    prompt: String,
    /// Wrap the prompt as a user message in the model's chat template.
    #[arg(long)]
    chat: bool,
    /// Generate at most this many tokens.
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// 0 picks the most likely token each step (greedy).
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// Sample only from the most likely tokens covering this probability.
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// Makes sampling reproducible.
    #[arg(long)]
    seed: Option<u64>,
}

pub fn run(args: GenerateArgs) -> ExitCode {
    match generate(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("orchard generate: {message}");
            ExitCode::FAILURE
        }
    }
}

fn generate(args: GenerateArgs) -> Result<(), String> {
    let model = Model::load(&args.model).map_err(|e| e.to_string())?;
    let tokenizer = model.tokenizer();
    let prompt = if args.chat {
        let options = TemplateOptions {
            add_generation_prompt: true,
            ..TemplateOptions::default()
        };
        tokenizer.encode_chat(&[ChatMessage::text("user", &args.prompt)], &options)
    } else {
        tokenizer.encode(&args.prompt, true)
    }
    .map_err(|e| e.to_string())?;
    let options = GenerateOptions {
        max_tokens: args.max_tokens,
        sampling: SamplingParams {
            temperature: args.temperature,
            top_p: args.top_p,
            seed: args.seed,
            ..SamplingParams::default()
        },
        ..GenerateOptions::default()
    };
    let mut stdout = std::io::stdout().lock();
    for event in TextStream::new(&model, &prompt, options).map_err(|e| e.to_string())? {
        match event.map_err(|e| e.to_string())? {
            Event::Delta { text, .. } => {
                // A closed stdout (`| head`) ends the run quietly.
                if stdout
                    .write_all(text.as_bytes())
                    .and_then(|()| stdout.flush())
                    .is_err()
                {
                    return Ok(());
                }
            }
            Event::Done(stats) => {
                let _ = writeln!(stdout);
                eprintln!(
                    "prompt: {} tokens, {:.1} tokens/s | generated: {} tokens, {:.1} tokens/s | \
                     first token: {:.0} ms | peak memory: {:.1} MB | finish: {:?}",
                    stats.prompt_tokens,
                    stats.prompt_tokens_per_second,
                    stats.generated_tokens,
                    stats.decode_tokens_per_second,
                    stats.time_to_first_token.as_secs_f64() * 1000.0,
                    stats.peak_memory_bytes as f64 / 1e6,
                    stats.finish_reason,
                );
            }
            Event::Prefilled { .. } => {}
        }
    }
    Ok(())
}
