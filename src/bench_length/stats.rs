//! Pure pieces of the benchmark: SC@N voting, Mean-Score@N, the median, and natural-length
//! buckets.
//!
//! # Rules
//! 1. **SC@N votes on the preferred position.** Each parsed judgment votes for the side it
//!    prefers (a verdict, or the higher of two scores); the result is
//!    `Scores { a: votes for A, b: votes for B }`, so the majority wins and **a tied vote
//!    names neither response**: the prompt counts as wrong and as a tie (no random
//!    tie-break: it would add seed-dependent noise; with odd N a tie needs abstentions).
//!    This is what [`crate::judging::aggregate`] does for verdicts.
//! 2. **Unparseable samples abstain**; a judgment that parses but prefers nothing (equal
//!    scores) takes part without a vote. All N unparseable → `None` (unparseable).
//! 3. **Mean-Score@N averages the scores** of the judgments that carry scores (PaS, PaVS,
//!    PoS); PaVS scores are averaged into `Scores` (the verdicts are SC@N's business).
//!    Equal mean scores prefer nothing, like a tied vote.
//! 4. **Quantile buckets** cut the sorted lengths at the `i·n/k`-th value (i = 1 … k−1);
//!    equal lengths always share a bucket, so there may be fewer than k. **Width buckets**
//!    are `[j·w, (j+1)·w − 1]`. Only non-empty buckets are returned, in length order; ranges
//!    are inclusive.

use serde::{Deserialize, Serialize};
use thinkjudge_data::{Judgment, Side};

use super::config::Buckets;
use crate::metrics::ratio;

/// SC@N: the majority vote of `judgments` (rules 1–2).
pub fn vote(judgments: &[Option<Judgment>]) -> Option<Judgment> {
    let parsed: Vec<&Judgment> = judgments.iter().flatten().collect();
    if parsed.is_empty() {
        return None;
    }
    let votes = |side| {
        parsed
            .iter()
            .filter(|j| j.preferred_side() == Some(side))
            .count() as f64
    };
    Some(Judgment::Scores {
        a: votes(Side::A),
        b: votes(Side::B),
    })
}

/// Mean-Score@N: the mean scores of `judgments` (rule 3); `None` when none carries scores.
pub fn mean_score(judgments: &[Option<Judgment>]) -> Option<Judgment> {
    let (mut pair, mut point) = (Vec::new(), Vec::new());
    for j in judgments.iter().flatten() {
        match *j {
            Judgment::Scores { a, b } | Judgment::VerdictWithScores { a, b, .. } => {
                pair.push((a, b))
            }
            Judgment::Score(x) => point.push(x),
            Judgment::Verdict(_) => {}
        }
    }
    let mean = |xs: &mut dyn Iterator<Item = f64>, n: usize| xs.sum::<f64>() / n as f64;
    if !pair.is_empty() {
        let n = pair.len();
        return Some(Judgment::Scores {
            a: mean(&mut pair.iter().map(|p| p.0), n),
            b: mean(&mut pair.iter().map(|p| p.1), n),
        });
    }
    (!point.is_empty()).then(|| Judgment::Score(mean(&mut point.iter().copied(), point.len())))
}

/// The median of `xs` (mean of the middle two for an even count); 0 for none.
pub fn median(xs: &[usize]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_unstable();
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2] as f64,
        n => (v[n / 2 - 1] + v[n / 2]) as f64 / 2.0,
    }
}

/// The mean of `xs`; 0 for none.
pub fn mean(xs: impl IntoIterator<Item = usize>) -> f64 {
    let (sum, n) = xs.into_iter().fold((0, 0), |(s, n), x| (s + x, n + 1));
    ratio(sum as f64, n as f64)
}

/// The inclusive length ranges of the buckets of `lengths` (rule 4).
pub fn bucket_ranges(lengths: &[usize], spec: Buckets) -> Vec<(usize, usize)> {
    let mut v = lengths.to_vec();
    v.sort_unstable();
    let (Some(&lo), Some(&hi)) = (v.first(), v.last()) else {
        return Vec::new();
    };
    match spec {
        Buckets::Quantile { count } => {
            let n = v.len();
            let mut cuts: Vec<usize> = (1..count.max(1)).map(|i| v[i * n / count]).collect();
            cuts.dedup();
            cuts.retain(|&c| c > lo);
            let starts: Vec<usize> = std::iter::once(lo).chain(cuts).collect();
            let ends = starts.iter().skip(1).map(|s| s - 1).chain([hi]);
            starts.iter().copied().zip(ends).collect()
        }
        Buckets::Width { width } => {
            let w = width.max(1);
            let mut ids: Vec<usize> = v.iter().map(|x| x / w).collect();
            ids.dedup();
            ids.into_iter().map(|j| (j * w, j * w + w - 1)).collect()
        }
    }
}

/// One judged sample, for bucketing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LengthOutcome {
    /// Thought tokens.
    pub thought_tokens: usize,
    /// Whether its judgment is correct (`false` when wrong or unparseable).
    pub correct: bool,
    /// Whether it parsed.
    pub parsed: bool,
}

/// Accuracy of the samples whose thought length falls in one bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    /// Shortest thought length in the bucket's range (tokens, inclusive).
    pub lo: usize,
    /// Longest (inclusive).
    pub hi: usize,
    /// Samples in the bucket.
    pub samples: usize,
    /// Of which correct.
    pub correct: usize,
    /// `correct / samples` (unparseable counts as wrong).
    pub accuracy: f64,
    /// Share of the bucket's samples without a readable judgment.
    pub unparseable_rate: f64,
    /// Mean thought tokens of the bucket's samples.
    pub mean_thought_tokens: f64,
    /// Fewer than `min_bucket_samples` samples: read its accuracy with care.
    pub small: bool,
}

/// Groups `outcomes` by thought length (rule 4) and scores each group; buckets with fewer
/// than `min_samples` samples are flagged `small`.
pub fn bucketize(outcomes: &[LengthOutcome], spec: Buckets, min_samples: usize) -> Vec<Bucket> {
    let lengths: Vec<usize> = outcomes.iter().map(|o| o.thought_tokens).collect();
    bucket_ranges(&lengths, spec)
        .into_iter()
        .map(|(lo, hi)| {
            let inside: Vec<&LengthOutcome> = outcomes
                .iter()
                .filter(|o| (lo..=hi).contains(&o.thought_tokens))
                .collect();
            let n = inside.len();
            let correct = inside.iter().filter(|o| o.correct).count();
            let unparseable = inside.iter().filter(|o| !o.parsed).count();
            Bucket {
                lo,
                hi,
                samples: n,
                correct,
                accuracy: ratio(correct as f64, n as f64),
                unparseable_rate: ratio(unparseable as f64, n as f64),
                mean_thought_tokens: mean(inside.iter().map(|o| o.thought_tokens)),
                small: n < min_samples,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: Side) -> Option<Judgment> {
        Some(Judgment::Verdict(s))
    }

    #[test]
    fn majority_wins_and_unparseable_abstains() {
        // 2 B, 1 A, 1 unparseable → B.
        let j = vote(&[v(Side::B), None, v(Side::A), v(Side::B)]);
        assert_eq!(j, Some(Judgment::Scores { a: 1.0, b: 2.0 }));
        assert_eq!(j.and_then(|j| j.preferred_side()), Some(Side::B));
        // A single vote is the sample itself (SC@1 = the sample's accuracy).
        assert_eq!(
            vote(&[v(Side::A)]).and_then(|j| j.preferred_side()),
            Some(Side::A)
        );
    }

    #[test]
    fn ties_name_neither_response() {
        // 2–2 at N = 4.
        let j = vote(&[v(Side::A), v(Side::B), v(Side::B), v(Side::A)]);
        assert_eq!(j.map(|j| j.preferred_side()), Some(None));
        // 1–1 with one abstention at N = 3.
        let j = vote(&[v(Side::A), None, v(Side::B)]);
        assert_eq!(j.map(|j| j.preferred_side()), Some(None));
        // A parsed judgment preferring nothing takes part without a vote.
        let equal = Some(Judgment::Scores { a: 5.0, b: 5.0 });
        let j = vote(&[equal, v(Side::A)]);
        assert_eq!(j.and_then(|j| j.preferred_side()), Some(Side::A));
        assert_eq!(vote(&[equal]).map(|j| j.preferred_side()), Some(None));
        // All unparseable: unparseable.
        assert_eq!(vote(&[None, None]), None);
        assert_eq!(vote(&[]), None);
    }

    #[test]
    fn scores_vote_by_the_higher_score() {
        let s = |a, b| Some(Judgment::Scores { a, b });
        let j = vote(&[s(7.0, 3.0), s(2.0, 9.0), s(6.0, 5.5)]);
        assert_eq!(j.and_then(|j| j.preferred_side()), Some(Side::A));
    }

    #[test]
    fn mean_score_averages_what_carries_scores() {
        let s = |a, b| Some(Judgment::Scores { a, b });
        // (7 + 2 + 6) / 3 = 5, (3 + 9 + 6) / 3 = 6 → B, although A wins the vote 2–1.
        let j = mean_score(&[s(7.0, 3.0), None, s(2.0, 9.0), s(6.0, 6.0)]);
        assert_eq!(j, Some(Judgment::Scores { a: 5.0, b: 6.0 }));
        assert_eq!(
            vote(&[s(7.0, 3.0), s(2.0, 9.0), s(6.0, 5.5)]).and_then(|j| j.preferred_side()),
            Some(Side::A)
        );
        let p = |x| Some(Judgment::Score(x));
        assert_eq!(
            mean_score(&[p(4.0), p(7.0), None]),
            Some(Judgment::Score(5.5))
        );
        let pavs = Some(Judgment::VerdictWithScores {
            verdict: Side::A,
            a: 8.0,
            b: 4.0,
        });
        assert_eq!(
            mean_score(&[pavs, s(2.0, 6.0)]),
            Some(Judgment::Scores { a: 5.0, b: 5.0 })
        );
        // Verdicts carry no scores.
        assert_eq!(mean_score(&[v(Side::A), None]), None);
    }

    #[test]
    fn medians_and_means() {
        assert_eq!(median(&[]), 0.0);
        assert_eq!(median(&[5, 1, 3]), 3.0);
        assert_eq!(median(&[4, 1, 3, 10]), 3.5);
        assert_eq!(mean([1, 2, 6]), 3.0);
        assert_eq!(mean([]), 0.0);
    }

    #[test]
    fn quantile_buckets_split_evenly_and_keep_ties_together() {
        let q = |k| Buckets::Quantile { count: k };
        let xs = [8, 1, 2, 3, 4, 5, 6, 7];
        assert_eq!(
            bucket_ranges(&xs, q(4)),
            vec![(1, 2), (3, 4), (5, 6), (7, 8)]
        );
        assert_eq!(bucket_ranges(&xs, q(1)), vec![(1, 8)]);
        // Ties: 5 is both the minimum and the cut, so one bucket.
        assert_eq!(bucket_ranges(&[5, 5, 5, 5, 9], q(2)), vec![(5, 9)]);
        // 0,0,0,64,64,64 in 3 buckets: cuts at v[2] = 0 (dropped) and v[4] = 64.
        assert_eq!(
            bucket_ranges(&[0, 0, 0, 64, 64, 64], q(3)),
            vec![(0, 63), (64, 64)]
        );
        // More buckets than samples.
        assert_eq!(bucket_ranges(&[3, 9], q(5)), vec![(3, 8), (9, 9)]);
        assert_eq!(bucket_ranges(&[], q(4)), vec![]);
    }

    #[test]
    fn width_buckets_skip_empty_ranges() {
        let w = Buckets::Width { width: 10 };
        assert_eq!(bucket_ranges(&[3, 0, 25, 9, 21], w), vec![(0, 9), (20, 29)]);
    }

    #[test]
    fn buckets_count_accuracy_and_flag_small_ones() {
        let o = |t, correct, parsed| LengthOutcome {
            thought_tokens: t,
            correct,
            parsed,
        };
        let outcomes = [
            o(2, true, true),
            o(4, false, true),
            o(6, false, false),
            o(20, true, true),
            o(21, true, true),
            o(22, true, true),
            o(23, false, true),
        ];
        let b = bucketize(&outcomes, Buckets::Width { width: 10 }, 4);
        assert_eq!(b.len(), 2);
        assert_eq!((b[0].lo, b[0].hi, b[0].samples, b[0].correct), (0, 9, 3, 1));
        assert!((b[0].accuracy - 1.0 / 3.0).abs() < 1e-12);
        assert!((b[0].unparseable_rate - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(b[0].mean_thought_tokens, 4.0);
        assert!(b[0].small);
        assert_eq!((b[1].samples, b[1].correct, b[1].accuracy), (4, 3, 0.75));
        assert!(!b[1].small);
        // Every sample lands in exactly one bucket.
        let q = bucketize(&outcomes, Buckets::Quantile { count: 3 }, 1);
        assert_eq!(q.iter().map(|b| b.samples).sum::<usize>(), outcomes.len());
    }
}
