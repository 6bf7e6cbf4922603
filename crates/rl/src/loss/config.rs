//! The policy-loss section of a training config.

use super::{KlEstimator, LossAggregation, RatioLevel, VerdictGradient};
use crate::error::{ensure, ensure_non_negative, ensure_positive, Result};
use serde::{Deserialize, Serialize};

/// Everything [`policy_loss`](super::policy_loss) needs besides tensors. Defaults reproduce
/// J1-Llama-8B as far as it is known (recipe.md §5, §10); unstated J1 values follow verl.
///
/// ```toml
/// [loss]
/// clip_eps_high = 0.28     # DAPO clip-higher
/// kl_coef = 0.0
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyLossConfig {
    /// Token-level ratio (PPO/GRPO, default) or sequence-level (GSPO, which requires
    /// `aggregation = "seq_mean_token_mean"`).
    pub ratio_level: RatioLevel,
    /// ε_low in (0, 1): ρ is clipped below at 1 − ε_low. Default 0.2 (verl; J1, inferred).
    pub clip_eps_low: f64,
    /// ε_high > 0: ρ is clipped above at 1 + ε_high. Default 0.2; DAPO clip-higher 0.28.
    pub clip_eps_high: f64,
    /// Dual clip c > 1: for Â < 0 the loss is capped at −c Â. Default off; verl 3, DAPO 10.
    pub dual_clip: Option<f64>,
    /// Default `token_mean` (verl default, DAPO; J1, inferred).
    pub aggregation: LossAggregation,
    /// C for `seq_mean_token_sum_norm`, > 0. Default 4096, J1's max response length.
    pub norm_constant: f64,
    /// β ≥ 0 of the KL-to-reference loss term. Default 0.01 (J1-8B); J1-70B, DAPO and
    /// Dr. GRPO use 0. With 0 the reference forward can be skipped
    /// ([`PolicyLossConfig::needs_reference`]).
    pub kl_coef: f64,
    /// Default `k3` (GRPO / verl `low_var_kl`; J1, inferred).
    pub kl_estimator: KlEstimator,
    /// Entropy bonus coefficient: the loss subtracts it times the aggregated entropy.
    /// Default 0 (J1: a bonus hurt, v1 §4). Needs a per-token entropy input when ≠ 0.
    pub entropy_coef: f64,
    /// How the verdict token's gradient is estimated: `sampled` (default, J1) or `expected`
    /// (the exact expectation over the option letters, see [`VerdictGradient`]).
    pub verdict_gradient: VerdictGradient,
}

impl Default for PolicyLossConfig {
    fn default() -> Self {
        PolicyLossConfig {
            ratio_level: RatioLevel::Token,
            clip_eps_low: 0.2,
            clip_eps_high: 0.2,
            dual_clip: None,
            aggregation: LossAggregation::TokenMean,
            norm_constant: 4096.0,
            kl_coef: 0.01,
            kl_estimator: KlEstimator::K3,
            entropy_coef: 0.0,
            verdict_gradient: VerdictGradient::Sampled,
        }
    }
}

impl PolicyLossConfig {
    /// Whether the loss uses reference log-probs; when false the trainer can skip the
    /// reference forward entirely (passing them anyway only adds the KL to the statistics).
    pub fn needs_reference(&self) -> bool {
        self.kl_coef > 0.0
    }

    /// Whether the loss uses a per-token entropy input.
    pub fn needs_entropy(&self) -> bool {
        self.entropy_coef != 0.0
    }

    /// Checks every value; the error names the field.
    pub fn validate(&self) -> Result<()> {
        let eps_low = self.clip_eps_low;
        ensure(eps_low > 0.0 && eps_low < 1.0, "loss.clip_eps_low", || {
            format!("{eps_low} must be in (0, 1)")
        })?;
        ensure_positive("loss.clip_eps_high", self.clip_eps_high)?;
        if let Some(c) = self.dual_clip {
            ensure(c > 1.0 && c.is_finite(), "loss.dual_clip", || {
                format!("{c} must be finite and > 1")
            })?;
        }
        ensure_positive("loss.norm_constant", self.norm_constant)?;
        ensure_non_negative("loss.kl_coef", self.kl_coef)?;
        let h = self.entropy_coef;
        ensure(h.is_finite(), "loss.entropy_coef", || {
            format!("{h} is not finite")
        })?;
        let gspo_ok = self.ratio_level == RatioLevel::Token
            || self.aggregation == LossAggregation::SeqMeanTokenMean;
        ensure(gspo_ok, "loss.aggregation", || {
            format!(
                "{:?} with ratio_level = \"sequence\": GSPO is defined with seq_mean_token_mean",
                self.aggregation
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_j1_and_valid() {
        let c = PolicyLossConfig::default();
        c.validate().unwrap();
        assert!(c.needs_reference());
        assert!(!c.needs_entropy());
        let c: PolicyLossConfig = toml::from_str(
            r#"
            clip_eps_high = 0.28
            dual_clip = 3.0
            aggregation = "seq_mean_token_sum_norm"
            kl_coef = 0.0
            kl_estimator = "k1"
            "#,
        )
        .unwrap();
        assert_eq!(c.clip_eps_high, 0.28);
        assert_eq!(c.aggregation, LossAggregation::SeqMeanTokenSumNorm);
        assert_eq!(c.kl_estimator, KlEstimator::K1);
        assert!(!c.needs_reference());
    }

    #[test]
    fn unknown_and_invalid_values_are_rejected() {
        assert!(toml::from_str::<PolicyLossConfig>("clip_eps = 0.2").is_err());
        assert!(toml::from_str::<PolicyLossConfig>(r#"aggregation = "mean""#).is_err());
        let cases = [
            PolicyLossConfig {
                clip_eps_low: 1.0,
                ..Default::default()
            },
            PolicyLossConfig {
                dual_clip: Some(1.0),
                ..Default::default()
            },
            PolicyLossConfig {
                kl_coef: -0.1,
                ..Default::default()
            },
            PolicyLossConfig {
                ratio_level: RatioLevel::Sequence,
                ..Default::default()
            },
        ];
        let fields = ["clip_eps_low", "dual_clip", "kl_coef", "aggregation"];
        for (c, f) in cases.iter().zip(fields) {
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(f), "{e}");
        }
    }
}
