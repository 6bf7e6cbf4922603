//! A seeded generator of fresh verifiable pairs: a short multi-step word problem (or bare
//! expression), its correct step-by-step solution, and a solution with one planted error
//! carried through every later step.
//!
//! Problems come from four [`Family`]s with varied names, items, units, phrasings, operator
//! symbols (`*`/`×`/`x`), step numbering and answer lines. Texts stay short (a question of one
//! to four sentences, one line per step) so a whole judge prompt fits ~150–250 tokens.
//!
//! The two solutions differ only where the error is, never in form: the same template, the
//! same number of lines, and no numbers in the wording, so only numbers and at most one
//! operator symbol change. The error's step is drawn uniformly. A slip moves a result to a
//! nearby value, of the same width when possible. Among the valid errors at the drawn step,
//! the generator picks one that keeps the corrupted solution as often longer as shorter (in
//! characters) and its final answer as often larger as smaller, so neither length nor answer
//! size predicts the label (tested statistically in `tests/synth.rs`).

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::exact::Ratio;
use super::procedural_text::{plan, Calc, Operand, Plan, Ranges};
use super::{
    length_sign, nearby_values, random_order_pair, Balance, Candidate, ErrorKind, SkipReason,
    SynthesisReport,
};
use crate::error::{DataError, Result};
use crate::records::PairwiseItem;

pub use super::procedural_text::Family;

/// Generator settings. Defaults suit a 135M-parameter judge on CPU: 2–3 steps, operands
/// 2–20, about 100 SmolLM2 tokens for the question and both solutions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProceduralConfig {
    /// Fewest computations per problem (1–8). Default 2.
    pub min_steps: usize,
    /// Most computations per problem (≥ `min_steps`, ≤ 8). Default 3.
    pub max_steps: usize,
    /// Smallest number given in a question (≥ 1). Default 2.
    pub min_operand: i64,
    /// Largest number given in a question (≥ 2 and ≥ `min_operand`, ≤ 10,000). Default 20.
    pub max_operand: i64,
    /// Largest value any correct step may reach (≥ 2 × `max_operand`). Default 1,000.
    pub max_value: i64,
    /// Errors to plant: any of `slip`, `wrong_operation`, `wrong_operand`. Default all three.
    pub error_kinds: Vec<ErrorKind>,
    /// Problem families. Default all.
    pub families: Vec<Family>,
    /// Seed. Default 0.
    pub seed: u64,
}

impl Default for ProceduralConfig {
    fn default() -> Self {
        ProceduralConfig {
            min_steps: 2,
            max_steps: 3,
            min_operand: 2,
            max_operand: 20,
            max_value: 1000,
            error_kinds: vec![
                ErrorKind::Slip,
                ErrorKind::WrongOperation,
                ErrorKind::WrongOperand,
            ],
            families: Family::ALL.to_vec(),
            seed: 0,
        }
    }
}

impl ProceduralConfig {
    /// Checks ranges and combinations.
    ///
    /// # Errors
    /// [`DataError::Config`] naming the first bad field.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, problem: String| Err(DataError::config(field, problem));
        if !(1..=8).contains(&self.min_steps)
            || self.max_steps < self.min_steps
            || self.max_steps > 8
        {
            return bad(
                "max_steps",
                format!(
                    "need 1 <= min_steps <= max_steps <= 8, got {}..={}",
                    self.min_steps, self.max_steps
                ),
            );
        }
        if self.min_operand < 1
            || self.max_operand < self.min_operand.max(2)
            || self.max_operand > 10_000
        {
            return bad(
                "max_operand",
                format!(
                    "need 1 <= min_operand <= max_operand, 2 <= max_operand <= 10000, got {}..={}",
                    self.min_operand, self.max_operand
                ),
            );
        }
        if self.max_value < 2 * self.max_operand {
            return bad(
                "max_value",
                format!("must be >= 2 * max_operand = {}", 2 * self.max_operand),
            );
        }
        let allowed = [
            ErrorKind::Slip,
            ErrorKind::WrongOperation,
            ErrorKind::WrongOperand,
        ];
        if self.error_kinds.is_empty() || self.error_kinds.iter().any(|k| !allowed.contains(k)) {
            return bad(
                "error_kinds",
                "one or more of slip, wrong_operation, wrong_operand".into(),
            );
        }
        if let Some(n) = (self.min_steps..=self.max_steps)
            .find(|&n| !self.families.iter().any(|f| f.supports(n)))
        {
            return bad(
                "families",
                format!("no enabled family makes {n}-step problems"),
            );
        }
        Ok(())
    }
}

/// Evaluates computations in order; `None` if a value goes negative, a division is not
/// exact, or arithmetic overflows.
pub(super) fn evaluate(calcs: &[Calc]) -> Option<Vec<i64>> {
    evaluate_with(calcs, None)
}

fn evaluate_with(calcs: &[Calc], slip: Option<(usize, i64)>) -> Option<Vec<i64>> {
    let mut values: Vec<i64> = Vec::with_capacity(calcs.len());
    for (i, c) in calcs.iter().enumerate() {
        let get = |o: Operand| match o {
            Operand::Given(v) => Some(v),
            Operand::Step(j) => values.get(j).copied(),
        };
        let v = match slip {
            Some((at, w)) if at == i => w,
            _ => c.op.apply(get(c.lhs)?, get(c.rhs)?)?,
        };
        if v < 0 {
            return None;
        }
        values.push(v);
    }
    Some(values)
}

/// Altered computations, and a slip (step, wrong result) if any.
type Variant = (Vec<Calc>, Option<(usize, i64)>);

/// An incorrect solution candidate.
struct Corrupted {
    kind: ErrorKind,
    text: String,
    final_answer: i64,
}

/// Makes an endless, deterministic stream of pairs.
#[derive(Debug, Clone)]
pub struct ProceduralGenerator {
    cfg: ProceduralConfig,
    rng: ChaCha8Rng,
    produced: u64,
    report: SynthesisReport,
    balance: Balance,
}

/// Consecutive failed draws after which the settings are deemed unworkable.
const MAX_FAILED_DRAWS: usize = 10_000;

impl ProceduralGenerator {
    /// A generator for `cfg`.
    ///
    /// # Errors
    /// [`DataError::Config`] from [`ProceduralConfig::validate`].
    pub fn new(cfg: ProceduralConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(ProceduralGenerator {
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            cfg,
            produced: 0,
            report: SynthesisReport::default(),
            balance: Balance::default(),
        })
    }

    /// What has been generated so far (`items_read` counts drawn problems).
    pub fn report(&self) -> &SynthesisReport {
        &self.report
    }

    /// `n` more pairs.
    ///
    /// # Errors
    /// As [`ProceduralGenerator::next_pair`].
    pub fn generate(&mut self, n: usize) -> Result<Vec<PairwiseItem>> {
        (0..n).map(|_| self.next_pair()).collect()
    }

    /// The next pair. Ids are `procedural:<seed>:<index>`; subsets `<family>/<error kind>`.
    ///
    /// # Errors
    /// [`DataError::Config`] when no valid problem comes out of many draws (settings too
    /// narrow, e.g. a tiny `max_value`).
    pub fn next_pair(&mut self) -> Result<PairwiseItem> {
        // Step count and error position are drawn before the problem, and only the problem is
        // redrawn on failure, so the position stays exactly uniform.
        let n = self
            .rng
            .random_range(self.cfg.min_steps..=self.cfg.max_steps);
        let at = self.rng.random_range(0..n);
        for _ in 0..MAX_FAILED_DRAWS {
            self.report.items_read += 1;
            let Some((plan, values)) = self.draw_problem(n) else {
                self.report.skip(SkipReason::OutOfRange);
                continue;
            };
            let Some(bad) = self.corrupt(&plan, &values, at) else {
                self.report.skip(SkipReason::NoValidError);
                continue;
            };
            let good = plan.render(&plan.calcs, &values);
            let id = format!("procedural:{}:{}", self.cfg.seed, self.produced);
            let answer = values.last().map(|v| v.to_string());
            let mut item = random_order_pair(
                &mut self.rng,
                id,
                &plan.question,
                good,
                bad.text,
                "procedural",
                bad.kind,
                answer,
            );
            item.subset = Some(format!("{}/{}", plan.family.name(), bad.kind.name()));
            self.report.pair(bad.kind);
            self.produced += 1;
            return Ok(item);
        }
        Err(DataError::config(
            "procedural",
            format!(
                "no valid problem in {MAX_FAILED_DRAWS} draws; widen the operand or value ranges"
            ),
        ))
    }

    fn draw_problem(&mut self, n: usize) -> Option<(Plan, Vec<i64>)> {
        let families: Vec<Family> = self
            .cfg
            .families
            .iter()
            .copied()
            .filter(|f| f.supports(n))
            .collect();
        let family = *families.choose(&mut self.rng)?;
        let ranges = Ranges {
            min: self.cfg.min_operand,
            max: self.cfg.max_operand,
        };
        let plan = plan(family, n, &ranges, &mut self.rng)?;
        let values = evaluate(&plan.calcs)?;
        let in_range = values.iter().all(|v| (1..=self.cfg.max_value).contains(v));
        (in_range && plan.calcs.len() == n).then_some((plan, values))
    }

    /// Plants one error at step `at`, picking among the valid ones with [`Balance`] so that
    /// neither length nor answer size predicts the label.
    fn corrupt(&mut self, plan: &Plan, values: &[i64], at: usize) -> Option<Corrupted> {
        let good = plan.render(&plan.calcs, values);
        let good_final = values.last().copied().unwrap_or(0);
        let mut all = Vec::new();
        for &kind in &self.cfg.error_kinds.clone() {
            let found = self.candidates(plan, values, at, kind);
            if found.is_empty() {
                self.report.fail(kind, SkipReason::NoValidError);
            }
            all.extend(found.into_iter().map(|c| Candidate {
                longer: length_sign(&c.text, &good),
                larger: (c.final_answer - good_final).signum(),
                value: c,
            }));
        }
        self.balance.pick_by(all, |c| c.kind, &mut self.rng)
    }

    /// Every valid corrupted solution of `kind` with its error at step `at`.
    fn candidates(
        &mut self,
        plan: &Plan,
        values: &[i64],
        at: usize,
        kind: ErrorKind,
    ) -> Vec<Corrupted> {
        let good_final = values.last().copied();
        let limit = self.cfg.max_value.saturating_mul(10);
        let mut variants: Vec<Variant> = Vec::new();
        let calc = plan.calcs[at];
        match kind {
            ErrorKind::Slip => {
                for w in nearby_values(Ratio::int(values[at]), &mut self.rng)
                    .into_iter()
                    .take(6)
                {
                    if let Some(w) = w.as_i64() {
                        variants.push((plan.calcs.clone(), Some((at, w))));
                    }
                }
            }
            ErrorKind::WrongOperation => {
                let mut calcs = plan.calcs.clone();
                calcs[at].op = calc.op.swapped();
                variants.push((calcs, None));
            }
            ErrorKind::WrongOperand => {
                for (side, operand) in [(0, calc.lhs), (1, calc.rhs)] {
                    let Operand::Given(v) = operand else { continue };
                    for w in nearby_values(Ratio::int(v), &mut self.rng)
                        .into_iter()
                        .take(3)
                    {
                        let Some(w) = w.as_i64().filter(|w| *w >= 1) else {
                            continue;
                        };
                        let mut calcs = plan.calcs.clone();
                        if side == 0 {
                            calcs[at].lhs = Operand::Given(w);
                        } else {
                            calcs[at].rhs = Operand::Given(w);
                        }
                        variants.push((calcs, None));
                    }
                }
            }
            _ => {}
        }
        variants
            .into_iter()
            .filter_map(|(calcs, slip)| {
                let bad = evaluate_with(&calcs, slip)?;
                let ok = bad.last().copied() != good_final && bad.iter().all(|v| *v <= limit);
                ok.then(|| Corrupted {
                    kind,
                    text: plan.render(&calcs, &bad),
                    final_answer: bad.last().copied().unwrap_or(0),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_pairs() -> Result<()> {
        let a = ProceduralGenerator::new(ProceduralConfig::default())?.generate(20)?;
        let b = ProceduralGenerator::new(ProceduralConfig::default())?.generate(20)?;
        assert_eq!(a, b);
        let c = ProceduralGenerator::new(ProceduralConfig {
            seed: 1,
            ..ProceduralConfig::default()
        })?
        .generate(20)?;
        assert_ne!(a, c);
        Ok(())
    }

    #[test]
    fn invalid_settings_are_rejected() {
        let cfg = |f: fn(&mut ProceduralConfig)| {
            let mut c = ProceduralConfig::default();
            f(&mut c);
            c.validate()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(cfg(|c| c.max_steps = 9).contains("max_steps"));
        assert!(cfg(|c| c.min_operand = 0).contains("max_operand"));
        assert!(cfg(|c| c.max_value = 10).contains("max_value"));
        assert!(cfg(|c| c.error_kinds = vec![ErrorKind::SwappedAnswer]).contains("error_kinds"));
        assert!(cfg(|c| {
            c.families = vec![Family::Travel];
            c.min_steps = 2;
            c.max_steps = 2;
        })
        .contains("no enabled family makes 2-step problems"));
    }

    #[test]
    fn evaluation_rejects_inexact_division_and_negatives() {
        use super::super::procedural_text::Op;
        let c = |op, a, b| Calc {
            op,
            lhs: Operand::Given(a),
            rhs: Operand::Given(b),
        };
        assert_eq!(evaluate(&[c(Op::Div, 7, 2)]), None);
        assert_eq!(evaluate(&[c(Op::Sub, 2, 7)]), None);
        let chain = [
            c(Op::Mul, 3, 4),
            Calc {
                op: Op::Add,
                lhs: Operand::Step(0),
                rhs: Operand::Given(5),
            },
        ];
        assert_eq!(evaluate(&chain), Some(vec![12, 17]));
        assert_eq!(evaluate_with(&chain, Some((0, 13))), Some(vec![13, 18]));
    }
}
