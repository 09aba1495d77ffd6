//! `orchard`: the command-line face of Orchard.

mod bench;
mod bench_server;
mod generate;
mod import;
mod keys;
mod mcp;
mod mcp_bench;
mod models;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use orchard_core::doctor::{self, Status};

#[derive(Debug, Parser)]
#[command(
    name = "orchard",
    about = "Run, serve and manage local LLMs on MLX",
    disable_version_flag = true
)]
struct Cli {
    /// Print Orchard's version, the MLX version and the default device.
    #[arg(short = 'V', long)]
    version: bool,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check the MLX runtime, BLAS, the data directory and the model fixtures.
    Doctor {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Generate text from a prompt with a local model.
    Generate(generate::GenerateArgs),
    /// Measure a model's prompt and decode speed and peak memory, or (with
    /// --server) a running server's latency and throughput.
    Bench(bench::BenchArgs),
    /// Convert a llama.cpp GGUF file into an MLX model folder.
    Import(import::ImportArgs),
    /// Serve models on the OpenAI- and Anthropic-compatible HTTP port.
    Serve(serve::ServeArgs),
    /// Create, list and revoke API keys for the port.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// List and delete the models in the Hugging Face cache.
    #[command(subcommand)]
    Models(models::ModelsCommand),
    /// Configure MCP servers, call their tools, and serve them as one.
    #[command(subcommand)]
    Mcp(mcp::McpCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Doctor { json }) => run_doctor(json),
        Some(Command::Generate(args)) => generate::run(args),
        Some(Command::Bench(args)) => bench::run(args),
        Some(Command::Import(args)) => import::run(args),
        Some(Command::Serve(args)) => serve::run(args),
        Some(Command::Keys(command)) => keys::run(command),
        Some(Command::Mcp(command)) => {
            // Logs go to stderr (stdout may be the MCP session); RUST_LOG turns them on.
            if std::env::var_os("RUST_LOG").is_some() {
                orchard_core::logs::init();
            }
            mcp::run(command)
        }
        Some(Command::Models(command)) => {
            // Quiet by default (progress has its own lines); RUST_LOG turns logs on.
            if std::env::var_os("RUST_LOG").is_some() {
                orchard_core::logs::init();
            }
            models::run(command)
        }
        None if cli.version => print_version(),
        None => {
            use clap::CommandFactory;
            // Writing help to a closed stdout is not worth an error.
            let _ = Cli::command().print_help();
            ExitCode::from(2)
        }
    }
}

fn print_version() -> ExitCode {
    match orchard_engine::runtime_info() {
        Ok(info) => {
            println!("orchard {}", env!("CARGO_PKG_VERSION"));
            println!("mlx {} ({} backend)", info.mlx_version, info.backend);
            println!("device {}", info.device);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "orchard {}: cannot read the MLX runtime: {e}",
                env!("CARGO_PKG_VERSION")
            );
            eprintln!("run `orchard doctor` to find out why");
            ExitCode::FAILURE
        }
    }
}

fn run_doctor(json: bool) -> ExitCode {
    let report = doctor::run();
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("orchard doctor: cannot encode the report: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        for check in &report.checks {
            let mark = match check.status {
                Status::Ok => "ok",
                Status::Warn => "WARN",
                Status::Fail => "FAIL",
                Status::Skip => "skip",
            };
            println!("{mark:<5} {:<15} {}", check.name, check.detail);
            if let Some(fix) = &check.fix {
                println!("{:<21} fix: {fix}", "");
            }
        }
    }
    if report.healthy() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
