//! Pair synthesis: GSM8K corruption on fixtures and the real files, MATH-500 answer pairs,
//! and statistical checks that the procedural generator leaks no label through form.

mod common;

use std::collections::BTreeMap;
use std::sync::LazyLock;

use common::{fixture, shared_data};
use regex::Regex;
use thinkjudge_data::synth::{gsm8k, math};
use thinkjudge_data::*;

type R = std::result::Result<(), Box<dyn std::error::Error>>;

/// (correct, corrupted) responses of a synthesized pair.
fn good_bad(p: &PairwiseItem) -> (&str, &str) {
    match p.preference {
        Preference::First => (&p.responses[0], &p.responses[1]),
        _ => (&p.responses[1], &p.responses[0]),
    }
}

static CALC: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(\d[\d.]*(?:\s*[-+*/x×÷−]\s*\d[\d.]*)+)\s*=\s*\$?([\d.,]+)").expect("regex")
});

/// Evaluates `a op b op c …` with the usual precedence, in f64 (test oracle, independent of
/// the crate's exact arithmetic).
fn eval(expr: &str) -> f64 {
    let norm = expr
        .replace(['x', '×'], "*")
        .replace('÷', "/")
        .replace('−', "-");
    let terms: Vec<(char, f64)> = {
        let mut out = Vec::new();
        let mut op = '+';
        for tok in norm.split_whitespace().flat_map(split_ops) {
            match tok.parse::<f64>() {
                Ok(v) => out.push((op, v)),
                Err(_) => op = tok.chars().next().unwrap_or('+'),
            }
        }
        out
    };
    let mut sum = 0.0;
    let mut product: Option<(char, f64)> = None;
    for (op, v) in terms {
        match op {
            '*' | '/' => {
                let (sign, p) = product.unwrap_or(('+', 1.0));
                product = Some((sign, if op == '*' { p * v } else { p / v }));
            }
            _ => {
                if let Some((sign, p)) = product.take() {
                    sum += if sign == '-' { -p } else { p };
                }
                product = Some((op, v));
            }
        }
    }
    if let Some((sign, p)) = product {
        sum += if sign == '-' { -p } else { p };
    }
    sum
}

fn split_ops(t: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in t.chars() {
        if "+-*/".contains(c) {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            out.push(c.to_string());
        } else {
            cur.push(c);
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Per written calculation `expr = result`: whether the result is right.
fn checks(solution: &str) -> Vec<bool> {
    CALC.captures_iter(solution)
        .map(|c| {
            let shown: f64 = c[2]
                .replace(',', "")
                .trim_end_matches('.')
                .parse()
                .unwrap_or(f64::NAN);
            (eval(&c[1]) - shown).abs() < 1e-6
        })
        .collect()
}

fn final_number(solution: &str) -> String {
    let last = solution.lines().last().unwrap_or_default();
    last.chars()
        .filter(|c| c.is_ascii_digit() || *c == '.')
        .collect::<String>()
        .trim_end_matches('.')
        .to_string()
}

#[test]
fn gsm8k_errors_are_carried_to_the_final_answer() -> R {
    let problems = gsm8k::read_problems(&fixture("gsm8k.jsonl"))?;
    let mut seen = BTreeMap::new();
    for seed in 0..40 {
        let cfg = Gsm8kConfig {
            per_item: PairsPerItem::EachKind,
            seed,
            ..Gsm8kConfig::default()
        };
        let (pairs, report) = gsm8k::synthesize(&problems[..2], &cfg)?;
        assert_eq!(report.total_skipped(), 0);
        for p in &pairs {
            let (good, bad) = good_bad(p);
            let kind = p.subset.clone().unwrap_or_default();
            assert!(
                checks(good).iter().all(|ok| *ok),
                "gold solution miscomputed: {good}"
            );
            assert!(
                !bad.contains("<<") && !good.contains("<<"),
                "annotations are stripped"
            );
            assert_ne!(
                final_number(good),
                final_number(bad),
                "{kind}: final answer unchanged\n{bad}"
            );
            assert_eq!(good.lines().count(), bad.lines().count());
            let wrong_lines = checks(bad).iter().filter(|ok| !**ok).count();
            let expected = if kind == "slip" { 1 } else { 0 };
            assert_eq!(wrong_lines, expected, "{kind}: miscomputed lines in\n{bad}");
            if kind != "swapped_answer" {
                // The last written result is the final answer: the error reached it.
                let last = CALC
                    .captures_iter(bad)
                    .last()
                    .map(|c| c[2].replace(',', ""));
                assert_eq!(
                    last.as_deref().map(|s| s.trim_end_matches('.')),
                    Some(final_number(bad).as_str()),
                    "{bad}"
                );
            }
            *seen.entry(kind).or_insert(0) += 1;
        }
    }
    let kinds: Vec<&str> = seen.keys().map(String::as_str).collect();
    assert_eq!(
        kinds,
        ["slip", "swapped_answer", "wrong_operand", "wrong_operation"],
        "{seen:?}"
    );
    Ok(())
}

#[test]
fn gsm8k_unusable_solutions_are_counted() -> R {
    let problems = gsm8k::read_problems(&fixture("gsm8k.jsonl"))?;
    let (pairs, report) = gsm8k::synthesize(&problems, &Gsm8kConfig::default())?;
    assert_eq!((report.items_read, pairs.len()), (5, 2));
    let skipped: Vec<(SkipReason, usize)> = report.items_skipped.into_iter().collect();
    assert_eq!(
        skipped,
        [
            (SkipReason::NoFinalAnswer, 1),
            (SkipReason::NoAnnotations, 1),
            (SkipReason::BadAnnotation, 1)
        ]
    );
    let display = gsm8k::display_solution(&problems[0].solution);
    assert_eq!(display.lines().last(), Some("Answer: 18"));
    assert!(!display.contains("<<"));
    Ok(())
}

#[test]
fn gsm8k_is_deterministic_by_seed() -> R {
    let problems = gsm8k::read_problems(&fixture("gsm8k.jsonl"))?;
    let cfg = Gsm8kConfig::default();
    assert_eq!(
        gsm8k::synthesize(&problems, &cfg)?,
        gsm8k::synthesize(&problems, &cfg)?
    );
    let bad = Gsm8kConfig {
        kinds: vec![ErrorKind::WrongFinalAnswer],
        ..cfg
    };
    assert!(bad.validate().is_err());
    Ok(())
}

#[test]
fn real_gsm8k_train_pairs() -> R {
    let path = shared_data("gsm8k/train.jsonl");
    let (pairs, report) = gsm8k::synthesize_file(&path, &Gsm8kConfig::default())?;
    println!(
        "gsm8k train, one pair per problem:\n{report}\n{:?}",
        report.kind_failures
    );
    assert_eq!(report.items_read, 7473);
    assert_eq!(report.total_pairs() + report.total_skipped(), 7473);
    assert_eq!(pairs.len(), report.total_pairs());
    for p in &pairs {
        let (good, bad) = good_bad(p);
        assert_ne!(final_number(good), final_number(bad), "{}", p.id);
        assert!(!bad.contains("<<"), "{}", p.id);
    }
    let (by_length, by_size) = shortcut_accuracies(&pairs)?;
    assert!(
        (by_length - 0.5).abs() < 0.02,
        "shorter-is-correct accuracy {by_length}"
    );
    assert!(
        (by_size - 0.5).abs() < 0.02,
        "smaller-answer-is-correct accuracy {by_size}"
    );
    let counts: Vec<(ErrorKind, usize)> = report.pairs.clone().into_iter().collect();
    // Recorded from this test's first run (seed 0, default kinds); 111 problems skipped: 95
    // without annotations, 13 with an annotation that disagrees with itself or its text, 3
    // where no error could be carried through cleanly.
    let golden = [
        (ErrorKind::Slip, GSM8K_SLIP),
        (ErrorKind::WrongOperation, GSM8K_OPERATION),
        (ErrorKind::WrongOperand, GSM8K_OPERAND),
        (ErrorKind::SwappedAnswer, GSM8K_SWAPPED),
    ];
    assert_eq!(counts, golden);
    Ok(())
}

const GSM8K_SLIP: usize = 1880;
const GSM8K_OPERATION: usize = 1113;
const GSM8K_OPERAND: usize = 1609;
const GSM8K_SWAPPED: usize = 2760;

#[test]
fn real_math500_answer_pairs() -> R {
    let path = shared_data("math500/test.jsonl");
    let problems = math::read_problems(&path)?;
    assert!(problems
        .iter()
        .all(|p| !p.problem.contains("Please reason step by step")));
    let (pairs, report) = math::synthesize(&problems, &MathConfig::default());
    println!("math500: {report}");
    // 500 problems; 11 answers have no number to change (e.g. `\text{Evelyn}`, `p - q`).
    assert_eq!((report.items_read, pairs.len()), (500, 489));
    assert_eq!(
        report.items_skipped.get(&SkipReason::NoNumberInAnswer),
        Some(&11)
    );
    for p in &pairs {
        let (good, bad) = good_bad(p);
        assert_ne!(good, bad);
        let reference = p.reference.as_deref().unwrap_or_default();
        assert!(good.contains(reference), "{good} vs {reference}");
    }
    Ok(())
}

/// Accuracy of two label-blind shortcuts: "the shorter response is correct" (ties count half)
/// and "the response with the smaller final number is correct".
fn shortcut_accuracies(
    pairs: &[PairwiseItem],
) -> std::result::Result<(f64, f64), Box<dyn std::error::Error>> {
    let (mut by_length, mut by_size) = (0.0, 0.0);
    for p in pairs {
        let (good, bad) = good_bad(p);
        let (lg, lb) = (good.chars().count(), bad.chars().count());
        by_length += if lg < lb {
            1.0
        } else if lg == lb {
            0.5
        } else {
            0.0
        };
        let (fg, fb): (f64, f64) = (final_number(good).parse()?, final_number(bad).parse()?);
        by_size += if fg < fb {
            1.0
        } else if fg == fb {
            0.5
        } else {
            0.0
        };
    }
    let n = pairs.len() as f64;
    Ok((by_length / n, by_size / n))
}

/// Pairs from the generator with `cfg`.
fn procedural(
    cfg: ProceduralConfig,
    n: usize,
) -> std::result::Result<Vec<PairwiseItem>, DataError> {
    ProceduralGenerator::new(cfg)?.generate(n)
}

#[test]
fn procedural_solutions_differ_only_in_numbers_and_one_symbol() -> R {
    let digits = Regex::new(r"\d+")?;
    for p in procedural(
        ProceduralConfig {
            max_steps: 6,
            ..ProceduralConfig::default()
        },
        2000,
    )? {
        let (good, bad) = good_bad(&p);
        assert!(
            checks(good).iter().all(|ok| *ok),
            "gold solution miscomputed:\n{good}"
        );
        let shape = |s: &str| {
            digits
                .replace_all(s, "N")
                .replace(['+', '-', '−', '*', '×', 'x', '/', '÷'], "op")
        };
        assert_eq!(shape(good), shape(bad), "form differs:\n{good}\n---\n{bad}");
        let ops = |s: &str| -> Vec<char> {
            CALC.captures_iter(s)
                .flat_map(|c| {
                    c[1].chars()
                        .filter(|ch| !ch.is_ascii_digit() && !ch.is_whitespace() && *ch != '.')
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        let (og, ob) = (ops(good), ops(bad));
        assert_eq!(og.len(), ob.len());
        let flipped = og.iter().zip(&ob).filter(|(a, b)| a != b).count();
        assert!(
            flipped <= 1,
            "{flipped} operators differ:\n{good}\n---\n{bad}"
        );
        assert_ne!(final_number(good), final_number(bad));
    }
    Ok(())
}

#[test]
fn procedural_length_and_answer_size_do_not_predict_the_label() -> R {
    // 4,000 pairs. "Pick the shorter solution" and "pick the smaller final answer" must both
    // score 0.5 ± 0.03 (a fair coin stays inside with probability > 0.999 at n = 4,000).
    let pairs = procedural(ProceduralConfig::default(), 4000)?;
    let n = pairs.len() as f64;
    let (acc_len, acc_size) = shortcut_accuracies(&pairs)?;
    assert!(
        (acc_len - 0.5).abs() < 0.03,
        "shorter-is-correct accuracy {acc_len}"
    );
    assert!(
        (acc_size - 0.5).abs() < 0.03,
        "smaller-answer-is-correct accuracy {acc_size}"
    );
    // Storage order is random too: "response 0 is correct" is a coin.
    let first = pairs
        .iter()
        .filter(|p| p.preference == Preference::First)
        .count() as f64
        / n;
    assert!((first - 0.5).abs() < 0.03, "response 0 correct in {first}");
    Ok(())
}

#[test]
fn procedural_error_position_is_uniform() -> R {
    // Chi-square against uniform over the 5 positions of 5-step problems; 18.47 is the
    // 0.001 critical value for 4 degrees of freedom.
    let cfg = ProceduralConfig {
        min_steps: 5,
        max_steps: 5,
        ..ProceduralConfig::default()
    };
    let pairs = procedural(cfg, 3000)?;
    let mut counts = [0f64; 5];
    for p in &pairs {
        let (good, bad) = good_bad(p);
        assert_eq!(good.lines().count(), 6, "5 steps and an answer line");
        let first_diff = good
            .lines()
            .zip(bad.lines())
            .position(|(a, b)| a != b)
            .ok_or("identical")?;
        counts[first_diff] += 1.0;
    }
    let expected = pairs.len() as f64 / 5.0;
    let chi2: f64 = counts
        .iter()
        .map(|c| (c - expected).powi(2) / expected)
        .sum();
    assert!(chi2 < 18.47, "positions {counts:?}, chi2 {chi2}");
    Ok(())
}

#[test]
fn procedural_texts_stay_short_and_varied() -> R {
    let pairs = procedural(ProceduralConfig::default(), 1000)?;
    let sizes: Vec<usize> = pairs
        .iter()
        .map(|p| p.prompt[0].content.len() + p.responses[0].len() + p.responses[1].len())
        .collect();
    let mean = sizes.iter().sum::<usize>() as f64 / sizes.len() as f64;
    let max = sizes.iter().copied().max().unwrap_or(0);
    // Question + both solutions; about 3.5 characters per SmolLM2 token.
    assert!(mean < 400.0 && max < 700, "mean {mean}, max {max}");
    let families: std::collections::BTreeSet<&str> = pairs
        .iter()
        .filter_map(|p| p.subset.as_deref()?.split('/').next())
        .collect();
    assert_eq!(families.len(), 4, "{families:?}");
    let distinct_questions: std::collections::HashSet<&str> =
        pairs.iter().map(|p| p.prompt[0].content.as_str()).collect();
    assert!(distinct_questions.len() > 990);
    Ok(())
}
