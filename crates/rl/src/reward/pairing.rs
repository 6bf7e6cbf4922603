//! Matching the samples of a pair's two sides (its two answer orders, or its chosen and
//! rejected responses) for the rewards that compare them. J1 leaves the rule open
//! (recipe.md §4, §11.2).

use super::Sample;
use crate::error::{Result, RlError};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// How a sample is matched with the samples of the other side of its pair.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pairing {
    /// Sample i of one side is compared with sample i of the other, and both get the result
    /// (recipe §4 option 1, recommended). Needs the same sample indices on both sides.
    #[default]
    Index,
    /// Each sample is compared with every sample of the other side and gets the mean result:
    /// its expected reward against a random partner (recipe §4 option 2). For consistency
    /// this is c_i · mean_j c_j.
    Expected,
}

/// For every sample, the indices of the samples it is compared with.
///
/// `side` puts a sample on side 0 (`false`) or 1 (`true`) of its pair; `names` names the two
/// sides in error messages.
pub(crate) fn partners(
    samples: &[Sample],
    pairing: Pairing,
    reward: &str,
    names: [&str; 2],
    side: impl Fn(&Sample) -> Result<bool>,
) -> Result<Vec<Vec<usize>>> {
    let sides = samples.iter().map(&side).collect::<Result<Vec<_>>>()?;
    let mut by_index: HashMap<(u64, bool, usize), usize> = HashMap::new();
    let mut by_side: HashMap<(u64, bool), Vec<usize>> = HashMap::new();
    for (i, (s, &sd)) in samples.iter().zip(&sides).enumerate() {
        if by_index
            .insert((s.pair_id, sd, s.sample_index), i)
            .is_some()
        {
            return Err(RlError::reward(
                reward,
                format!(
                    "pair {}: two samples with index {} on side {}",
                    s.pair_id, s.sample_index, names[sd as usize]
                ),
            ));
        }
        by_side.entry((s.pair_id, sd)).or_default().push(i);
    }
    samples
        .iter()
        .zip(&sides)
        .map(|(s, &sd)| {
            let missing = || {
                RlError::reward(
                    reward,
                    format!(
                        "pair {}: sample {} on side {} has no counterpart on side {}; keep both sides of a pair, with the same sample indices, in one batch",
                        s.pair_id, s.sample_index, names[sd as usize], names[!sd as usize]
                    ),
                )
            };
            match pairing {
                Pairing::Index => by_index
                    .get(&(s.pair_id, !sd, s.sample_index))
                    .map(|&j| vec![j])
                    .ok_or_else(missing),
                Pairing::Expected => by_side
                    .get(&(s.pair_id, !sd))
                    .cloned()
                    .ok_or_else(missing),
            }
        })
        .collect()
}

/// The fraction of `partners` for which `outcome` holds.
pub(crate) fn fraction(partners: &[usize], outcome: impl Fn(usize) -> bool) -> f64 {
    let hits = partners.iter().filter(|&&j| outcome(j)).count();
    hits as f64 / partners.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reward::test_util::pairwise;
    use thinkjudge_data::judgment::Order;

    fn is_ba(s: &Sample) -> Result<bool> {
        Ok(s.order == Some(Order::BA))
    }

    #[test]
    fn index_pairing_matches_same_index_on_the_other_side() {
        let s = vec![
            pairwise(7, Order::AB, 0, None),
            pairwise(7, Order::AB, 1, None),
            pairwise(7, Order::BA, 1, None),
            pairwise(7, Order::BA, 0, None),
        ];
        let p = partners(&s, Pairing::Index, "t", ["AB", "BA"], is_ba).unwrap();
        assert_eq!(p, vec![vec![3], vec![2], vec![1], vec![0]]);
        let p = partners(&s, Pairing::Expected, "t", ["AB", "BA"], is_ba).unwrap();
        assert_eq!(p, vec![vec![2, 3], vec![2, 3], vec![0, 1], vec![0, 1]]);
    }

    #[test]
    fn missing_counterpart_and_duplicates_are_errors() {
        let s = vec![
            pairwise(7, Order::AB, 0, None),
            pairwise(7, Order::BA, 1, None),
        ];
        let e = partners(&s, Pairing::Index, "t", ["AB", "BA"], is_ba).unwrap_err();
        assert!(e.to_string().contains("no counterpart on side BA"), "{e}");
        // Expected pairing only needs the other side to be present.
        assert!(partners(&s, Pairing::Expected, "t", ["AB", "BA"], is_ba).is_ok());
        let dup = vec![
            pairwise(7, Order::AB, 0, None),
            pairwise(7, Order::AB, 0, None),
        ];
        let e = partners(&dup, Pairing::Expected, "t", ["AB", "BA"], is_ba).unwrap_err();
        assert!(e.to_string().contains("two samples with index 0"), "{e}");
    }

    #[test]
    fn fraction_counts_hits() {
        assert_eq!(fraction(&[0, 1, 2, 3], |j| j % 2 == 0), 0.5);
    }
}
