//! Held-out evaluation of a judge: both answer orders of every pair, greedy by default,
//! optionally SC@N (N sampled judgments per prompt, majority-voted; scores averaged).
//!
//! Definitions (recipe.md §6 "Metrics"; a prompt's judgment is the SC@N aggregate when
//! N > 1, see [`crate::judging::aggregate`]):
//! - **accuracy**: correct prompts / prompts (unparseable and no-preference count as wrong;
//!   correctness per [`crate::judging`]).
//! - **accuracy AB / BA**: the same over the prompts shown in that order (pairwise templates).
//! - **consistent accuracy**: pairs judged correctly in *both* orders / pairs.
//! - **flip rate**: pairs where both orders name a preferred *response* and the two differ,
//!   i.e. the choice follows the position rather than the content / pairs. (A pair that
//!   names position A both times has flipped.)
//! - **tie rate**: prompts whose judgment parses but prefers neither response (equal scores;
//!   for pointwise members, equal scores of the two members) / prompts.
//! - **unparseable rate**: sampled completions without a readable judgment / completions.
//! - **mean thought / completion tokens**: over all sampled completions.

use thinkjudge_data::{
    parse_judgment, JudgePrompt, Judgment, Order, PointLabel, PointTarget, Side,
};
use thinkjudge_model::{JudgeTokenizer, Llama};
use thinkjudge_rl::{Gold, Sample};
use thinkjudge_rollout::{Engine, RolloutRequest, SamplingConfig};

use crate::dataset::JudgeUnit;
use crate::error::{Result, TrainError};
use crate::judging::{aggregate, correctness, score_of, to_sample};
use crate::metrics::{ratio, EvalMetrics, EvalTiming};

/// Evaluates `model` on `units` with `sampling` (its `seed` keys SC@N draws),
/// `samples_per_prompt` samples per prompt; `threshold` is the "good" score of labelled
/// pointwise items. `step` is recorded in the result.
///
/// # Errors
/// Rollout errors (memory budget, non-finite logits).
pub fn evaluate(
    model: &Llama,
    tokenizer: &JudgeTokenizer,
    units: &[JudgeUnit],
    sampling: SamplingConfig,
    samples_per_prompt: usize,
    threshold: f64,
    step: u64,
) -> Result<EvalMetrics> {
    let started = std::time::Instant::now();
    let prompts: Vec<_> = units.iter().flat_map(|u| &u.prompts).collect();
    let ids: Vec<Vec<u32>> = prompts.iter().map(|p| p.ids.clone()).collect();
    let keys: Vec<u64> = prompts.iter().map(|p| p.key).collect();
    let n = samples_per_prompt;
    let batch = if prompts.is_empty() {
        None
    } else {
        let engine = Engine::new(model, tokenizer, sampling)?;
        let request = RolloutRequest {
            prompts: &ids,
            group_size: n,
            prompt_keys: Some(&keys),
        };
        Some(engine.generate_with(&request, &mut |_| {})?)
    };

    // One sample per prompt carrying the (aggregated) judgment; all samples for the rates.
    let mut judged: Vec<Sample> = Vec::with_capacity(prompts.len());
    let mut all: Vec<Sample> = Vec::with_capacity(prompts.len() * n);
    let mut prompt_index = 0;
    for (u, unit) in units.iter().enumerate() {
        for prompt in &unit.prompts {
            let group = batch.as_ref().map_or(&[][..], |b| b.group(prompt_index));
            let samples: Vec<Sample> = group
                .iter()
                .map(|r| to_sample(prompt, u as u64, r))
                .collect();
            let mut one = samples.first().cloned().ok_or_else(|| {
                TrainError::DataSetup(format!("no evaluation sample for item `{}`", unit.id))
            })?;
            if n > 1 {
                let js: Vec<Option<Judgment>> = samples.iter().map(|s| s.judgment).collect();
                one.judgment = aggregate(&js, prompt.prompt.kind);
            }
            one.sample_index = 0;
            judged.push(one);
            all.extend(samples);
            prompt_index += 1;
        }
    }
    let correct = correctness(&judged, threshold);
    let mut m = rates(units, &judged, &correct);
    m.step = step;
    m.samples_per_prompt = n;
    m.unparseable_rate = share(
        all.iter().filter(|s| s.judgment.is_none()).count(),
        all.len(),
    );
    m.mean_thought_tokens = mean(all.iter().map(|s| s.thought_tokens));
    m.mean_completion_tokens = mean(all.iter().map(|s| s.completion_tokens));
    let seconds = started.elapsed().as_secs_f64();
    let tokens: usize = all.iter().map(|s| s.completion_tokens).sum();
    m.timing = EvalTiming {
        seconds,
        tokens_per_s: ratio(tokens as f64, seconds),
    };
    Ok(m)
}

/// One prompt judged once, for display (sample judgments, `thinkjudge judge`).
#[derive(Debug, Clone, PartialEq)]
pub struct JudgedPrompt {
    /// The pair's (or item's) id.
    pub pair_id: String,
    /// The answer order (pairwise prompts).
    pub order: Option<Order>,
    /// The side a correct verdict names, when known.
    pub gold_side: Option<Side>,
    /// The completion (thought, verdict), forced tokens included.
    pub completion: String,
    /// What it says; `None` when unparseable.
    pub judgment: Option<Judgment>,
    /// Whether it is right: pairwise prompts with a gold side, and pointwise prompts with a
    /// good/bad label (score ≥ `threshold` means good); `None` when unknown or unparseable.
    pub correct: Option<bool>,
    /// Tokens in the thought.
    pub thought_tokens: usize,
}

/// Judges each prompt once with `sampling` (greedy for a deterministic look) and parses the
/// results. `threshold` is the "good" score of labelled pointwise prompts.
///
/// # Errors
/// Tokenizer and rollout errors.
pub fn judge_prompts(
    model: &Llama,
    tokenizer: &JudgeTokenizer,
    prompts: &[JudgePrompt],
    sampling: SamplingConfig,
    threshold: f64,
) -> Result<Vec<JudgedPrompt>> {
    if prompts.is_empty() {
        return Ok(Vec::new());
    }
    let ids = prompts
        .iter()
        .map(|p| tokenizer.encode(&p.text))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let batch = Engine::new(model, tokenizer, sampling)?.generate(&ids, 1)?;
    Ok(prompts
        .iter()
        .zip(&batch.rollouts)
        .map(|(p, r)| {
            let judgment = parse_judgment(&r.text, p.kind, p.parse_options());
            let correct = match (p.gold_side, p.point) {
                (Some(gold), _) => judgment.map(|j| j.preferred_side() == Some(gold)),
                (None, Some(PointTarget::Label(label))) => {
                    let good = match label {
                        PointLabel::Good => Some(true),
                        PointLabel::Bad => Some(false),
                        PointLabel::Score(x) => Some(x >= threshold),
                    };
                    good.zip(score_of(judgment))
                        .map(|(good, s)| (s >= threshold) == good)
                }
                _ => None,
            };
            JudgedPrompt {
                pair_id: p.pair_id.clone(),
                order: p.kind.is_pairwise().then_some(p.order),
                gold_side: p.gold_side,
                completion: r.text.clone(),
                judgment,
                correct,
                thought_tokens: r.thought_tokens,
            }
        })
        .collect())
}

/// The accuracy-type metrics (accuracy, per-order and position-consistent accuracy, flip and
/// tie rates) of one judgment per prompt of `units`, in unit order, for callers that sample
/// and aggregate themselves (e.g. [`crate::bench_length`]): the same definitions as
/// [`evaluate`]. The sample-level fields (`unparseable_rate`, mean token counts, `timing`)
/// are left at 0 for the caller to fill.
///
/// # Errors
/// [`TrainError::DataSetup`] when `judged` does not hold exactly one sample per prompt.
pub fn prompt_metrics(
    units: &[JudgeUnit],
    judged: &[Sample],
    threshold: f64,
) -> Result<EvalMetrics> {
    let prompts: usize = units.iter().map(|u| u.prompts.len()).sum();
    if judged.len() != prompts {
        return Err(TrainError::DataSetup(format!(
            "{} judgments for the {prompts} prompts of {} units",
            judged.len(),
            units.len()
        )));
    }
    let correct = correctness(judged, threshold);
    Ok(rates(units, judged, &correct))
}

/// The accuracy-type metrics of judged prompts (one [`Sample`] per prompt, in unit order).
fn rates(units: &[JudgeUnit], judged: &[Sample], correct: &[Option<bool>]) -> EvalMetrics {
    let ok = |i: usize| correct[i] == Some(true);
    let pairwise = units
        .iter()
        .all(|u| u.prompts.len() == 2 && u.prompts.iter().all(|p| p.prompt.kind.is_pairwise()))
        && !units.is_empty();
    let (mut ab, mut ba, mut consistent, mut flips, mut ties) = ((0, 0), (0, 0), 0, 0, 0);
    let mut i = 0;
    for unit in units {
        let idx: Vec<usize> = (i..i + unit.prompts.len()).collect();
        i += unit.prompts.len();
        for &k in &idx {
            ties += usize::from(prefers_nothing(judged, k));
        }
        if !pairwise {
            continue;
        }
        let (a, b) = (idx[0], idx[1]);
        for k in [a, b] {
            let counter = match judged[k].order {
                Some(thinkjudge_data::Order::AB) => &mut ab,
                _ => &mut ba,
            };
            counter.0 += usize::from(ok(k));
            counter.1 += 1;
        }
        consistent += usize::from(ok(a) && ok(b));
        let preferred = |k: usize| {
            let s = &judged[k];
            Some(s.order?.response_at(s.judgment?.preferred_side()?))
        };
        if let (Some(x), Some(y)) = (preferred(a), preferred(b)) {
            flips += usize::from(x != y);
        }
    }
    let pairs = units.len();
    let pw = |x: usize| pairwise.then(|| share(x, pairs));
    EvalMetrics {
        step: 0,
        pairs,
        prompts: judged.len(),
        samples_per_prompt: 1,
        accuracy: share((0..judged.len()).filter(|&k| ok(k)).count(), judged.len()),
        accuracy_ab: pairwise.then(|| share(ab.0, ab.1)),
        accuracy_ba: pairwise.then(|| share(ba.0, ba.1)),
        consistent_accuracy: pw(consistent),
        flip_rate: pw(flips),
        tie_rate: share(ties, judged.len()),
        unparseable_rate: 0.0,
        mean_thought_tokens: 0.0,
        mean_completion_tokens: 0.0,
        timing: EvalTiming::default(),
    }
}

/// Whether prompt `k`'s judgment parses but prefers neither response.
fn prefers_nothing(judged: &[Sample], k: usize) -> bool {
    let s = &judged[k];
    match (s.gold, s.judgment) {
        (_, None) => false,
        (Gold::Preference(_), Some(j)) => j.preferred_side().is_none(),
        (Gold::Member(m), Some(j)) => {
            let other = judged
                .iter()
                .find(|o| o.pair_id == s.pair_id && matches!(o.gold, Gold::Member(x) if x != m));
            let theirs = other.and_then(|o| score_of(o.judgment));
            score_of(Some(j)).zip(theirs).is_some_and(|(x, y)| x == y)
        }
        (Gold::Label(_), Some(_)) => false,
    }
}

fn share(part: usize, whole: usize) -> f64 {
    ratio(part as f64, whole as f64)
}

fn mean(xs: impl Iterator<Item = usize>) -> f64 {
    let (sum, n) = xs.fold((0, 0), |(s, n), x| (s + x, n + 1));
    share(sum, n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::EncodedPrompt;
    use thinkjudge_data::{JudgePrompt, Order, Preference, Side, TemplateKind};

    fn unit(id: &str, first: Preference) -> JudgeUnit {
        let prompt = |order: Order| {
            let gold_side = first.gold_side(order);
            EncodedPrompt {
                prompt: JudgePrompt {
                    pair_id: id.into(),
                    order,
                    kind: TemplateKind::PairwiseVerdict,
                    text: String::new(),
                    gold_side,
                    point: None,
                    think_prefilled: false,
                    source: None,
                    subset: None,
                },
                ids: vec![1],
                key: 0,
                gold: Gold::Preference(first),
            }
        };
        JudgeUnit {
            id: id.into(),
            prompts: vec![prompt(Order::AB), prompt(Order::BA)],
        }
    }

    fn judged(u: u64, order: Order, side: Option<Side>) -> Sample {
        Sample {
            pair_id: u,
            order: Some(order),
            gold: Gold::Preference(Preference::First),
            judgment: side.map(Judgment::Verdict),
            sample_index: 0,
            completion_tokens: 3,
            thought_tokens: 1,
            truncated: false,
        }
    }

    #[test]
    fn consistency_and_flips_follow_the_definitions() {
        // Response 0 is better: correct is A in AB, B in BA.
        let units = [
            unit("p0", Preference::First),
            unit("p1", Preference::First),
            unit("p2", Preference::First),
        ];
        let samples = vec![
            judged(0, Order::AB, Some(Side::A)), // p0: consistent
            judged(0, Order::BA, Some(Side::B)),
            judged(1, Order::AB, Some(Side::A)), // p1: always "A" → flip (follows position)
            judged(1, Order::BA, Some(Side::A)),
            judged(2, Order::AB, Some(Side::B)), // p2: unparseable in BA → no flip counted
            judged(2, Order::BA, None),
        ];
        let correct = correctness(&samples, 5.0);
        let m = rates(&units, &samples, &correct);
        assert_eq!(m.accuracy, 3.0 / 6.0);
        assert_eq!(m.accuracy_ab, Some(2.0 / 3.0));
        assert_eq!(m.accuracy_ba, Some(1.0 / 3.0));
        assert_eq!(m.consistent_accuracy, Some(1.0 / 3.0));
        assert_eq!(m.flip_rate, Some(1.0 / 3.0));
        assert_eq!(m.tie_rate, 0.0);
    }
}
