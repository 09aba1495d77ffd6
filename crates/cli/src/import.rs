//! `orchard import`: a llama.cpp GGUF file into an MLX model folder.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use mlx_rs::Dtype;
use orchard_engine::gguf::{ImportOptions, import};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FloatType {
    Float16,
    Bfloat16,
    Float32,
}

impl From<FloatType> for Dtype {
    fn from(t: FloatType) -> Dtype {
        match t {
            FloatType::Float16 => Dtype::Float16,
            FloatType::Bfloat16 => Dtype::Bfloat16,
            FloatType::Float32 => Dtype::Float32,
        }
    }
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The GGUF file (llama architecture; F32, F16, Q8_0, Q4_0 or Q4_1 tensors).
    gguf: PathBuf,
    /// The model folder to create.
    out_dir: PathBuf,
    /// Dequantize every tensor to this type instead of keeping the quantization.
    #[arg(long, value_enum)]
    dequantize: Option<FloatType>,
    /// Store quantization scales and biases as this type (float32 is fastest on CPU).
    #[arg(long, value_enum)]
    scales: Option<FloatType>,
}

pub fn run(args: ImportArgs) -> ExitCode {
    let options = ImportOptions {
        dequantize_to: args.dequantize.map(Dtype::from),
        scales_dtype: args.scales.map(Dtype::from),
    };
    match import(&args.gguf, &args.out_dir, &options) {
        Ok(report) => {
            let quantized = if report.quantized_layers.is_empty() {
                "no quantized layers".to_string()
            } else {
                format!("{} quantized layers", report.quantized_layers.len())
            };
            println!(
                "wrote {} ({} tensors, {quantized})",
                report.out_dir.display(),
                report.tensors
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("orchard import: {e}");
            ExitCode::FAILURE
        }
    }
}
