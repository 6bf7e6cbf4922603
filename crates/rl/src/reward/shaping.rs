//! Reward shaping: a length penalty, composed with a base reward by summing.
//!
//! Libra (recipe.md §7.2) adds a length penalty with an expected length L_exp and a maximum
//! L_max whose exact form is unpublished; DAPO (§9.6) adds an overlong penalty that ramps
//! over the last L_c tokens before L_max. Both are the same linear ramp, implemented once by
//! [`LengthPenalty`]:
//!
//! ```text
//! penalty(L) = 0                                   if L ≤ start
//!            = −factor · (L − start) / (end − start) if start < L < end
//!            = −factor                             if L ≥ end, or the sample was truncated
//! ```
//!
//! with (start, end) = (L_exp, L_max) for Libra and (L_max − L_c, L_max) for DAPO. The
//! penalty applies to every sample, unparseable ones included: truncated outputs are usually
//! unparseable, and penalising them is the point of overlong shaping.

use super::{Reward, Sample};
use crate::error::{Result, RlError};
use serde::{Deserialize, Serialize};

/// Which length a [`LengthPenalty`] measures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LengthBasis {
    /// All generated tokens (DAPO).
    #[default]
    Completion,
    /// Only the tokens inside `<think>…</think>`.
    Thought,
}

/// A linear length ramp from 0 at `start` tokens to −`factor` at `end` tokens (see the
/// module doc). Returns only the penalty; add it to a base reward with [`RewardSum`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LengthPenalty {
    /// Last length (tokens) without penalty.
    pub start: usize,
    /// Length (tokens) from which the full penalty applies.
    pub end: usize,
    /// The full penalty (≥ 0; subtracted).
    pub factor: f32,
    /// Which length is measured.
    pub basis: LengthBasis,
}

impl LengthPenalty {
    /// Libra-style: no penalty up to the expected length, full penalty at `max_len`.
    pub fn libra(expected_len: usize, max_len: usize, factor: f32, basis: LengthBasis) -> Self {
        LengthPenalty {
            start: expected_len,
            end: max_len,
            factor,
            basis,
        }
    }

    /// DAPO overlong shaping: the penalty ramps over the last `buffer_len` tokens before
    /// `max_len` (DAPO: max 20,480, buffer 4,096, factor 1), measured on the completion.
    pub fn overlong(max_len: usize, buffer_len: usize, factor: f32) -> Self {
        LengthPenalty {
            start: max_len.saturating_sub(buffer_len),
            end: max_len,
            factor,
            basis: LengthBasis::Completion,
        }
    }

    /// The penalty (≤ 0) of one sample.
    pub fn penalty(&self, s: &Sample) -> f32 {
        let len = match self.basis {
            LengthBasis::Completion => s.completion_tokens,
            LengthBasis::Thought => s.thought_tokens,
        };
        if s.truncated || len >= self.end {
            -self.factor
        } else if len <= self.start {
            0.0
        } else {
            let frac = (len - self.start) as f64 / (self.end - self.start) as f64;
            (-(self.factor as f64) * frac) as f32
        }
    }
}

impl Reward for LengthPenalty {
    fn name(&self) -> &str {
        "length_penalty"
    }

    fn score(&self, samples: &[Sample]) -> Result<Vec<f32>> {
        Ok(samples.iter().map(|s| self.penalty(s)).collect())
    }
}

/// The sum of several rewards: a base reward plus shaping terms, or any custom mix.
pub struct RewardSum {
    name: String,
    terms: Vec<Box<dyn Reward>>,
}

impl RewardSum {
    /// Sums `terms`; the name joins theirs with `+`.
    pub fn new(terms: Vec<Box<dyn Reward>>) -> Self {
        let name = terms.iter().map(|t| t.name()).collect::<Vec<_>>().join("+");
        RewardSum { name, terms }
    }
}

impl Reward for RewardSum {
    fn name(&self) -> &str {
        &self.name
    }

    fn score(&self, samples: &[Sample]) -> Result<Vec<f32>> {
        let mut total = vec![0.0f32; samples.len()];
        for term in &self.terms {
            let r = term.score(samples)?;
            if r.len() != samples.len() {
                return Err(RlError::reward(
                    term.name(),
                    format!("returned {} rewards for {} samples", r.len(), samples.len()),
                ));
            }
            total.iter_mut().zip(r).for_each(|(t, x)| *t += x);
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reward::test_util::{pairwise, verdict};
    use crate::reward::VerdictCorrectness;
    use thinkjudge_data::judgment::{Order, Side};

    fn with_len(completion: usize, thought: usize, truncated: bool) -> Sample {
        let mut s = pairwise(0, Order::AB, 0, verdict(Side::A));
        s.completion_tokens = completion;
        s.thought_tokens = thought;
        s.truncated = truncated;
        s
    }

    #[test]
    fn overlong_ramp_matches_dapo() {
        // DAPO: L_max = 20480, L_c = 4096 → no penalty up to 16384, then linear to −1.
        let p = LengthPenalty::overlong(20480, 4096, 1.0);
        assert_eq!(p.penalty(&with_len(16384, 0, false)), 0.0);
        // (16384 + 1024 − 16384) / 4096 = 0.25
        assert_eq!(p.penalty(&with_len(17408, 0, false)), -0.25);
        assert_eq!(p.penalty(&with_len(20480, 0, false)), -1.0);
        assert_eq!(p.penalty(&with_len(30000, 0, false)), -1.0);
        assert_eq!(p.penalty(&with_len(10, 0, true)), -1.0);
    }

    #[test]
    fn libra_ramp_can_measure_the_thought() {
        let p = LengthPenalty::libra(500, 1500, 0.5, LengthBasis::Thought);
        // thought 1000: 0.5 · (1000 − 500) / (1500 − 500) = 0.25
        assert_eq!(p.penalty(&with_len(4000, 1000, false)), -0.25);
        assert_eq!(p.penalty(&with_len(4000, 400, false)), 0.0);
    }

    #[test]
    fn sum_adds_terms_and_joins_names() {
        let sum = RewardSum::new(vec![
            Box::new(VerdictCorrectness::default()),
            Box::new(LengthPenalty::overlong(200, 100, 1.0)),
        ]);
        assert_eq!(sum.name(), "verdict+length_penalty");
        // correct (1) + penalty at 150 tokens: −(150 − 100) / 100 = −0.5
        let r = sum.score(&[with_len(150, 0, false)]).unwrap();
        assert_eq!(r, vec![0.5]);
    }
}
