//! One training step, top to bottom ([`Trainer::step`]).

use std::time::Instant;

use thinkjudge_model::{JudgeTokenizer, Llama};
use thinkjudge_rl::{compute_advantages, AdvantageConfig, LossStats, Reward, Sample};
use thinkjudge_rollout::{Engine, FinishReason, RolloutBatch, RolloutRequest, SamplingConfig};

use super::batch::{JudgedRollouts, StepPrompts};
use super::update::{policy_update, UpdateContext, UpdateOutcome};
use super::verdict::{self, VerdictLetters};
use super::Trainer;
use crate::dataset::EncodedPrompt;
use crate::error::{Result, TrainError};
use crate::judging::{correctness, label_threshold, to_sample};
use crate::metrics::{ratio, ExampleRecord, Record, SkipReason, StepMetrics, StepTiming};
use crate::seeds;

/// Characters of the prompt kept in an example record (its end: the responses judged).
const EXCERPT_CHARS: usize = 400;

impl Trainer {
    /// One step of the loop, with the evaluation, checkpoint and example logging due at it.
    ///
    /// # Errors
    /// Rollout, scoring, optimizer and I/O errors; [`TrainError::NonFinite`] when this step
    /// makes `trainer.max_consecutive_nonfinite` non-finite steps in a row.
    pub fn step(&mut self) -> Result<StepMetrics> {
        let started = Instant::now();
        let step = self.state.step + 1;
        let cfg = &self.config;
        let seed = cfg.trainer.seed;

        // 1. The next P pairs (each pair's two orders adjacent), in the epoch's seeded order.
        let (picked, cursor) =
            self.state
                .cursor
                .next(self.data.train.len(), cfg.trainer.pairs_per_step, seed);
        let prompts = StepPrompts::new(picked.iter().map(|&i| &self.data.train[i]).collect());

        // 2–4. G samples per prompt from the current policy (streams keyed by (seed, step,
        //      prompt)), judgments → rewards → group-relative advantages, the policy update
        //      (skipped when every group was dropped or a value is non-finite). The
        //      verdict-only step does all of it in one forward.
        let step_seed = seeds::derive(seed, seeds::ROLLOUT, step);
        let threshold = label_threshold(&cfg.reward);
        let ctx = UpdateContext {
            model: &self.model,
            reference: &self.reference,
            loss: &cfg.loss,
            temperature: cfg.rollout.sampling.temperature,
            micro_batch_prompts: cfg.trainer.micro_batch_prompts,
            ppo_epochs: cfg.trainer.ppo_epochs,
            mini_batches: cfg.trainer.mini_batches,
            device: &self.device,
        };
        let (judged, update, rollout_seconds, update_seconds) = match &self.direct {
            Some(direct) => {
                self.progress
                    .set_message(format!("step {step}: scoring verdicts"));
                let (judged, update) = direct.run(
                    &ctx,
                    &self.tokenizer,
                    &prompts,
                    self.reward.as_ref(),
                    threshold,
                    step_seed,
                    &mut self.optimizer,
                )?;
                (judged, update, 0.0, started.elapsed().as_secs_f64())
            }
            None => {
                self.progress.set_message(format!("step {step}: sampling"));
                let sampling = SamplingConfig {
                    seed: step_seed,
                    ..cfg.rollout.sampling.clone()
                };
                let batch = rollout(
                    &self.model,
                    &self.tokenizer,
                    sampling,
                    &prompts,
                    cfg.rollout.group_size,
                    &self.progress,
                )?;
                let rollout_seconds = started.elapsed().as_secs_f64();
                let letters = self.verdict_letters.as_ref().map(|l| (l, &self.tokenizer));
                let judged = judge(
                    &prompts,
                    batch,
                    self.reward.as_ref(),
                    &cfg.advantage,
                    threshold,
                    letters,
                )?;
                self.progress.set_message(format!("step {step}: updating"));
                let update_started = Instant::now();
                let update = policy_update(&ctx, &prompts, &judged, &mut self.optimizer)?;
                let update_seconds = update_started.elapsed().as_secs_f64();
                (judged, update, rollout_seconds, update_seconds)
            }
        };

        // 5. Metrics and example judgments.
        let timing = StepTiming {
            rollout_seconds,
            update_seconds,
            step_seconds: started.elapsed().as_secs_f64(),
            rollout_tokens_per_s: judged.batch.stats.tokens_per_s(),
            train_tokens_per_s: ratio(update.train_tokens as f64, update_seconds),
        };
        let metrics = step_metrics(
            step,
            cursor.epoch,
            &judged,
            &update,
            self.optimizer.next_lr(),
            timing,
        );
        self.metrics.write(&Record::Train(metrics.clone()))?;
        let every = cfg.trainer.log_examples_every;
        if every > 0 && step.is_multiple_of(every) {
            for record in examples(step, &prompts, &judged) {
                self.metrics.write(&Record::Example(record))?;
            }
        }

        // 6. State: cursor, counters, the non-finite streak (abort after K in a row).
        self.state.cursor = cursor;
        self.account(step, &judged, &update, rollout_seconds, update_seconds)?;
        self.progress.set_position(step);
        self.progress.set_message(format!(
            "reward {:.3} acc {:.3} unparseable {:.3}",
            metrics.reward_mean, metrics.accuracy, metrics.unparseable_rate
        ));
        tracing::debug!(?metrics, "step");

        // 7. Periodic evaluation and checkpoint; after the last step both, evaluation first,
        //    so that no record of a step is written after its checkpoint (a run killed after
        //    its final checkpoint then resumes without redoing or repeating anything).
        let (eval_every, checkpoint_every) = (
            self.config.trainer.eval_every,
            self.config.trainer.checkpoint_every,
        );
        let last = step == self.config.trainer.steps;
        if last || (eval_every > 0 && step.is_multiple_of(eval_every)) {
            self.evaluate()?;
        }
        if last || (checkpoint_every > 0 && step.is_multiple_of(checkpoint_every)) {
            self.save_checkpoint()?;
        }
        self.state.totals.wall_seconds += started.elapsed().as_secs_f64();
        Ok(metrics)
    }

    /// Advances the state past `step` and enforces the non-finite limit.
    fn account(
        &mut self,
        step: u64,
        judged: &JudgedRollouts,
        update: &UpdateOutcome,
        rollout_seconds: f64,
        update_seconds: f64,
    ) -> Result<()> {
        let totals = &mut self.state.totals;
        totals.rollout_tokens += judged.batch.stats.decode_tokens as u64;
        totals.rollout_seconds += rollout_seconds;
        totals.train_tokens += update.train_tokens as u64;
        totals.train_seconds += update_seconds;
        self.state.step = step;
        self.state.lora_train_forwards += update.train_forwards;
        self.state.skipped_steps += u64::from(update.skipped.is_some());
        let nonfinite = matches!(
            update.skipped,
            Some(SkipReason::NonFiniteLoss | SkipReason::NonFiniteGradient)
        );
        if !nonfinite {
            self.state.consecutive_nonfinite = 0;
            return Ok(());
        }
        self.state.consecutive_nonfinite += 1;
        self.state.nonfinite_steps += 1;
        tracing::warn!("step {step}: skipped, {:?}", update.skipped);
        let limit = self.config.trainer.max_consecutive_nonfinite;
        if self.state.consecutive_nonfinite < limit {
            return Ok(());
        }
        Err(TrainError::NonFinite {
            step,
            consecutive: self.state.consecutive_nonfinite,
            limit,
            detail: format!(
                "{:?} (grad norm {:?})",
                update.skipped,
                update.last_report.map(|r| r.grad_norm)
            ),
        })
    }
}

/// Samples `group_size` completions of every prompt, each prompt's streams keyed by its
/// stable key, so a step's samples depend only on (seed, step, prompt).
fn rollout(
    model: &Llama,
    tokenizer: &JudgeTokenizer,
    sampling: SamplingConfig,
    prompts: &StepPrompts,
    group_size: usize,
    progress: &indicatif::ProgressBar,
) -> Result<RolloutBatch> {
    let (ids, keys) = (prompts.ids(), prompts.keys());
    let request = RolloutRequest {
        prompts: &ids,
        group_size,
        prompt_keys: Some(&keys),
    };
    let engine = Engine::new(model, tokenizer, sampling)?;
    Ok(engine.generate_with(&request, &mut |p| {
        progress.set_message(format!(
            "sampling {}/{} done",
            p.rows_finished, p.rows_total
        ));
    })?)
}

/// Parses every sample, scores the batch and computes advantages; with `letters` (the
/// expected-verdict gradient) also finds each sample's verdict letter.
fn judge(
    prompts: &StepPrompts,
    batch: RolloutBatch,
    reward: &dyn Reward,
    advantage: &AdvantageConfig,
    threshold: f64,
    letters: Option<(&VerdictLetters, &JudgeTokenizer)>,
) -> Result<JudgedRollouts> {
    let owners: Vec<&EncodedPrompt> = batch
        .rollouts
        .iter()
        .map(|r| prompts.prompts[r.prompt_index].1)
        .collect();
    let samples: Vec<Sample> = batch
        .rollouts
        .iter()
        .zip(&owners)
        .map(|(r, prompt)| to_sample(prompt, prompts.prompts[r.prompt_index].0 as u64, r))
        .collect();
    let rewards = reward.score(&samples)?;
    let advantages = compute_advantages(&samples, &rewards, advantage)?;
    let correct = correctness(&samples, threshold);
    let verdicts = match letters {
        Some((letters, tokenizer)) => verdict::locate(
            letters,
            tokenizer,
            &owners,
            &batch.rollouts,
            &samples,
            reward,
        )?,
        None => vec![None; samples.len()],
    };
    Ok(JudgedRollouts {
        batch,
        samples,
        correct,
        rewards,
        advantages,
        verdicts,
    })
}

fn step_metrics(
    step: u64,
    epoch: u64,
    judged: &JudgedRollouts,
    update: &UpdateOutcome,
    next_lr: f64,
    timing: StepTiming,
) -> StepMetrics {
    let rollouts = &judged.batch.rollouts;
    let n = rollouts.len();
    let share = |k: usize| ratio(k as f64, n as f64);
    let mean = |f: &dyn Fn(usize) -> f64| ratio((0..n).map(f).sum(), n as f64);
    let stats = &update.stats;
    let per_update = |f: fn(&LossStats) -> Option<f32>| {
        let xs: Vec<f64> = stats.iter().filter_map(|s| f(s).map(f64::from)).collect();
        (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
    };
    let applied = update.last_report.filter(|r| r.applied);
    let g = &judged.advantages.stats;
    StepMetrics {
        step,
        epoch,
        prompts: n / judged.group_size().max(1),
        samples: n,
        reward_mean: mean(&|i| f64::from(judged.rewards[i])),
        accuracy: share(judged.correct.iter().filter(|c| **c == Some(true)).count()),
        unparseable_rate: share(
            judged
                .samples
                .iter()
                .filter(|s| s.judgment.is_none())
                .count(),
        ),
        budget_forced_rate: share(rollouts.iter().filter(|r| r.budget_forced()).count()),
        truncated_rate: share(
            rollouts
                .iter()
                .filter(|r| r.finish == FinishReason::Length)
                .count(),
        ),
        completion_tokens_mean: mean(&|i| rollouts[i].completion_ids.len() as f64),
        thought_tokens_mean: mean(&|i| rollouts[i].thought_tokens as f64),
        groups: g.groups,
        uniform_groups: g.uniform_groups,
        dropped_groups: g.dropped_groups,
        loss: per_update(|s| Some(s.loss)),
        policy_loss: per_update(|s| Some(s.policy_loss)),
        kl: per_update(|s| s.kl),
        verdict_loss: per_update(|s| s.verdict),
        entropy: per_update(|s| s.entropy),
        clip_frac: per_update(|s| Some(s.clip_frac_low + s.clip_frac_high)),
        grad_norm: update.last_report.map(|r| r.grad_norm),
        lr: applied.map_or(next_lr, |r| r.lr),
        updates: stats.len() as u64,
        skipped: update.skipped,
        timing,
    }
}

/// Sample 0 of each prompt of the step's first unit (both orders of a pair).
fn examples(step: u64, prompts: &StepPrompts, judged: &JudgedRollouts) -> Vec<ExampleRecord> {
    let g = judged.group_size();
    let first_unit = prompts.prompts.iter().take_while(|(u, _)| *u == 0).count();
    (0..first_unit)
        .map(|p| {
            let prompt = prompts.prompts[p].1;
            let i = p * g;
            let text = &prompt.prompt.text;
            let cut = text
                .char_indices()
                .rev()
                .nth(EXCERPT_CHARS - 1)
                .map_or(0, |(k, _)| k);
            ExampleRecord {
                step,
                pair_id: prompt.prompt.pair_id.clone(),
                order: prompt
                    .prompt
                    .kind
                    .is_pairwise()
                    .then_some(prompt.prompt.order),
                prompt_excerpt: text[cut..].to_string(),
                completion: judged.batch.rollouts[i].text.clone(),
                reward: judged.rewards[i],
                correct: judged.correct[i],
            }
        })
        .collect()
}
