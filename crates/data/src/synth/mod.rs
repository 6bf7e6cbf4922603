//! Verifiable pair synthesis (J1's math half, recipe.md §2): a correct solution against an
//! incorrect one whose label is known by construction.
//!
//! - [`gsm8k`]: the gold GSM8K solution against a corrupted copy: one number or operation
//!   changed mid-derivation and carried through every later step via the `<<a*b=c>>`
//!   calculator annotations, or another problem's final answer swapped in.
//! - [`math`]: MATH-500 has only problems and final answers, so pairs are short answer
//!   statements: the gold answer against a plausible wrong one.
//! - [`procedural`]: an unlimited seeded generator of short multi-step word problems with a
//!   correct step-by-step solution and one with a single carried-through error.
//!
//! Everything is deterministic given the seed. Storage order of the two responses is drawn
//! at random (the prompt expansion shows both orders anyway). Every synthesizer returns a
//! [`SynthesisReport`] counting pairs per [`ErrorKind`] and every item or attempt left out,
//! per [`SkipReason`].

mod exact;
pub mod gsm8k;
mod gsm8k_solution;
pub mod math;
pub mod procedural;
mod procedural_text;

use std::collections::BTreeMap;
use std::fmt;

use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::judgment::Preference;
use crate::records::{Message, PairwiseItem};
use exact::Ratio;

/// The error planted in the incorrect solution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// One step's result is miscalculated (a nearby wrong number); later steps use it.
    Slip,
    /// One step uses the wrong operation (+ ↔ −, × ↔ ÷); later steps use its result.
    WrongOperation,
    /// One step misreads a given number; later steps use its result.
    WrongOperand,
    /// The derivation is right but the final answer is another problem's (GSM8K).
    SwappedAnswer,
    /// A wrong final answer statement (MATH-500).
    WrongFinalAnswer,
}

impl ErrorKind {
    /// The snake_case name, used as the pair's subset.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Slip => "slip",
            ErrorKind::WrongOperation => "wrong_operation",
            ErrorKind::WrongOperand => "wrong_operand",
            ErrorKind::SwappedAnswer => "swapped_answer",
            ErrorKind::WrongFinalAnswer => "wrong_final_answer",
        }
    }
}

/// Why an item (or one attempt at an error kind) produced no pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// No `#### n` final line with a number.
    NoFinalAnswer,
    /// The solution has no `<<…>>` annotations to recompute.
    NoAnnotations,
    /// An annotation does not parse, or disagrees with its own result or the text after it.
    BadAnnotation,
    /// No step and wrong value kept every number clean (≤ 2 decimals, sign kept) and changed
    /// the final answer.
    NoValidError,
    /// The changed values also appear elsewhere (in the question or as unchanged results),
    /// so carrying the error through could not be done unambiguously.
    AmbiguousValues,
    /// The step's expression is not written out in the text, so the error would be invisible.
    NotVisible,
    /// No other problem has a different final answer to swap in.
    NoDonor,
    /// A MATH answer without any number to change.
    NoNumberInAnswer,
    /// A generated problem left the configured value range and was drawn again.
    OutOfRange,
}

/// What a synthesizer produced and left out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SynthesisReport {
    /// Source items read.
    pub items_read: usize,
    /// Pairs made, per error kind.
    pub pairs: BTreeMap<ErrorKind, usize>,
    /// Items that produced no pair at all, by the reason of their first failure.
    pub items_skipped: BTreeMap<SkipReason, usize>,
    /// Failed attempts per kind (an item may fail one kind and succeed with another).
    pub kind_failures: BTreeMap<ErrorKind, BTreeMap<SkipReason, usize>>,
}

impl SynthesisReport {
    /// All pairs made.
    pub fn total_pairs(&self) -> usize {
        self.pairs.values().sum()
    }

    /// All items skipped.
    pub fn total_skipped(&self) -> usize {
        self.items_skipped.values().sum()
    }

    pub(crate) fn pair(&mut self, kind: ErrorKind) {
        *self.pairs.entry(kind).or_default() += 1;
    }

    pub(crate) fn skip(&mut self, reason: SkipReason) {
        *self.items_skipped.entry(reason).or_default() += 1;
    }

    pub(crate) fn fail(&mut self, kind: ErrorKind, reason: SkipReason) {
        *self
            .kind_failures
            .entry(kind)
            .or_default()
            .entry(reason)
            .or_default() += 1;
    }
}

impl fmt::Display for SynthesisReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "read {} items, made {} pairs",
            self.items_read,
            self.total_pairs()
        )?;
        for (k, n) in &self.pairs {
            write!(f, "\n  {}: {n}", k.name())?;
        }
        write!(f, "\nskipped {} items", self.total_skipped())?;
        for (r, n) in &self.items_skipped {
            write!(f, "\n  {r:?}: {n}")?;
        }
        Ok(())
    }
}

/// How many pairs to make per source item.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PairsPerItem {
    /// One pair, with a kind drawn from the enabled ones (the others are tried in turn if it
    /// fails). Default.
    #[default]
    One,
    /// One pair per enabled kind that succeeds.
    EachKind,
}

/// Builds a pair with the two solutions in a random storage order.
#[allow(clippy::too_many_arguments)]
pub(crate) fn random_order_pair(
    rng: &mut impl Rng,
    id: String,
    question: &str,
    good: String,
    bad: String,
    source: &str,
    kind: ErrorKind,
    reference: Option<String>,
) -> PairwiseItem {
    let (responses, preference) = if rng.random_bool(0.5) {
        ([good, bad], Preference::First)
    } else {
        ([bad, good], Preference::Second)
    };
    PairwiseItem {
        id,
        prompt: vec![Message::user(question)],
        responses,
        preference,
        source: Some(source.into()),
        subset: Some(kind.name().into()),
        reference,
    }
}

/// A corrupted response with what matters for balancing.
pub(crate) struct Candidate<T> {
    /// The corrupted response (or whatever the caller builds from it).
    pub value: T,
    /// sign(corrupted length − correct length) in characters.
    pub longer: i64,
    /// sign(corrupted final answer − correct final answer).
    pub larger: i64,
}

/// Running sums of the `longer` and `larger` signs of the pairs made so far. Picking each new
/// pair's corruption to keep both near zero means that neither "pick the shorter response"
/// nor "pick the smaller answer" beats chance on the synthesized data.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Balance {
    longer: i64,
    larger: i64,
}

impl Balance {
    fn cost<T>(&self, c: &Candidate<T>) -> i64 {
        (self.longer + c.longer).abs() + (self.larger + c.larger).abs()
    }

    /// Picks uniformly among the candidates that best keep the balance, and records it.
    pub fn pick<T>(&mut self, candidates: Vec<Candidate<T>>, rng: &mut impl Rng) -> Option<T> {
        self.pick_by(candidates, |_| (), rng)
    }

    /// Like [`Balance::pick`], but first draws a group uniformly among the groups of the best
    /// candidates (so an error kind with many candidates does not crowd out the others).
    pub fn pick_by<T, K: Ord>(
        &mut self,
        candidates: Vec<Candidate<T>>,
        group: impl Fn(&T) -> K,
        rng: &mut impl Rng,
    ) -> Option<T> {
        let best = candidates.iter().map(|c| self.cost(c)).min()?;
        let mut pool: Vec<Candidate<T>> = candidates
            .into_iter()
            .filter(|c| self.cost(c) == best)
            .collect();
        let mut groups: Vec<K> = pool.iter().map(|c| group(&c.value)).collect();
        groups.sort();
        groups.dedup();
        let chosen_group = groups.swap_remove(rng.random_range(0..groups.len()));
        pool.retain(|c| group(&c.value) == chosen_group);
        let chosen = pool.swap_remove(rng.random_range(0..pool.len()));
        self.longer += chosen.longer;
        self.larger += chosen.larger;
        Some(chosen.value)
    }
}

/// sign(a − b) for lengths.
pub(crate) fn length_sign(bad: &str, good: &str) -> i64 {
    (bad.chars().count() as i64 - good.chars().count() as i64).signum()
}

/// Plausible miscalculations of `v`, shuffled, those with as many digits as `v` first.
/// Non-negative values stay non-negative.
pub(crate) fn nearby_values(v: Ratio, rng: &mut impl Rng) -> Vec<Ratio> {
    let mut deltas: Vec<Ratio> = (1..=9).chain([10, 20, 100]).map(Ratio::int).collect();
    if !v.is_integer() {
        deltas.extend(Ratio::new(1, 2));
    }
    let mut out: Vec<Ratio> = deltas
        .iter()
        .flat_map(|&d| [v.add(d), v.sub(d)])
        .flatten()
        .filter(|w| *w != v && (v.is_negative() || !w.is_negative()))
        .collect();
    out.sort();
    out.dedup();
    out.shuffle(rng);
    let digits = |r: Ratio| r.clean().map(|s| s.len());
    out.sort_by_key(|&w| digits(w) != digits(v));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn nearby_values_prefer_same_width_and_keep_sign() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let v = nearby_values(Ratio::int(54), &mut rng);
        assert!(v.iter().all(|w| *w != Ratio::int(54) && !w.is_negative()));
        assert!(v[..5].iter().all(|w| w.clean().map(|s| s.len()) == Some(2)));
        let small = nearby_values(Ratio::int(2), &mut rng);
        assert!(small.iter().all(|w| !w.is_negative()));
    }

    #[test]
    fn report_counts() {
        let mut r = SynthesisReport::default();
        r.pair(ErrorKind::Slip);
        r.pair(ErrorKind::Slip);
        r.skip(SkipReason::NoAnnotations);
        r.fail(ErrorKind::WrongOperation, SkipReason::NotVisible);
        assert_eq!((r.total_pairs(), r.total_skipped()), (2, 1));
        let s = serde_json::to_string(&r).unwrap_or_default();
        assert!(s.contains("\"slip\":2"), "{s}");
    }
}
