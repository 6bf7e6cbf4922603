//! Running the benchmark on a model in hand: the budget sweep (largest budget first, reusing
//! results whose thought fits the next budget), the SC@N samples, and turning rollouts into
//! [`BudgetResult`]s, [`Scaling`] rows and natural-length buckets.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use thinkjudge_data::{Judgment, TemplateKind};
use thinkjudge_model::{JudgeTokenizer, Llama};
use thinkjudge_rl::Sample;
use thinkjudge_rollout::{
    Decoding, Engine, FinishReason, Rollout, RolloutBatch, RolloutRequest, SamplingConfig,
    ThinkingConfig, ThoughtEnd,
};

use super::config::{Budget, LengthBenchConfig};
use super::report::{
    BudgetResult, LengthBuckets, Method, RunTiming, SampleRecord, Scaling, ScalingRow,
};
use super::stats::{bucketize, mean, mean_score, median, vote, LengthOutcome};
use crate::dataset::{EncodedPrompt, JudgeUnit};
use crate::error::{Result, TrainError};
use crate::eval::prompt_metrics;
use crate::judging::{correctness, to_sample};
use crate::metrics::{ratio, EvalMetrics};

/// How the judged prompts were rendered, and what that implies for decoding and scoring.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendering {
    /// The judgment template.
    pub kind: TemplateKind,
    /// The prompt ends with an opened `<think>`.
    pub prompt_opens_thought: bool,
    /// Decoding stops at these (e.g. `</answer>`).
    pub stop_strings: Vec<String>,
    /// Text forced at the budget.
    pub forced_close: String,
    /// Score at or above which a pointwise judgment means "good".
    pub threshold: f64,
}

impl Rendering {
    /// The stop strings of a built-in template: the closing tag of its last judgment tag.
    pub fn default_stop_strings(kind: TemplateKind) -> Vec<String> {
        let stop = match kind {
            TemplateKind::PairwiseVerdict | TemplateKind::PairwiseVerdictScores => "</answer>",
            TemplateKind::PairwiseScores => "</score_B>",
            TemplateKind::PointwiseScore => "</score>",
        };
        vec![stop.into()]
    }

    /// The default forced close: into `<answer>` for PaV (small judges forced out of their
    /// thought then write the verdict), only the close for the score templates.
    pub fn default_forced_close(kind: TemplateKind) -> String {
        match kind {
            TemplateKind::PairwiseVerdict => "\n</think>\n<answer>".into(),
            _ => "\n</think>\n".into(),
        }
    }
}

/// The judged pairs: tokenized once, shared by every run of the benchmark.
#[derive(Debug, Clone)]
pub struct BenchData {
    /// Both orders of every pair, adjacent.
    pub units: Vec<JudgeUnit>,
    /// How they were rendered.
    pub rendering: Rendering,
    /// Where they came from, in words.
    pub description: String,
}

/// One budget of the sweep: one rollout per prompt, in prompt order.
pub(super) struct BudgetRun {
    pub budget: Budget,
    pub rollouts: Vec<Rollout>,
    pub decoded: usize,
    pub stats: thinkjudge_rollout::RolloutStats,
}

/// A prompt and the index of its unit.
struct Flat<'a> {
    unit: usize,
    prompt: &'a EncodedPrompt,
}

/// Runs rollouts of the benchmark's prompts.
pub(super) struct Runner<'a> {
    model: &'a Llama,
    tokenizer: &'a JudgeTokenizer,
    cfg: &'a LengthBenchConfig,
    data: &'a BenchData,
    flat: Vec<Flat<'a>>,
}

impl<'a> Runner<'a> {
    pub fn new(
        model: &'a Llama,
        tokenizer: &'a JudgeTokenizer,
        cfg: &'a LengthBenchConfig,
        data: &'a BenchData,
    ) -> Self {
        let flat = data
            .units
            .iter()
            .enumerate()
            .flat_map(|(unit, u)| u.prompts.iter().map(move |prompt| Flat { unit, prompt }))
            .collect();
        Runner {
            model,
            tokenizer,
            cfg,
            data,
            flat,
        }
    }

    /// The sampling config at `budget`.
    pub fn sampling(&self, budget: Budget, decoding: Decoding) -> SamplingConfig {
        let r = &self.data.rendering;
        SamplingConfig {
            decoding,
            temperature: self.cfg.temperature,
            top_p: self.cfg.top_p,
            top_k: 0,
            max_new_tokens: self.cfg.max_new_tokens,
            stop_strings: r.stop_strings.clone(),
            seed: self.cfg.seed,
            thinking: ThinkingConfig {
                prompt_opens_thought: r.prompt_opens_thought,
                max_thought_tokens: budget.max_thought_tokens(),
                min_thought_tokens: 0,
                forced_close: r.forced_close.clone(),
                ..ThinkingConfig::default()
            },
            ..SamplingConfig::default()
        }
    }

    /// `group` samples of each prompt in `which` (indices into the flat prompt list).
    fn generate(
        &self,
        which: &[usize],
        group: usize,
        sampling: SamplingConfig,
        what: &str,
    ) -> Result<RolloutBatch> {
        let ids: Vec<Vec<u32>> = which
            .iter()
            .map(|&i| self.flat[i].prompt.ids.clone())
            .collect();
        let keys: Vec<u64> = which.iter().map(|&i| self.flat[i].prompt.key).collect();
        let engine = Engine::new(self.model, self.tokenizer, sampling)?;
        let bar = progress_bar(ids.len() * group, what, self.cfg.progress);
        let request = RolloutRequest {
            prompts: &ids,
            group_size: group,
            prompt_keys: Some(&keys),
        };
        let batch = engine.generate_with(&request, &mut |p| {
            bar.set_position(p.rows_finished as u64);
            bar.set_message(format!("{what}: {} tokens", p.tokens_generated));
        })?;
        bar.finish_and_clear();
        tracing::info!(
            "{what}: {} prompts x {group}, {} tokens in {:.1} s ({:.1} tok/s, prefill {:.1} s)",
            ids.len(),
            batch.stats.decode_tokens,
            batch.stats.seconds(),
            batch.stats.tokens_per_s(),
            batch.stats.prefill_seconds
        );
        Ok(batch)
    }

    /// The sweep, by increasing budget. Budgets run largest first; with `reuse`, a prompt
    /// whose thought in the previous (larger) run ended within the budget keeps that result.
    pub fn sweep(&self) -> Result<Vec<BudgetRun>> {
        let mut budgets = self.cfg.budgets.clone();
        budgets.sort_unstable_by(|a, b| b.cmp(a));
        let mut runs: Vec<BudgetRun> = Vec::with_capacity(budgets.len());
        for budget in budgets {
            let previous = runs.last().filter(|_| self.cfg.reuse);
            let todo: Vec<usize> = (0..self.flat.len())
                .filter(|&i| previous.is_none_or(|r| !fits(&r.rollouts[i], budget)))
                .collect();
            let sampling = self.sampling(budget, self.cfg.decoding);
            let batch = self.generate(&todo, 1, sampling, &format!("budget {budget}"))?;
            let mut slots: Vec<Option<Rollout>> = match previous {
                Some(r) => r.rollouts.iter().cloned().map(Some).collect(),
                None => vec![None; self.flat.len()],
            };
            for (&i, mut r) in todo.iter().zip(batch.rollouts) {
                r.prompt_index = i;
                slots[i] = Some(r);
            }
            let rollouts = slots
                .into_iter()
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    TrainError::DataSetup(format!("budget {budget}: a prompt got no rollout"))
                })?;
            runs.push(BudgetRun {
                budget,
                rollouts,
                decoded: todo.len(),
                stats: batch.stats,
            });
        }
        runs.reverse();
        Ok(runs)
    }

    /// max(N) sampled completions of every prompt at `samples_budget`; `None` without N.
    pub fn scaling_batch(&self) -> Result<Option<RolloutBatch>> {
        let Some(&n) = self.cfg.samples.iter().max() else {
            return Ok(None);
        };
        let budget = self.cfg.samples_budget;
        let sampling = self.sampling(budget, Decoding::Sample);
        let all: Vec<usize> = (0..self.flat.len()).collect();
        let what = format!("SC samples (budget {budget})");
        self.generate(&all, n, sampling, &what).map(Some)
    }

    /// `rollouts[i]` (of prompt i / group) judged, as rl samples, with per-sample
    /// correctness.
    fn judge(&self, rollouts: &[Rollout], group: usize) -> (Vec<Sample>, Vec<Option<bool>>) {
        let samples: Vec<Sample> = rollouts
            .iter()
            .enumerate()
            .map(|(k, r)| {
                let f = &self.flat[k / group];
                to_sample(f.prompt, f.unit as u64, r)
            })
            .collect();
        let correct = correctness(&samples, self.data.rendering.threshold);
        (samples, correct)
    }

    /// The sweep run's metrics, and its samples appended to `out`.
    pub fn budget_result(
        &self,
        run: &BudgetRun,
        out: &mut Vec<SampleRecord>,
    ) -> Result<BudgetResult> {
        let (samples, correct) = self.judge(&run.rollouts, 1);
        let m = prompt_metrics(&self.data.units, &samples, self.data.rendering.threshold)?;
        let n = run.rollouts.len() as f64;
        let share = |f: &dyn Fn(&Rollout) -> bool| {
            ratio(run.rollouts.iter().filter(|r| f(r)).count() as f64, n)
        };
        let thoughts: Vec<usize> = run.rollouts.iter().map(|r| r.thought_tokens).collect();
        self.records(
            "sweep",
            run.budget,
            &run.rollouts,
            1,
            &samples,
            &correct,
            out,
        );
        Ok(BudgetResult {
            budget: run.budget,
            prompts: run.rollouts.len(),
            accuracy: m.accuracy,
            accuracy_ab: m.accuracy_ab,
            accuracy_ba: m.accuracy_ba,
            consistent_accuracy: m.consistent_accuracy,
            flip_rate: m.flip_rate,
            tie_rate: m.tie_rate,
            unparseable_rate: ratio(
                samples.iter().filter(|s| s.judgment.is_none()).count() as f64,
                n,
            ),
            thought_tokens_mean: mean(thoughts.iter().copied()),
            thought_tokens_median: median(&thoughts),
            completion_tokens_mean: mean(run.rollouts.iter().map(|r| r.completion_ids.len())),
            forced_rate: share(&|r| r.thought == ThoughtEnd::Forced),
            truncated_rate: share(&|r| r.finish == FinishReason::Length),
            decoded_prompts: run.decoded,
            reused_prompts: run.rollouts.len() - run.decoded,
            decode_tokens: run.stats.decode_tokens,
            timing: RunTiming::from(&run.stats),
        })
    }

    /// SC@N / Mean-Score@N rows for every N, and the samples appended to `out`.
    pub fn scaling(&self, batch: &RolloutBatch, out: &mut Vec<SampleRecord>) -> Result<Scaling> {
        let g = batch.group_size;
        let (samples, correct) = self.judge(&batch.rollouts, g);
        let mut ns = self.cfg.samples.clone();
        ns.sort_unstable();
        ns.dedup();
        let mut rows = Vec::new();
        for &method in Method::for_kind(self.data.rendering.kind) {
            for &n in &ns {
                rows.push(self.combine(&samples, g, n.min(g), method)?);
            }
        }
        let budget = self.cfg.samples_budget;
        self.records(
            "samples",
            budget,
            &batch.rollouts,
            g,
            &samples,
            &correct,
            out,
        );
        let thoughts: Vec<usize> = batch.rollouts.iter().map(|r| r.thought_tokens).collect();
        let total = samples.len() as f64;
        Ok(Scaling {
            budget,
            temperature: self.cfg.temperature,
            top_p: self.cfg.top_p,
            samples_per_prompt: g,
            sample_accuracy: ratio(
                correct.iter().filter(|c| **c == Some(true)).count() as f64,
                total,
            ),
            sample_unparseable_rate: ratio(
                samples.iter().filter(|s| s.judgment.is_none()).count() as f64,
                total,
            ),
            thought_tokens_mean: mean(thoughts.iter().copied()),
            thought_tokens_median: median(&thoughts),
            decode_tokens: batch.stats.decode_tokens,
            rows,
            timing: RunTiming::from(&batch.stats),
        })
    }

    /// The first `n` of each prompt's `g` samples combined by `method`, scored.
    fn combine(
        &self,
        samples: &[Sample],
        g: usize,
        n: usize,
        method: Method,
    ) -> Result<ScalingRow> {
        let mut judged = Vec::with_capacity(samples.len() / g.max(1));
        let mut unparseable = 0;
        for group in samples.chunks(g.max(1)) {
            let js: Vec<Option<Judgment>> = group[..n].iter().map(|s| s.judgment).collect();
            let combined = match method {
                Method::Sc => vote(&js),
                Method::MeanScore => mean_score(&js),
            };
            unparseable += usize::from(combined.is_none());
            let mut one = group[0].clone();
            one.judgment = combined;
            judged.push(one);
        }
        let m: EvalMetrics =
            prompt_metrics(&self.data.units, &judged, self.data.rendering.threshold)?;
        Ok(ScalingRow {
            method,
            n,
            accuracy: m.accuracy,
            accuracy_ab: m.accuracy_ab,
            accuracy_ba: m.accuracy_ba,
            consistent_accuracy: m.consistent_accuracy,
            flip_rate: m.flip_rate,
            tie_rate: m.tie_rate,
            unparseable_rate: ratio(unparseable as f64, judged.len() as f64),
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn records(
        &self,
        run: &str,
        budget: Budget,
        rollouts: &[Rollout],
        group: usize,
        samples: &[Sample],
        correct: &[Option<bool>],
        out: &mut Vec<SampleRecord>,
    ) {
        for (k, ((r, s), c)) in rollouts.iter().zip(samples).zip(correct).enumerate() {
            let p = &self.flat[k / group].prompt.prompt;
            out.push(SampleRecord {
                run: run.into(),
                budget,
                pair_id: p.pair_id.clone(),
                order: s.order,
                sample_index: r.sample_index,
                thought_tokens: r.thought_tokens,
                thought: r.thought,
                completion_tokens: r.completion_ids.len(),
                finish: r.finish,
                judgment: s.judgment,
                correct: *c,
                completion: r.text.clone(),
            });
        }
    }
}

/// Whether a rollout decoded under a larger budget (or none) is exactly what `budget` would
/// decode: its thought ended (closed, or the completion stopped) within `budget` tokens, so
/// budget forcing never triggered. Sampled decoding too: every sample has its own random
/// stream, consumed one draw per sampled token.
pub(super) fn fits(r: &Rollout, budget: Budget) -> bool {
    match budget {
        Budget::Unlimited => true,
        Budget::Tokens(n) => r.thought != ThoughtEnd::Forced && r.thought_tokens <= n,
    }
}

/// Natural-length buckets of the unconstrained sweep run and of unconstrained SC samples.
pub(super) fn natural_length(
    cfg: &LengthBenchConfig,
    sweep: Option<&[SampleRecord]>,
    samples: Option<&[SampleRecord]>,
) -> Vec<LengthBuckets> {
    let outcome = |r: &SampleRecord| LengthOutcome {
        thought_tokens: r.thought_tokens,
        correct: r.correct == Some(true),
        parsed: r.judgment.is_some(),
    };
    let decoding = match cfg.decoding {
        Decoding::Greedy => "greedy".to_string(),
        Decoding::Sample => format!("sampled, T = {}, top-p = {}", cfg.temperature, cfg.top_p),
    };
    let sources = [
        ("sweep", sweep, format!("{decoding}, one per prompt")),
        (
            "samples",
            samples,
            format!(
                "sampled, T = {}, top-p = {}, {} per prompt",
                cfg.temperature,
                cfg.top_p,
                cfg.samples.iter().max().copied().unwrap_or(0)
            ),
        ),
    ];
    sources
        .into_iter()
        .filter_map(|(source, records, decoding)| {
            let outcomes: Vec<LengthOutcome> = records?.iter().map(outcome).collect();
            Some(LengthBuckets {
                source: source.into(),
                decoding,
                samples: outcomes.len(),
                buckets: bucketize(&outcomes, cfg.buckets, cfg.min_bucket_samples),
            })
        })
        .collect()
}

fn progress_bar(rows: usize, what: &str, show: bool) -> ProgressBar {
    let target = if show && std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(rows as u64), target);
    if let Ok(style) = ProgressStyle::with_template(
        "{bar:30.cyan/blue} {pos}/{len} completions [{elapsed_precise} < {eta_precise}] {msg}",
    ) {
        bar.set_style(style);
    }
    bar.set_message(what.to_string());
    bar
}
