//! Group-relative advantages (recipe.md §9.1) and the DAPO dynamic-sampling filter (§9.6).
//!
//! - GRPO: Â_i = (r_i − mean_g r) / (std_g r + ε), with the unbiased (n − 1) standard
//!   deviation and ε = 1e-6 (verl `compute_grpo_outcome_advantage`).
//! - Dr. GRPO: Â_i = r_i − mean_g r.
//!
//! A group with a single sample gets advantage 0 (verl would give r_i; a lone sample carries
//! no group-relative signal). The group is a prompt, i.e. (pair, order) for pairwise samples
//! (J1, verl's per-prompt uid), or a whole pair across both orders (EIS-GRPO / J4R).
//! Computation is in f64; the advantages are returned as f32.

use crate::error::{ensure_positive, Result, RlError};
use crate::reward::{Gold, Member, Sample};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::hash::Hash;
use thinkjudge_data::judgment::Order;

/// How rewards are turned into advantages within a group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdvantageEstimator {
    /// Mean-centred and divided by the unbiased std + ε (DeepSeekMath; J1).
    #[default]
    Grpo,
    /// Mean-centred only (Dr. GRPO, 2503.20783).
    DrGrpo,
}

/// Which samples form a group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupKey {
    /// One group per prompt: (pair, order) pairwise, (pair, member) for distant supervision,
    /// the item for labelled pointwise samples. J1 / verl default (inferred).
    #[default]
    Prompt,
    /// One group per pair: both orders (or both members) together (EIS-GRPO / J4R).
    Pair,
}

/// Advantage settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdvantageConfig {
    /// Default `grpo` (J1).
    pub estimator: AdvantageEstimator,
    /// Default `prompt` (J1, inferred).
    pub group_key: GroupKey,
    /// ε added to the std, > 0. Default 1e-6 (verl).
    pub std_eps: f64,
    /// Drop groups whose rewards are all equal (DAPO dynamic sampling). Default false (J1).
    /// Their advantages are 0 under either estimator; dropping them only saves compute and
    /// keeps the loss normaliser from counting them.
    pub dynamic_sampling: bool,
}

impl Default for AdvantageConfig {
    fn default() -> Self {
        AdvantageConfig {
            estimator: AdvantageEstimator::Grpo,
            group_key: GroupKey::Prompt,
            std_eps: 1e-6,
            dynamic_sampling: false,
        }
    }
}

impl AdvantageConfig {
    /// Checks every value; the error names the field.
    pub fn validate(&self) -> Result<()> {
        ensure_positive("advantage.std_eps", self.std_eps)
    }
}

/// Rewards whose spread is at most this are "all equal" for dynamic sampling; it absorbs
/// f32 rounding in shaped rewards, far below any real reward difference.
pub const EQUAL_REWARDS_TOL: f32 = 1e-6;

/// Advantages for a batch, with the dynamic-sampling outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Advantages {
    /// One per sample (0 for samples in dropped groups).
    pub values: Vec<f32>,
    /// Whether each sample is trained on (false = its group was dropped).
    pub keep: Vec<bool>,
    /// The dense group index (0..groups) of each sample, in order of first appearance.
    pub group: Vec<usize>,
    /// Group counts for logging.
    pub stats: GroupStats,
}

/// Group counts, for logging.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupStats {
    /// Groups in the batch.
    pub groups: usize,
    /// Groups whose rewards are all equal (zero advantage), dropped or not.
    pub uniform_groups: usize,
    /// Groups dropped by dynamic sampling.
    pub dropped_groups: usize,
    /// Samples in the dropped groups.
    pub dropped_samples: usize,
}

/// Group-relative advantages of plain rewards, grouped by `groups[i]` (any hashable id).
///
/// ```
/// use thinkjudge_rl::{group_advantages, AdvantageEstimator};
/// let a = group_advantages(&[1.0, 0.0, 1.0, 1.0], &[0, 0, 1, 1], AdvantageEstimator::DrGrpo, 1e-6)?;
/// assert_eq!(a, vec![0.5, -0.5, 0.0, 0.0]);
/// # Ok::<(), thinkjudge_rl::RlError>(())
/// ```
pub fn group_advantages<K: Hash + Eq>(
    rewards: &[f32],
    groups: &[K],
    estimator: AdvantageEstimator,
    std_eps: f64,
) -> Result<Vec<f32>> {
    if rewards.len() != groups.len() {
        return Err(RlError::Shape(format!(
            "{} rewards but {} group ids",
            rewards.len(),
            groups.len()
        )));
    }
    let (dense, n) = dense_groups(groups);
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, &g) in dense.iter().enumerate() {
        members[g].push(i);
    }
    let mut out = vec![0.0f32; rewards.len()];
    for idx in members.iter().filter(|m| m.len() > 1) {
        let n = idx.len() as f64;
        let mean = idx.iter().map(|&i| rewards[i] as f64).sum::<f64>() / n;
        let scale = match estimator {
            AdvantageEstimator::Grpo => {
                let var = idx
                    .iter()
                    .map(|&i| (rewards[i] as f64 - mean).powi(2))
                    .sum::<f64>()
                    / (n - 1.0);
                1.0 / (var.sqrt() + std_eps)
            }
            AdvantageEstimator::DrGrpo => 1.0,
        };
        for &i in idx {
            out[i] = ((rewards[i] as f64 - mean) * scale) as f32;
        }
    }
    Ok(out)
}

/// Advantages for `samples` scored with `rewards`, grouped per `cfg.group_key`, with the
/// dynamic-sampling filter applied when enabled.
pub fn compute_advantages(
    samples: &[Sample],
    rewards: &[f32],
    cfg: &AdvantageConfig,
) -> Result<Advantages> {
    cfg.validate()?;
    if samples.len() != rewards.len() {
        return Err(RlError::Shape(format!(
            "{} samples but {} rewards",
            samples.len(),
            rewards.len()
        )));
    }
    let keys: Vec<_> = samples.iter().map(|s| group_of(s, cfg.group_key)).collect();
    let mut values = group_advantages(rewards, &keys, cfg.estimator, cfg.std_eps)?;
    let (group, n) = dense_groups(&keys);
    let mut lo = vec![f32::INFINITY; n];
    let mut hi = vec![f32::NEG_INFINITY; n];
    for (&g, &r) in group.iter().zip(rewards) {
        lo[g] = lo[g].min(r);
        hi[g] = hi[g].max(r);
    }
    let uniform: Vec<bool> = lo
        .iter()
        .zip(&hi)
        .map(|(l, h)| h - l <= EQUAL_REWARDS_TOL)
        .collect();
    let keep: Vec<bool> = group
        .iter()
        .map(|&g| !(cfg.dynamic_sampling && uniform[g]))
        .collect();
    for (v, &k) in values.iter_mut().zip(&keep) {
        if !k {
            *v = 0.0;
        }
    }
    let uniform_groups = uniform.iter().filter(|&&u| u).count();
    let stats = GroupStats {
        groups: n,
        uniform_groups,
        dropped_groups: if cfg.dynamic_sampling {
            uniform_groups
        } else {
            0
        },
        dropped_samples: keep.iter().filter(|&&k| !k).count(),
    };
    Ok(Advantages {
        values,
        keep,
        group,
        stats,
    })
}

/// The grouping key of a sample: (pair, order, member), with the parts the key ignores unset.
fn group_of(s: &Sample, key: GroupKey) -> (u64, Option<Order>, Option<Member>) {
    match key {
        GroupKey::Pair => (s.pair_id, None, None),
        GroupKey::Prompt => {
            let member = match s.gold {
                Gold::Member(m) => Some(m),
                _ => None,
            };
            (s.pair_id, s.order, member)
        }
    }
}

/// Maps arbitrary group ids to 0..n in order of first appearance.
fn dense_groups<K: Hash + Eq>(groups: &[K]) -> (Vec<usize>, usize) {
    let mut ids: HashMap<&K, usize> = HashMap::new();
    let dense = groups
        .iter()
        .map(|k| {
            let n = ids.len();
            *ids.entry(k).or_insert(n)
        })
        .collect();
    (dense, ids.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reward::test_util::{pairwise, pointwise};
    use proptest::prelude::*;

    #[test]
    fn grpo_uses_unbiased_std_plus_eps() {
        // rewards [1, 0, 0, 0]: mean ¼; unbiased var = (¾² + 3·¼²) / 3 = (9/16 + 3/16) / 3 = ¼,
        // std ½ → Â = [¾, −¼, −¼, −¼] / (½ + 1e-6).
        let a = group_advantages(
            &[1.0, 0.0, 0.0, 0.0],
            &[9; 4],
            AdvantageEstimator::Grpo,
            1e-6,
        )
        .unwrap();
        let d = 0.5 + 1e-6;
        let want = [0.75 / d, -0.25 / d, -0.25 / d, -0.25 / d];
        for (x, w) in a.iter().zip(want) {
            assert!((*x as f64 - w).abs() < 1e-6, "{a:?}");
        }
    }

    #[test]
    fn uniform_and_single_sample_groups_get_zero() {
        let a =
            group_advantages(&[1.0, 1.0, 0.3], &[0, 0, 1], AdvantageEstimator::Grpo, 1e-6).unwrap();
        assert_eq!(a, vec![0.0, 0.0, 0.0]);
        assert!(group_advantages(&[1.0], &[0, 1], AdvantageEstimator::Grpo, 1e-6).is_err());
    }

    #[test]
    fn group_key_prompt_separates_orders_pair_merges_them() {
        let s = vec![
            pairwise(1, Order::AB, 0, None),
            pairwise(1, Order::AB, 1, None),
            pairwise(1, Order::BA, 0, None),
            pairwise(1, Order::BA, 1, None),
        ];
        let r = [1.0, 0.0, 1.0, 1.0];
        let cfg = AdvantageConfig {
            estimator: AdvantageEstimator::DrGrpo,
            ..AdvantageConfig::default()
        };
        let a = compute_advantages(&s, &r, &cfg).unwrap();
        assert_eq!(a.values, vec![0.5, -0.5, 0.0, 0.0]);
        assert_eq!(a.group, vec![0, 0, 1, 1]);
        assert_eq!(a.stats.uniform_groups, 1);
        assert_eq!(a.stats.dropped_groups, 0);
        let cfg = AdvantageConfig {
            group_key: GroupKey::Pair,
            ..cfg
        };
        let a = compute_advantages(&s, &r, &cfg).unwrap();
        // mean ¾ over all four.
        assert_eq!(a.values, vec![0.25, -0.75, 0.25, 0.25]);
        assert_eq!(a.stats.groups, 1);
    }

    #[test]
    fn pointwise_members_are_separate_prompts() {
        let s = vec![
            pointwise(1, Gold::Member(Member::Chosen), 0, None),
            pointwise(1, Gold::Member(Member::Rejected), 0, None),
            pointwise(2, Gold::Label(true), 0, None),
        ];
        let cfg = AdvantageConfig::default();
        let a = compute_advantages(&s, &[1.0, 0.0, 1.0], &cfg).unwrap();
        assert_eq!(a.stats.groups, 3);
    }

    #[test]
    fn dynamic_sampling_drops_uniform_groups() {
        let s: Vec<_> = (0..6)
            .map(|i| pairwise(i / 2, Order::AB, (i % 2) as usize, None))
            .collect();
        // groups: [1, 1] uniform, [1, 0], [0, 0] uniform
        let r = [1.0, 1.0, 1.0, 0.0, 0.0, 0.0];
        let cfg = AdvantageConfig {
            dynamic_sampling: true,
            ..AdvantageConfig::default()
        };
        let a = compute_advantages(&s, &r, &cfg).unwrap();
        assert_eq!(a.keep, vec![false, false, true, true, false, false]);
        assert_eq!(
            a.stats,
            GroupStats {
                groups: 3,
                uniform_groups: 2,
                dropped_groups: 2,
                dropped_samples: 4,
            }
        );
        assert!(a.values[2] > 0.0 && a.values[3] < 0.0);
    }

    #[test]
    fn validate_rejects_bad_eps() {
        let cfg = AdvantageConfig {
            std_eps: 0.0,
            ..AdvantageConfig::default()
        };
        assert!(cfg.validate().unwrap_err().to_string().contains("std_eps"));
    }

    proptest! {
        #[test]
        fn advantages_sum_to_zero_within_each_group(
            rewards in prop::collection::vec(-2.0f32..2.0, 1..40),
            n_groups in 1usize..6,
            dr in any::<bool>(),
        ) {
            let groups: Vec<usize> = (0..rewards.len()).map(|i| i % n_groups).collect();
            let est = if dr { AdvantageEstimator::DrGrpo } else { AdvantageEstimator::Grpo };
            let a = group_advantages(&rewards, &groups, est, 1e-6).unwrap();
            for g in 0..n_groups {
                let s: f64 = a.iter().zip(&groups).filter(|(_, &k)| k == g).map(|(x, _)| *x as f64).sum();
                // GRPO advantages are bounded by √(n−1) ≈ 6.3 here; f32 rounding of 40 terms.
                prop_assert!(s.abs() < 1e-4, "group {g} sums to {s}");
            }
        }
    }
}
