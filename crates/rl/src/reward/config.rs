//! The reward section of a training config, and the reward it builds.

use super::{
    DistantSupervision, LengthBasis, LengthPenalty, Pairing, PointwiseLabel, PositionConsistency,
    Reward, RewardSum, RewardValues, ScoreOrder, VerdictCorrectness,
};
use crate::error::{ensure, ensure_non_negative, Result};
use serde::{Deserialize, Serialize};

/// The reward: a task reward plus optional length shaping.
///
/// ```toml
/// [reward]
/// incorrect = 0.0
/// task = { kind = "consistency", pairing = "index" }
/// overlong = { max_len = 4096, buffer_len = 512 }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RewardConfig {
    /// The task reward. Default `verdict`: J1's headline recipe is both orders with the
    /// correctness reward only (recipe.md §4).
    pub task: TaskReward,
    /// Reward of a parseable wrong judgment, < 1. Default 0 (J1; −1 slightly hurt).
    pub incorrect: f32,
    /// Reward of an unparseable judgment, < 1. Default 0 (J1).
    pub unparseable: f32,
    /// Libra-style length penalty. Default off (J1 has none).
    pub length_penalty: Option<LengthPenaltyConfig>,
    /// DAPO overlong shaping. Default off (J1 has none).
    pub overlong: Option<OverlongConfig>,
}

impl Default for RewardConfig {
    fn default() -> Self {
        RewardConfig {
            task: TaskReward::Verdict {},
            incorrect: 0.0,
            unparseable: 0.0,
            length_penalty: None,
            overlong: None,
        }
    }
}

/// The task reward, by judging format.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[allow(missing_docs)] // the variant docs describe their fields
pub enum TaskReward {
    /// PaV / PaVS: verdict correctness ([`VerdictCorrectness`]).
    // `{}` rather than a unit variant: serde ignores extra keys of internally tagged unit
    // variants, which would defeat `deny_unknown_fields`.
    Verdict {},
    /// Correct in both orders ([`PositionConsistency`]); pairing default `index`.
    Consistency {
        #[serde(default)]
        pairing: Pairing,
    },
    /// PaS: s_chosen > s_rejected ([`ScoreOrder`]).
    Scores {},
    /// Pointwise score against a correctness label ([`PointwiseLabel`]); the score means
    /// "good" when ≥ `threshold`. Default 5.0, the midpoint of J1's 0–10 scale (inferred);
    /// use 0.5 for a binary judge parsed as 1/0.
    PointwiseLabel {
        #[serde(default = "default_threshold")]
        threshold: f64,
    },
    /// J1 pointwise distant supervision ([`DistantSupervision`]); pairing default `index`.
    DistantSupervision {
        #[serde(default)]
        pairing: Pairing,
    },
}

fn default_threshold() -> f64 {
    5.0
}

fn default_factor() -> f32 {
    1.0
}

/// Libra-style length penalty: 0 up to `expected_len`, linear to −`factor` at `max_len`
/// (Libra's exact form is unpublished; this ramp is our reading, recipe.md §7.2).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LengthPenaltyConfig {
    /// L_exp in tokens; no penalty up to here.
    pub expected_len: usize,
    /// L_max in tokens, > `expected_len`; full penalty from here.
    pub max_len: usize,
    /// The full penalty, ≥ 0. Default 1.
    #[serde(default = "default_factor")]
    pub factor: f32,
    /// Measure the whole completion (default) or only the thought.
    #[serde(default)]
    pub basis: LengthBasis,
}

/// DAPO overlong shaping (recipe.md §9.6): linear penalty over the last `buffer_len` tokens
/// before `max_len`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverlongConfig {
    /// L_max in tokens (normally the generation limit). DAPO: 20,480.
    pub max_len: usize,
    /// L_c in tokens, 0 < L_c ≤ L_max. DAPO: 4,096.
    pub buffer_len: usize,
    /// The full penalty, ≥ 0. Default 1 (DAPO).
    #[serde(default = "default_factor")]
    pub factor: f32,
}

impl RewardConfig {
    /// Checks every value; the error names the field.
    pub fn validate(&self) -> Result<()> {
        for (field, v) in [
            ("reward.incorrect", self.incorrect),
            ("reward.unparseable", self.unparseable),
        ] {
            ensure(v.is_finite() && v < 1.0, field, || {
                format!("{v} must be finite and below the correct reward 1")
            })?;
        }
        if let TaskReward::PointwiseLabel { threshold } = self.task {
            ensure(threshold.is_finite(), "reward.task.threshold", || {
                format!("{threshold} is not finite")
            })?;
        }
        if let Some(p) = &self.length_penalty {
            ensure(p.expected_len < p.max_len, "reward.length_penalty", || {
                format!(
                    "expected_len {} must be below max_len {}",
                    p.expected_len, p.max_len
                )
            })?;
            ensure_non_negative("reward.length_penalty.factor", p.factor as f64)?;
        }
        if let Some(o) = &self.overlong {
            let ok = o.buffer_len > 0 && o.buffer_len <= o.max_len;
            ensure(ok, "reward.overlong", || {
                format!(
                    "buffer_len {} must be in 1..={} (max_len)",
                    o.buffer_len, o.max_len
                )
            })?;
            ensure_non_negative("reward.overlong.factor", o.factor as f64)?;
        }
        Ok(())
    }

    /// Validates, then builds the reward: the task reward, summed with any shaping terms.
    pub fn build(&self) -> Result<Box<dyn Reward>> {
        self.validate()?;
        let values = RewardValues {
            incorrect: self.incorrect,
            unparseable: self.unparseable,
        };
        let task: Box<dyn Reward> = match self.task {
            TaskReward::Verdict {} => Box::new(VerdictCorrectness { values }),
            TaskReward::Consistency { pairing } => {
                Box::new(PositionConsistency { values, pairing })
            }
            TaskReward::Scores {} => Box::new(ScoreOrder { values }),
            TaskReward::PointwiseLabel { threshold } => {
                Box::new(PointwiseLabel { values, threshold })
            }
            TaskReward::DistantSupervision { pairing } => {
                Box::new(DistantSupervision { values, pairing })
            }
        };
        let mut terms = vec![task];
        if let Some(p) = self.length_penalty {
            terms.push(Box::new(LengthPenalty::libra(
                p.expected_len,
                p.max_len,
                p.factor,
                p.basis,
            )));
        }
        if let Some(o) = self.overlong {
            terms.push(Box::new(LengthPenalty::overlong(
                o.max_len,
                o.buffer_len,
                o.factor,
            )));
        }
        Ok(match terms.len() {
            1 => terms.remove(0),
            _ => Box::new(RewardSum::new(terms)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reward::test_util::{pairwise, verdict};
    use thinkjudge_data::judgment::{Order, Side};

    #[test]
    fn parses_toml_with_defaults() {
        let c: RewardConfig = toml::from_str(
            r#"
            incorrect = -1.0
            task = { kind = "consistency" }
            overlong = { max_len = 4096, buffer_len = 1024 }
            "#,
        )
        .unwrap();
        assert_eq!(
            c.task,
            TaskReward::Consistency {
                pairing: Pairing::Index
            }
        );
        assert_eq!(c.overlong.unwrap().factor, 1.0);
        let d: RewardConfig = toml::from_str("").unwrap();
        assert_eq!(d, RewardConfig::default());
        let p: RewardConfig = toml::from_str(r#"task = { kind = "pointwise_label" }"#).unwrap();
        assert_eq!(p.task, TaskReward::PointwiseLabel { threshold: 5.0 });
    }

    #[test]
    fn unknown_fields_and_kinds_are_rejected() {
        assert!(toml::from_str::<RewardConfig>("incorect = 0.0").is_err());
        assert!(toml::from_str::<RewardConfig>(r#"task = { kind = "vibes" }"#).is_err());
        assert!(toml::from_str::<RewardConfig>(
            r#"task = { kind = "verdict", pairing = "index" }"#
        )
        .is_err());
        assert!(toml::from_str::<RewardConfig>(
            r#"task = { kind = "consistency", pairng = "index" }"#
        )
        .is_err());
        assert!(toml::from_str::<RewardConfig>(
            "overlong = { max_len = 10, buffer_len = 2, factr = 1.0 }"
        )
        .is_err());
    }

    #[test]
    fn validate_names_the_field() {
        let c = RewardConfig {
            incorrect: 1.0,
            ..RewardConfig::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("reward.incorrect"), "{e}");
        let c = RewardConfig {
            overlong: Some(OverlongConfig {
                max_len: 100,
                buffer_len: 200,
                factor: 1.0,
            }),
            ..RewardConfig::default()
        };
        assert!(c.build().is_err());
        let c = RewardConfig {
            length_penalty: Some(LengthPenaltyConfig {
                expected_len: 100,
                max_len: 100,
                factor: 1.0,
                basis: LengthBasis::Completion,
            }),
            ..RewardConfig::default()
        };
        assert!(c.validate().is_err());
    }

    #[test]
    fn build_composes_task_and_shaping() {
        let c = RewardConfig {
            overlong: Some(OverlongConfig {
                max_len: 200,
                buffer_len: 100,
                factor: 1.0,
            }),
            ..RewardConfig::default()
        };
        let r = c.build().unwrap();
        assert_eq!(r.name(), "verdict+length_penalty");
        let mut s = pairwise(0, Order::AB, 0, verdict(Side::A));
        s.completion_tokens = 175; // penalty (175 − 100) / 100 = 0.75
        assert_eq!(r.score(&[s]).unwrap(), vec![0.25]);
        assert_eq!(RewardConfig::default().build().unwrap().name(), "verdict");
    }
}
