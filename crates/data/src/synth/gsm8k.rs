//! GSM8K correct-vs-corrupted solution pairs.
//!
//! GSM8K solutions (JSONL `{"question", "answer"}`) write each step with a calculator
//! annotation, `9 * 60 = <<9*60=540>>540 meters`, and end with `#### 540`. The annotations let
//! us plant one error and recompute every later step exactly:
//! - [`ErrorKind::Slip`]: one step's visible result becomes a nearby wrong number;
//! - [`ErrorKind::WrongOperation`]: one written-out operator flips (+ ↔ −, × ↔ ÷);
//! - [`ErrorKind::WrongOperand`]: one written-out number taken from the question is misread.
//!
//! Later annotation operands equal to a changed result take its new value, their results are
//! recomputed, and every later number in the text equal to a changed result is rewritten, so
//! the error flows consistently to the final answer, which must change. Changes that would
//! be ambiguous (a changed value that also occurs in the question or as another, unchanged
//! result) or unclean (more than two decimals, a sign flip) are not used.
//! [`ErrorKind::SwappedAnswer`] keeps the derivation and replaces the final answer with
//! another problem's (of similar magnitude).
//!
//! Displayed solutions drop the annotations and end with `Answer: n` instead of `#### n`.
//! A rare residual imperfection: a later constant that merely equals a changed result (say
//! 12 months after a result of 12) is rewritten too; the label stays right because the final
//! answer always differs from the gold one.

use std::collections::HashMap;
use std::path::Path;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::exact::Ratio;
use super::gsm8k_solution::{final_answer, Solution, ANY_ANNOTATION, FINAL};
use super::{
    length_sign, random_order_pair, Balance, Candidate, ErrorKind, PairsPerItem, SkipReason,
    SynthesisReport,
};
use crate::error::{DataError, Result};
use crate::loaders::fields::{convert_records, read_records, record_number, req_text};
use crate::loaders::LoadOptions;
use crate::records::PairwiseItem;

/// One GSM8K problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gsm8kProblem {
    /// `gsm8k:<line>` when read from a file.
    pub id: String,
    /// The word problem.
    pub question: String,
    /// The annotated solution ending with `#### n`.
    pub solution: String,
}

/// GSM8K synthesis settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Gsm8kConfig {
    /// Error kinds to plant. Default: slip, wrong_operation, wrong_operand, swapped_answer.
    pub kinds: Vec<ErrorKind>,
    /// Pairs per problem. Default `one`.
    pub per_item: PairsPerItem,
    /// Seed. Default 0.
    pub seed: u64,
    /// Use at most this many problems. Default all.
    pub limit: Option<usize>,
}

impl Default for Gsm8kConfig {
    fn default() -> Self {
        Gsm8kConfig {
            kinds: vec![
                ErrorKind::Slip,
                ErrorKind::WrongOperation,
                ErrorKind::WrongOperand,
                ErrorKind::SwappedAnswer,
            ],
            per_item: PairsPerItem::One,
            seed: 0,
            limit: None,
        }
    }
}

impl Gsm8kConfig {
    /// Checks the kinds.
    ///
    /// # Errors
    /// [`DataError::Config`] when `kinds` is empty or holds a kind GSM8K cannot make.
    pub fn validate(&self) -> Result<()> {
        if self.kinds.is_empty() {
            return Err(DataError::config(
                "kinds",
                "at least one error kind is needed",
            ));
        }
        if let Some(k) = self
            .kinds
            .iter()
            .find(|k| **k == ErrorKind::WrongFinalAnswer)
        {
            return Err(DataError::config(
                "kinds",
                format!("`{}` is for MATH answers, not GSM8K solutions", k.name()),
            ));
        }
        Ok(())
    }
}

/// Reads GSM8K JSONL (`question`, `answer`); ids are `gsm8k:<line>`.
///
/// # Errors
/// [`DataError`] naming the file and line for unreadable files, bad JSON or missing fields.
pub fn read_problems(path: &Path) -> Result<Vec<Gsm8kProblem>> {
    let raw = read_records(path)?;
    let (problems, _) = convert_records(
        path,
        raw,
        &LoadOptions::default(),
        |p: &Gsm8kProblem| &p.id,
        |o, loc| {
            Ok(Gsm8kProblem {
                id: format!("gsm8k:{}", record_number(loc)),
                question: req_text(o, "question")?,
                solution: req_text(o, "answer")?,
            })
        },
    )?;
    Ok(problems)
}

/// Removes `<<…>>` calculator annotations.
///
/// ```
/// use thinkjudge_data::synth::gsm8k::strip_annotations;
/// assert_eq!(strip_annotations("9 * 2 = $<<9*2=18>>18"), "9 * 2 = $18");
/// ```
pub fn strip_annotations(text: &str) -> String {
    ANY_ANNOTATION.replace_all(text, "").into_owned()
}

/// The solution as shown to a judge: no annotations, `Answer: n` for `#### n`.
pub fn display_solution(solution: &str) -> String {
    solution
        .lines()
        .map(|line| match FINAL.captures(line.trim()) {
            Some(c) => format!("Answer: {}", &c[1]),
            None => strip_annotations(line),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Reads `path` and synthesizes pairs ([`synthesize`]).
///
/// # Errors
/// As [`read_problems`] and [`Gsm8kConfig::validate`].
pub fn synthesize_file(
    path: &Path,
    cfg: &Gsm8kConfig,
) -> Result<(Vec<PairwiseItem>, SynthesisReport)> {
    synthesize(&read_problems(path)?, cfg)
}

/// Makes correct-vs-corrupted pairs from `problems`. Pair ids are `<problem id>:<kind>`.
///
/// # Errors
/// [`DataError::Config`] from [`Gsm8kConfig::validate`].
pub fn synthesize(
    problems: &[Gsm8kProblem],
    cfg: &Gsm8kConfig,
) -> Result<(Vec<PairwiseItem>, SynthesisReport)> {
    cfg.validate()?;
    let problems = &problems[..cfg.limit.unwrap_or(usize::MAX).min(problems.len())];
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut report = SynthesisReport {
        items_read: problems.len(),
        ..SynthesisReport::default()
    };
    let answers: Vec<Option<Ratio>> = problems.iter().map(|p| final_answer(&p.solution)).collect();
    let mut out = Vec::new();
    // Balanced per kind: the kinds differ in which way their errors tend to go.
    let mut balances: HashMap<ErrorKind, Balance> = HashMap::new();
    for (index, problem) in problems.iter().enumerate() {
        let solution = match Solution::parse(&problem.solution) {
            Ok(s) => s,
            Err(reason) => {
                report.skip(reason);
                continue;
            }
        };
        let mut kinds = cfg.kinds.clone();
        kinds.shuffle(&mut rng);
        let mut first_failure = None;
        let mut made = 0;
        for kind in kinds {
            let bad = match kind {
                ErrorKind::SwappedAnswer => swap_answer(&solution, index, &answers, &mut rng),
                _ => solution.corrupt(kind, &problem.question, &mut rng),
            };
            let good = solution.display(solution.answer);
            let picked = bad.and_then(|found| {
                let candidates = found
                    .into_iter()
                    .map(|(text, answer)| Candidate {
                        longer: length_sign(&text, &good),
                        larger: answer.cmp(&solution.answer) as i64,
                        value: text,
                    })
                    .collect();
                balances
                    .entry(kind)
                    .or_default()
                    .pick(candidates, &mut rng)
                    .ok_or(SkipReason::NoValidError)
            });
            match picked {
                Ok(bad) => {
                    let id = format!("{}:{}", problem.id, kind.name());
                    let reference = solution.answer.clean();
                    out.push(random_order_pair(
                        &mut rng,
                        id,
                        &problem.question,
                        good,
                        bad,
                        "gsm8k",
                        kind,
                        reference,
                    ));
                    report.pair(kind);
                    made += 1;
                    if cfg.per_item == PairsPerItem::One {
                        break;
                    }
                }
                Err(reason) => {
                    report.fail(kind, reason);
                    first_failure.get_or_insert(reason);
                }
            }
        }
        if made == 0 {
            report.skip(first_failure.unwrap_or(SkipReason::NoValidError));
        }
    }
    Ok((out, report))
}

fn swap_answer(
    solution: &Solution<'_>,
    index: usize,
    answers: &[Option<Ratio>],
    rng: &mut impl Rng,
) -> std::result::Result<Vec<(String, Ratio)>, SkipReason> {
    let gold = solution.answer;
    let donors: Vec<Ratio> = answers
        .iter()
        .enumerate()
        .filter_map(|(i, a)| a.filter(|a| i != index && *a != gold && !a.is_negative()))
        .collect();
    if donors.is_empty() {
        return Err(SkipReason::NoDonor);
    }
    // Of a few random donors, keep those closest in magnitude: a swapped-in answer of the
    // wrong order of magnitude would be too easy to spot.
    let size = |r: Ratio| r.clean().map_or(0, |s| s.len()) as i64;
    let drawn: Vec<Ratio> = (0..8)
        .map(|_| donors[rng.random_range(0..donors.len())])
        .collect();
    let closest = drawn
        .iter()
        .map(|d| (size(*d) - size(gold)).abs())
        .min()
        .ok_or(SkipReason::NoDonor)?;
    Ok(drawn
        .into_iter()
        .filter(|d| (size(*d) - size(gold)).abs() == closest)
        .map(|d| (solution.display(d), d))
        .collect())
}
