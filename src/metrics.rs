//! Metric records and the `metrics.jsonl` log.
//!
//! One JSON object per line, flushed at every write, tagged by `kind`:
//! `{"kind":"train","step":…}` ([`StepMetrics`]), `{"kind":"eval","step":…}`
//! ([`EvalMetrics`]) and `{"kind":"example","step":…}` ([`ExampleRecord`]). Wall-clock
//! figures sit under a `timing` object in each record: everything else is a deterministic
//! function of the config, so two runs (or a run and its resumed twin) can be compared
//! record by record once `timing` is removed.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thinkjudge_data::Order;

use crate::error::{Result, TrainError};

/// Why a step made no update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// Dynamic sampling dropped every group (all rewards equal within each group).
    AllGroupsDropped,
    /// A micro-batch loss was NaN or infinite.
    NonFiniteLoss,
    /// The gradient norm was NaN or infinite.
    NonFiniteGradient,
}

/// Wall-clock figures of a training step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct StepTiming {
    /// Sampling time.
    pub rollout_seconds: f64,
    /// Scoring, backward and optimizer time.
    pub update_seconds: f64,
    /// The whole step.
    pub step_seconds: f64,
    /// Completion tokens sampled per second.
    pub rollout_tokens_per_s: f64,
    /// Tokens (prompts and completions) through the training forward per second.
    pub train_tokens_per_s: f64,
}

/// What one training step did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    /// The step (1-based: the number of steps done after it).
    pub step: u64,
    /// The data epoch the step's last pair came from (0-based).
    pub epoch: u64,
    /// Prompts rolled out (P·2 for pairs).
    pub prompts: usize,
    /// Samples (prompts × G).
    pub samples: usize,
    /// Mean reward over samples.
    pub reward_mean: f64,
    /// Share of samples whose judgment is correct (unparseable counts as wrong).
    pub accuracy: f64,
    /// Share of samples without a readable judgment.
    pub unparseable_rate: f64,
    /// Share of samples whose thought was closed by the budget.
    pub budget_forced_rate: f64,
    /// Share of samples cut by `max_new_tokens`.
    pub truncated_rate: f64,
    /// Mean completion length in tokens (forced tokens included).
    pub completion_tokens_mean: f64,
    /// Mean thought length in tokens.
    pub thought_tokens_mean: f64,
    /// Advantage groups.
    pub groups: usize,
    /// Groups whose rewards are all equal (no learning signal).
    pub uniform_groups: usize,
    /// Groups dropped by dynamic sampling.
    pub dropped_groups: usize,
    /// Total loss (sum over the step's updates' mini-batch losses, averaged per update).
    pub loss: Option<f64>,
    /// Clipped-surrogate part of the loss.
    pub policy_loss: Option<f64>,
    /// KL to the reference (before β), when reference log-probs were computed.
    pub kl: Option<f64>,
    /// The expected-verdict term of the loss (minus the expected verdict reward per
    /// sequence); `None` under the sampled verdict gradient.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict_loss: Option<f64>,
    /// Mean per-token policy entropy of the trained tokens.
    pub entropy: Option<f64>,
    /// Share of tokens whose ratio was clipped (low + high).
    pub clip_frac: Option<f64>,
    /// Global gradient norm before clipping (of the last update).
    pub grad_norm: Option<f64>,
    /// Learning rate of the last update (the next one's when none was applied).
    pub lr: f64,
    /// Optimizer updates applied this step.
    pub updates: u64,
    /// Why no update was made, if so.
    pub skipped: Option<SkipReason>,
    /// Wall-clock figures.
    pub timing: StepTiming,
}

/// Wall-clock figures of an evaluation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct EvalTiming {
    /// Duration.
    pub seconds: f64,
    /// Completion tokens per second.
    pub tokens_per_s: f64,
}

/// Held-out metrics (see [`crate::eval`] for the exact definitions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalMetrics {
    /// Training steps done when evaluated (0 = the base model).
    pub step: u64,
    /// Pairs (and pointwise items) evaluated.
    pub pairs: usize,
    /// Prompts evaluated.
    pub prompts: usize,
    /// Samples per prompt (N of SC@N).
    pub samples_per_prompt: usize,
    /// Share of prompts judged correctly (after SC@N voting).
    pub accuracy: f64,
    /// Accuracy over the prompts in order AB (pairwise templates).
    pub accuracy_ab: Option<f64>,
    /// Accuracy over the prompts in order BA (pairwise templates).
    pub accuracy_ba: Option<f64>,
    /// Share of pairs judged correctly in both orders (pairwise templates).
    pub consistent_accuracy: Option<f64>,
    /// Share of pairs where the preferred response depends on the order (pairwise templates).
    pub flip_rate: Option<f64>,
    /// Share of judgments that parse but prefer neither response (equal scores, tied votes).
    pub tie_rate: f64,
    /// Share of sampled completions without a readable judgment.
    pub unparseable_rate: f64,
    /// Mean thought length in tokens, over all samples.
    pub mean_thought_tokens: f64,
    /// Mean completion length in tokens, over all samples.
    pub mean_completion_tokens: f64,
    /// Wall-clock figures.
    pub timing: EvalTiming,
}

impl EvalMetrics {
    /// A plain-text table with one column per evaluation (e.g. before / after).
    pub fn table(columns: &[&EvalMetrics]) -> String {
        fn pct(x: f64) -> String {
            format!("{:.1}%", 100.0 * x)
        }
        fn opt(x: Option<f64>) -> String {
            x.map_or("-".to_string(), pct)
        }
        type Row = (&'static str, fn(&EvalMetrics) -> String);
        let rows: [Row; 10] = [
            ("accuracy", |m| pct(m.accuracy)),
            ("accuracy AB", |m| opt(m.accuracy_ab)),
            ("accuracy BA", |m| opt(m.accuracy_ba)),
            ("consistent accuracy", |m| opt(m.consistent_accuracy)),
            ("flip rate", |m| opt(m.flip_rate)),
            ("tie rate", |m| pct(m.tie_rate)),
            ("unparseable", |m| pct(m.unparseable_rate)),
            ("thought tokens", |m| {
                format!("{:.1}", m.mean_thought_tokens)
            }),
            ("completion tokens", |m| {
                format!("{:.1}", m.mean_completion_tokens)
            }),
            ("pairs x samples", |m| {
                format!("{} x {}", m.pairs, m.samples_per_prompt)
            }),
        ];
        let mut out = format!("{:<22}", "metric");
        for m in columns {
            out.push_str(&format!("{:>14}", format!("step {}", m.step)));
        }
        for (name, f) in rows {
            out.push_str(&format!("\n{name:<22}"));
            for m in columns {
                out.push_str(&format!("{:>14}", f(m)));
            }
        }
        out
    }
}

/// One logged judgment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExampleRecord {
    /// The step it was sampled at.
    pub step: u64,
    /// The pair (or item).
    pub pair_id: String,
    /// The answer order, for pairwise prompts.
    pub order: Option<Order>,
    /// The end of the prompt (the responses being judged).
    pub prompt_excerpt: String,
    /// The completion.
    pub completion: String,
    /// Its reward.
    pub reward: f32,
    /// Whether its judgment is correct (`None`: unparseable).
    pub correct: Option<bool>,
}

/// What a run did, written to `summary.json` when it completes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// Whether the run reached `trainer.steps` (false when stopped early).
    pub completed: bool,
    /// Steps done.
    pub steps: u64,
    /// Evaluation of the base model (step 0).
    pub before: Option<EvalMetrics>,
    /// The last evaluation.
    pub after: Option<EvalMetrics>,
    /// Wall time of the training loop over all sessions, evaluations and checkpoints
    /// included.
    pub wall_seconds: f64,
    /// Completion tokens sampled for training.
    pub rollout_tokens: u64,
    /// Sampling throughput (completion tokens per second of sampling).
    pub rollout_tokens_per_s: f64,
    /// Tokens through the training forward.
    pub train_tokens: u64,
    /// Update throughput (tokens per second of update).
    pub train_tokens_per_s: f64,
    /// Steps without an update.
    pub skipped_steps: u64,
    /// Steps with a non-finite loss or gradient.
    pub nonfinite_steps: u64,
    /// The newest checkpoint.
    pub last_checkpoint: Option<PathBuf>,
}

/// A line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    /// A training step.
    Train(StepMetrics),
    /// An evaluation.
    Eval(EvalMetrics),
    /// An example judgment.
    Example(ExampleRecord),
}

impl Record {
    /// The step of the record.
    pub fn step(&self) -> u64 {
        match self {
            Record::Train(m) => m.step,
            Record::Eval(m) => m.step,
            Record::Example(m) => m.step,
        }
    }
}

/// `part / whole`, or 0 when `whole` is 0 (rates of empty batches, throughput of no time).
pub fn ratio(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        part / whole
    } else {
        0.0
    }
}

/// Appends records to `metrics.jsonl`, one flushed line each.
#[derive(Debug)]
pub struct MetricsLog {
    path: PathBuf,
    file: File,
}

impl MetricsLog {
    /// Opens (creating if needed) the log for appending.
    ///
    /// # Errors
    /// [`TrainError::Io`] when the file cannot be opened.
    pub fn open(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| TrainError::io(path, e))?;
        Ok(MetricsLog {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Writes one record as a line and flushes it.
    ///
    /// # Errors
    /// [`TrainError::Io`] when the write fails (e.g. the disk is full).
    pub fn write(&mut self, record: &Record) -> Result<()> {
        let mut line =
            serde_json::to_string(record).map_err(|e| TrainError::json(&self.path, &e))?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.flush())
            .map_err(|e| TrainError::io(&self.path, e))
    }

    /// Keeps the records of steps ≤ `step` (what a checkpoint at `step` had seen) and moves
    /// later ones, which a resumed run redoes, to `metrics.discarded.jsonl` beside the log.
    /// A last line cut short by a crash (no newline, not valid JSON) is moved there too.
    /// Returns how many lines were moved. A missing log is fine.
    ///
    /// # Errors
    /// [`TrainError::Io`] / [`TrainError::Json`] when the log cannot be read or rewritten.
    pub fn truncate_after(path: &Path, step: u64) -> Result<usize> {
        if !path.exists() {
            return Ok(0);
        }
        let bytes = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
        let torn_tail = !bytes.is_empty() && !bytes.ends_with(b"\n");
        let lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
        let (mut keep, mut drop) = (String::new(), String::new());
        for (i, line) in lines.iter().enumerate() {
            if line.trim_ascii().is_empty() {
                continue;
            }
            let later = match serde_json::from_slice::<serde_json::Value>(line) {
                Ok(value) => value
                    .get("step")
                    .and_then(|s| s.as_u64())
                    .is_some_and(|s| s > step),
                Err(_) if torn_tail && i + 1 == lines.len() => {
                    tracing::warn!(
                        "{}: line {} was cut short (a crash while writing it)",
                        path.display(),
                        i + 1
                    );
                    true
                }
                Err(e) => {
                    return Err(TrainError::Json {
                        path: path.to_path_buf(),
                        message: format!("line {}: {e}", i + 1),
                    })
                }
            };
            let target = if later { &mut drop } else { &mut keep };
            target.push_str(&String::from_utf8_lossy(line));
            target.push('\n');
        }
        if drop.is_empty() {
            return Ok(0);
        }
        let discarded = path.with_file_name("metrics.discarded.jsonl");
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&discarded)
            .map_err(|e| TrainError::io(&discarded, e))?;
        f.write_all(drop.as_bytes())
            .map_err(|e| TrainError::io(&discarded, e))?;
        let tmp = path.with_extension("jsonl.tmp");
        std::fs::write(&tmp, keep).map_err(|e| TrainError::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| TrainError::io(path, e))?;
        Ok(drop.lines().count())
    }
}

fn read_lines(path: &Path) -> Result<Vec<String>> {
    let f = File::open(path).map_err(|e| TrainError::io(path, e))?;
    BufReader::new(f)
        .lines()
        .filter(|l| !l.as_ref().is_ok_and(|l| l.trim().is_empty()))
        .map(|l| l.map_err(|e| TrainError::io(path, e)))
        .collect()
}

/// Reads every record of a `metrics.jsonl`.
///
/// # Errors
/// [`TrainError::Json`] naming the line of a malformed record.
pub fn read_records(path: &Path) -> Result<Vec<Record>> {
    read_lines(path)?
        .iter()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|e| TrainError::Json {
                path: path.to_path_buf(),
                message: format!("line {}: {e}", i + 1),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(step: u64) -> Record {
        Record::Example(ExampleRecord {
            step,
            pair_id: "p".into(),
            order: Some(Order::BA),
            prompt_excerpt: "…".into(),
            completion: "<answer>[[A]]</answer>".into(),
            reward: 1.0,
            correct: Some(true),
        })
    }

    #[test]
    fn records_are_tagged_lines_and_truncate_by_step() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let mut log = MetricsLog::open(&path).unwrap();
        for s in 1..=4 {
            log.write(&example(s)).unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(r#"{"kind":"example","step":1,"#), "{text}");
        assert_eq!(MetricsLog::truncate_after(&path, 2).unwrap(), 2);
        let kept: Vec<u64> = read_records(&path)
            .unwrap()
            .iter()
            .map(Record::step)
            .collect();
        assert_eq!(kept, vec![1, 2]);
        let moved = read_records(&dir.path().join("metrics.discarded.jsonl")).unwrap();
        assert_eq!(moved.len(), 2);

        // A line torn by a crash (cut inside a multi-byte character, no newline) is set
        // aside; a malformed line elsewhere is an error naming it.
        let mut torn = serde_json::to_string(&example(3)).unwrap().into_bytes();
        torn.truncate(torn.len() - 30);
        torn.extend_from_slice("…".as_bytes().get(..2).unwrap());
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(&torn)
            .unwrap();
        assert_eq!(MetricsLog::truncate_after(&path, 2).unwrap(), 1);
        assert_eq!(read_records(&path).unwrap().len(), 2);
        std::fs::write(&path, "{\"kind\"\n{}\n").unwrap();
        let e = MetricsLog::truncate_after(&path, 2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("metrics.jsonl") && e.contains("line 1"), "{e}");
    }
}
