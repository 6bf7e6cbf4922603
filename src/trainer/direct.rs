//! The verdict-only step: a thought budget of 0 under the expected-verdict gradient.
//!
//! Every completion is then the forced close followed by a verdict, so nothing before the
//! verdict is sampled: a prompt's outcome is `[[A]]</answer>`, `[[B]]</answer>` or anything
//! else (unparseable), with probabilities the training forward gives directly (a prompt's two
//! verdicts share its prefix: one forward, no rollout). The step trains the exact expected
//! reward of each unit (both answer orders of a pair) over the joint outcomes of its prompts
//! ([`thinkjudge_rl::expected_joint_reward_loss`]), so rewards that compare the orders, like
//! J1's position consistency, are taken in expectation too; the letter and the tokens that
//! close the verdict are both trained. Each prompt's sample is still drawn from the
//! (pre-update) probabilities, for the metrics. A rollout would prefill every prompt a second
//! time without gradient; this step does not (a step of 8 pairs with SmolLM2 on two CPU
//! cores: ~10 s against ~19 s with a rollout).
//!
//! Micro-batches hold whole units.

use candle_core::{DType, Tensor};
use rand::Rng;
use thinkjudge_data::{parse_judgment, Judgment, Side};
use thinkjudge_model::{JudgeTokenizer, Mode};
use thinkjudge_rl::{
    expected_joint_reward_loss, joint_rewards, AdamW, Advantages, BatchTotals, GroupStats,
    LossStats, Reward,
};
use thinkjudge_rollout::rng::sample_rng;
use thinkjudge_rollout::{
    score_completions, FinishReason, Rollout, RolloutBatch, RolloutStats, ThoughtEnd,
};

use super::batch::{JudgedRollouts, StepPrompts};
use super::update::{UpdateContext, UpdateOutcome};
use super::verdict::VerdictLetters;
use crate::config::TrainConfig;
use crate::error::{Result, TrainError};
use crate::judging::{correctness, to_sample};
use crate::metrics::SkipReason;

/// What the verdict-only step writes after the prompt.
#[derive(Debug, Clone)]
pub struct DirectVerdict {
    /// The forced close (`rollout.sampling.thinking.forced_close`), ending right before the
    /// letter.
    close: Vec<u32>,
    /// The letters, and what closes the verdict after them in the completions shown in
    /// metrics and examples.
    letters: VerdictLetters,
}

impl DirectVerdict {
    /// The step's setup when `cfg` asks for it (expected verdict gradient, thought budget 0);
    /// `None` otherwise.
    ///
    /// # Errors
    /// [`TrainError::InvalidConfig`] when the forced close does not end right before the
    /// verdict letter (`close ‖ letter ‖ the rest of "[[A]]</answer>"` must parse as that
    /// verdict).
    pub fn new(
        cfg: &TrainConfig,
        tokenizer: &JudgeTokenizer,
        letters: Option<VerdictLetters>,
    ) -> Result<Option<Self>> {
        let Some(letters) = letters else {
            return Ok(None);
        };
        let thinking = &cfg.rollout.sampling.thinking;
        if thinking.max_thought_tokens != Some(0) {
            return Ok(None);
        }
        let direct = DirectVerdict {
            close: tokenizer.encode(&thinking.forced_close)?,
            letters,
        };
        let kind = cfg.data.prompt.template.kind;
        let parse_options = thinkjudge_data::ParseOptions {
            think_prefilled: cfg.data.prompt.prefill_think,
        };
        for side in [Side::A, Side::B] {
            let text = tokenizer.decode(&direct.completion(Some(side)), true)?;
            if parse_judgment(&text, kind, parse_options) != Some(Judgment::Verdict(side)) {
                return Err(TrainError::config(
                    "rollout.sampling.thinking.forced_close",
                    format!(
                        "with a thought budget of 0 and loss.verdict_gradient = \"expected\" the \
                         forced close must end right before the verdict letter (e.g. \
                         \"\\n</think>\\n<answer>[[\"); {:?} followed by the letter reads {text:?}",
                        thinking.forced_close
                    ),
                ));
            }
        }
        Ok(Some(direct))
    }

    /// `close ‖ letter ‖ suffix`, or only the close when no letter was drawn.
    fn completion(&self, side: Option<Side>) -> Vec<u32> {
        let mut ids = self.close.clone();
        if let Some(side) = side {
            ids.push(self.letters.id(side));
            ids.extend_from_slice(&self.letters.suffix);
        }
        ids
    }

    /// One step's forward, samples, loss and optimizer update.
    ///
    /// # Errors
    /// Scoring, reward and optimizer errors (non-finite values are reported in the outcome).
    #[allow(clippy::too_many_arguments)] // the step's parts, each used once
    pub fn run(
        &self,
        ctx: &UpdateContext,
        tokenizer: &JudgeTokenizer,
        prompts: &StepPrompts,
        reward: &dyn Reward,
        threshold: f64,
        seed: u64,
        optimizer: &mut AdamW,
    ) -> Result<(JudgedRollouts, UpdateOutcome)> {
        let n = prompts.prompts.len();
        let totals = BatchTotals {
            tokens: 0.0,
            sequences: n as f64,
        };
        let mut out = UpdateOutcome::default();
        let (mut rollouts, mut samples, mut rewards) = (Vec::new(), Vec::new(), Vec::new());
        let mut grads = optimizer.accumulator();
        let mut parts = Vec::new();
        for micro in micro_batches(prompts, ctx.micro_batch_prompts) {
            let ids: Vec<Vec<u32>> = micro
                .clone()
                .map(|p| prompts.prompts[p].1.ids.clone())
                .collect();
            let completions: Vec<Vec<u32>> = ids
                .iter()
                .flat_map(|_| [Side::A, Side::B].map(|s| self.completion(Some(s))))
                .collect();
            let scores = score_completions(
                ctx.model,
                &ids,
                &completions,
                2,
                ctx.temperature,
                Mode::Train,
            )?;
            out.train_tokens += ids.iter().chain(&completions).map(Vec::len).sum::<usize>();
            out.train_forwards += 1 + u64::from(ids.iter().any(|p| p.len() > 1));
            // The action is the whole verdict, letter and suffix: its probability, and its
            // gradient, cover writing the verdict parseably, not only choosing the letter.
            let verdict_len = 1 + self.letters.suffix.len();
            let options = scores
                .logprobs
                .narrow(1, self.close.len(), verdict_len)?
                .sum(1)?
                .reshape((ids.len(), 2))?; // (p, 2): log π([[A]]…), log π([[B]]…)
            let pi = options.exp()?; // (p, 2)
            let probs = pi.to_dtype(DType::F32)?.to_vec2::<f32>()?;

            // Each prompt's sample, drawn from the pre-update π with its rollout stream.
            let first = rollouts.len();
            for (k, p) in micro.clone().enumerate() {
                let (unit, prompt) = prompts.prompts[p];
                let u: f32 = sample_rng(seed, prompt.key, 0).random();
                let (pa, pb) = (probs[k][0], probs[k][1]);
                let side = if u < pa {
                    Some(Side::A)
                } else if u < pa + pb {
                    Some(Side::B)
                } else {
                    None // some other token: unparseable
                };
                let r = self.rollout(tokenizer, p, side, [pa, pb])?;
                samples.push(to_sample(prompt, unit as u64, &r));
                rollouts.push(r);
            }
            let micro_samples = &samples[first..];
            rewards.extend(reward.score(micro_samples)?);
            // Outcomes of each prompt: [[A]], [[B]], anything else (unparseable).
            let rest = pi.sum_keepdim(1)?.affine(-1.0, 1.0)?; // (p, 1)
            let outcome_probs = Tensor::cat(&[&pi, &rest], 1)?; // (p, 3)
            let units = unit_ranges(prompts, micro.clone());
            let tables = units
                .iter()
                .map(|u| joint_rewards(reward, micro_samples, u.clone(), &OUTCOMES))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let loss = expected_joint_reward_loss(&outcome_probs, &units, &tables, totals)?;
            let value = loss.to_dtype(DType::F32)?.to_scalar::<f32>()?;
            if !value.is_finite() {
                out.skipped = Some(SkipReason::NonFiniteLoss);
                break;
            }
            grads.add(&loss.backward()?)?;
            parts.push(LossStats {
                loss: value,
                verdict: Some(value),
                ..LossStats::default()
            });
        }
        if out.skipped.is_none() {
            let report = optimizer.step(&grads)?;
            out.last_report = Some(report);
            if report.applied {
                out.stats.push(LossStats::combine(&parts));
            } else {
                out.skipped = Some(SkipReason::NonFiniteGradient);
            }
        }
        let correct = correctness(&samples, threshold);
        let judged = JudgedRollouts {
            batch: RolloutBatch {
                rollouts,
                group_size: 1,
                stats: RolloutStats {
                    prompts: n,
                    rollouts: n,
                    ..RolloutStats::default()
                },
            },
            correct,
            rewards,
            advantages: Advantages {
                values: vec![0.0; n],
                keep: vec![true; n],
                group: (0..n).collect(),
                stats: GroupStats {
                    groups: n,
                    ..GroupStats::default()
                },
            },
            verdicts: vec![None; n],
            samples,
        };
        Ok((judged, out))
    }

    /// The record of prompt `p`'s drawn sample: the close forced, the verdict drawn (its
    /// log-prob on the letter).
    fn rollout(
        &self,
        tokenizer: &JudgeTokenizer,
        p: usize,
        side: Option<Side>,
        probs: [f32; 2],
    ) -> Result<Rollout> {
        let completion_ids = self.completion(side);
        let mut logprobs = vec![0.0; completion_ids.len()];
        let mut forced = vec![true; completion_ids.len()];
        if let Some(side) = side {
            let k = self.close.len();
            logprobs[k] = probs[usize::from(side == Side::B)].ln();
            forced[k..].fill(false);
        }
        Ok(Rollout {
            prompt_index: p,
            sample_index: 0,
            text: tokenizer.decode(&completion_ids, true)?,
            completion_ids,
            logprobs,
            forced,
            finish: FinishReason::StopString,
            thought: ThoughtEnd::Forced,
            thought_tokens: 0,
        })
    }
}

/// The outcomes a prompt's verdict can have, in the order of the outcome columns.
const OUTCOMES: [Option<Judgment>; 3] = [
    Some(Judgment::Verdict(Side::A)),
    Some(Judgment::Verdict(Side::B)),
    None,
];

/// The units of the prompts `micro`, as row ranges within it.
fn unit_ranges(
    prompts: &StepPrompts,
    micro: std::ops::Range<usize>,
) -> Vec<std::ops::Range<usize>> {
    let start = micro.start;
    let mut out: Vec<std::ops::Range<usize>> = Vec::new();
    let mut last_unit = None;
    for p in micro {
        let unit = prompts.prompts[p].0;
        match out.last_mut() {
            Some(r) if last_unit == Some(unit) => r.end += 1,
            _ => out.push(p - start..p - start + 1),
        }
        last_unit = Some(unit);
    }
    out
}

/// Prompt ranges of whole units, each at most `max_prompts` long (or one unit).
fn micro_batches(prompts: &StepPrompts, max_prompts: usize) -> Vec<std::ops::Range<usize>> {
    let mut out: Vec<std::ops::Range<usize>> = Vec::new();
    let mut start = 0;
    for unit in &prompts.units {
        let len = unit.prompts.len();
        match out.last_mut() {
            Some(r) if r.len() + len <= max_prompts => r.end += len,
            _ => out.push(start..start + len),
        }
        start += len;
    }
    out
}
