//! Per-token estimators of KL(π_θ ‖ π_ref) from sampled tokens (recipe.md §9.3; Schulman's
//! "Approximating KL divergence"; verl `kl_penalty`). With Δ = log π_ref − log π_θ:
//!
//! - k1 = −Δ = log π_θ − log π_ref (unbiased, high variance, can be negative);
//! - k2 = ½ Δ² (verl `mse`);
//! - k3 = e^Δ − Δ − 1 (unbiased, ≥ 0; verl `low_var_kl`, GRPO's estimator). As in verl, Δ is
//!   clamped to [−20, 20] and k3 to [−10, 10]; clamped entries get zero gradient.
//!
//! Gradients with respect to log π_θ: k1 → 1, k2 → −Δ, k3 → 1 − e^Δ.
//! Not implemented: verl's straight-through "+" variants and the KL-in-reward placement.

use super::clamp_zero_grad;
use crate::error::Result;
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

/// The per-token KL estimator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KlEstimator {
    /// log π_θ − log π_ref.
    K1,
    /// ½ (log π_ref − log π_θ)² (verl `mse`).
    K2,
    /// GRPO / verl `low_var_kl`. Default (J1, inferred).
    #[default]
    K3,
}

/// verl's clamp of Δ before exponentiation.
const DELTA_CLAMP: f64 = 20.0;
/// verl's clamp of the k3 value.
const K3_CLAMP: f64 = 10.0;

/// The per-token KL estimate.
///
/// # Shapes
/// - `logprobs`, `ref_logprobs`: (B, T), same dtype.
/// - returns: (B, T); differentiable through `logprobs`.
pub fn kl_per_token(
    logprobs: &Tensor,
    ref_logprobs: &Tensor,
    estimator: KlEstimator,
) -> Result<Tensor> {
    let delta = ref_logprobs.sub(logprobs)?; // (B, T)
    Ok(match estimator {
        KlEstimator::K1 => delta.neg()?,
        KlEstimator::K2 => delta.sqr()?.affine(0.5, 0.0)?,
        KlEstimator::K3 => {
            let delta = clamp_zero_grad(&delta, -DELTA_CLAMP, DELTA_CLAMP)?;
            let k3 = delta.exp()?.sub(&delta)?.affine(1.0, -1.0)?;
            clamp_zero_grad(&k3, -K3_CLAMP, K3_CLAMP)?
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn estimators_and_gradients_match_hand_values() {
        // logp = [−1, −2, −0.5, −30], ref = [−1.5, −1, −0.5, −1] → Δ = [−0.5, 1, 0, 29].
        let lp = Var::new(&[[-1.0f64, -2.0, -0.5, -30.0]], &Device::Cpu).unwrap();
        let rf = Tensor::new(&[[-1.5f64, -1.0, -0.5, -1.0]], &Device::Cpu).unwrap();
        let e = 1f64.exp();
        let e_half = (-0.5f64).exp();
        let cases = [
            // k1 = −Δ; d/dlogp = 1
            (
                KlEstimator::K1,
                [0.5, -1.0, 0.0, -29.0],
                [1.0, 1.0, 1.0, 1.0],
            ),
            // k2 = Δ²/2; d/dlogp = −Δ
            (
                KlEstimator::K2,
                [0.125, 0.5, 0.0, 420.5],
                [0.5, -1.0, 0.0, -29.0],
            ),
            // k3 = e^Δ − Δ − 1; d/dlogp = 1 − e^Δ. Δ = 29 clamps to 20 and k3 to 10:
            // zero gradient there.
            (
                KlEstimator::K3,
                [e_half - 0.5, e - 2.0, 0.0, 10.0],
                [1.0 - e_half, 1.0 - e, 0.0, 0.0],
            ),
        ];
        for (est, val, grad) in cases {
            let k = kl_per_token(lp.as_tensor(), &rf, est).unwrap();
            let v = k.to_vec2::<f64>().unwrap()[0].clone();
            let g = k.sum_all().unwrap().backward().unwrap();
            let g = g.get(lp.as_tensor()).unwrap().to_vec2::<f64>().unwrap()[0].clone();
            for i in 0..4 {
                assert!((v[i] - val[i]).abs() < 1e-12, "{est:?} value {i}: {v:?}");
                assert!((g[i] - grad[i]).abs() < 1e-12, "{est:?} grad {i}: {g:?}");
            }
        }
    }
}
