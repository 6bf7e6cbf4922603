//! The judgment parsers: random judge completions (every rule of `parse`'s module docs),
//! rendered completions parsed back, and multi-MiB adversarial inputs.

use crate::fuzz_support::{self, guarded, run, show, Rng};
use crate::{KINDS, OPTS};
use thinkjudge_data::*;

/// Tags, near-miss tags, verdicts and numbers the parsers look for, and their lookalikes.
const PIECES: &[&str] = &[
    // the real tags
    "<think>",
    "</think>",
    "<answer>",
    "</answer>",
    "<score>",
    "</score>",
    "<score_A>",
    "</score_A>",
    "<score_B>",
    "</score_B>",
    // near misses
    "<answer >",
    "< answer>",
    "</ answer>",
    "<answer",
    "answer>",
    "<<answer>>",
    "</answer",
    "<think/>",
    "<thinking>",
    "</thinking>",
    "<score_a >",
    "<score-A>",
    "<scoreA>",
    "<score_C>",
    "<\u{17f}core>",
    "</thin\u{212a}>",
    "<ANSWER\u{0}>",
    "\u{ff1c}answer\u{ff1e}",
    "<answer><answer>",
    "</answer></answer>",
    "<",
    ">",
    "/",
    // verdicts
    "[[A]]",
    "[[B]]",
    "[[ a ]]",
    "[[\nb\n]]",
    "[[A]",
    "[A]]",
    "[[AB]]",
    "[[C]]",
    "[[\u{ff21}]]",
    "[[A]] or [[B]]",
    "[[[A]]]",
    "[[\u{a0}A\u{3000}]]",
    "[[",
    "]]",
    // numbers
    "7",
    "7.5",
    "10",
    "0",
    "10.0",
    "10.5",
    "-1",
    "-0",
    "7.25",
    "07",
    "007.5",
    ".5",
    "5.",
    "1e1",
    "NaN",
    "inf",
    "8/10",
    "8 / 10",
    "8/100",
    "8/10/10",
    "\u{667}",
    "\u{ff17}",
    "9.9",
    "0.0",
    "99",
    "100",
    "4294967296",
    "18446744073709551616",
    // whitespace
    " ",
    "\n",
    "\t",
    "\r\n",
    "\u{a0}",
    "\u{2028}",
    "\u{3000}",
    "\u{85}",
    "\u{feff}",
];

fn flip_case(rng: &mut Rng, s: &str) -> String {
    s.chars()
        .map(|c| {
            if rng.one_in(3) {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

/// A judge completion assembled from [`PIECES`], random text and long repeats (up to a few
/// hundred KiB, for super-linear matching).
fn judge_text(rng: &mut Rng) -> String {
    let mut out = String::new();
    for _ in 0..rng.len(40) {
        let piece = match rng.below(10) {
            0..=5 => rng.pick(PIECES).to_string(),
            6 => {
                let p = *rng.pick(PIECES);
                flip_case(rng, p)
            }
            7 => {
                let n = rng.len(30);
                rng.text(n)
            }
            8 => "9".repeat(rng.len(2000)),
            _ => {
                let p = rng.pick(PIECES).to_string();
                let max = if rng.one_in(20) { 20_000 } else { 50 };
                p.repeat(rng.len(max))
            }
        };
        out.push_str(&piece);
    }
    out
}

fn within(outer: &str, inner: &str) -> bool {
    let (o, i) = (outer.as_ptr() as usize, inner.as_ptr() as usize);
    i >= o && i + inner.len() <= o + outer.len() && outer.is_char_boundary(i - o)
}

fn on_grid(x: f64) -> bool {
    x.is_finite()
        && (SCORE_MIN..=SCORE_MAX).contains(&x)
        && ((x * 10.0).round() - x * 10.0).abs() < 1e-9
}

/// Every property of one text under one set of options.
fn check_text(text: &str, opts: ParseOptions) -> Result<(), String> {
    let region = answer_region(text, opts);
    if let Some(r) = region {
        if !within(text, r) {
            return Err("the answer region is not a slice of the text".into());
        }
        let lower = r.to_ascii_lowercase();
        if lower.contains("<think>") || lower.contains("</think>") {
            return Err(format!("the answer region {r:?} holds a think tag"));
        }
    }
    let upper = text.to_ascii_uppercase();
    let lower = text.to_ascii_lowercase();
    for kind in KINDS {
        let j = parse_judgment(text, kind, opts);
        if parse_completion(text, kind, opts).judgment != j {
            return Err(format!(
                "{kind:?}: parse_completion disagrees with parse_judgment"
            ));
        }
        // The single-purpose parsers agree with parse_judgment.
        let single = match kind {
            TemplateKind::PairwiseVerdict => parse_verdict(text, opts).map(Judgment::Verdict),
            TemplateKind::PairwiseScores => {
                parse_scores(text, opts).map(|(a, b)| Judgment::Scores { a, b })
            }
            TemplateKind::PairwiseVerdictScores => parse_scores(text, opts).and_then(|(a, b)| {
                let verdict = parse_verdict(text, opts)?;
                Some(Judgment::VerdictWithScores { verdict, a, b })
            }),
            TemplateKind::PointwiseScore => parse_score(text, opts).map(Judgment::Score),
        };
        if single != j {
            return Err(format!(
                "{kind:?}: {j:?} but the single parsers say {single:?}"
            ));
        }
        // Scores are in range, on the one-decimal grid.
        let scores_ok = match j {
            Some(Judgment::Score(x)) => on_grid(x),
            Some(Judgment::Scores { a, b } | Judgment::VerdictWithScores { a, b, .. }) => {
                on_grid(a) && on_grid(b)
            }
            _ => true,
        };
        if !scores_ok {
            return Err(format!(
                "{kind:?}: score out of range or off the grid: {j:?}"
            ));
        }
        // Rule 1: only the answer region matters.
        match region {
            None if j.is_some() => return Err(format!("{kind:?}: {j:?} without an answer region")),
            Some(r) => {
                let alone = parse_judgment(&format!("</think>{r}"), kind, opts);
                if alone != j {
                    return Err(format!(
                        "{kind:?}: {j:?}, but the answer region alone gives {alone:?}"
                    ));
                }
            }
            None => {}
        }
        // Rule 4: ASCII case never matters (tags, verdict letters; numbers have no case).
        for (name, variant) in [("upper", &upper), ("lower", &lower)] {
            let v = parse_judgment(variant, kind, opts);
            if v != j {
                return Err(format!("{kind:?}: {j:?}, but {v:?} in {name} case"));
            }
        }
    }
    // Rule 8: the thought is a slice of the text, closed iff there is a `</think>`.
    if let Some(span) = extract_think(text, opts) {
        if !within(text, span.text) {
            return Err("the thought is not a slice of the text".into());
        }
        if span.closed != lower.contains("</think>") {
            return Err(format!("closed = {} is wrong", span.closed));
        }
    }
    Ok(())
}

/// Random judge completions: no panic or hang, and the rules of `parse`'s module docs hold.
#[test]
fn fuzz_judgment_parsers() {
    run("judgment_parsers", 3_000, |rng| {
        let text = judge_text(rng);
        show("text", &text);
        for opts in OPTS {
            check_text(&text, opts).map_err(|e| format!("{e}\n  text: {:?}", preview(&text)))?;
        }
        Ok(())
    });
}

fn preview(s: &str) -> String {
    fuzz_support::preview(s.as_bytes())
}

fn judgment(rng: &mut Rng) -> Judgment {
    let side = if rng.one_in(2) { Side::A } else { Side::B };
    let which = rng.below(4);
    let mut score = || rng.range(0, 100) as f64 / 10.0;
    match which {
        0 => Judgment::Verdict(side),
        1 => Judgment::Scores {
            a: score(),
            b: score(),
        },
        2 => Judgment::VerdictWithScores {
            verdict: side,
            a: score(),
            b: score(),
        },
        _ => Judgment::Score(score()),
    }
}

/// Rendered completions parse back whatever the thought holds (verdicts, scores, tags, odd
/// Unicode), as long as it does not open or close a thought itself.
#[test]
fn fuzz_rendered_completions_round_trip() {
    run("rendered_completions", 3_000, |rng| {
        let thought = judge_text(rng);
        let lower = thought.to_ascii_lowercase();
        if lower.contains("<think>") || lower.contains("</think>") {
            return Ok(());
        }
        let j = judgment(rng);
        let prefilled = rng.one_in(2);
        let text = render_completion(&thought, &j, prefilled);
        show("text", &text);
        let opts = ParseOptions {
            think_prefilled: prefilled,
        };
        let parsed = parse_completion(&text, j.kind(), opts);
        if parsed.judgment != Some(j) {
            return Err(format!(
                "{j:?} rendered, {:?} parsed back from {}",
                parsed.judgment,
                preview(&text)
            ));
        }
        let span = parsed.think.map(|t| (t.text.trim(), t.closed));
        if span != Some((thought.trim(), true)) {
            return Err(format!(
                "thought {span:?} parsed back from {}",
                preview(&text)
            ));
        }
        Ok(())
    });
}

/// Multi-MiB adversarial completions (every parser, both options) finish: the regexes are
/// linear-time, and match iteration must not turn quadratic. The hang guard fails the test
/// if one does not finish; nothing is timed.
#[test]
fn parsers_finish_on_huge_adversarial_inputs() {
    let n = 100_000;
    let inputs: Vec<(&str, String)> = vec![
        ("open answers", "<answer>".repeat(n)),
        ("open answers with verdicts", "<answer>[[A]]".repeat(n)),
        ("close answers", "</answer>".repeat(n)),
        ("open thoughts", "<think>".repeat(n)),
        ("close thoughts", "</think>".repeat(n)),
        ("thought pairs", "<think></think>".repeat(n)),
        (
            "unclosed score_A",
            format!("{}</score_A>", "<score_A>".repeat(n)),
        ),
        ("brackets", format!("<answer>{}</answer>", "[[".repeat(n))),
        (
            "whitespace verdict",
            format!(
                "<answer>[[{}A{}]]</answer>",
                " ".repeat(4 * n),
                "\u{a0}".repeat(n)
            ),
        ),
        ("digits", format!("<score>{}</score>", "1".repeat(4 * n))),
        (
            "spaced fraction",
            format!(
                "<score>9{}/{}10</score>",
                " ".repeat(2 * n),
                " ".repeat(2 * n)
            ),
        ),
        ("tag prefixes", "<answe<score_<thin".repeat(n / 2)),
        (
            "every tag",
            "<think></think><answer>[[A]]</answer><score>1</score>".repeat(n / 8),
        ),
    ];
    for (what, text) in inputs {
        let t = std::time::Instant::now();
        guarded("huge parser input", move || {
            for opts in OPTS {
                for kind in KINDS {
                    let _ = parse_completion(&text, kind, opts);
                }
            }
        });
        eprintln!("{what}: {:.2?}", t.elapsed());
    }
}
