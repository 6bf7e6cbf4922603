//! [`Trainer`]: sets a run up (fresh or resumed), runs the loop, evaluates, checkpoints.
//!
//! ```no_run
//! # fn main() -> thinkjudge::Result<()> {
//! use thinkjudge::{Trainer, TrainConfig};
//! let config = TrainConfig::from_file("train.toml".as_ref())?;
//! let summary = Trainer::new(config)?.run()?;
//! println!("accuracy {:?} -> {:?}", summary.before.map(|m| m.accuracy), summary.after.map(|m| m.accuracy));
//! # Ok(()) }
//! ```
//!
//! The loop itself is [`Trainer::step`] (in `step.rs`); [`Trainer::run`] adds the base-model
//! evaluation before the first step and the final evaluation, checkpoint and `summary.json`
//! after the last.

mod batch;
mod direct;
mod persist;
mod run_dir;
mod state;
mod step;
mod update;
mod verdict;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use candle_core::Device;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use thinkjudge_model::{load, Finetune, JudgeTokenizer, Llama, LlamaOptions, LoadedModel};
use thinkjudge_rl::{AdamW, Reward, VerdictGradient};

pub use batch::{JudgedRollouts, MicroBatch, StepPrompts, VerdictRows};
pub use direct::DirectVerdict;
pub use persist::{ADAPTER_DIR, CONFIG_FILE, MODEL_DIR, OPTIMIZER_DIR};
pub use run_dir::RunPaths;
pub use state::{Totals, TrainerState, STATE_FILE};
pub use update::Reference;
pub use verdict::{VerdictLetters, VerdictToken};

use crate::checkpoint;
use crate::config::{DeviceSpec, FinetuneKind, TrainConfig};
use crate::dataset::{self, Datasets};
use crate::error::{Result, TrainError};
use crate::eval;
use crate::judging::label_threshold;
use crate::metrics::{ratio, EvalMetrics, MetricsLog, Record, RunSummary};
use crate::seeds;

/// Whether to continue from a checkpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Resume {
    /// Start fresh; refuse a run directory that already holds checkpoints. Default.
    #[default]
    Never,
    /// Continue from the newest valid checkpoint; error when there is none.
    Required,
    /// Continue from the newest valid checkpoint, or start fresh when there is none.
    IfPossible,
}

/// How [`Trainer::open`] starts.
#[derive(Default)]
pub struct StartOptions {
    /// Fresh or resumed.
    pub resume: Resume,
    /// A model already in memory (tests, custom loading); `None` loads `model.source`.
    pub model: Option<LoadedModel>,
    /// A custom reward in place of the one `[reward]` builds (it must fit the template's
    /// judgments; see [`thinkjudge_rl::Reward`]).
    pub reward: Option<Box<dyn Reward>>,
    /// Hide the progress bar (it is hidden anyway when stderr is not a terminal).
    pub quiet: bool,
    /// Return from [`Trainer::run`] right after this step, as if the process were stopped
    /// there (no final evaluation, checkpoint or summary).
    pub stop_after: Option<u64>,
}

impl std::fmt::Debug for StartOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StartOptions")
            .field("resume", &self.resume)
            .field("model", &self.model.as_ref().map(|m| &m.origin))
            .field("reward", &self.reward.as_ref().map(|r| r.name()))
            .field("quiet", &self.quiet)
            .field("stop_after", &self.stop_after)
            .finish()
    }
}

/// A training run.
pub struct Trainer {
    pub(crate) config: TrainConfig,
    pub(crate) paths: RunPaths,
    pub(crate) device: Device,
    pub(crate) model: Llama,
    pub(crate) reference: Reference,
    pub(crate) tokenizer: JudgeTokenizer,
    pub(crate) data: Datasets,
    pub(crate) reward: Box<dyn Reward>,
    /// The letter ids, under `loss.verdict_gradient = "expected"`.
    pub(crate) verdict_letters: Option<VerdictLetters>,
    /// The verdict-only step, when the thought budget is 0 under the expected gradient.
    pub(crate) direct: Option<DirectVerdict>,
    pub(crate) optimizer: AdamW,
    pub(crate) state: TrainerState,
    pub(crate) metrics: MetricsLog,
    pub(crate) progress: ProgressBar,
    pub(crate) stop_after: Option<u64>,
    pub(crate) last_checkpoint: Option<checkpoint::StepDir>,
}

impl std::fmt::Debug for Trainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("run_dir", &self.paths.run_dir)
            .field("step", &self.state.step)
            .finish_non_exhaustive()
    }
}

impl Trainer {
    /// A fresh run ([`Resume::Never`]).
    ///
    /// # Errors
    /// As [`Trainer::open`].
    pub fn new(config: TrainConfig) -> Result<Self> {
        Self::open(config, StartOptions::default())
    }

    /// Continues from the newest valid checkpoint ([`Resume::Required`]).
    ///
    /// # Errors
    /// As [`Trainer::open`]; [`TrainError::NoCheckpoint`] when none verifies.
    pub fn resume(config: TrainConfig) -> Result<Self> {
        Self::open(
            config,
            StartOptions {
                resume: Resume::Required,
                ..StartOptions::default()
            },
        )
    }

    /// Sets up a run: validates the config, checks the run directory is writable, loads
    /// the model, checks there is room for its checkpoints, loads the data, and restores the newest valid checkpoint when resuming (newer
    /// corrupt ones are refused with a warning naming the problem).
    ///
    /// # Errors
    /// [`TrainError::OutputNotWritable`] before anything is loaded;
    /// [`TrainError::InsufficientSpace`] once the model is built; config, model, data and
    /// checkpoint errors.
    pub fn open(config: TrainConfig, options: StartOptions) -> Result<Self> {
        // 1. Config and run directory, before any heavy loading.
        config.validate()?;
        let paths = RunPaths::new(&config.output.run_dir);
        run_dir::probe_writable(&paths.run_dir)?;
        checkpoint::remove_stale_temporaries(&paths.checkpoints)?;
        let resume_from = run_dir::find_checkpoint(&paths, options.resume)?;

        // 2. Model (and the frozen KL reference for full fine-tuning).
        let device = make_device(config.model.device)?;
        let loaded = match options.model {
            Some(m) => m,
            None => load(&config.model.source, &device)?,
        };
        let (model, reference) = build_model(&config, &loaded, &device)?;
        let tokenizer = loaded.tokenizer;
        run_dir::check_free_space(
            &paths,
            run_dir::checkpoint_bytes(&model),
            config.trainer.keep_last,
            checkpoint::list(&paths.checkpoints)?.len(),
        )?;

        // 3. Data, reward, optimizer.
        let data = dataset::build(&config, &tokenizer)?;
        tracing::info!(
            "{} training pairs, {} evaluation pairs",
            data.train.len(),
            data.eval.len()
        );
        let reward = match options.reward {
            Some(r) => r,
            None => config.reward.build()?,
        };
        let verdict_letters = match config.loss.verdict_gradient {
            VerdictGradient::Sampled => None,
            VerdictGradient::Expected => Some(VerdictLetters::new(&tokenizer)?),
        };
        let direct = DirectVerdict::new(&config, &tokenizer, verdict_letters.clone())?;
        let mut optimizer = AdamW::new(model.trainable_vars(), config.optim.clone())?;
        let mut state = TrainerState::new(config.trainer.seed, dataset::fingerprint(&data.train));

        // 4. Resume: weights, optimizer, state; metrics after the checkpoint are set aside.
        if let Some((step, dir)) = &resume_from {
            let differences = persist::config_differences(dir, &config)?;
            if !differences.is_empty() {
                tracing::warn!(
                    "the config differs from checkpoint step {step}'s in {}; the resumed run will not match an uninterrupted one",
                    differences.join(", ")
                );
            }
            let fingerprint = std::mem::take(&mut state.data_fingerprint);
            (optimizer, state) = persist::restore(dir, &model)?;
            if state.data_fingerprint != fingerprint {
                tracing::warn!(
                    "the training data differs from checkpoint step {step}'s (another file or \
                     length limit?); the resumed run will not match an uninterrupted one"
                );
                state.data_fingerprint = fingerprint;
            }
            if config.model.finetune == FinetuneKind::Lora && config.model.lora.dropout > 0.0 {
                persist::advance_lora_dropout(&model, state.lora_train_forwards, &device)?;
            }
            let moved = MetricsLog::truncate_after(&paths.metrics, state.step)?;
            if moved > 0 {
                tracing::info!(
                    "moved {moved} metrics lines after step {step} to metrics.discarded.jsonl"
                );
            }
            tracing::info!("resumed from {} (step {step})", dir.display());
        } else {
            run_dir::set_aside(&paths.metrics)?;
        }
        run_dir::write_text(&paths.run_dir.join(CONFIG_FILE), &config.to_toml_string()?)?;
        let metrics = MetricsLog::open(&paths.metrics)?;
        let progress = progress_bar(config.trainer.steps, state.step, options.quiet);
        Ok(Trainer {
            config,
            paths,
            device,
            model,
            reference,
            tokenizer,
            data,
            reward,
            verdict_letters,
            direct,
            optimizer,
            state,
            metrics,
            progress,
            stop_after: options.stop_after,
            last_checkpoint: resume_from,
        })
    }

    /// Runs to `trainer.steps`: the base model's evaluation (once per run), the steps with
    /// their periodic evaluations and checkpoints, then a final evaluation and checkpoint
    /// and `summary.json`. Returns early (`completed: false`) after `stop_after`.
    ///
    /// # Errors
    /// Step errors, including [`TrainError::NonFinite`] after too many non-finite steps.
    pub fn run(&mut self) -> Result<RunSummary> {
        // 0. Evaluate the base model.
        if self.state.step == 0 && self.state.baseline_eval.is_none() {
            let started = Instant::now();
            self.state.baseline_eval = self.evaluate()?;
            self.state.totals.wall_seconds += started.elapsed().as_secs_f64();
        }
        // 1–7. The loop (see `Trainer::step`).
        while self.state.step < self.config.trainer.steps {
            self.step()?;
            if self.stop_after == Some(self.state.step)
                && self.state.step < self.config.trainer.steps
            {
                self.progress.abandon();
                return Ok(self.summary(false));
            }
        }
        // 8. Final evaluation, checkpoint and summary (unless this step already had them).
        let started = Instant::now();
        if self
            .state
            .last_eval
            .as_ref()
            .is_none_or(|m| m.step != self.state.step)
        {
            self.evaluate()?;
        }
        if self
            .last_checkpoint
            .as_ref()
            .is_none_or(|c| c.0 != self.state.step)
        {
            self.save_checkpoint()?;
        }
        self.state.totals.wall_seconds += started.elapsed().as_secs_f64();
        self.progress.finish();
        let summary = self.summary(true);
        let text = serde_json::to_string_pretty(&summary)
            .map_err(|e| TrainError::json(&self.paths.summary, &e))?;
        run_dir::write_text(&self.paths.summary, &text)?;
        if let (Some(before), Some(after)) = (&summary.before, &summary.after) {
            tracing::info!(
                "before / after training:\n{}",
                EvalMetrics::table(&[before, after])
            );
        }
        Ok(summary)
    }

    /// Evaluates the current policy on the held-out pairs, logs the table and writes the
    /// record; `None` when there is no evaluation data.
    ///
    /// # Errors
    /// Rollout and I/O errors.
    pub fn evaluate(&mut self) -> Result<Option<EvalMetrics>> {
        if self.data.eval.is_empty() {
            return Ok(None);
        }
        self.progress.set_message("evaluating");
        let seed = seeds::derive(self.config.trainer.seed, seeds::EVAL, 0);
        let sampling = self
            .config
            .eval
            .sampling(&self.config.rollout.sampling, seed);
        let m = eval::evaluate(
            &self.model,
            &self.tokenizer,
            &self.data.eval,
            sampling,
            self.config.eval.samples_per_prompt,
            label_threshold(&self.config.reward),
            self.state.step,
        )?;
        self.metrics.write(&Record::Eval(m.clone()))?;
        let columns: Vec<&EvalMetrics> = self.state.baseline_eval.iter().chain([&m]).collect();
        self.progress.suspend(|| {
            tracing::info!(
                "evaluation at step {}:\n{}",
                m.step,
                EvalMetrics::table(&columns)
            )
        });
        self.state.last_eval = Some(m.clone());
        Ok(Some(m))
    }

    /// Writes a checkpoint of the current step (atomically; keeps the newest
    /// `trainer.keep_last`). Returns its directory.
    ///
    /// # Errors
    /// Model, optimizer and I/O errors; earlier checkpoints are untouched on failure.
    pub fn save_checkpoint(&mut self) -> Result<PathBuf> {
        self.progress.set_message("checkpointing");
        let step = self.state.step;
        let (model, tokenizer, optimizer, state, config) = (
            &self.model,
            &self.tokenizer,
            &self.optimizer,
            &self.state,
            &self.config,
        );
        let dir = checkpoint::save(
            &self.paths.checkpoints,
            step,
            config.trainer.keep_last,
            |tmp| persist::write(tmp, model, tokenizer, optimizer, state, config),
        )?;
        tracing::info!("checkpoint {}", dir.display());
        self.last_checkpoint = Some((step, dir.clone()));
        Ok(dir)
    }

    /// The resolved config.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// The policy being trained.
    pub fn model(&self) -> &Llama {
        &self.model
    }

    /// Its tokenizer.
    pub fn tokenizer(&self) -> &JudgeTokenizer {
        &self.tokenizer
    }

    /// The optimizer (its moments are part of a checkpoint).
    pub fn optimizer(&self) -> &AdamW {
        &self.optimizer
    }

    /// Progress and counters.
    pub fn state(&self) -> &TrainerState {
        &self.state
    }

    /// The training and evaluation data.
    pub fn data(&self) -> &Datasets {
        &self.data
    }

    /// The run directory's files.
    pub fn paths(&self) -> &RunPaths {
        &self.paths
    }

    fn summary(&self, completed: bool) -> RunSummary {
        let t = &self.state.totals;
        let rate = |n: u64, s: f64| ratio(n as f64, s);
        RunSummary {
            completed,
            steps: self.state.step,
            before: self.state.baseline_eval.clone(),
            after: self.state.last_eval.clone(),
            wall_seconds: t.wall_seconds,
            rollout_tokens: t.rollout_tokens,
            rollout_tokens_per_s: rate(t.rollout_tokens, t.rollout_seconds),
            train_tokens: t.train_tokens,
            train_tokens_per_s: rate(t.train_tokens, t.train_seconds),
            skipped_steps: self.state.skipped_steps,
            nonfinite_steps: self.state.nonfinite_steps,
            last_checkpoint: self.last_checkpoint.as_ref().map(|c| c.1.clone()),
        }
    }
}

fn make_device(spec: DeviceSpec) -> Result<Device> {
    spec.resolve()
}

/// The policy and its KL reference.
fn build_model(
    config: &TrainConfig,
    loaded: &LoadedModel,
    device: &Device,
) -> Result<(Llama, Reference)> {
    let model_config = &loaded.config;
    let finetune = match config.model.finetune {
        FinetuneKind::Full => Finetune::Full,
        FinetuneKind::Lora => Finetune::Lora {
            config: config.model.lora.clone(),
            seed: seeds::derive(config.trainer.seed, seeds::LORA_INIT, 0),
        },
    };
    let options = |finetune| LlamaOptions {
        compute_dtype: config.model.compute_dtype.dtype(),
        finetune,
        ..LlamaOptions::default()
    };
    let model = Llama::from_weights(
        model_config,
        loaded.weights.clone(),
        device,
        options(finetune),
    )?;
    let reference = match config.model.finetune {
        _ if !config.loss.needs_reference() => Reference::Off,
        FinetuneKind::Lora => Reference::BaseOfAdapters,
        FinetuneKind::Full => Reference::Frozen(Box::new(Llama::from_weights(
            model_config,
            loaded.weights.clone(),
            device,
            options(Finetune::Frozen),
        )?)),
    };
    Ok((model, reference))
}

fn progress_bar(steps: u64, done: u64, quiet: bool) -> ProgressBar {
    let target = if quiet || !std::io::stderr().is_terminal() {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    };
    let bar = ProgressBar::with_draw_target(Some(steps), target);
    if let Ok(style) = ProgressStyle::with_template(
        "{bar:30.cyan/blue} {pos}/{len} steps [{elapsed_precise} < {eta_precise}] {msg}",
    ) {
        bar.set_style(style);
    }
    bar.set_position(done);
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuda_without_cuda_support_is_a_clear_error() {
        if candle_core::utils::cuda_is_available() {
            return; // a CUDA build: the device may well exist
        }
        let msg = make_device(DeviceSpec::Cuda(0))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            msg.starts_with("device `cuda:0`: this binary was built without CUDA support"),
            "{msg}"
        );
    }
}
