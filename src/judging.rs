//! Was a judgment right? Shared by the training metrics and the evaluator.
//!
//! A sample is *correct* when:
//! - pairwise ([`Gold::Preference`]): its judgment prefers the gold side (a verdict, or the
//!   higher of two scores; equal scores prefer nothing and are wrong);
//! - a pair member ([`Gold::Member`], J1 pointwise distant supervision): its score and the
//!   score of its sibling with the same sample index order the two responses like the gold
//!   (s_chosen > s_rejected; equal is wrong);
//! - a labelled pointwise item ([`Gold::Label`]): `score ≥ threshold` matches the label.
//!
//! `None` means no verdict could be read: the sample (or, for members, its sibling) is
//! unparseable. Rates treat it as incorrect.

use std::collections::HashMap;

use thinkjudge_data::{parse_judgment, Judgment, TemplateKind};
use thinkjudge_rl::{Gold, Member, RewardConfig, Sample, TaskReward};
use thinkjudge_rollout::{FinishReason, Rollout};

use crate::dataset::EncodedPrompt;

/// Parses a rollout of `prompt` into the rl crate's [`Sample`]; `pair_id` identifies the
/// prompt's unit within the batch (siblings share it).
pub fn to_sample(prompt: &EncodedPrompt, pair_id: u64, rollout: &Rollout) -> Sample {
    let p = &prompt.prompt;
    Sample {
        pair_id,
        order: p.kind.is_pairwise().then_some(p.order),
        gold: prompt.gold,
        judgment: parse_judgment(&rollout.text, p.kind, p.parse_options()),
        sample_index: rollout.sample_index,
        completion_tokens: rollout.completion_ids.len(),
        thought_tokens: rollout.thought_tokens,
        truncated: rollout.finish == FinishReason::Length,
    }
}

/// The score at or above which a pointwise judgment means "good": the reward's threshold,
/// else 5 (the midpoint of the 0–10 scale).
pub fn label_threshold(reward: &RewardConfig) -> f64 {
    match reward.task {
        TaskReward::PointwiseLabel { threshold } => threshold,
        _ => 5.0,
    }
}

/// Whether each sample is correct (see the module docs).
pub fn correctness(samples: &[Sample], threshold: f64) -> Vec<Option<bool>> {
    let mut member_scores: HashMap<(u64, Member, usize), Option<f64>> = HashMap::new();
    for s in samples {
        if let Gold::Member(m) = s.gold {
            member_scores.insert((s.pair_id, m, s.sample_index), score_of(s.judgment));
        }
    }
    samples
        .iter()
        .map(|s| match s.gold {
            Gold::Preference(pref) => {
                let gold = pref.gold_side(s.order?)?;
                Some(s.judgment?.preferred_side() == Some(gold))
            }
            Gold::Member(m) => {
                let other = match m {
                    Member::Chosen => Member::Rejected,
                    Member::Rejected => Member::Chosen,
                };
                let own = score_of(s.judgment)?;
                let theirs = (*member_scores.get(&(s.pair_id, other, s.sample_index))?)?;
                Some(match m {
                    Member::Chosen => own > theirs,
                    Member::Rejected => theirs > own,
                })
            }
            Gold::Label(good) => Some((score_of(s.judgment)? >= threshold) == good),
        })
        .collect()
}

/// The pointwise score of a judgment.
pub fn score_of(j: Option<Judgment>) -> Option<f64> {
    match j? {
        Judgment::Score(x) => Some(x),
        _ => None,
    }
}

/// Combines N sampled judgments of one prompt (SC@N): verdicts are majority-voted, scores
/// averaged (Mean-Score@N). A verdict tally is returned as `Scores { a: votes for A, b:
/// votes for B }`, so a tied vote prefers nothing, like equal scores. Unparseable samples
/// abstain; `None` when all do.
pub fn aggregate(judgments: &[Option<Judgment>], kind: TemplateKind) -> Option<Judgment> {
    let parsed: Vec<Judgment> = judgments.iter().flatten().copied().collect();
    if parsed.is_empty() {
        return None;
    }
    let n = parsed.len() as f64;
    match kind {
        TemplateKind::PairwiseVerdict | TemplateKind::PairwiseVerdictScores => {
            let votes = |side| {
                parsed
                    .iter()
                    .filter(|j| j.preferred_side() == Some(side))
                    .count()
            };
            Some(Judgment::Scores {
                a: votes(thinkjudge_data::Side::A) as f64,
                b: votes(thinkjudge_data::Side::B) as f64,
            })
        }
        TemplateKind::PairwiseScores => {
            let (mut a, mut b) = (0.0, 0.0);
            for j in &parsed {
                if let Judgment::Scores { a: x, b: y } = j {
                    a += x;
                    b += y;
                }
            }
            Some(Judgment::Scores { a: a / n, b: b / n })
        }
        TemplateKind::PointwiseScore => {
            let sum: f64 = parsed.iter().filter_map(|j| score_of(Some(*j))).sum();
            Some(Judgment::Score(sum / n))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use thinkjudge_data::{Order, Preference, Side};

    fn sample(
        pair_id: u64,
        gold: Gold,
        order: Option<Order>,
        idx: usize,
        j: Option<Judgment>,
    ) -> Sample {
        Sample {
            pair_id,
            order,
            gold,
            judgment: j,
            sample_index: idx,
            completion_tokens: 1,
            thought_tokens: 0,
            truncated: false,
        }
    }

    #[test]
    fn pairwise_correctness_follows_order_and_scores() {
        let pref = Gold::Preference(Preference::First);
        let v = |s| Some(Judgment::Verdict(s));
        let samples = [
            sample(0, pref, Some(Order::AB), 0, v(Side::A)),
            sample(0, pref, Some(Order::BA), 0, v(Side::A)),
            sample(0, pref, Some(Order::BA), 1, None),
            sample(
                0,
                pref,
                Some(Order::AB),
                1,
                Some(Judgment::Scores { a: 3.0, b: 3.0 }),
            ),
        ];
        assert_eq!(
            correctness(&samples, 5.0),
            vec![Some(true), Some(false), None, Some(false)]
        );
    }

    #[test]
    fn members_compare_with_their_sibling() {
        let s =
            |m, idx, x: Option<f64>| sample(4, Gold::Member(m), None, idx, x.map(Judgment::Score));
        let samples = [
            s(Member::Chosen, 0, Some(8.0)),
            s(Member::Rejected, 0, Some(3.0)),
            s(Member::Chosen, 1, Some(2.0)),
            s(Member::Rejected, 1, None),
        ];
        assert_eq!(
            correctness(&samples, 5.0),
            vec![Some(true), Some(true), None, None]
        );
        let label = [sample(
            1,
            Gold::Label(false),
            None,
            0,
            Some(Judgment::Score(4.5)),
        )];
        assert_eq!(correctness(&label, 5.0), vec![Some(true)]);
    }

    #[test]
    fn majority_vote_and_mean_score() {
        let v = |s| Some(Judgment::Verdict(s));
        let votes = [v(Side::B), None, v(Side::B), v(Side::A)];
        let j = aggregate(&votes, TemplateKind::PairwiseVerdict);
        assert_eq!(j.and_then(|j| j.preferred_side()), Some(Side::B));
        let tied = [v(Side::A), v(Side::B)];
        let j = aggregate(&tied, TemplateKind::PairwiseVerdict);
        assert_eq!(j.map(|j| j.preferred_side()), Some(None));
        assert_eq!(
            aggregate(&[None, None], TemplateKind::PairwiseVerdict),
            None
        );
        let scores = [Some(Judgment::Score(4.0)), Some(Judgment::Score(7.0))];
        assert_eq!(
            aggregate(&scores, TemplateKind::PointwiseScore),
            Some(Judgment::Score(5.5))
        );
    }
}
