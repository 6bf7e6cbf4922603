//! The GRPO-family policy loss on candle tensors (recipe.md §9.2–9.4):
//!
//! ```text
//! loss = agg(L^clip) + β · agg(KL) − entropy_coef · agg(H)
//! ```
//!
//! with the clipped-ratio surrogate (token-level or GSPO, [`RatioLevel`]), the estimators of
//! [`KlEstimator`] and the modes of [`LossAggregation`], all aggregated with the same mode and
//! the same [`BatchTotals`]. Computation is in f32 (f64 when the log-probs are f64, for gradient
//! checks). Masked positions are replaced by 0 before any arithmetic, so padding may hold
//! any value, even −∞, without producing NaN losses or gradients.
//!
//! Not implemented: PPO value losses, the KL-in-reward placement, truncated importance
//! sampling against a rollout engine.

mod aggregate;
mod config;
mod kl;
mod policy;
mod verdict;

pub use aggregate::{BatchTotals, LossAggregation};
pub use config::PolicyLossConfig;
pub use kl::{kl_per_token, KlEstimator};
pub use policy::RatioLevel;
pub use verdict::{expected_joint_reward_loss, expected_verdict_loss, VerdictGradient};

use crate::error::{Result, RlError};
use aggregate::aggregate;
use candle_core::{DType, Tensor, D};
use serde::Serialize;

/// The tensors of one (micro-)batch.
///
/// # Shapes
/// - `logprobs`: (B, T) log π_θ of the completion tokens, differentiable.
/// - `old_logprobs`: (B, T) log π_old, recorded at sampling (detached here).
/// - `ref_logprobs`: (B, T) log π_ref; required when `kl_coef > 0`.
/// - `advantages`: (B,) one per sequence.
/// - `response_mask`: (B, T) any dtype, nonzero = a trained completion token.
/// - `entropy`: (B, T) per-token policy entropy (see [`token_entropy`]); required when
///   `entropy_coef ≠ 0`, reported when given.
#[derive(Debug, Clone, Copy)]
#[allow(missing_docs)] // fields are documented under # Shapes
pub struct LossInputs<'a> {
    pub logprobs: &'a Tensor,
    pub old_logprobs: &'a Tensor,
    pub ref_logprobs: Option<&'a Tensor>,
    pub advantages: &'a Tensor,
    pub response_mask: &'a Tensor,
    pub entropy: Option<&'a Tensor>,
}

/// The loss to back-propagate, and its detached statistics.
#[derive(Debug, Clone)]
pub struct LossOutput {
    /// Scalar, differentiable through `logprobs` (and `entropy`).
    pub loss: Tensor,
    /// Detached statistics.
    pub stats: LossStats,
}

/// Detached statistics of one (micro-)batch. Aggregated values (`loss`, `policy_loss`, `kl`,
/// `entropy`) use the loss's normaliser, so with global [`BatchTotals`] they are this
/// micro-batch's share and sum over micro-batches; the rest are means over this
/// micro-batch's completion tokens (0 when it has none). [`LossStats::combine`] merges
/// micro-batches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LossStats {
    /// The total loss.
    pub loss: f32,
    /// The aggregated clipped surrogate.
    pub policy_loss: f32,
    /// The aggregated KL to the reference (before β); `None` without reference log-probs.
    pub kl: Option<f32>,
    /// The aggregated entropy; `None` without an entropy input.
    pub entropy: Option<f32>,
    /// The expected-verdict term ([`expected_verdict_loss`]), included in `loss`; `None`
    /// when the verdict gradient is sampled. Added by the caller that computes it.
    pub verdict: Option<f32>,
    /// Fraction of tokens held at 1 − ε_low (zero gradient).
    pub clip_frac_low: f32,
    /// Fraction of tokens held at 1 + ε_high (zero gradient).
    pub clip_frac_high: f32,
    /// Fraction of tokens capped by the dual clip.
    pub dual_clip_frac: f32,
    /// Mean importance ratio over completion tokens (sequence ratio for GSPO).
    pub ratio_mean: f32,
    /// Smallest importance ratio.
    pub ratio_min: f32,
    /// Largest importance ratio.
    pub ratio_max: f32,
    /// mean_t (log π_old − log π_θ): how far the policy moved since sampling (verl `ppo_kl`).
    pub approx_kl_old: f32,
    /// Completion tokens in this micro-batch.
    pub tokens: f32,
}

impl LossStats {
    /// Merges the statistics of the micro-batches of one mini-batch, computed with the same
    /// global [`BatchTotals`]: aggregated values add, means are token-weighted, extremes are
    /// taken over all.
    pub fn combine(parts: &[LossStats]) -> LossStats {
        let tokens: f32 = parts.iter().map(|p| p.tokens).sum();
        let w = |f: fn(&LossStats) -> f32| {
            parts.iter().map(|p| f(p) * p.tokens).sum::<f32>() / tokens.max(1.0)
        };
        let sum_opt = |f: fn(&LossStats) -> Option<f32>| {
            parts.iter().map(f).try_fold(0.0, |a, x| x.map(|x| a + x))
        };
        let nonempty = || parts.iter().filter(|p| p.tokens > 0.0);
        LossStats {
            loss: parts.iter().map(|p| p.loss).sum(),
            policy_loss: parts.iter().map(|p| p.policy_loss).sum(),
            kl: sum_opt(|p| p.kl),
            entropy: sum_opt(|p| p.entropy),
            verdict: sum_opt(|p| p.verdict),
            clip_frac_low: w(|p| p.clip_frac_low),
            clip_frac_high: w(|p| p.clip_frac_high),
            dual_clip_frac: w(|p| p.dual_clip_frac),
            ratio_mean: w(|p| p.ratio_mean),
            ratio_min: nonempty()
                .map(|p| p.ratio_min)
                .reduce(f32::min)
                .unwrap_or(0.0),
            ratio_max: nonempty()
                .map(|p| p.ratio_max)
                .reduce(f32::max)
                .unwrap_or(0.0),
            approx_kl_old: w(|p| p.approx_kl_old),
            tokens,
        }
    }
}

/// The policy loss of one (micro-)batch.
///
/// `totals` is the size of the whole mini-batch the optimizer step averages over; pass the
/// same value to every micro-batch when accumulating gradients (see [`BatchTotals`]). `None`
/// uses this batch's own mask.
///
/// # Shapes
/// See [`LossInputs`]; every (B, T) input must have the same shape and `advantages` B rows.
pub fn policy_loss(
    inputs: &LossInputs,
    cfg: &PolicyLossConfig,
    totals: Option<BatchTotals>,
) -> Result<LossOutput> {
    cfg.validate()?;
    let (b, t) = check_shapes(inputs)?;
    let dt = match inputs.logprobs.dtype() {
        DType::F64 => DType::F64,
        _ => DType::F32,
    };
    let mask = inputs.response_mask.ne(0.0)?; // (B, T) u8
    let mask_f = mask.to_dtype(dt)?;
    let zeros = Tensor::zeros((b, t), dt, inputs.logprobs.device())?;
    let masked = |x: &Tensor| -> Result<Tensor> { Ok(mask.where_cond(&x.to_dtype(dt)?, &zeros)?) };
    let totals = match totals {
        Some(tot) => tot,
        None => BatchTotals::of_mask(&mask_f)?,
    };
    let agg = |x: &Tensor| aggregate(x, &mask_f, cfg.aggregation, totals, cfg.norm_constant);

    let logp = masked(inputs.logprobs)?;
    let old = masked(inputs.old_logprobs)?.detach();
    let adv = inputs
        .advantages
        .to_dtype(dt)?
        .detach()
        .unsqueeze(1)?
        .broadcast_as((b, t))?; // (B, T)
    let sur = policy::clipped_surrogate(&logp, &old, &adv, &mask, &mask_f, cfg)?;
    let policy_loss = agg(&sur.per_token)?;
    let mut loss = policy_loss.clone();

    let kl = match inputs.ref_logprobs {
        Some(r) => {
            let k = kl_per_token(&logp, &masked(r)?.detach(), cfg.kl_estimator)?;
            let k = agg(&mask.where_cond(&k, &zeros)?)?;
            if cfg.needs_reference() {
                loss = loss.add(&k.affine(cfg.kl_coef, 0.0)?)?;
            }
            Some(k)
        }
        None if cfg.needs_reference() => {
            return Err(RlError::MissingInput(format!(
                "ref_logprobs: kl_coef = {} needs reference log-probs",
                cfg.kl_coef
            )))
        }
        None => None,
    };
    let entropy = match inputs.entropy {
        Some(h) => {
            let h = agg(&masked(h)?)?;
            if cfg.needs_entropy() {
                loss = loss.sub(&h.affine(cfg.entropy_coef, 0.0)?)?;
            }
            Some(h)
        }
        None if cfg.needs_entropy() => {
            return Err(RlError::MissingInput(format!(
                "entropy: entropy_coef = {} needs per-token entropies",
                cfg.entropy_coef
            )))
        }
        None => None,
    };

    // All statistics in one device→host transfer.
    let count = |m: &Tensor| -> Result<Tensor> { Ok(m.to_dtype(dt)?.sum_all()?) };
    let masked_r = |fill: f64| -> Result<Tensor> {
        Ok(mask.where_cond(&sur.ratio, &zeros.affine(1.0, fill)?)?)
    };
    let mut scalars = vec![
        loss.detach(),
        policy_loss.detach(),
        count(&sur.clip_low)?,
        count(&sur.clip_high)?,
        count(&sur.dual)?,
        sur.ratio.mul(&mask_f)?.sum_all()?,
        masked_r(f64::MIN)?.max_all()?,
        masked_r(f64::MAX)?.min_all()?,
        old.sub(&logp.detach())?.sum_all()?,
        mask_f.sum_all()?,
    ];
    scalars.extend(kl.iter().chain(entropy.iter()).map(Tensor::detach));
    let scalars = scalars
        .iter()
        .map(|s| s.to_dtype(DType::F64))
        .collect::<candle_core::Result<Vec<_>>>()?;
    let v = Tensor::stack(&scalars, 0)?.to_vec1::<f64>()?;
    let tokens = v[9];
    let per_token = |x: f64| {
        if tokens > 0.0 {
            (x / tokens) as f32
        } else {
            0.0
        }
    };
    let extreme = |x: f64| if tokens > 0.0 { x as f32 } else { 0.0 };
    let stats = LossStats {
        loss: v[0] as f32,
        policy_loss: v[1] as f32,
        kl: kl.as_ref().map(|_| v[10] as f32),
        entropy: entropy
            .as_ref()
            .map(|_| v[if kl.is_some() { 11 } else { 10 }] as f32),
        verdict: None,
        clip_frac_low: per_token(v[2]),
        clip_frac_high: per_token(v[3]),
        dual_clip_frac: per_token(v[4]),
        ratio_mean: per_token(v[5]),
        ratio_max: extreme(v[6]),
        ratio_min: extreme(v[7]),
        approx_kl_old: per_token(v[8]),
        tokens: tokens as f32,
    };
    Ok(LossOutput { loss, stats })
}

/// Per-token entropy of the policy, −Σ_v p log p, differentiable (composed log-softmax).
/// Memory-hungry at large vocabularies: pass only the completion positions.
///
/// # Shapes
/// - `logits`: (B, T, V) → returns (B, T) in the logits' dtype.
pub fn token_entropy(logits: &Tensor) -> Result<Tensor> {
    let lsm = candle_nn::ops::log_softmax(logits, D::Minus1)?; // (B, T, V)
    Ok(lsm.exp()?.mul(&lsm)?.sum(D::Minus1)?.neg()?)
}

/// `x` clamped to [lo, hi]; clamped entries get zero gradient (torch `clamp` semantics,
/// without candle's half gradient at the boundary).
pub(crate) fn clamp_zero_grad(x: &Tensor, lo: f64, hi: f64) -> Result<Tensor> {
    let inside = x.ge(lo)?.mul(&x.le(hi)?)?;
    Ok(inside.where_cond(x, &x.detach().clamp(lo, hi)?)?)
}

fn check_shapes(i: &LossInputs) -> Result<(usize, usize)> {
    let dims = i.logprobs.dims();
    let [b, t] = *dims else {
        return Err(RlError::Shape(format!(
            "logprobs must be (B, T), got {dims:?}"
        )));
    };
    let named = [
        ("old_logprobs", Some(i.old_logprobs)),
        ("ref_logprobs", i.ref_logprobs),
        ("response_mask", Some(i.response_mask)),
        ("entropy", i.entropy),
    ];
    for (name, x) in named {
        if let Some(x) = x {
            if x.dims() != dims {
                return Err(RlError::Shape(format!(
                    "{name} is {:?} but logprobs is {dims:?}",
                    x.dims()
                )));
            }
        }
    }
    if i.advantages.dims() != [b] {
        return Err(RlError::Shape(format!(
            "advantages must be ({b},) for logprobs {dims:?}, got {:?}",
            i.advantages.dims()
        )));
    }
    Ok((b, t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn entropy_of_uniform_and_peaked_distributions() {
        // Uniform over 4 → ln 4. Logits [ln 3, 0] → p = [¾, ¼]:
        // H = −(¾ ln ¾ + ¼ ln ¼).
        let u = Tensor::zeros((1, 1, 4), DType::F64, &Device::Cpu).unwrap();
        let h = token_entropy(&u).unwrap().flatten_all().unwrap();
        assert!((h.to_vec1::<f64>().unwrap()[0] - 4f64.ln()).abs() < 1e-12);
        let p = Tensor::new(&[[[3f64.ln(), 0.0]]], &Device::Cpu).unwrap();
        let h = token_entropy(&p).unwrap().flatten_all().unwrap();
        let want = -(0.75 * 0.75f64.ln() + 0.25 * 0.25f64.ln());
        assert!((h.to_vec1::<f64>().unwrap()[0] - want).abs() < 1e-12);
    }
}
