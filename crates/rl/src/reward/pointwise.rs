//! Pointwise rewards: a score against a correctness label (Libra-style, recipe.md §7.3) and
//! distant supervision from a preference pair (J1 PoS, recipe.md §4).

use super::pairing::{fraction, partners, Pairing};
use super::{pointwise_score, Gold, Member, Reward, RewardValues, Sample};
use crate::error::{Result, RlError};

/// Correctness-label reward: the judge's score s says "good" when s ≥ `threshold`; the
/// reward is 1 when that agrees with the sample's [`Gold::Label`], else `incorrect`.
/// A binary judge (correct/incorrect) parsed as scores 1/0 uses a threshold of 0.5.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PointwiseLabel {
    /// Rewards of wrong and unparseable judgments.
    pub values: RewardValues,
    /// Scores ≥ this mean "good".
    pub threshold: f64,
}

impl Reward for PointwiseLabel {
    fn name(&self) -> &str {
        "pointwise_label"
    }

    fn score(&self, samples: &[Sample]) -> Result<Vec<f32>> {
        samples
            .iter()
            .map(|s| {
                let Gold::Label(good) = s.gold else {
                    return Err(RlError::reward(
                        self.name(),
                        format!(
                            "pair {} sample {}: needs a correctness label, got gold {:?}",
                            s.pair_id, s.sample_index, s.gold
                        ),
                    ));
                };
                let score = pointwise_score(self.name(), s)?;
                Ok(self.values.of(score.map(|x| (x >= self.threshold) == good)))
            })
            .collect()
    }
}

/// J1 pointwise distant supervision: the chosen and the rejected response of a pair are
/// scored separately, and the comparison s_chosen > s_rejected (a tie is wrong) is the
/// reward of both samples. Samples are matched by [`Pairing`] (`Index`: chosen i with
/// rejected i). An unparseable sample gets `unparseable`, and its partner's comparison
/// counts as wrong.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DistantSupervision {
    /// Rewards of wrong and unparseable judgments.
    pub values: RewardValues,
    /// How samples of the two sides are matched.
    pub pairing: Pairing,
}

impl Reward for DistantSupervision {
    fn name(&self) -> &str {
        "distant_supervision"
    }

    fn score(&self, samples: &[Sample]) -> Result<Vec<f32>> {
        let scores = samples
            .iter()
            .map(|s| pointwise_score(self.name(), s))
            .collect::<Result<Vec<_>>>()?;
        let rejected = |s: &Sample| match s.gold {
            Gold::Member(m) => Ok(m == Member::Rejected),
            g => Err(RlError::reward(
                self.name(),
                format!(
                    "pair {} sample {}: needs a chosen/rejected member, got gold {g:?}",
                    s.pair_id, s.sample_index
                ),
            )),
        };
        let partners = partners(
            samples,
            self.pairing,
            self.name(),
            ["chosen", "rejected"],
            rejected,
        )?;
        samples
            .iter()
            .zip(&scores)
            .zip(&partners)
            .map(|((s, &own), ps)| {
                let Some(own) = own else {
                    return Ok(self.values.unparseable);
                };
                let is_rejected = rejected(s)?;
                let p = fraction(ps, |j| match scores[j] {
                    None => false,
                    Some(other) if is_rejected => other > own,
                    Some(other) => own > other,
                });
                Ok(self.values.of_fraction(p))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reward::test_util::pointwise;

    const NEG: RewardValues = RewardValues {
        incorrect: -1.0,
        unparseable: -0.5,
    };

    #[test]
    fn label_reward_thresholds_the_score() {
        let s = vec![
            pointwise(0, Gold::Label(true), 0, Some(7.0)), // good, 7 ≥ 5
            pointwise(0, Gold::Label(true), 1, Some(5.0)), // good, 5 ≥ 5 (inclusive)
            pointwise(0, Gold::Label(true), 2, Some(4.9)), // says bad
            pointwise(1, Gold::Label(false), 0, Some(2.0)), // bad, says bad
            pointwise(1, Gold::Label(false), 1, None),
        ];
        let r = PointwiseLabel {
            values: NEG,
            threshold: 5.0,
        }
        .score(&s)
        .unwrap();
        assert_eq!(r, vec![1.0, 1.0, -1.0, 1.0, -0.5]);
    }

    fn member(pair: u64, m: Member, idx: usize, score: Option<f64>) -> Sample {
        pointwise(pair, Gold::Member(m), idx, score)
    }

    #[test]
    fn distant_supervision_index_pairs_chosen_with_rejected() {
        use Member::*;
        let s = vec![
            member(2, Chosen, 0, Some(8.0)),
            member(2, Chosen, 1, Some(6.0)),
            member(2, Chosen, 2, Some(6.0)),
            member(2, Chosen, 3, None),
            member(2, Rejected, 0, Some(3.0)), // 8 > 3 ✓
            member(2, Rejected, 1, Some(6.0)), // 6 > 6 ✗ (tie)
            member(2, Rejected, 2, Some(9.0)), // 6 > 9 ✗
            member(2, Rejected, 3, Some(1.0)), // partner unparseable ✗
        ];
        let r = DistantSupervision {
            values: NEG,
            pairing: Pairing::Index,
        }
        .score(&s)
        .unwrap();
        assert_eq!(r, vec![1.0, -1.0, -1.0, -0.5, 1.0, -1.0, -1.0, -1.0]);
    }

    #[test]
    fn distant_supervision_expected_averages_over_partners() {
        use Member::*;
        let s = vec![
            member(5, Chosen, 0, Some(8.0)),
            member(5, Chosen, 1, Some(4.0)),
            member(5, Rejected, 0, Some(3.0)),
            member(5, Rejected, 1, Some(6.0)),
        ];
        let r = DistantSupervision {
            values: RewardValues::default(),
            pairing: Pairing::Expected,
        }
        .score(&s)
        .unwrap();
        // chosen 8 beats {3, 6}: 1; chosen 4 beats {3}: ½;
        // rejected 3 loses to {8, 4}: 1; rejected 6 loses to {8}: ½.
        assert_eq!(r, vec![1.0, 0.5, 1.0, 0.5]);
    }

    #[test]
    fn distant_supervision_rejects_labels_and_lonely_members() {
        let s = vec![pointwise(0, Gold::Label(true), 0, Some(1.0))];
        assert!(DistantSupervision::default().score(&s).is_err());
        let s = vec![member(9, Member::Chosen, 0, Some(1.0))];
        let e = DistantSupervision::default().score(&s).unwrap_err();
        assert!(e.to_string().contains("pair 9"), "{e}");
    }
}
