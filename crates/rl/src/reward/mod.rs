//! Verifiable rewards for judge samples (recipe.md §4; Libra §7.2; DAPO §9.6).
//!
//! A [`Reward`] scores a whole batch of [`Sample`]s at once, because two J1 rewards compare
//! samples with each other: position consistency pairs the two answer orders of a pair, and
//! pointwise distant supervision pairs the chosen and the rejected response of a pair. The
//! batcher must keep such siblings in one batch; a reward that misses one returns an error
//! rather than guessing.
//!
//! Built-ins:
//! - [`VerdictCorrectness`]: PaV (and PaVS: only the verdict is rewarded).
//! - [`PositionConsistency`]: correct in both orders, with a [`Pairing`] rule.
//! - [`ScoreOrder`]: PaS, s_chosen > s_rejected.
//! - [`PointwiseLabel`]: a pointwise score against a correctness label (Libra-style).
//! - [`DistantSupervision`]: pointwise scores of a pair's two responses compared (J1 PoS).
//! - [`LengthPenalty`]: a linear length ramp, added to a base reward with [`RewardSum`]; it
//!   implements both Libra's (L_exp, L_max) penalty and DAPO's overlong shaping.
//!
//! Every built-in gives a correct judgment 1, a wrong one [`RewardValues::incorrect`] (J1: 0;
//! −1 was tried and slightly hurt) and an unparseable one [`RewardValues::unparseable`] (0).
//! A judgment of the wrong kind for the reward (scores given to a verdict reward) is a
//! configuration error, reported as [`RlError::Reward`].
//!
//! Not implemented: the format reward (J1 found no benefit), RM-R1's last-80-characters rule
//! and JudgeLRM's composite reward; they need the completion text, which [`Sample`] omits.

mod config;
mod pairing;
mod pairwise;
mod pointwise;
mod shaping;

pub use config::{LengthPenaltyConfig, OverlongConfig, RewardConfig, TaskReward};
pub use pairing::Pairing;
pub use pairwise::{PositionConsistency, ScoreOrder, VerdictCorrectness};
pub use pointwise::{DistantSupervision, PointwiseLabel};
pub use shaping::{LengthBasis, LengthPenalty, RewardSum};

use crate::error::{Result, RlError};
use serde::{Deserialize, Serialize};
use thinkjudge_data::judgment::{Judgment, Order, Preference, Side};

/// Which response of a pair a pointwise sample shows (J1 pointwise distant supervision).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Member {
    /// The gold-preferred response.
    Chosen,
    /// The other response.
    Rejected,
}

/// What a sample is judged against.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Gold {
    /// Pairwise: which stored response (0 or 1) is better. The sample's `order` says where
    /// each is shown.
    Preference(Preference),
    /// Pointwise, split from a preference pair: this sample shows the chosen or the rejected
    /// response. Its sibling has the same `pair_id` and `sample_index`.
    Member(Member),
    /// Pointwise with a correctness label: `true` = the response is good/correct.
    Label(bool),
}

/// One sampled judgment, with everything a reward may look at.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Identifies the pair (or pointwise item) within the batch; shared by both orders of a
    /// pair and by the chosen/rejected samples split from one pair.
    pub pair_id: u64,
    /// The order the two responses were shown in; `None` for pointwise samples.
    pub order: Option<Order>,
    /// The label to judge against.
    pub gold: Gold,
    /// The parsed judgment; `None` = unparseable.
    pub judgment: Option<Judgment>,
    /// Index of this sample within its prompt's group of G (0..G); index pairing matches
    /// sample i of one order with sample i of the other.
    pub sample_index: usize,
    /// Generated tokens, including the thought and the verdict.
    pub completion_tokens: usize,
    /// Tokens inside `<think>…</think>` (the trainer counts them; equal to
    /// `completion_tokens` when the format has no thought tags).
    pub thought_tokens: usize,
    /// The completion hit the token limit before finishing.
    pub truncated: bool,
}

/// Scores a batch of samples. Implement this to plug a custom reward into the trainer.
pub trait Reward: Send + Sync {
    /// A short name for logs and errors.
    fn name(&self) -> &str;

    /// One reward per sample, in the order of `samples`.
    fn score(&self, samples: &[Sample]) -> Result<Vec<f32>>;
}

/// The total reward of the samples `unit` (sibling rows of `samples`) under every joint
/// choice of their judgments from `outcomes`, the rest of the batch unchanged: row-major
/// over the unit's rows, its first row varying slowest, so a unit of n rows gives
/// `outcomes.len()ⁿ` values. Rewards may compare siblings, so the batch is rescored for each.
/// Used by the expected-verdict gradient (`loss.verdict_gradient = "expected"`): a one-row
/// unit gives that sample's reward for each verdict it could have written.
///
/// ```
/// use thinkjudge_rl::{joint_rewards, Gold, Judgment, Order, Preference, Sample, Side};
/// use thinkjudge_rl::{RewardValues, VerdictCorrectness};
/// let s = Sample {
///     pair_id: 0,
///     order: Some(Order::AB),
///     gold: Gold::Preference(Preference::First),
///     judgment: Some(Judgment::Verdict(Side::B)),
///     sample_index: 0,
///     completion_tokens: 5,
///     thought_tokens: 0,
///     truncated: false,
/// };
/// let reward = VerdictCorrectness { values: RewardValues::default() };
/// let outcomes = [Some(Judgment::Verdict(Side::A)), Some(Judgment::Verdict(Side::B)), None];
/// assert_eq!(joint_rewards(&reward, &[s], 0..1, &outcomes)?, vec![1.0, 0.0, 0.0]);
/// # Ok::<(), thinkjudge_rl::RlError>(())
/// ```
pub fn joint_rewards(
    reward: &dyn Reward,
    samples: &[Sample],
    unit: std::ops::Range<usize>,
    outcomes: &[Option<Judgment>],
) -> Result<Vec<f32>> {
    if unit.is_empty() || unit.end > samples.len() || outcomes.is_empty() {
        return Err(RlError::Shape(format!(
            "unit {unit:?} of a batch of {} samples, {} outcomes",
            samples.len(),
            outcomes.len()
        )));
    }
    let k = outcomes.len();
    let mut batch = samples.to_vec();
    (0..k.pow(unit.len() as u32))
        .map(|mut o| {
            for row in unit.clone().rev() {
                batch[row].judgment = outcomes[o % k];
                o /= k;
            }
            Ok(reward.score(&batch)?[unit.clone()].iter().sum())
        })
        .collect()
}

impl<R: Reward + ?Sized> Reward for Box<R> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn score(&self, samples: &[Sample]) -> Result<Vec<f32>> {
        (**self).score(samples)
    }
}

/// The rewards of the two non-correct outcomes; a correct judgment always gets 1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RewardValues {
    /// Reward of a parseable but wrong judgment. J1 default 0 (−1 slightly hurt, v1 Table 4);
    /// RM-R1 uses −1.
    pub incorrect: f32,
    /// Reward of an unparseable judgment. J1 default 0.
    pub unparseable: f32,
}

impl Default for RewardValues {
    fn default() -> Self {
        RewardValues {
            incorrect: 0.0,
            unparseable: 0.0,
        }
    }
}

impl RewardValues {
    /// The reward for a parseable judgment that is correct with probability `p` (1 or 0 for
    /// a single comparison, a fraction for [`Pairing::Expected`]): linear between
    /// `incorrect` (p = 0) and 1 (p = 1).
    pub fn of_fraction(&self, p: f64) -> f32 {
        (self.incorrect as f64 + p * (1.0 - self.incorrect as f64)) as f32
    }

    /// The reward for a judgment that is correct (`Some(true)`), wrong or unparseable (`None`).
    pub fn of(&self, correct: Option<bool>) -> f32 {
        match correct {
            Some(true) => 1.0,
            Some(false) => self.incorrect,
            None => self.unparseable,
        }
    }
}

impl Sample {
    /// Whether this pairwise sample's verdict names the gold side (`None` = unparseable),
    /// e.g. for accuracy metrics.
    ///
    /// Errors on a pointwise sample, a tie (no verdict can be right: filter ties upstream) or
    /// a judgment without a verdict (scores only).
    pub fn verdict_correct(&self) -> Result<Option<bool>> {
        verdict_correct("verdict_correct", self)
    }
}

/// [`Sample::verdict_correct`], with errors attributed to `reward`.
pub(crate) fn verdict_correct(reward: &str, s: &Sample) -> Result<Option<bool>> {
    let gold = gold_side(reward, s)?;
    let verdict = match s.judgment {
        None => return Ok(None),
        Some(Judgment::Verdict(v)) | Some(Judgment::VerdictWithScores { verdict: v, .. }) => v,
        Some(j) => return Err(wrong_kind(reward, s, &j, "a verdict")),
    };
    Ok(Some(verdict == gold))
}

/// The side a correct pairwise judgment names for this sample.
pub(crate) fn gold_side(reward: &str, s: &Sample) -> Result<Side> {
    let (Gold::Preference(pref), Some(order)) = (s.gold, s.order) else {
        return Err(RlError::reward(
            reward,
            format!(
                "pair {} sample {}: needs a pairwise sample (gold preference and an order), got gold {:?}, order {:?}",
                s.pair_id, s.sample_index, s.gold, s.order
            ),
        ));
    };
    pref.gold_side(order).ok_or_else(|| {
        RlError::reward(
            reward,
            format!(
                "pair {}: gold is a tie, which no judgment can match; filter ties out before training",
                s.pair_id
            ),
        )
    })
}

/// The pointwise score of a sample: `None` when unparseable.
pub(crate) fn pointwise_score(reward: &str, s: &Sample) -> Result<Option<f64>> {
    match s.judgment {
        None => Ok(None),
        Some(Judgment::Score(x)) => Ok(Some(x)),
        Some(j) => Err(wrong_kind(reward, s, &j, "a pointwise score")),
    }
}

pub(crate) fn wrong_kind(reward: &str, s: &Sample, got: &Judgment, want: &str) -> RlError {
    RlError::reward(
        reward,
        format!(
            "pair {} sample {}: needs {want}, got {got:?}; does the prompt format match the reward?",
            s.pair_id, s.sample_index
        ),
    )
}

#[cfg(test)]
pub(crate) mod test_util {
    use super::*;

    /// A pairwise sample whose stored response 0 is the better one.
    pub fn pairwise(pair_id: u64, order: Order, idx: usize, judgment: Option<Judgment>) -> Sample {
        Sample {
            pair_id,
            order: Some(order),
            gold: Gold::Preference(Preference::First),
            judgment,
            sample_index: idx,
            completion_tokens: 100,
            thought_tokens: 80,
            truncated: false,
        }
    }

    /// A pointwise sample with a score.
    pub fn pointwise(pair_id: u64, gold: Gold, idx: usize, score: Option<f64>) -> Sample {
        Sample {
            pair_id,
            order: None,
            gold,
            judgment: score.map(Judgment::Score),
            sample_index: idx,
            completion_tokens: 100,
            thought_tokens: 80,
            truncated: false,
        }
    }

    pub fn verdict(side: Side) -> Option<Judgment> {
        Some(Judgment::Verdict(side))
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::*;
    use super::*;

    #[test]
    fn reward_values_interpolate_between_incorrect_and_one() {
        let v = RewardValues {
            incorrect: -1.0,
            unparseable: -0.5,
        };
        assert_eq!(v.of(Some(true)), 1.0);
        assert_eq!(v.of(Some(false)), -1.0);
        assert_eq!(v.of(None), -0.5);
        // −1 + 0.25·(1 − (−1)) = −0.5
        assert_eq!(v.of_fraction(0.25), -0.5);
    }

    #[test]
    fn verdict_correctness_follows_the_order() {
        // Response 0 is better: shown as A in AB, as B in BA.
        let ab = pairwise(0, Order::AB, 0, verdict(Side::A));
        let ba = pairwise(0, Order::BA, 0, verdict(Side::A));
        assert_eq!(verdict_correct("t", &ab).unwrap(), Some(true));
        assert_eq!(verdict_correct("t", &ba).unwrap(), Some(false));
        let none = pairwise(0, Order::BA, 0, None);
        assert_eq!(verdict_correct("t", &none).unwrap(), None);
    }

    #[test]
    fn tie_gold_and_scores_only_are_errors() {
        let mut s = pairwise(3, Order::AB, 0, verdict(Side::A));
        s.gold = Gold::Preference(Preference::Tie);
        let e = verdict_correct("t", &s).unwrap_err().to_string();
        assert!(e.contains("pair 3") && e.contains("tie"), "{e}");
        let s = pairwise(3, Order::AB, 0, Some(Judgment::Scores { a: 1.0, b: 2.0 }));
        assert!(verdict_correct("t", &s).is_err());
        let p = pointwise(3, Gold::Label(true), 0, Some(5.0));
        assert!(verdict_correct("t", &p).is_err());
    }
}
