//! The policy update of a step: teacher-forced log-probs through the shared-prefix forward,
//! the GRPO-family loss with the mini-batch's global normaliser, accumulated gradients, one
//! optimizer update per mini-batch.
//!
//! With the defaults (1 epoch, 1 mini-batch) this is on-policy GRPO: one update per step and
//! π_old = the sampling policy, whose recorded log-probs are the `old_logprobs`. With more
//! epochs or mini-batches the recorded log-probs stay π_old (the policy that sampled), so
//! later updates see ratios ≠ 1 and clipping applies. Mini-batches are contiguous slices of
//! the step's kept prompts, in the same order every epoch.
//!
//! A non-finite micro-batch loss or gradient norm skips that optimizer update (weights and
//! optimizer state untouched) and the step's remaining updates.

use std::borrow::Cow;

use candle_core::{DType, Device, Tensor};
use thinkjudge_model::{Llama, Mode};
use thinkjudge_rl::{
    expected_verdict_loss, policy_loss, AdamW, BatchTotals, LossInputs, LossOutput, LossStats,
    PolicyLossConfig, StepReport,
};
use thinkjudge_rollout::{score_completions, CompletionScores};

use super::batch::{JudgedRollouts, MicroBatch, StepPrompts};
use crate::error::Result;
use crate::metrics::SkipReason;

/// The KL reference policy.
#[derive(Debug)]
pub enum Reference {
    /// No KL term (`loss.kl_coef = 0`): no reference forward.
    Off,
    /// LoRA: the policy with its adapters switched off (`Mode::Reference`), no extra weights.
    BaseOfAdapters,
    /// Full fine-tuning: a frozen copy of the initial weights.
    Frozen(Box<Llama>),
}

/// What the update needs besides the batch.
#[derive(Debug)]
pub struct UpdateContext<'a> {
    /// The policy.
    pub model: &'a Llama,
    /// The KL reference.
    pub reference: &'a Reference,
    /// The loss.
    pub loss: &'a PolicyLossConfig,
    /// The sampling temperature (log-probs are of `softmax(logits / T)`, like the recorded ones).
    pub temperature: f64,
    /// Prompts per forward/backward.
    pub micro_batch_prompts: usize,
    /// Passes over the step's samples.
    pub ppo_epochs: usize,
    /// Optimizer updates per pass.
    pub mini_batches: usize,
    /// Where tensors live.
    pub device: &'a Device,
}

/// What the update did.
#[derive(Debug, Default)]
pub struct UpdateOutcome {
    /// Loss statistics of each applied update (micro-batches combined).
    pub stats: Vec<LossStats>,
    /// The optimizer report of the last update attempted.
    pub last_report: Option<StepReport>,
    /// Why the step's update was skipped (or cut short).
    pub skipped: Option<SkipReason>,
    /// Tokens through the training forward.
    pub train_tokens: usize,
    /// Training-mode forwards of the policy (the LoRA-dropout stream advances by this).
    pub train_forwards: u64,
}

/// Runs the step's optimizer updates.
///
/// # Errors
/// Scoring, loss and optimizer errors (not non-finite values: those are reported in the
/// outcome).
pub fn policy_update(
    ctx: &UpdateContext,
    step: &StepPrompts,
    judged: &JudgedRollouts,
    optimizer: &mut AdamW,
) -> Result<UpdateOutcome> {
    let mut out = UpdateOutcome::default();
    let kept = judged.kept_prompts();
    if kept.is_empty() {
        out.skipped = Some(SkipReason::AllGroupsDropped);
        return Ok(out);
    }
    let per = kept.len().div_ceil(ctx.mini_batches);
    for _epoch in 0..ctx.ppo_epochs {
        for mini in kept.chunks(per) {
            let totals = judged.totals(mini);
            if totals.tokens == 0.0 && !judged.has_verdicts(mini) {
                continue; // only forced tokens: nothing to train on
            }
            let mut grads = optimizer.accumulator();
            let mut parts = Vec::new();
            for micro in mini.chunks(ctx.micro_batch_prompts) {
                let mb = MicroBatch::new(step, judged, micro, ctx.device)?;
                out.train_tokens += mb.tokens();
                out.train_forwards += mb.train_forwards();
                let loss = micro_batch_loss(ctx, &mb, judged.group_size(), totals)?;
                if !loss.stats.loss.is_finite() {
                    out.skipped = Some(SkipReason::NonFiniteLoss);
                    return Ok(out);
                }
                grads.add(&loss.loss.backward()?)?;
                parts.push(loss.stats);
            }
            let report = optimizer.step(&grads)?;
            out.last_report = Some(report);
            if !report.applied {
                out.skipped = Some(SkipReason::NonFiniteGradient);
                return Ok(out);
            }
            out.stats.push(LossStats::combine(&parts));
        }
    }
    Ok(out)
}

/// The loss of one micro-batch and its detached statistics: policy log-probs through the
/// shared-prefix forward (differentiable), reference log-probs only when the KL term needs
/// them, forced tokens masked out, normalised by the whole mini-batch's `totals`; plus the
/// expected-verdict term when the micro-batch has verdict letters.
///
/// # Shapes
/// `mb` holds p prompts and n = p·G completions → a scalar loss.
fn micro_batch_loss(
    ctx: &UpdateContext,
    mb: &MicroBatch,
    group_size: usize,
    totals: BatchTotals,
) -> Result<LossOutput> {
    let rows = ScoredRows::new(mb, group_size, ctx.device)?;
    let score = |model: &Llama, mode: Mode| rows.score(model, mode, ctx.temperature);
    let policy = score(ctx.model, Mode::Train)?; // (n, Lc), differentiable
    let response_mask = policy.mask.mul(&mb.sampled_mask)?; // (n, Lc)
    let reference = match ctx.reference {
        _ if !ctx.loss.needs_reference() => None,
        Reference::Off => None,
        Reference::BaseOfAdapters => Some(score(ctx.model, Mode::Reference)?.logprobs),
        Reference::Frozen(model) => Some(score(model, Mode::Infer)?.logprobs),
    };
    let inputs = LossInputs {
        logprobs: &policy.logprobs,
        old_logprobs: &mb.old_logprobs,
        ref_logprobs: reference.as_ref(),
        advantages: &mb.advantages,
        response_mask: &response_mask,
        entropy: Some(&policy.entropy),
    };
    let mut out = if totals.tokens > 0.0 {
        policy_loss(&inputs, ctx.loss, Some(totals))?
    } else {
        // Only verdict letters to train (the completions end at them).
        LossOutput {
            loss: Tensor::zeros((), DType::F32, ctx.device)?,
            stats: LossStats::default(),
        }
    };
    if let (Some(v), Some(options)) = (&mb.verdict, &policy.options) {
        let term = expected_verdict_loss(options, &v.gains, totals)?;
        let value = term.to_dtype(DType::F32)?.to_scalar::<f32>()?;
        out.loss = out.loss.add(&term.to_dtype(out.loss.dtype())?)?;
        out.stats.loss += value;
        out.stats.verdict = Some(value);
    }
    Ok(out)
}

/// The rows a micro-batch scores: its G completions per prompt, then (expected verdict) the
/// G alternatives with the other letter, all sharing the prompt's prefix.
struct ScoredRows<'a> {
    mb: &'a MicroBatch,
    /// The micro-batch's own completions unless alternatives are interleaved.
    completions: Cow<'a, [Vec<u32>]>,
    group: usize,
    /// (n) the rows of the sampled completions and (expected verdict) of their alternatives.
    picks: Option<(Tensor, Tensor)>,
}

/// [`CompletionScores`] of the sampled rows, with the option log-probs of the verdict.
struct Scored {
    logprobs: Tensor,
    entropy: Tensor,
    mask: Tensor,
    /// (n, 2) log π of the sampled and of the other letter at each verdict position (0 where
    /// a sample has none).
    options: Option<Tensor>,
}

impl<'a> ScoredRows<'a> {
    fn new(mb: &'a MicroBatch, g: usize, device: &Device) -> Result<Self> {
        let Some(v) = &mb.verdict else {
            return Ok(ScoredRows {
                mb,
                completions: Cow::Borrowed(&mb.completions),
                group: g,
                picks: None,
            });
        };
        let p = mb.prompts.len();
        let mut completions = Vec::with_capacity(2 * p * g);
        for (own, alt) in mb.completions.chunks(g).zip(v.alternatives.chunks(g)) {
            completions.extend_from_slice(own);
            completions.extend_from_slice(alt);
        }
        let rows = |offset: usize| -> Vec<u32> {
            (0..p * g)
                .map(|i| ((i / g) * 2 * g + offset + i % g) as u32)
                .collect()
        };
        let pick = |offset| Tensor::new(rows(offset), device);
        Ok(ScoredRows {
            mb,
            completions: Cow::Owned(completions),
            group: 2 * g,
            picks: Some((pick(0)?, pick(g)?)),
        })
    }

    fn score(&self, model: &Llama, mode: Mode, temperature: f64) -> Result<Scored> {
        let s: CompletionScores = score_completions(
            model,
            &self.mb.prompts,
            &self.completions,
            self.group,
            temperature,
            mode,
        )?;
        let (Some((own, alt)), Some(v)) = (&self.picks, &self.mb.verdict) else {
            return Ok(Scored {
                logprobs: s.logprobs,
                entropy: s.entropy,
                mask: s.mask,
                options: None,
            });
        };
        let logprobs = s.logprobs.index_select(own, 0)?; // (n, Lc)
        let at_letter = |x: &Tensor| -> Result<Tensor> {
            let pos = v.position.to_dtype(x.dtype())?;
            Ok(x.mul(&pos)?.sum_keepdim(1)?)
        };
        let options = Tensor::cat(
            &[
                at_letter(&logprobs)?,
                at_letter(&s.logprobs.index_select(alt, 0)?)?,
            ],
            1,
        )?; // (n, 2)
        Ok(Scored {
            logprobs,
            entropy: s.entropy.index_select(own, 0)?,
            mask: s.mask.index_select(own, 0)?,
            options: Some(options),
        })
    }
}
