//! The clipped importance-ratio surrogate (PPO/GRPO, DAPO clip-higher, dual clip, GSPO).
//! Recipe.md §9.2. Per token, with ratio ρ and advantage Â:
//!
//! ```text
//! L = max(−Â ρ, −Â clip(ρ, 1 − ε_low, 1 + ε_high))     (pessimistic bound)
//! L = min(L, −c Â)                 when Â < 0 and dual clip c is set (verl)
//! ```
//!
//! The branch is chosen on detached values and applied with `where_cond`, so a clipped token
//! gets exactly zero gradient (torch's `clamp` semantics) and an unclipped one gets −Â ρ.
//! log ρ is clamped to [−20, 20] before exponentiation (verl), also with zero gradient.

use super::{clamp_zero_grad, PolicyLossConfig};
use crate::error::Result;
use candle_core::{Tensor, D};
use serde::{Deserialize, Serialize};

/// Where the importance ratio is taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RatioLevel {
    /// ρ_{i,t} = π_θ(o_{i,t}) / π_old(o_{i,t}) (PPO, GRPO, DAPO). Default.
    #[default]
    Token,
    /// GSPO (2507.18071): s_i = exp(mean_t log ρ_{i,t}), the geometric mean of the token
    /// ratios, shared by all tokens of sequence i and clipped per sequence. Implemented as
    /// s_{i,t} = sg(s_i) · π_θ(o_{i,t}) / sg(π_θ(o_{i,t})), so that with `seq_mean_token_mean`
    /// the gradient equals that of the sequence-level objective. GSPO uses much smaller clip
    /// ranges (ε_low 3e-4, ε_high 4e-4).
    Sequence,
}

/// verl's clamp of log ρ before exponentiation.
const LOG_RATIO_CLAMP: f64 = 20.0;

/// The masked per-token surrogate and the masks the statistics need.
pub(crate) struct Surrogate {
    /// (B, T) per-token loss, 0 at masked positions; differentiable.
    pub per_token: Tensor,
    /// (B, T) ratio, detached.
    pub ratio: Tensor,
    /// (B, T) u8: the lower clip bound was active (ρ < 1 − ε_low with Â < 0).
    pub clip_low: Tensor,
    /// (B, T) u8: the upper clip bound was active (ρ > 1 + ε_high with Â > 0).
    pub clip_high: Tensor,
    /// (B, T) u8: the dual clip was active.
    pub dual: Tensor,
}

/// # Shapes
/// - `logprobs`, `old_logprobs`: (B, T), 0 at masked positions.
/// - `advantages`: (B, T), broadcast over tokens.
/// - `mask`: (B, T) u8; `mask_f`: the same as floats.
pub(crate) fn clipped_surrogate(
    logprobs: &Tensor,
    old_logprobs: &Tensor,
    advantages: &Tensor,
    mask: &Tensor,
    mask_f: &Tensor,
    cfg: &PolicyLossConfig,
) -> Result<Surrogate> {
    let log_ratio = match cfg.ratio_level {
        RatioLevel::Token => logprobs.sub(old_logprobs)?,
        RatioLevel::Sequence => {
            let lens = mask_f.sum(D::Minus1)?.maximum(1.0)?; // (B,)
            let seq = logprobs
                .detach()
                .sub(old_logprobs)?
                .sum(D::Minus1)?
                .div(&lens)? // (B,)
                .unsqueeze(1)?
                .broadcast_as(logprobs.shape())?; // (B, T)
            logprobs.sub(&logprobs.detach())?.add(&seq)?
        }
    };
    let ratio = clamp_zero_grad(&log_ratio, -LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)?.exp()?;
    let r = ratio.detach();
    let neg_adv = advantages.neg()?;
    let unclipped = ratio.mul(&neg_adv)?;
    let clipped = r
        .clamp(1.0 - cfg.clip_eps_low, 1.0 + cfg.clip_eps_high)?
        .mul(&neg_adv)?;
    // Ties (ρ inside the range, or Â = 0) keep the unclipped branch and its gradient.
    let use_unclipped = unclipped.detach().ge(&clipped)?;
    let mut pg = use_unclipped.where_cond(&unclipped, &clipped)?;
    let clip_active = use_unclipped.eq(0.0)?;
    let clip_low = clip_active.mul(&r.lt(1.0)?)?;
    let clip_high = clip_active.mul(&r.gt(1.0)?)?;
    let dual = match cfg.dual_clip {
        Some(c) => {
            let cap = neg_adv.affine(c, 0.0)?; // −c Â
            let dual = advantages.lt(0.0)?.mul(&pg.detach().gt(&cap)?)?;
            pg = dual.where_cond(&cap, &pg)?;
            dual
        }
        None => clip_active.zeros_like()?,
    };
    let per_token = mask.where_cond(&pg, &pg.zeros_like()?)?;
    Ok(Surrogate {
        per_token,
        ratio: r,
        clip_low: clip_low.mul(mask)?,
        clip_high: clip_high.mul(mask)?,
        dual: dual.mul(mask)?,
    })
}
