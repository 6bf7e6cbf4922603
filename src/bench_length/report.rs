//! [`LengthBenchReport`] and its parts. Wall-clock figures sit under `timing` objects;
//! everything else is a deterministic function of the config (and the machine's floating
//! point), so two runs compare equal once every `timing` is removed.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use thinkjudge_data::{Judgment, Order, TemplateKind};
use thinkjudge_rollout::{Decoding, FinishReason, RolloutStats, ThoughtEnd};

use super::config::Budget;
use super::stats::Bucket;

/// Wall-clock figures of one rollout request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct RunTiming {
    /// Prefill and decode.
    pub seconds: f64,
    /// Prompt prefill (and cache forks).
    pub prefill_seconds: f64,
    /// Completion tokens per second of `seconds` (prefill included).
    pub tokens_per_s: f64,
}

impl From<&RolloutStats> for RunTiming {
    fn from(s: &RolloutStats) -> Self {
        RunTiming {
            seconds: s.seconds(),
            prefill_seconds: s.prefill_seconds,
            tokens_per_s: s.tokens_per_s(),
        }
    }
}

/// The judge at one thought budget: both orders of every pair, one completion per prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetResult {
    /// The budget.
    pub budget: Budget,
    /// Prompts judged (pairs × 2).
    pub prompts: usize,
    /// Correct prompts / prompts (unparseable and no preference count as wrong).
    pub accuracy: f64,
    /// Over the prompts shown in order AB (pairwise templates).
    pub accuracy_ab: Option<f64>,
    /// Over the prompts shown in order BA.
    pub accuracy_ba: Option<f64>,
    /// Pairs judged correctly in both orders / pairs.
    pub consistent_accuracy: Option<f64>,
    /// Pairs whose preferred response changes with the order / pairs.
    pub flip_rate: Option<f64>,
    /// Judgments that parse but prefer neither response / prompts.
    pub tie_rate: f64,
    /// Completions without a readable judgment / prompts.
    pub unparseable_rate: f64,
    /// Mean thought tokens (see the module docs for what is counted).
    pub thought_tokens_mean: f64,
    /// Median thought tokens.
    pub thought_tokens_median: f64,
    /// Mean completion tokens (thought, forced close and verdict).
    pub completion_tokens_mean: f64,
    /// Share of thoughts the budget closed.
    pub forced_rate: f64,
    /// Share of completions cut by `max_new_tokens`.
    pub truncated_rate: f64,
    /// Prompts decoded for this budget.
    pub decoded_prompts: usize,
    /// Prompts whose result was taken from the next larger budget (see the module docs).
    pub reused_prompts: usize,
    /// Completion tokens decoded for this budget (forced included).
    pub decode_tokens: usize,
    /// Wall clock of this budget's decode.
    pub timing: RunTiming,
}

/// How N samples of a prompt are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// SC@N: majority vote over the preferred position.
    Sc,
    /// Mean-Score@N: mean of the scores.
    MeanScore,
}

impl Method {
    /// `SC@N` or `Mean-Score@N`.
    pub fn name(self) -> &'static str {
        match self {
            Method::Sc => "SC@N",
            Method::MeanScore => "Mean-Score@N",
        }
    }

    /// The methods that apply to a template's judgments.
    pub fn for_kind(kind: TemplateKind) -> &'static [Method] {
        match kind {
            TemplateKind::PairwiseVerdict => &[Method::Sc],
            TemplateKind::PairwiseScores | TemplateKind::PairwiseVerdictScores => {
                &[Method::Sc, Method::MeanScore]
            }
            TemplateKind::PointwiseScore => &[Method::MeanScore],
        }
    }
}

/// One method at one N.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScalingRow {
    /// How samples were combined.
    pub method: Method,
    /// Samples combined per prompt (the first N of each prompt's samples).
    pub n: usize,
    /// Correct prompts / prompts.
    pub accuracy: f64,
    /// Over order AB.
    pub accuracy_ab: Option<f64>,
    /// Over order BA.
    pub accuracy_ba: Option<f64>,
    /// Pairs correct in both orders / pairs.
    pub consistent_accuracy: Option<f64>,
    /// Pairs whose preferred response follows the order / pairs.
    pub flip_rate: Option<f64>,
    /// Prompts whose combined judgment prefers neither response (tied votes).
    pub tie_rate: f64,
    /// Prompts whose N samples were all unparseable.
    pub unparseable_rate: f64,
}

/// Test-time scaling: N sampled judgments per prompt, combined.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scaling {
    /// Thought budget of the samples.
    pub budget: Budget,
    /// Sampling temperature.
    pub temperature: f64,
    /// Top-p.
    pub top_p: f64,
    /// Samples drawn per prompt (the largest N).
    pub samples_per_prompt: usize,
    /// Share of single samples that are correct.
    pub sample_accuracy: f64,
    /// Share of single samples without a readable judgment.
    pub sample_unparseable_rate: f64,
    /// Mean thought tokens over all samples.
    pub thought_tokens_mean: f64,
    /// Median thought tokens.
    pub thought_tokens_median: f64,
    /// Completion tokens decoded.
    pub decode_tokens: usize,
    /// One row per method and N, by method then N.
    pub rows: Vec<ScalingRow>,
    /// Wall clock of the sampling.
    pub timing: RunTiming,
}

/// Accuracy by the judge's own (unconstrained) thought length.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LengthBuckets {
    /// Which samples: `sweep` (the budget-`none` run of the sweep, one per prompt) or
    /// `samples` (every sample of the unconstrained SC@N run).
    pub source: String,
    /// How they were decoded, in words.
    pub decoding: String,
    /// Samples bucketed.
    pub samples: usize,
    /// The buckets, shortest first.
    pub buckets: Vec<Bucket>,
}

/// One training step's thought length and accuracy (from `metrics.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainPoint {
    /// The step.
    pub step: u64,
    /// Mean thought tokens of the step's rollouts.
    pub thought_tokens_mean: f64,
    /// Mean completion tokens.
    pub completion_tokens_mean: f64,
    /// Share of the step's samples judged correctly.
    pub accuracy: f64,
    /// Mean reward.
    pub reward_mean: f64,
    /// Share of thoughts closed by the budget.
    pub budget_forced_rate: f64,
}

/// One held-out evaluation of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalPoint {
    /// Steps done.
    pub step: u64,
    /// Held-out accuracy.
    pub accuracy: f64,
    /// Position-consistent accuracy.
    pub consistent_accuracy: Option<f64>,
    /// Mean thought tokens.
    pub mean_thought_tokens: f64,
    /// Unparseable rate.
    pub unparseable_rate: f64,
}

/// Thought length and accuracy over a training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingView {
    /// The `metrics.jsonl` read.
    pub source: PathBuf,
    /// Training steps.
    pub train: Vec<TrainPoint>,
    /// Held-out evaluations.
    pub eval: Vec<EvalPoint>,
}

/// One judged completion (written to `samples.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleRecord {
    /// `sweep` or `samples` (the SC@N run).
    pub run: String,
    /// The thought budget it was decoded under.
    pub budget: Budget,
    /// The pair (or item).
    pub pair_id: String,
    /// The answer order (pairwise templates).
    pub order: Option<Order>,
    /// Index among the prompt's samples.
    pub sample_index: usize,
    /// Thought tokens.
    pub thought_tokens: usize,
    /// How the thought ended.
    pub thought: ThoughtEnd,
    /// Completion tokens.
    pub completion_tokens: usize,
    /// Why decoding stopped.
    pub finish: FinishReason,
    /// What it says (`None`: unparseable).
    pub judgment: Option<Judgment>,
    /// Whether it is correct (`None`: unparseable or unknown).
    pub correct: Option<bool>,
    /// The completion text.
    pub completion: String,
}

/// Wall-clock figures of the whole benchmark.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ReportTiming {
    /// Everything, outputs included.
    pub seconds: f64,
    /// Loading the model (and adapters).
    pub model_seconds: f64,
    /// Building and tokenizing the prompts.
    pub data_seconds: f64,
    /// `/proc/loadavg` (1, 5, 15 min) when the benchmark started, where readable.
    pub load_average_start: Option<[f64; 3]>,
    /// … and when it ended.
    pub load_average_end: Option<[f64; 3]>,
}

/// Everything a thought-length benchmark measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LengthBenchReport {
    /// The judge's name in tables and plots.
    pub label: String,
    /// The model (spec and resolved path).
    pub model: String,
    /// The LoRA adapters applied.
    pub adapter: Option<PathBuf>,
    /// The pairs, in words.
    pub data: String,
    /// The judgment template.
    pub template: TemplateKind,
    /// Pairs (or pointwise items) judged.
    pub pairs: usize,
    /// Prompts judged (pairs × 2).
    pub prompts: usize,
    /// Decoding of the sweep.
    pub decoding: Decoding,
    /// Temperature of sampled runs.
    pub temperature: f64,
    /// Top-p of sampled runs.
    pub top_p: f64,
    /// Most completion tokens.
    pub max_new_tokens: usize,
    /// Text forced at the budget.
    pub forced_close: String,
    /// Whether the prompt ends with an opened `<think>`.
    pub think_prefilled: bool,
    /// Seed of the sampling streams.
    pub seed: u64,
    /// The sweep, by increasing budget (`none` last).
    pub budgets: Vec<BudgetResult>,
    /// Accuracy by natural thought length, per source.
    pub natural_length: Vec<LengthBuckets>,
    /// SC@N / Mean-Score@N.
    pub scaling: Option<Scaling>,
    /// From a run's `metrics.jsonl`.
    pub training: Option<TrainingView>,
    /// Every judged completion (not in `report.json`; see `samples.jsonl`).
    #[serde(skip)]
    pub samples: Vec<SampleRecord>,
    /// Wall clock.
    pub timing: ReportTiming,
}
