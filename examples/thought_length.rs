//! Thought length vs accuracy: how a judge's accuracy depends on how long it thinks.
//!
//! ```bash
//! # the base default model (SmolLM2-135M-Instruct), 24 procedural pairs, both orders:
//! cargo run --release --example thought_length -- --data procedural --pairs 24 \
//!     --budgets 0,8,16,32,64,none --sc 1,3,5 --sc-budget 16 --out runs/tl-base
//! # a trained LoRA run on the same pairs, compared with the base run:
//! cargo run --release --example thought_length -- --data procedural --pairs 24 \
//!     --budgets 0,8,16,32,64,none --sc 1,3,5 --sc-budget 16 \
//!     --checkpoint runs/train_pairwise --out runs/tl-trained --compare runs/tl-base
//! cargo run --release --example thought_length -- --help   # every flag
//! ```
//!
//! The same pairs are judged in both answer orders at each thought budget (budget forcing:
//! the thought is closed by force after B tokens), then with N sampled judgments per prompt
//! (SC@N, Mean-Score@N for score templates). Per budget: accuracy, position-consistent
//! accuracy, flip and unparseable rates, mean / median thought tokens, tokens/s; accuracy by
//! the thought length the judge chose; with `--metrics`, thought length and held-out
//! accuracy over a training run. Writes `report.{json,md}`, CSV tables, `samples.jsonl` and
//! PNG charts into `--out`, and prints the Markdown report.
//!
//! `thinkjudge bench-length` takes the same flags ([`thinkjudge::bench_length::LengthBenchArgs`]);
//! docs/thought_length.md has a measured run.

use anyhow::Result;
use clap::Parser;
use thinkjudge::bench_length::{output, run_args, LengthBenchArgs};

#[derive(Debug, Parser)]
#[command(about = "Thought length vs accuracy: budget sweep, natural length, SC@N")]
struct Cli {
    #[command(flatten)]
    args: LengthBenchArgs,
}

fn main() -> Result<()> {
    thinkjudge::init_runtime();
    let report = run_args(&Cli::parse().args)?;
    print!("{}", output::markdown(&report));
    Ok(())
}
