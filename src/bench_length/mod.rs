//! Thought length vs accuracy: how a judge's accuracy depends on how long it thinks.
//!
//! [`run`] evaluates the same pairs, both answer orders, in up to four ways:
//!
//! 1. **Budget sweep.** One completion per prompt at each thought budget B (greedy by
//!    default): the rollout crate's budget forcing appends `forced_close` once the thought
//!    has B tokens without closing (B = 0: before the first token); `none` leaves it
//!    unconstrained, bounded by `max_new_tokens` only. Per budget: accuracy, per-order and
//!    position-consistent accuracy, flip / tie / unparseable rates ([`crate::eval`]'s
//!    definitions, via [`crate::eval::prompt_metrics`]), mean and median thought tokens, the
//!    forced and truncated rates, and throughput.
//! 2. **Natural length.** The unconstrained completions (the sweep's `none` run, and the
//!    SC@N samples when they are unconstrained) grouped by the thought length the judge
//!    chose, accuracy per bucket with counts; buckets under `min_bucket_samples` are flagged.
//! 3. **Test-time scaling.** max(N) sampled completions per prompt (temperature, top-p,
//!    `samples_budget`); SC@n combines the first n by majority vote, Mean-Score@n by mean
//!    score (rules in [`stats`]). SC@n is therefore exactly what an n-sample run would give.
//! 4. **Training view.** Thought length and accuracy over the steps of a run, from its
//!    `metrics.jsonl`.
//!
//! # What "thought tokens" counts
//! The rollout crate's `Rollout::thought_tokens`: completion tokens from the first one up to
//! and including the token that completes `</think>` when the judge closes its thought; B
//! when the budget closes it (the forced tokens are not counted); the whole completion when
//! the thought never closes (the completion hit `max_new_tokens` or eos inside it: such a
//! judgment is unparseable when `<think>` was prefilled). A prefilled `<think>` is part of
//! the prompt, not of the thought.
//!
//! # Reusing decodes across budgets
//! Budgets run from the largest down. Decoding under budget B is token for token the
//! unconstrained decode until the thought reaches B tokens (forcing is the only difference;
//! sampled rows have their own random streams, one draw per sampled token), so a prompt
//! whose thought in the next larger budget's run ended within B keeps that result and only
//! the others are decoded again (`reuse = false` decodes everything; results agree up to
//! batch-composition rounding, see `thinkjudge_rollout::rng`). The rollout API has no way
//! to share one prompt prefill across budgets, so each budget's decoded prompts are
//! prefilled again; prompts are tokenized once.
//!
//! # Determinism
//! Given the config (seed included) the report is a function of the model and the data:
//! two runs give identical JSON once the `timing` objects are removed (checked in
//! `tests/thought_length.rs`).
//!
//! # Entry points
//! [`run`] (a [`LengthBenchConfig`]); [`run_args`] (the command line of
//! `thinkjudge bench-length` and `examples/thought_length.rs`, [`LengthBenchArgs`]);
//! [`compare`] (several reports side by side). docs/thought_length.md has a measured run.
//!
//! Not done: random tie-breaking in SC@N (ties count as no preference), per-subset tables,
//! sharing one prompt prefill across budgets.

pub mod args;
pub mod charts;
pub mod config;
pub mod measure;
pub mod output;
pub mod report;
pub mod setup;
pub mod stats;
pub mod training;

use std::path::Path;
use std::time::Instant;

use thinkjudge_model::{JudgeTokenizer, Llama};

pub use args::{run_args, LengthBenchArgs};
pub use config::{parse_budgets, parse_counts, Buckets, Budget, DataSpec, LengthBenchConfig};
pub use measure::{BenchData, Rendering};
pub use output::write_outputs;
pub use report::{
    BudgetResult, EvalPoint, LengthBenchReport, LengthBuckets, Method, ReportTiming, RunTiming,
    SampleRecord, Scaling, ScalingRow, TrainPoint, TrainingView,
};
pub use stats::Bucket;
pub use training::training_view;

use crate::error::{Result, TrainError};
use measure::Runner;

/// Runs the benchmark `cfg` describes (see the module docs) and, when `cfg.out` is set,
/// writes its outputs there ([`write_outputs`]).
///
/// # Errors
/// Config, model, data, rollout, I/O and plot errors, each naming what failed.
pub fn run(cfg: &LengthBenchConfig) -> Result<LengthBenchReport> {
    cfg.validate()?;
    let started = Instant::now();
    let load_average_start = load_average();
    let training = cfg.metrics.as_deref().map(training_view).transpose()?;
    let mut report = if cfg.needs_model() {
        let t0 = Instant::now();
        let judge = setup::load_judge(cfg)?;
        let model_seconds = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let data = setup::load_data(cfg, &judge.tokenizer)?;
        let data_seconds = t1.elapsed().as_secs_f64();
        let mut report = measure(&judge.model, &judge.tokenizer, &data, cfg)?;
        report.model = judge.description;
        report.adapter = judge.adapter;
        report.timing.model_seconds = model_seconds;
        report.timing.data_seconds = data_seconds;
        report
    } else {
        empty_report(cfg)
    };
    report.training = training;
    report.timing.load_average_start = load_average_start;
    report.timing.load_average_end = load_average();
    report.timing.seconds = started.elapsed().as_secs_f64();
    if let Some(out) = &cfg.out {
        write_outputs(&report, out)?;
        tracing::info!("wrote {}", out.display());
    }
    Ok(report)
}

/// The measurements of `cfg` (sweep, natural length, SC@N; not the training view) on a
/// model in hand, with `data` already tokenized. `report.model` is left empty.
///
/// # Errors
/// Rollout errors; [`TrainError::DataSetup`] when `data` has no prompts.
pub fn measure(
    model: &Llama,
    tokenizer: &JudgeTokenizer,
    data: &BenchData,
    cfg: &LengthBenchConfig,
) -> Result<LengthBenchReport> {
    if data.units.is_empty() {
        return Err(TrainError::DataSetup("no pairs to judge".into()));
    }
    let runner = Runner::new(model, tokenizer, cfg, data);
    let mut report = empty_report(cfg);
    report.data = data.description.clone();
    report.template = data.rendering.kind;
    report.forced_close = data.rendering.forced_close.clone();
    report.think_prefilled = data.rendering.prompt_opens_thought;
    report.pairs = data.units.len();
    report.prompts = data.units.iter().map(|u| u.prompts.len()).sum();

    let mut sweep_records = Vec::new();
    for run in runner.sweep()? {
        let mut records = Vec::new();
        report
            .budgets
            .push(runner.budget_result(&run, &mut records)?);
        if run.budget == Budget::Unlimited {
            sweep_records = records.clone();
        }
        report.samples.extend(records);
    }
    let mut sample_records = Vec::new();
    if let Some(batch) = runner.scaling_batch()? {
        report.scaling = Some(runner.scaling(&batch, &mut sample_records)?);
    }
    let unconstrained = |records: &[SampleRecord]| -> bool {
        !records.is_empty() && records.iter().all(|r| r.budget == Budget::Unlimited)
    };
    report.natural_length = measure::natural_length(
        cfg,
        unconstrained(&sweep_records).then_some(&sweep_records[..]),
        unconstrained(&sample_records).then_some(&sample_records[..]),
    );
    report.samples.extend(sample_records);
    Ok(report)
}

/// Writes `comparison.md` (the sweeps side by side) and `comparison.png` (accuracy and
/// mean thought tokens per budget, one colour per report) into `dir`.
///
/// # Errors
/// [`TrainError::Io`] / [`TrainError::Plot`].
pub fn compare(reports: &[LengthBenchReport], dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    let md = dir.join("comparison.md");
    std::fs::write(&md, output::comparison_markdown(reports))
        .map_err(|e| TrainError::io(&md, e))?;
    crate::plot::line_chart(&charts::budget_chart(reports), &dir.join("comparison.png"))
}

/// Reads a `report.json` written by [`write_outputs`].
///
/// # Errors
/// [`TrainError::Io`] / [`TrainError::Json`].
pub fn read_report(path: &Path) -> Result<LengthBenchReport> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| TrainError::json(path, &e))
}

fn empty_report(cfg: &LengthBenchConfig) -> LengthBenchReport {
    LengthBenchReport {
        label: cfg.label.clone(),
        model: String::new(),
        adapter: cfg.adapter.clone(),
        data: String::new(),
        template: cfg.prompt.template.kind,
        pairs: 0,
        prompts: 0,
        decoding: cfg.decoding,
        temperature: cfg.temperature,
        top_p: cfg.top_p,
        max_new_tokens: cfg.max_new_tokens,
        forced_close: String::new(),
        think_prefilled: cfg.prompt.prefill_think,
        seed: cfg.seed,
        budgets: Vec::new(),
        natural_length: Vec::new(),
        scaling: None,
        training: None,
        samples: Vec::new(),
        timing: ReportTiming::default(),
    }
}

/// The 1, 5 and 15 minute load averages, where `/proc/loadavg` is readable.
fn load_average() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut it = text.split_whitespace().map(|s| s.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}
