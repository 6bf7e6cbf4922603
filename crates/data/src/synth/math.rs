//! MATH-500 answer-statement pairs.
//!
//! MATH-500 gives a problem and its final answer (LaTeX) but no solution, so a pair is two
//! short answer statements in the same wording: the gold answer against a plausible wrong
//! one, made by changing one number of the answer to a nearby value (`\frac{14}{3}` →
//! `\frac{15}{3}`, `(3, \frac{\pi}{2})` → `(4, \frac{\pi}{2})`), moved up as often as
//! down and made longer as often as shorter (see `Balance`). Answers without a number
//! (`\text{Evelyn}`, `p - q`) are skipped and counted. The judge has to solve the problem to
//! tell the two apart, which is the point.
//!
//! Input: JSONL with `answer` and `problem` (the Hugging Face MATH-500 schema, id from
//! `unique_id`) or `prompt` (the copy in `/work/shared/data`, whose prompts end with a
//! "Please reason step by step…" instruction that is removed). Ids are `<unique_id>` or
//! `math500:<line>`.

use std::path::Path;
use std::sync::LazyLock;

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use regex::Regex;
use serde::{Deserialize, Serialize};

use super::exact::Ratio;
use super::{
    nearby_values, random_order_pair, Balance, Candidate, ErrorKind, SkipReason, SynthesisReport,
};
use crate::error::Result;
use crate::loaders::fields::{
    convert_records, opt_id, read_records, record_number, req_text, FieldError,
};
use crate::loaders::LoadOptions;
use crate::records::PairwiseItem;

static NUMBER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\d+(?:\.\d+)?").expect("literal regex"));

/// The instruction the shared copy appends to each problem.
const STEP_BY_STEP: &str =
    "Please reason step by step, and put your final answer within \\boxed{}.";

/// Answer statement wordings; one is drawn per pair and used for both answers.
const STATEMENTS: [(&str, &str); 4] = [
    ("The answer is $\\boxed{", "}$."),
    ("Final answer: $\\boxed{", "}$"),
    ("$\\boxed{", "}$"),
    ("Therefore, the answer is $", "$."),
];

/// One MATH problem with its final answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MathProblem {
    /// `unique_id`, or `math500:<line>`.
    pub id: String,
    /// The problem text (without the step-by-step instruction).
    pub problem: String,
    /// The gold final answer, LaTeX.
    pub answer: String,
}

/// MATH synthesis settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MathConfig {
    /// Seed. Default 0.
    pub seed: u64,
    /// Use at most this many problems. Default all.
    pub limit: Option<usize>,
}

/// Reads MATH-500 JSONL (see the module docs for the accepted schemas).
///
/// # Errors
/// [`crate::DataError`] naming the file and line for unreadable files, bad JSON or missing
/// fields.
pub fn read_problems(path: &Path) -> Result<Vec<MathProblem>> {
    let raw = read_records(path)?;
    let (problems, _) = convert_records(
        path,
        raw,
        &LoadOptions::default(),
        |p: &MathProblem| &p.id,
        |o, loc| {
            let problem = match (o.contains_key("problem"), o.contains_key("prompt")) {
                (true, _) => req_text(o, "problem")?,
                (false, true) => req_text(o, "prompt")?,
                (false, false) => return Err(FieldError::new("problem", "missing")),
            };
            let problem = problem
                .trim_end()
                .strip_suffix(STEP_BY_STEP)
                .map_or(problem.clone(), |p| p.trim_end().to_string());
            Ok(MathProblem {
                id: opt_id(o, "unique_id")?
                    .unwrap_or_else(|| format!("math500:{}", record_number(loc))),
                problem,
                answer: req_text(o, "answer")?,
            })
        },
    )?;
    Ok(problems)
}

/// Reads `path` and synthesizes pairs ([`synthesize`]).
///
/// # Errors
/// As [`read_problems`].
pub fn synthesize_file(
    path: &Path,
    cfg: &MathConfig,
) -> Result<(Vec<PairwiseItem>, SynthesisReport)> {
    Ok(synthesize(&read_problems(path)?, cfg))
}

/// Makes gold-vs-wrong answer statement pairs. Pair ids are `<problem id>:wrong_final_answer`.
pub fn synthesize(
    problems: &[MathProblem],
    cfg: &MathConfig,
) -> (Vec<PairwiseItem>, SynthesisReport) {
    let problems = &problems[..cfg.limit.unwrap_or(usize::MAX).min(problems.len())];
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut report = SynthesisReport {
        items_read: problems.len(),
        ..SynthesisReport::default()
    };
    let kind = ErrorKind::WrongFinalAnswer;
    let mut out = Vec::new();
    let mut balance = Balance::default();
    for p in problems {
        let Some(wrong) = balance.pick(candidates(&p.answer, &mut rng), &mut rng) else {
            report.fail(kind, SkipReason::NoNumberInAnswer);
            report.skip(SkipReason::NoNumberInAnswer);
            continue;
        };
        let (open, close) = *STATEMENTS.choose(&mut rng).unwrap_or(&STATEMENTS[0]);
        let good = format!("{open}{}{close}", p.answer);
        let bad = format!("{open}{wrong}{close}");
        let id = format!("{}:{}", p.id, kind.name());
        let reference = Some(p.answer.clone());
        out.push(random_order_pair(
            &mut rng, id, &p.problem, good, bad, "math500", kind, reference,
        ));
        report.pair(kind);
    }
    (out, report)
}

/// A plausible wrong version of a LaTeX answer: one of its numbers moved to a nearby value
/// of the same width where possible. `None` when the answer has no number.
///
/// ```
/// use rand::SeedableRng;
/// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
/// let wrong = thinkjudge_data::synth::math::wrong_answer("\\frac{14}{3}", &mut rng).unwrap();
/// assert_ne!(wrong, "\\frac{14}{3}");
/// assert!(wrong.starts_with("\\frac{"));
/// assert_eq!(thinkjudge_data::synth::math::wrong_answer("p - q", &mut rng), None);
/// ```
pub fn wrong_answer(answer: &str, rng: &mut impl Rng) -> Option<String> {
    let mut all = candidates(answer, rng);
    (!all.is_empty()).then(|| all.swap_remove(rng.random_range(0..all.len())).value)
}

/// Wrong answers for each number of `answer` (a few nearby values each), with the direction
/// of the change as `larger`.
fn candidates(answer: &str, rng: &mut impl Rng) -> Vec<Candidate<String>> {
    let mut out = Vec::new();
    for m in NUMBER.find_iter(answer) {
        let Some(value) = Ratio::parse_decimal(m.as_str()) else {
            continue;
        };
        let decimals = m
            .as_str()
            .split_once('.')
            .map_or(0, |(_, f)| f.len() as u32);
        // A zero would often be degenerate (a zero denominator, "0 divisors").
        let nearby = nearby_values(value, rng)
            .into_iter()
            .filter(|w| *w != Ratio::int(0));
        for w in nearby.take(4) {
            let Some(text) = w.decimals(2).and_then(|d| w.format(decimals.max(d), false)) else {
                continue;
            };
            out.push(Candidate {
                value: format!("{}{text}{}", &answer[..m.start()], &answer[m.end()..]),
                longer: (text.len() as i64 - m.as_str().len() as i64).signum(),
                larger: w.cmp(&value) as i64,
            });
        }
    }
    out
}
