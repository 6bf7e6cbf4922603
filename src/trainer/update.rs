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

use candle_core::Device;
use thinkjudge_model::{Llama, Mode};
use thinkjudge_rl::{
    policy_loss, AdamW, BatchTotals, LossInputs, LossOutput, LossStats, PolicyLossConfig,
    StepReport,
};
use thinkjudge_rollout::score_completions;

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
            if totals.tokens == 0.0 {
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
/// them, forced tokens masked out, normalised by the whole mini-batch's `totals`.
///
/// # Shapes
/// `mb` holds p prompts and n = p·G completions → a scalar loss.
fn micro_batch_loss(
    ctx: &UpdateContext,
    mb: &MicroBatch,
    group_size: usize,
    totals: BatchTotals,
) -> Result<LossOutput> {
    let score = |model: &Llama, mode: Mode| {
        score_completions(
            model,
            &mb.prompts,
            &mb.completions,
            group_size,
            ctx.temperature,
            mode,
        )
    };
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
    Ok(policy_loss(&inputs, ctx.loss, Some(totals))?)
}
