//! The annotated-solution model behind [`super::gsm8k`]: parsing `<<a*b=c>>` steps, planting
//! one error and carrying it through every later step and number.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::LazyLock;

use rand::seq::SliceRandom;
use rand::Rng;
use regex::Regex;

use super::exact::{evaluate, tokenize, Ratio, Tok};
use super::{nearby_values, ErrorKind, SkipReason};

/// Corruptions collected per problem and kind before the balanced pick.
const MAX_CANDIDATES: usize = 16;

static ANNOTATION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"<<([^<>=]*)=([^<>]*)>>").expect("literal regex"));
pub(super) static ANY_ANNOTATION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"<<[^<>]*>>").expect("literal regex"));
static NUMBER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+").expect("literal regex")
});
pub(super) static FINAL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^####\s*(-?[\d,]*\.?\d+)\s*$").expect("literal regex"));

pub(super) fn final_answer(solution: &str) -> Option<Ratio> {
    let line = solution.lines().last()?;
    let text = FINAL
        .captures(line.trim())?
        .get(1)?
        .as_str()
        .replace(',', "");
    match text.strip_prefix('-') {
        Some(abs) => Ratio::int(0).sub(Ratio::parse_decimal(abs)?),
        None => Ratio::parse_decimal(&text),
    }
}

/// One annotated computation.
#[derive(Debug, Clone)]
struct Step {
    line: usize,
    annotation: Range<usize>,
    toks: Vec<Tok>,
    result: Ratio,
    /// The result written right after the annotation.
    result_span: Option<Range<usize>>,
    /// The annotation's literals as written out before it, when they are.
    operand_spans: Option<Vec<Range<usize>>>,
}

impl Step {
    fn literals(&self) -> impl Iterator<Item = Ratio> + '_ {
        self.toks.iter().filter_map(|t| match t {
            Tok::Num(v) => Some(*v),
            _ => None,
        })
    }
}

pub(super) struct Solution<'a> {
    lines: Vec<&'a str>,
    steps: Vec<Step>,
    /// The gold final answer.
    pub answer: Ratio,
}

/// A text replacement in one line.
struct Edit {
    line: usize,
    span: Range<usize>,
    text: String,
}

/// How the first wrong step goes wrong.
#[derive(Clone, Copy)]
enum Change {
    Result(Ratio),
    Operator { tok: usize, visible: usize },
    Operand { literal: usize, value: Ratio },
}

impl<'a> Solution<'a> {
    pub fn parse(text: &'a str) -> std::result::Result<Self, SkipReason> {
        let all: Vec<&str> = text.lines().collect();
        let (last, body) = all.split_last().ok_or(SkipReason::NoFinalAnswer)?;
        let answer = final_answer(last).ok_or(SkipReason::NoFinalAnswer)?;
        if answer.is_negative() {
            return Err(SkipReason::NoValidError);
        }
        let mut steps = Vec::new();
        for (line, s) in body.iter().enumerate() {
            let mut segment_start = 0;
            let matches: Vec<_> = ANNOTATION.captures_iter(s).collect();
            if matches.len() != ANY_ANNOTATION.find_iter(s).count() {
                return Err(SkipReason::BadAnnotation);
            }
            for c in matches {
                let (Some(whole), Some(expr), Some(stated)) = (c.get(0), c.get(1), c.get(2)) else {
                    return Err(SkipReason::BadAnnotation);
                };
                let toks = tokenize(expr.as_str()).ok_or(SkipReason::BadAnnotation)?;
                let result = evaluate(&toks).ok_or(SkipReason::BadAnnotation)?;
                if Ratio::parse_decimal(stated.as_str().trim()) != Some(result) {
                    return Err(SkipReason::BadAnnotation);
                }
                let result_span = number_at(s, whole.end());
                if let Some(span) = &result_span {
                    if Ratio::parse_decimal(&s[span.clone()]) != Some(result) {
                        return Err(SkipReason::BadAnnotation);
                    }
                }
                let mut step = Step {
                    line,
                    annotation: whole.range(),
                    toks,
                    result,
                    result_span: result_span.clone(),
                    operand_spans: None,
                };
                step.operand_spans = align_operands(s, segment_start..whole.start(), &step);
                segment_start = result_span.map_or(whole.end(), |r| r.end);
                steps.push(step);
            }
        }
        if steps.is_empty() {
            return Err(SkipReason::NoAnnotations);
        }
        Ok(Solution {
            lines: body.to_vec(),
            steps,
            answer,
        })
    }

    /// The displayed solution with `edits` applied and `answer` as the final line.
    fn render(&self, edits: &[Edit], answer: Ratio) -> String {
        let mut out: Vec<String> = Vec::with_capacity(self.lines.len() + 1);
        for (i, line) in self.lines.iter().enumerate() {
            let mut mine: Vec<&Edit> = edits.iter().filter(|e| e.line == i).collect();
            mine.sort_by_key(|e| std::cmp::Reverse(e.span.start));
            let mut s = line.to_string();
            for e in mine {
                s.replace_range(e.span.clone(), &e.text);
            }
            out.push(super::gsm8k::strip_annotations(&s));
        }
        out.push(format!("Answer: {answer}"));
        out.join("\n")
    }

    pub fn display(&self, answer: Ratio) -> String {
        self.render(&[], answer)
    }

    /// Valid corruptions of `kind` (at most [`MAX_CANDIDATES`]), with their final answers.
    pub fn corrupt(
        &self,
        kind: ErrorKind,
        question: &str,
        rng: &mut impl Rng,
    ) -> std::result::Result<Vec<(String, Ratio)>, SkipReason> {
        let given: Vec<Ratio> = NUMBER
            .find_iter(question)
            .filter_map(|m| Ratio::parse_decimal(m.as_str()))
            .collect();
        let mut order: Vec<usize> = (0..self.steps.len()).collect();
        order.shuffle(rng);
        let mut last = SkipReason::NotVisible;
        let mut found = Vec::new();
        for k in order {
            for change in self.candidate_changes(kind, k, &given, rng) {
                match self.propagate(k, change, &given) {
                    Ok(c) if found.len() < MAX_CANDIDATES => found.push(c),
                    Ok(_) => return Ok(found),
                    Err(r) => last = r,
                }
            }
        }
        if found.is_empty() {
            Err(last)
        } else {
            Ok(found)
        }
    }

    fn candidate_changes(
        &self,
        kind: ErrorKind,
        k: usize,
        given: &[Ratio],
        rng: &mut impl Rng,
    ) -> Vec<Change> {
        let step = &self.steps[k];
        let line = self.lines[step.line];
        match kind {
            ErrorKind::Slip if step.result_span.is_some() => nearby_values(step.result, rng)
                .into_iter()
                .take(8)
                .map(Change::Result)
                .collect(),
            ErrorKind::WrongOperation => {
                let Some(spans) = &step.operand_spans else {
                    return vec![];
                };
                let mut literal = 0;
                let mut out = Vec::new();
                for (t, tok) in step.toks.iter().enumerate() {
                    match tok {
                        Tok::Num(..) => literal += 1,
                        Tok::Op(..) if literal > 0 && literal < spans.len() => {
                            let between = spans[literal - 1].end..spans[literal].start;
                            let adjacent =
                                matches!(step.toks.get(t.wrapping_sub(1)), Some(Tok::Num(..)))
                                    && matches!(step.toks.get(t + 1), Some(Tok::Num(..)));
                            if let (true, Some(visible)) =
                                (adjacent, visible_operator(line, between))
                            {
                                out.push(Change::Operator { tok: t, visible });
                            }
                        }
                        _ => {}
                    }
                }
                out.shuffle(rng);
                out
            }
            ErrorKind::WrongOperand if step.operand_spans.is_some() => {
                let mut out: Vec<Change> = step
                    .literals()
                    .enumerate()
                    .filter(|(_, v)| given.contains(v))
                    .flat_map(|(literal, v)| {
                        nearby_values(v, rng)
                            .into_iter()
                            .take(4)
                            .map(move |value| Change::Operand { literal, value })
                            .collect::<Vec<_>>()
                    })
                    .collect();
                out.shuffle(rng);
                out
            }
            _ => vec![],
        }
    }

    /// Plants `change` at step `k`, carries it through, and renders the corrupted solution.
    fn propagate(
        &self,
        k: usize,
        change: Change,
        given: &[Ratio],
    ) -> std::result::Result<(String, Ratio), SkipReason> {
        let step = &self.steps[k];
        let line = self.lines[step.line];
        let mut edits = Vec::new();
        let new_result = match change {
            Change::Result(w) => w,
            Change::Operator { tok, visible } => {
                let mut toks = step.toks.clone();
                let Tok::Op(op) = toks[tok] else {
                    return Err(SkipReason::BadAnnotation);
                };
                toks[tok] = Tok::Op(swap_op(op));
                let shown = line[visible..]
                    .chars()
                    .next()
                    .ok_or(SkipReason::BadAnnotation)?;
                edits.push(Edit {
                    line: step.line,
                    span: visible..visible + shown.len_utf8(),
                    text: swap_shown_op(shown).to_string(),
                });
                evaluate(&toks).ok_or(SkipReason::NoValidError)?
            }
            Change::Operand { literal, value } => {
                let spans = step.operand_spans.as_ref().ok_or(SkipReason::NotVisible)?;
                let span = spans.get(literal).ok_or(SkipReason::BadAnnotation)?;
                let text =
                    format_like(&line[span.clone()], value).ok_or(SkipReason::NoValidError)?;
                edits.push(Edit {
                    line: step.line,
                    span: span.clone(),
                    text,
                });
                evaluate(&replace_literal(&step.toks, literal, value))
                    .ok_or(SkipReason::NoValidError)?
            }
        };
        check_clean(step.result, new_result)?;
        let mut changed: HashMap<Ratio, Ratio> = HashMap::from([(step.result, new_result)]);
        let mut unchanged_results = Vec::new();
        for later in &self.steps[k + 1..] {
            let mut toks = later.toks.clone();
            for t in toks.iter_mut() {
                if let Tok::Num(v) = *t {
                    if let Some(&w) = changed.get(&v) {
                        *t = Tok::Num(w);
                    }
                }
            }
            let r = evaluate(&toks).ok_or(SkipReason::NoValidError)?;
            if r == later.result {
                unchanged_results.push(r);
                continue;
            }
            check_clean(later.result, r)?;
            if changed
                .insert(later.result, r)
                .is_some_and(|prev| prev != r)
            {
                return Err(SkipReason::AmbiguousValues);
            }
        }
        let earlier: Vec<Ratio> = self.steps[..k]
            .iter()
            .flat_map(|s| s.literals().chain([s.result]))
            .collect();
        let clash =
            |v: &Ratio| given.contains(v) || unchanged_results.contains(v) || earlier.contains(v);
        if changed.keys().any(clash) {
            return Err(SkipReason::AmbiguousValues);
        }
        let answer = *changed.get(&self.answer).ok_or(SkipReason::NoValidError)?;
        // Rewrite every later written number that shows a changed result.
        let from = step
            .result_span
            .as_ref()
            .map_or(step.annotation.end, |r| r.start);
        for i in step.line..self.lines.len() {
            let start = if i == step.line { from } else { 0 };
            edits.extend(self.number_edits(i, start, &changed)?);
        }
        Ok((self.render(&edits, answer), answer))
    }

    /// Edits for the numbers from `start` in line `i` (outside annotations) showing a changed value.
    fn number_edits(
        &self,
        i: usize,
        start: usize,
        changed: &HashMap<Ratio, Ratio>,
    ) -> std::result::Result<Vec<Edit>, SkipReason> {
        let text = self.lines[i];
        let inside: Vec<Range<usize>> = self
            .steps
            .iter()
            .filter(|s| s.line == i)
            .map(|s| s.annotation.clone())
            .collect();
        let mut out = Vec::new();
        for m in NUMBER.find_iter(&text[start..]) {
            let span = start + m.start()..start + m.end();
            if inside
                .iter()
                .any(|a| a.start < span.end && span.start < a.end)
            {
                continue;
            }
            let Some(new) = Ratio::parse_decimal(m.as_str()).and_then(|v| changed.get(&v)) else {
                continue;
            };
            let text = format_like(m.as_str(), *new).ok_or(SkipReason::NoValidError)?;
            out.push(Edit {
                line: i,
                span,
                text,
            });
        }
        Ok(out)
    }
}

/// The number starting exactly at `at` (after an annotation), if any.
fn number_at(s: &str, at: usize) -> Option<Range<usize>> {
    NUMBER
        .find_at(s, at)
        .filter(|m| m.start() == at)
        .map(|m| m.range())
}

/// Spans of the step's literals written out just before its annotation: the last numbers of
/// the segment must equal the literals in order.
fn align_operands(s: &str, segment: Range<usize>, step: &Step) -> Option<Vec<Range<usize>>> {
    let literals: Vec<Ratio> = step.literals().collect();
    let found: Vec<_> = NUMBER.find_iter(&s[segment.clone()]).collect();
    let tail = found.get(found.len().checked_sub(literals.len())?..)?;
    let equal = tail
        .iter()
        .zip(&literals)
        .all(|(m, v)| Ratio::parse_decimal(m.as_str()) == Some(*v));
    equal.then(|| {
        tail.iter()
            .map(|m| segment.start + m.start()..segment.start + m.end())
            .collect()
    })
}

/// The byte offset of the single operator character between two written operands.
fn visible_operator(line: &str, between: Range<usize>) -> Option<usize> {
    let text = line.get(between.clone())?;
    let trimmed = text.trim();
    let mut chars = trimmed.chars();
    let c = chars.next()?;
    if chars.next().is_some() || !"+-−*/x×÷".contains(c) {
        return None;
    }
    Some(between.start + text.find(c)?)
}

fn swap_op(op: char) -> char {
    match op {
        '+' => '-',
        '-' => '+',
        '*' => '/',
        _ => '*',
    }
}

fn swap_shown_op(shown: char) -> char {
    match shown {
        '+' => '-',
        '-' | '−' => '+',
        '*' | 'x' => '/',
        '×' => '÷',
        '÷' => '×',
        _ => '*',
    }
}

fn replace_literal(toks: &[Tok], literal: usize, value: Ratio) -> Vec<Tok> {
    let mut seen = 0;
    toks.iter()
        .map(|t| match *t {
            Tok::Num(_) if seen == literal => {
                seen += 1;
                Tok::Num(value)
            }
            Tok::Num(..) => {
                seen += 1;
                *t
            }
            other => other,
        })
        .collect()
}

/// A new value must differ, be a short decimal, keep the old one's sign, and stay within two
/// digits of its size (a result 10,000 times too large would be an implausible error).
fn check_clean(old: Ratio, new: Ratio) -> std::result::Result<(), SkipReason> {
    let ok = new != old
        && new.decimals(2).is_some()
        && old.is_negative() == new.is_negative()
        && old.int_digits().abs_diff(new.int_digits()) <= 2;
    if ok {
        Ok(())
    } else {
        Err(SkipReason::NoValidError)
    }
}

/// `value` written like `like`: thousands commas if it had them, and cents (two decimals)
/// if it had them and the value is not whole; otherwise as few decimals as exactness needs.
fn format_like(like: &str, value: Ratio) -> Option<String> {
    let shown = like.split_once('.').map_or(0, |(_, f)| f.len() as u32);
    let needed = value.decimals(2)?;
    let decimals = if shown == 2 && needed > 0 { 2 } else { needed };
    value.format(decimals, like.contains(','))
}

#[cfg(test)]
mod tests {
    use super::*;

    const JANET: &str = "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\n\
                         She makes 9 * 2 = $<<9*2=18>>18 every day.\n#### 18";

    #[test]
    fn steps_align_with_their_written_operands() -> Result<(), SkipReason> {
        let s = Solution::parse(JANET)?;
        assert_eq!(s.steps.len(), 2);
        let first = &s.steps[0];
        let spans = first.operand_spans.clone().unwrap_or_default();
        let line = s.lines[0];
        let written: Vec<&str> = spans.iter().map(|r| &line[r.clone()]).collect();
        assert_eq!(written, ["16", "3", "4"]);
        assert_eq!(first.result_span.clone().map(|r| &line[r]), Some("9"));
        assert_eq!(s.answer, Ratio::int(18));
        Ok(())
    }

    #[test]
    fn a_slip_flows_into_later_steps_and_the_answer() -> Result<(), SkipReason> {
        let s = Solution::parse(JANET)?;
        let (text, answer) = s.propagate(0, Change::Result(Ratio::int(8)), &[])?;
        assert_eq!(answer, Ratio::int(16));
        assert_eq!(
            text,
            "Janet sells 16 - 3 - 4 = 8 duck eggs a day.\nShe makes 8 * 2 = $16 every day.\nAnswer: 16"
        );
        // 16 is given in the question: changing a result to collide with it is refused.
        let given = [
            Ratio::int(16),
            Ratio::int(3),
            Ratio::int(4),
            Ratio::int(2),
            Ratio::int(9),
        ];
        assert_eq!(
            s.propagate(0, Change::Result(Ratio::int(8)), &given).err(),
            Some(SkipReason::AmbiguousValues)
        );
        Ok(())
    }

    #[test]
    fn written_values_keep_their_style() {
        let v = |s: &str| Ratio::parse_decimal(s).unwrap_or(Ratio::int(-1));
        assert_eq!(format_like("1,200", v("1500")).as_deref(), Some("1,500"));
        assert_eq!(format_like("2.50", v("3.5")).as_deref(), Some("3.50"));
        assert_eq!(format_like("2.50", v("3")).as_deref(), Some("3"));
        assert_eq!(format_like("0.2", v("720")).as_deref(), Some("720"));
        assert_eq!(visible_operator("3 x 4", 1..4), Some(2));
        assert_eq!(visible_operator("3 to 4", 1..5), None);
    }

    #[test]
    fn unusable_solutions_say_why() {
        let parse = |t| Solution::parse(t).err();
        assert_eq!(
            parse("2+2=<<2+2=5>>5\n#### 5"),
            Some(SkipReason::BadAnnotation)
        );
        assert_eq!(parse("2+2=4\n#### 4"), Some(SkipReason::NoAnnotations));
        assert_eq!(parse("2+2=<<2+2=4>>4"), Some(SkipReason::NoFinalAnswer));
        assert_eq!(
            parse("2+2=<<2+2=4>>5\n#### 4"),
            Some(SkipReason::BadAnnotation)
        );
    }
}
