//! Judge output → [`Judgment`], and the thought span for length statistics.
//!
//! Follows the J1 extractor conventions (recipe.md §3, "Output parsing").
//!
//! # Behaviour
//! 1. **The answer follows the thought.** The judgment is read from the *answer region*: the
//!    text after the last `</think>`, cut at a `<think>` re-opened after it. Without any think
//!    tags the whole text is the answer region, unless the prompt prefilled `<think>`
//!    ([`ParseOptions::think_prefilled`]): then a completion without `</think>` never left its
//!    thought and has no answer region. A verdict inside the thought never counts.
//! 2. **Tags are required.** A verdict counts only as `<answer>[[A]]</answer>` or
//!    `<answer>[[B]]</answer>`; a bare `[[A]]` does not (the prompt asks for the tags, and
//!    bare brackets would reward hedges such as `[[A]] or [[B]]`).
//! 3. **The last tag wins.** Of several `<answer>` (or `<score…>`) tags, the last complete one
//!    is the judge's final word. If its content is malformed the output is unparseable:
//!    earlier tags are not consulted.
//! 4. **Case and whitespace are tolerated.** Tag names and the verdict letter are
//!    ASCII case-insensitive; whitespace and newlines may surround the content and sit inside
//!    `[[ A ]]`. Tags themselves must be spelled without inner spaces.
//! 5. **Scores are numbers in range.** A score is an integer or a number with one decimal
//!    (`7`, `7.5`), optionally followed by `/10`, within [`SCORE_MIN`]–[`SCORE_MAX`]; anything
//!    else (`11`, `-1`, `7.25`, `seven`) is unparseable, not clipped.
//! 6. **Pairwise scores need both tags**, `<score_A>` and `<score_B>`; PaVS needs both scores
//!    and a verdict, and keeps the verdict even when the scores disagree with it.
//! 7. **`None` means unparseable**; rewards treat it as wrong.
//! 8. **The thought span** runs from the first `<think>` (or the start of the text when the
//!    prompt prefilled it, or when a `</think>` has no opening tag) to the last `</think>`,
//!    or to the end of the text when it is never closed (`closed: false`).
//!
//! [`render_completion`] writes completions these rules parse back to the same judgment.

use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::judgment::{Judgment, Side};
use crate::templates::{TemplateKind, SCORE_MAX, SCORE_MIN};

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("literal regex")
}

static OPEN: LazyLock<Regex> = LazyLock::new(|| re(r"(?i-u:<think>)"));
static CLOSE: LazyLock<Regex> = LazyLock::new(|| re(r"(?i-u:</think>)"));
static ANSWER: LazyLock<Regex> = LazyLock::new(|| re(r"(?i-u:<answer>)([^<]*)(?i-u:</answer>)"));
static VERDICT: LazyLock<Regex> = LazyLock::new(|| re(r"^\s*\[\[\s*((?i-u:[AB]))\s*\]\]\s*$"));
static SCORE_A: LazyLock<Regex> = LazyLock::new(|| re(r"(?i-u:<score_A>)([^<]*)(?i-u:</score_A>)"));
static SCORE_B: LazyLock<Regex> = LazyLock::new(|| re(r"(?i-u:<score_B>)([^<]*)(?i-u:</score_B>)"));
static SCORE: LazyLock<Regex> = LazyLock::new(|| re(r"(?i-u:<score>)([^<]*)(?i-u:</score>)"));
static NUMBER: LazyLock<Regex> =
    LazyLock::new(|| re(r"^\s*([0-9]{1,2}(?:\.[0-9])?)\s*(?:/\s*10\s*)?$"));

/// How the prompt that produced a completion ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ParseOptions {
    /// The prompt ended with an opened `<think>`, so the completion starts inside the thought.
    /// Default false.
    pub think_prefilled: bool,
}

/// The judge's thought within a completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThinkSpan<'a> {
    /// The thought's text, without the tags.
    pub text: &'a str,
    /// Whether a `</think>` ended it.
    pub closed: bool,
}

/// A parsed completion: the judgment (`None` = unparseable) and the thought.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParsedCompletion<'a> {
    /// What the judge decided.
    pub judgment: Option<Judgment>,
    /// Its thought, if it had one.
    pub think: Option<ThinkSpan<'a>>,
}

/// The thought span (rule 8), or `None` when the text has no thought.
pub fn extract_think(text: &str, opts: ParseOptions) -> Option<ThinkSpan<'_>> {
    let close = CLOSE.find_iter(text).last();
    let start = match OPEN.find(text) {
        Some(open) if close.is_none_or(|c| open.start() < c.start()) => open.end(),
        _ if opts.think_prefilled || close.is_some() => 0,
        _ => return None,
    };
    Some(match close {
        Some(c) => ThinkSpan {
            text: &text[start..c.start()],
            closed: true,
        },
        None => ThinkSpan {
            text: &text[start..],
            closed: false,
        },
    })
}

/// The text a judgment is read from (rule 1); `None` when the completion never left its thought.
pub fn answer_region(text: &str, opts: ParseOptions) -> Option<&str> {
    let region = match CLOSE.find_iter(text).last() {
        Some(c) => &text[c.end()..],
        None if opts.think_prefilled || OPEN.is_match(text) => return None,
        None => text,
    };
    Some(match OPEN.find(region) {
        Some(reopened) => &region[..reopened.start()],
        None => region,
    })
}

fn last_content<'a>(tag: &Regex, region: &'a str) -> Option<&'a str> {
    tag.captures_iter(region)
        .last()
        .and_then(|c| c.get(1))
        .map(|m| m.as_str())
}

fn verdict_in(region: &str) -> Option<Side> {
    let content = last_content(&ANSWER, region)?;
    let letter = VERDICT.captures(content)?.get(1)?.as_str();
    Some(if letter.eq_ignore_ascii_case("a") {
        Side::A
    } else {
        Side::B
    })
}

fn score_in(tag: &Regex, region: &str) -> Option<f64> {
    let content = last_content(tag, region)?;
    let x: f64 = NUMBER.captures(content)?.get(1)?.as_str().parse().ok()?;
    (SCORE_MIN..=SCORE_MAX).contains(&x).then_some(x)
}

/// The verdict of a PaV completion.
///
/// ```
/// use thinkjudge_data::{parse_verdict, ParseOptions, Side};
/// let out = "<think>A adds wrong.</think> <answer>[[B]]</answer>";
/// assert_eq!(parse_verdict(out, ParseOptions::default()), Some(Side::B));
/// assert_eq!(parse_verdict("[[B]]", ParseOptions::default()), None);
/// ```
pub fn parse_verdict(text: &str, opts: ParseOptions) -> Option<Side> {
    verdict_in(answer_region(text, opts)?)
}

/// The `(A, B)` scores of a PaS completion.
pub fn parse_scores(text: &str, opts: ParseOptions) -> Option<(f64, f64)> {
    let region = answer_region(text, opts)?;
    Some((score_in(&SCORE_A, region)?, score_in(&SCORE_B, region)?))
}

/// The score of a PoS completion.
pub fn parse_score(text: &str, opts: ParseOptions) -> Option<f64> {
    score_in(&SCORE, answer_region(text, opts)?)
}

/// The judgment a completion of a `kind` prompt gives, or `None` when unparseable.
pub fn parse_judgment(text: &str, kind: TemplateKind, opts: ParseOptions) -> Option<Judgment> {
    let region = answer_region(text, opts)?;
    let scores = || Some((score_in(&SCORE_A, region)?, score_in(&SCORE_B, region)?));
    match kind {
        TemplateKind::PairwiseVerdict => verdict_in(region).map(Judgment::Verdict),
        TemplateKind::PairwiseScores => scores().map(|(a, b)| Judgment::Scores { a, b }),
        TemplateKind::PairwiseVerdictScores => {
            let (a, b) = scores()?;
            Some(Judgment::VerdictWithScores {
                verdict: verdict_in(region)?,
                a,
                b,
            })
        }
        TemplateKind::PointwiseScore => score_in(&SCORE, region).map(Judgment::Score),
    }
}

/// [`parse_judgment`] plus the thought span.
pub fn parse_completion(
    text: &str,
    kind: TemplateKind,
    opts: ParseOptions,
) -> ParsedCompletion<'_> {
    ParsedCompletion {
        judgment: parse_judgment(text, kind, opts),
        think: extract_think(text, opts),
    }
}

/// Formats a score as the templates ask: a whole number, or one decimal.
pub fn format_score(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

/// Writes a completion with `thought` and `judgment` in the output format of its kind (for
/// supervised targets and tests). With `think_prefilled` the opening `<think>` is left out,
/// as the prompt already holds it.
///
/// ```
/// use thinkjudge_data::{parse_judgment, render_completion, Judgment, ParseOptions, Side};
/// use thinkjudge_data::TemplateKind;
/// let j = Judgment::VerdictWithScores { verdict: Side::A, a: 8.5, b: 3.0 };
/// let text = render_completion("A is right.", &j, false);
/// assert_eq!(text, "<think>\nA is right.\n</think>\n<score_A>8.5</score_A><score_B>3</score_B>\n<answer>[[A]]</answer>");
/// let kind = TemplateKind::PairwiseVerdictScores;
/// assert_eq!(parse_judgment(&text, kind, ParseOptions::default()), Some(j));
/// ```
pub fn render_completion(thought: &str, judgment: &Judgment, think_prefilled: bool) -> String {
    let open = if think_prefilled { "" } else { "<think>\n" };
    let verdict = |s: Side| format!("<answer>[[{}]]</answer>", s.letter());
    let scores = |a: f64, b: f64| {
        format!(
            "<score_A>{}</score_A><score_B>{}</score_B>",
            format_score(a),
            format_score(b)
        )
    };
    let tail = match *judgment {
        Judgment::Verdict(s) => verdict(s),
        Judgment::Scores { a, b } => scores(a, b),
        Judgment::VerdictWithScores { verdict: s, a, b } => {
            format!("{}\n{}", scores(a, b), verdict(s))
        }
        Judgment::Score(x) => format!("<score>{}</score>", format_score(x)),
    };
    format!("{open}{thought}\n</think>\n{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO: ParseOptions = ParseOptions {
        think_prefilled: false,
    };
    const PRE: ParseOptions = ParseOptions {
        think_prefilled: true,
    };
    use TemplateKind::*;

    // Rule 1.
    #[test]
    fn verdict_inside_the_thought_does_not_count() {
        let t = "<think>maybe <answer>[[A]]</answer></think> so <answer>[[B]]</answer>";
        assert_eq!(parse_verdict(t, NO), Some(Side::B));
        assert_eq!(
            parse_verdict("<think>x <answer>[[A]]</answer></think>", NO),
            None
        );
        assert_eq!(
            parse_verdict("<think>unclosed <answer>[[A]]</answer>", NO),
            None
        );
    }

    #[test]
    fn no_think_tags_reads_the_whole_text_unless_prefilled() {
        assert_eq!(parse_verdict("<answer>[[A]]</answer>", NO), Some(Side::A));
        assert_eq!(parse_verdict("<answer>[[A]]</answer>", PRE), None);
        assert_eq!(
            parse_verdict("thought</think><answer>[[A]]</answer>", PRE),
            Some(Side::A)
        );
    }

    #[test]
    fn a_reopened_thought_is_not_an_answer() {
        let t = "<think>a</think><think>b <answer>[[A]]</answer>";
        assert_eq!(parse_verdict(t, NO), None);
        let t = "<think>a</think><answer>[[B]]</answer><think>more";
        assert_eq!(parse_verdict(t, NO), Some(Side::B));
    }

    // Rule 2.
    #[test]
    fn bare_brackets_do_not_count() {
        assert_eq!(parse_verdict("<think>t</think> [[A]]", NO), None);
        assert_eq!(
            parse_verdict("<think>t</think> <answer>A</answer>", NO),
            None
        );
    }

    // Rule 3.
    #[test]
    fn last_tag_wins_even_when_malformed() {
        let t = "<think>t</think><answer>[[A]]</answer> no wait <answer>[[B]]</answer>";
        assert_eq!(parse_verdict(t, NO), Some(Side::B));
        let t = "<think>t</think><answer>[[A]]</answer> <answer>[[A]] or [[B]]</answer>";
        assert_eq!(parse_verdict(t, NO), None);
        assert_eq!(parse_score("<score>3</score><score>12</score>", NO), None);
        assert_eq!(
            parse_verdict("<answer> <answer>[[B]]</answer>", NO),
            Some(Side::B)
        );
    }

    // Rule 4.
    #[test]
    fn case_and_whitespace_are_tolerated() {
        let t = "<THINK>t</Think>\n<Answer>\n [[ b ]] \n</ANSWER>";
        assert_eq!(parse_verdict(t, NO), Some(Side::B));
        assert_eq!(parse_score("<SCORE> 7 </score>", NO), Some(7.0));
        assert_eq!(parse_verdict("<answer>[[A]]</ answer>", NO), None);
        // Only ASCII case folding: the Kelvin sign is not a `k`, Arabic-Indic digits are not
        // digits.
        assert_eq!(extract_think("a</thin\u{212A}>", NO), None);
        assert_eq!(parse_score("<score>\u{667}</score>", NO), None);
    }

    // Rule 5.
    #[test]
    fn scores_are_numbers_in_range() {
        let s = |t: &str| parse_score(&format!("<score>{t}</score>"), NO);
        assert_eq!(s("7"), Some(7.0));
        assert_eq!(s("7.5"), Some(7.5));
        assert_eq!(s("8/10"), Some(8.0));
        assert_eq!(s("8.5 / 10"), Some(8.5));
        assert_eq!(s("10"), Some(10.0));
        assert_eq!(s("0"), Some(0.0));
        for bad in ["11", "10.5", "-1", "7.25", "seven", "", "7/5", "1e1"] {
            assert_eq!(s(bad), None, "{bad}");
        }
    }

    // Rule 6.
    #[test]
    fn pairwise_scores_need_both_tags() {
        let both = "<think>t</think><score_A>8</score_A><score_B>6.5</score_B>";
        let j = parse_judgment(both, PairwiseScores, NO);
        assert_eq!(j, Some(Judgment::Scores { a: 8.0, b: 6.5 }));
        assert_eq!(parse_scores("<score_A>8</score_A>", NO), None);
        assert_eq!(parse_judgment(both, PairwiseVerdictScores, NO), None);
        let disagree = format!("{both}<answer>[[B]]</answer>");
        let j = parse_judgment(&disagree, PairwiseVerdictScores, NO);
        let want = Judgment::VerdictWithScores {
            verdict: Side::B,
            a: 8.0,
            b: 6.5,
        };
        assert_eq!(j, Some(want));
    }

    // Rule 7.
    #[test]
    fn unparseable_text_is_none() {
        for kind in [
            PairwiseVerdict,
            PairwiseScores,
            PairwiseVerdictScores,
            PointwiseScore,
        ] {
            assert_eq!(parse_judgment("I think A is better.", kind, NO), None);
            assert_eq!(parse_judgment("", kind, NO), None);
        }
    }

    // Rule 8.
    #[test]
    fn think_span_rules() {
        let t = "<think> a </think><answer>[[A]]</answer>";
        assert_eq!(
            extract_think(t, NO),
            Some(ThinkSpan {
                text: " a ",
                closed: true
            })
        );
        let t = "abc</think>x";
        assert_eq!(
            extract_think(t, NO),
            Some(ThinkSpan {
                text: "abc",
                closed: true
            })
        );
        assert_eq!(
            extract_think("abc", PRE),
            Some(ThinkSpan {
                text: "abc",
                closed: false
            })
        );
        assert_eq!(extract_think("abc", NO), None);
        let t = "<think>a</think>b<think>c</think>d";
        assert_eq!(
            extract_think(t, NO).map(|s| s.text),
            Some("a</think>b<think>c")
        );
        let p = parse_completion("<think>x", PairwiseVerdict, NO);
        assert_eq!(p.judgment, None);
        assert_eq!(
            p.think,
            Some(ThinkSpan {
                text: "x",
                closed: false
            })
        );
    }

    #[test]
    fn prefilled_rendering_parses_back() {
        let j = Judgment::Score(6.5);
        let text = render_completion("ok", &j, true);
        assert!(!text.contains("<think>"));
        assert_eq!(parse_judgment(&text, PointwiseScore, PRE), Some(j));
        assert_eq!(format_score(10.0), "10");
        assert_eq!(format_score(0.5), "0.5");
    }
}
