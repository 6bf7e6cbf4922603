//! Pairwise rewards: verdict correctness (PaV, PaVS), position consistency, and score order
//! (PaS). Recipe.md §4.

use super::pairing::{fraction, partners, Pairing};
use super::{gold_side, verdict_correct, wrong_kind, Reward, RewardValues, Sample};
use crate::error::Result;
use thinkjudge_data::judgment::{Judgment, Order, Side};

/// 1 if the verdict names the gold side for the sample's order, else
/// [`RewardValues::incorrect`]; unparseable → [`RewardValues::unparseable`]. For PaVS
/// judgments only the verdict counts (J1: the scores are not rewarded).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct VerdictCorrectness {
    /// Rewards of wrong and unparseable judgments.
    pub values: RewardValues,
}

impl Reward for VerdictCorrectness {
    fn name(&self) -> &str {
        "verdict"
    }

    fn score(&self, samples: &[Sample]) -> Result<Vec<f32>> {
        samples
            .iter()
            .map(|s| Ok(self.values.of(verdict_correct(self.name(), s)?)))
            .collect()
    }
}

/// 1 only if the verdict is correct in both answer orders of the pair (J1 consistency
/// reward). The other order's samples are matched by [`Pairing`]; with `Index`, sample i of
/// AB and sample i of BA both get c_i^AB ∧ c_i^BA; with `Expected`, sample i gets
/// c_i · mean_j c_j^other. A parseable sample that is not consistent gets `incorrect`
/// (interpolated for `Expected`); an unparseable one gets `unparseable` and counts as wrong
/// for its partner.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PositionConsistency {
    /// Rewards of wrong and unparseable judgments.
    pub values: RewardValues,
    /// How samples of the two sides are matched.
    pub pairing: Pairing,
}

impl Reward for PositionConsistency {
    fn name(&self) -> &str {
        "consistency"
    }

    fn score(&self, samples: &[Sample]) -> Result<Vec<f32>> {
        let correct = samples
            .iter()
            .map(|s| verdict_correct(self.name(), s))
            .collect::<Result<Vec<_>>>()?;
        let partners = partners(samples, self.pairing, self.name(), ["AB", "BA"], |s| {
            gold_side(self.name(), s)?; // rejects pointwise samples before `order` is read
            Ok(s.order == Some(Order::BA))
        })?;
        Ok(correct
            .iter()
            .zip(&partners)
            .map(|(&c, ps)| match c {
                None => self.values.unparseable,
                Some(false) => self.values.incorrect,
                Some(true) => self
                    .values
                    .of_fraction(fraction(ps, |j| correct[j] == Some(true))),
            })
            .collect())
    }
}

/// PaS: 1 if the score of the gold-preferred response is strictly higher than the other's
/// (s_chosen > s_rejected; a tie counts as wrong), else `incorrect`. Accepts `Scores` and
/// `VerdictWithScores` judgments (the verdict is ignored).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ScoreOrder {
    /// Rewards of wrong and unparseable judgments.
    pub values: RewardValues,
}

impl Reward for ScoreOrder {
    fn name(&self) -> &str {
        "scores"
    }

    fn score(&self, samples: &[Sample]) -> Result<Vec<f32>> {
        samples
            .iter()
            .map(|s| {
                let gold = gold_side(self.name(), s)?;
                let (a, b) = match s.judgment {
                    None => return Ok(self.values.unparseable),
                    Some(Judgment::Scores { a, b })
                    | Some(Judgment::VerdictWithScores { a, b, .. }) => (a, b),
                    Some(j) => return Err(wrong_kind(self.name(), s, &j, "pairwise scores")),
                };
                let (chosen, rejected) = match gold {
                    Side::A => (a, b),
                    Side::B => (b, a),
                };
                Ok(self.values.of(Some(chosen > rejected)))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reward::test_util::{pairwise, verdict};

    const NEG: RewardValues = RewardValues {
        incorrect: -1.0,
        unparseable: -0.5,
    };

    #[test]
    fn verdict_reward_is_one_zero_or_configured() {
        // Gold: response 0, i.e. A in AB and B in BA.
        let s = vec![
            pairwise(0, Order::AB, 0, verdict(Side::A)),
            pairwise(0, Order::AB, 1, verdict(Side::B)),
            pairwise(0, Order::BA, 0, verdict(Side::B)),
            pairwise(0, Order::BA, 1, None),
            pairwise(
                0,
                Order::BA,
                2,
                Some(Judgment::VerdictWithScores {
                    verdict: Side::B,
                    a: 9.0,
                    b: 1.0,
                }),
            ),
        ];
        let r = VerdictCorrectness::default().score(&s).unwrap();
        assert_eq!(r, vec![1.0, 0.0, 1.0, 0.0, 1.0]);
        let r = VerdictCorrectness { values: NEG }.score(&s).unwrap();
        assert_eq!(r, vec![1.0, -1.0, 1.0, -0.5, 1.0]);
    }

    /// AB correctness [1, 1, 0, None], BA correctness [1, 0, 1, 1] (index order).
    fn consistency_batch() -> Vec<Sample> {
        let ab = [verdict(Side::A), verdict(Side::A), verdict(Side::B), None];
        let ba = [
            verdict(Side::B),
            verdict(Side::A),
            verdict(Side::B),
            verdict(Side::B),
        ];
        let mut s: Vec<Sample> = (0..4).map(|i| pairwise(1, Order::AB, i, ab[i])).collect();
        // The BA samples arrive in reverse order: pairing is by index, not position.
        s.extend((0..4).rev().map(|i| pairwise(1, Order::BA, i, ba[i])));
        s
    }

    #[test]
    fn index_consistency_needs_both_orders_correct() {
        let r = PositionConsistency::default()
            .score(&consistency_batch())
            .unwrap();
        // AB i: c_ab ∧ c_ba = [1∧1, 1∧0, 0, unparseable]; BA listed as i = 3, 2, 1, 0:
        // i=3: c_ba=1 but partner unparseable → 0; i=2: partner wrong → 0; i=1: c_ba=0;
        // i=0: 1∧1.
        assert_eq!(r, vec![1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]);
        let r = PositionConsistency {
            values: NEG,
            pairing: Pairing::Index,
        }
        .score(&consistency_batch())
        .unwrap();
        assert_eq!(r, vec![1.0, -1.0, -1.0, -0.5, -1.0, -1.0, -1.0, 1.0]);
    }

    #[test]
    fn expected_consistency_is_correct_times_other_mean() {
        let r = PositionConsistency {
            values: RewardValues::default(),
            pairing: Pairing::Expected,
        }
        .score(&consistency_batch())
        .unwrap();
        // mean BA correctness = 3/4; mean AB correctness = 2/4 (unparseable counts 0).
        // AB: [1·¾, 1·¾, 0, 0]; BA (i = 3, 2, 1, 0): [1·½, 1·½, 0, 1·½].
        assert_eq!(r, vec![0.75, 0.75, 0.0, 0.0, 0.5, 0.5, 0.0, 0.5]);
        let r = PositionConsistency {
            values: NEG,
            pairing: Pairing::Expected,
        }
        .score(&consistency_batch())
        .unwrap();
        // −1 + ¾·2 = 0.5; −1 + ½·2 = 0.
        assert_eq!(r, vec![0.5, 0.5, -1.0, -0.5, 0.0, 0.0, -1.0, 0.0]);
    }

    #[test]
    fn consistency_without_the_other_order_is_an_error() {
        let s = vec![pairwise(4, Order::AB, 0, verdict(Side::A))];
        let e = PositionConsistency::default().score(&s).unwrap_err();
        assert!(e.to_string().contains("pair 4"), "{e}");
    }

    #[test]
    fn score_order_compares_chosen_with_rejected() {
        let sc = |a, b| Some(Judgment::Scores { a, b });
        let s = vec![
            pairwise(0, Order::AB, 0, sc(8.0, 3.0)), // chosen at A: 8 > 3
            pairwise(0, Order::BA, 0, sc(8.0, 3.0)), // chosen at B: 3 > 8 no
            pairwise(0, Order::BA, 1, sc(2.5, 7.5)), // chosen at B: 7.5 > 2.5
            pairwise(0, Order::AB, 1, sc(5.0, 5.0)), // tie → wrong
            pairwise(0, Order::AB, 2, None),
        ];
        let r = ScoreOrder { values: NEG }.score(&s).unwrap();
        assert_eq!(r, vec![1.0, -1.0, 1.0, -1.0, -0.5]);
        let v = vec![pairwise(0, Order::AB, 0, verdict(Side::A))];
        assert!(ScoreOrder::default().score(&v).is_err());
    }
}
