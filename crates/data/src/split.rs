//! Deterministic shuffles and train/eval splits that never separate a pair's prompts.
//!
//! Everything groups by pair id ([`PairKeyed`]): all records with the same id move together,
//! wherever they sit in the input. Groups keep their first-appearance order inside a group.
//! Randomness is ChaCha8 seeded with the caller's seed, so results are the same on every
//! platform and run.

use std::collections::HashMap;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::judgment::Order;
use crate::prompts::JudgePrompt;
use crate::records::{PairwiseItem, PointwiseItem};

/// A record that belongs to a pair (or is one).
pub trait PairKeyed {
    /// The id shared by all records of one pair.
    fn pair_key(&self) -> &str;
}

impl PairKeyed for JudgePrompt {
    fn pair_key(&self) -> &str {
        &self.pair_id
    }
}

impl PairKeyed for PairwiseItem {
    fn pair_key(&self) -> &str {
        &self.id
    }
}

impl PairKeyed for PointwiseItem {
    fn pair_key(&self) -> &str {
        &self.id
    }
}

/// Groups records by pair id, groups in first-appearance order.
pub fn group_pairs<T: PairKeyed>(records: Vec<T>) -> Vec<Vec<T>> {
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut groups: Vec<Vec<T>> = Vec::new();
    for r in records {
        match index.get(r.pair_key()) {
            Some(&i) => groups[i].push(r),
            None => {
                index.insert(r.pair_key().to_string(), groups.len());
                groups.push(vec![r]);
            }
        }
    }
    groups
}

/// Shuffles pairs (not records): each pair's records stay adjacent and in order.
pub fn shuffle_pairs<T: PairKeyed>(records: Vec<T>, seed: u64) -> Vec<T> {
    let mut groups = group_pairs(records);
    groups.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    groups.into_iter().flatten().collect()
}

/// How to split. `Default`: 10% eval, seed 0.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SplitConfig {
    /// Share of pairs held out for evaluation, in `[0, 1)`. Default 0.1.
    pub eval_fraction: f64,
    /// Seed of the split. Default 0.
    pub seed: u64,
}

impl Default for SplitConfig {
    fn default() -> Self {
        SplitConfig {
            eval_fraction: 0.1,
            seed: 0,
        }
    }
}

impl SplitConfig {
    /// Checks the ranges.
    ///
    /// # Errors
    /// [`DataError::Config`] when `eval_fraction` is outside `[0, 1)`.
    pub fn validate(&self) -> Result<()> {
        if !(0.0..1.0).contains(&self.eval_fraction) {
            return Err(DataError::config(
                "eval_fraction",
                format!("must be in [0, 1), got {}", self.eval_fraction),
            ));
        }
        Ok(())
    }
}

/// A train/eval split.
#[derive(Debug, Clone, PartialEq)]
pub struct Split<T> {
    /// Training records.
    pub train: Vec<T>,
    /// Held-out records.
    pub eval: Vec<T>,
}

/// Splits by pair: `round(eval_fraction × pairs)` pairs, chosen by the seed, go to eval; the
/// rest to train. Both parts keep the input's order.
///
/// # Errors
/// [`DataError::Config`] from [`SplitConfig::validate`].
pub fn split_pairs<T: PairKeyed>(records: Vec<T>, cfg: &SplitConfig) -> Result<Split<T>> {
    cfg.validate()?;
    let groups = group_pairs(records);
    let n_eval = (cfg.eval_fraction * groups.len() as f64).round() as usize;
    let mut picks: Vec<usize> = (0..groups.len()).collect();
    picks.shuffle(&mut ChaCha8Rng::seed_from_u64(cfg.seed));
    let mut is_eval = vec![false; groups.len()];
    for &i in &picks[..n_eval] {
        is_eval[i] = true;
    }
    let mut split = Split {
        train: Vec::new(),
        eval: Vec::new(),
    };
    for (group, eval) in groups.into_iter().zip(is_eval) {
        if eval {
            split.eval.extend(group);
        } else {
            split.train.extend(group);
        }
    }
    Ok(split)
}

/// Keeps one order per pair, drawn by the seed, for single-order accuracy (J1 reports
/// RewardBench and PPE this way). Prompts of other shapes pass through unchanged.
pub fn pick_one_order(prompts: Vec<JudgePrompt>, seed: u64) -> Vec<JudgePrompt> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(prompts.len() / 2 + 1);
    for group in group_pairs(prompts) {
        let pairwise = group.len() == 2 && group.iter().all(|p| p.kind.is_pairwise());
        if pairwise {
            let keep = if rng.random_bool(0.5) {
                Order::AB
            } else {
                Order::BA
            };
            out.extend(group.into_iter().filter(|p| p.order == keep));
        } else {
            out.extend(group);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq)]
    struct Rec(String, u8);

    impl PairKeyed for Rec {
        fn pair_key(&self) -> &str {
            &self.0
        }
    }

    fn records(n: usize) -> Vec<Rec> {
        (0..n)
            .flat_map(|i| [Rec(format!("p{i}"), 0), Rec(format!("p{i}"), 1)])
            .collect()
    }

    fn adjacent_siblings(v: &[Rec]) -> bool {
        v.chunks(2)
            .all(|c| c.len() == 2 && c[0].0 == c[1].0 && c[0].1 == 0 && c[1].1 == 1)
    }

    #[test]
    fn shuffle_moves_pairs_whole_and_is_deterministic() {
        let a = shuffle_pairs(records(50), 7);
        assert!(adjacent_siblings(&a));
        assert_eq!(a, shuffle_pairs(records(50), 7));
        assert_ne!(a, shuffle_pairs(records(50), 8));
        assert_ne!(a, records(50), "a shuffle of 50 pairs left them in place");
    }

    #[test]
    fn split_never_separates_a_pair() -> Result<()> {
        let cfg = SplitConfig {
            eval_fraction: 0.2,
            seed: 3,
        };
        let s = split_pairs(records(100), &cfg)?;
        assert_eq!((s.train.len(), s.eval.len()), (160, 40));
        assert!(adjacent_siblings(&s.train) && adjacent_siblings(&s.eval));
        let eval_ids: Vec<&str> = s.eval.iter().map(|r| r.0.as_str()).collect();
        assert!(s.train.iter().all(|r| !eval_ids.contains(&r.0.as_str())));
        assert_eq!(s, split_pairs(records(100), &cfg)?);
        Ok(())
    }

    #[test]
    fn non_adjacent_siblings_are_still_grouped() {
        let v = vec![Rec("a".into(), 0), Rec("b".into(), 0), Rec("a".into(), 1)];
        let groups = group_pairs(v);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].len(), 2);
    }

    #[test]
    fn bad_fraction_is_rejected() {
        let cfg = SplitConfig {
            eval_fraction: 1.0,
            seed: 0,
        };
        let msg = split_pairs(records(1), &cfg).err().map(|e| e.to_string());
        assert_eq!(
            msg.as_deref(),
            Some("config `eval_fraction`: must be in [0, 1), got 1")
        );
    }
}
