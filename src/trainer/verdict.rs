//! The verdict letters of a step's samples, for the expected-verdict gradient
//! (`loss.verdict_gradient = "expected"`, [`thinkjudge_rl::VerdictGradient`]).
//!
//! A sample qualifies when its judgment is a verdict whose distinguishing token
//! ([`VerdictLetters`]) was sampled (not forced) after the thought, and swapping that token for the other letter makes the
//! completion parse as the other verdict. The swap check ties the token to the parsed verdict
//! without knowing the template's delimiters. Other samples keep the sampled estimator.

use thinkjudge_data::{parse_judgment, Judgment, Side};
use thinkjudge_model::JudgeTokenizer;
use thinkjudge_rl::{joint_rewards, Reward, Sample};
use thinkjudge_rollout::Rollout;

use crate::dataset::EncodedPrompt;
use crate::error::{Result, TrainError};

/// A sample's verdict letter and what each letter earns.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VerdictToken {
    /// Index of the letter in the completion.
    pub position: usize,
    /// The sampled letter's id, then the other letter's.
    pub options: [u32; 2],
    /// R(option) − R(unparseable), in the order of `options`.
    pub gains: [f32; 2],
}

impl VerdictToken {
    /// The completion with the letter swapped for the other one, cut after it: the row whose
    /// log-prob at `position` is the other letter's.
    pub fn alternative(&self, completion: &[u32]) -> Vec<u32> {
        let mut alt = completion[..=self.position].to_vec();
        alt[self.position] = self.options[1];
        alt
    }
}

/// The tokens that tell the two verdicts apart: where the tokenizations of
/// `[[A]]</answer>` and `[[B]]</answer>` differ (the letters `A` and `B` for BPE
/// tokenizers; whole verdict words for a word-level one).
#[derive(Debug, Clone)]
pub struct VerdictLetters {
    a: u32,
    b: u32,
    /// The tokens after the letter (`]]</answer>` for BPE tokenizers; none for a
    /// word-level one).
    pub(crate) suffix: Vec<u32>,
}

impl VerdictLetters {
    /// The verdicts' distinguishing tokens under `tokenizer`.
    ///
    /// # Errors
    /// [`TrainError::InvalidConfig`] when the two verdicts do not differ in exactly one token.
    pub fn new(tokenizer: &JudgeTokenizer) -> Result<Self> {
        let written = |side: Side| tokenizer.encode(&format!("[[{}]]</answer>", side.letter()));
        let (a, b) = (written(Side::A)?, written(Side::B)?);
        let diff: Vec<usize> = (0..a.len().min(b.len()))
            .filter(|&k| a[k] != b[k])
            .collect();
        match diff[..] {
            [k] if a.len() == b.len() => Ok(VerdictLetters {
                a: a[k],
                b: b[k],
                suffix: a[k + 1..].to_vec(),
            }),
            _ => Err(TrainError::config(
                "loss.verdict_gradient",
                format!(
                    "\"expected\" needs the verdicts [[A]] and [[B]] to differ in one token; \
                     this tokenizer writes them as {a:?} and {b:?}"
                ),
            )),
        }
    }

    pub(crate) fn id(&self, side: Side) -> u32 {
        match side {
            Side::A => self.a,
            Side::B => self.b,
        }
    }
}

/// The verdict token of every sample (`None`: the sample keeps the sampled estimator).
///
/// # Shapes
/// `prompts`, `rollouts` and `samples` have one entry per sample, in batch order; `samples` is
/// the whole batch the reward scores (siblings included).
///
/// # Errors
/// Decoding and reward errors.
pub fn locate(
    letters: &VerdictLetters,
    tokenizer: &JudgeTokenizer,
    prompts: &[&EncodedPrompt],
    rollouts: &[Rollout],
    samples: &[Sample],
    reward: &dyn Reward,
) -> Result<Vec<Option<VerdictToken>>> {
    let mut out = Vec::with_capacity(samples.len());
    for (i, (s, r)) in samples.iter().zip(rollouts).enumerate() {
        let Some(Judgment::Verdict(side)) = s.judgment else {
            out.push(None);
            continue;
        };
        let (sampled, other) = (letters.id(side), letters.id(side.other()));
        let Some(position) = (r.thought_tokens..r.completion_ids.len())
            .find(|&j| !r.forced[j] && r.completion_ids[j] == sampled)
        else {
            out.push(None);
            continue;
        };
        let mut swapped = r.completion_ids.clone();
        swapped[position] = other;
        let p = &prompts[i].prompt;
        let text = tokenizer.decode(&swapped, true)?;
        if parse_judgment(&text, p.kind, p.parse_options()) != Some(Judgment::Verdict(side.other()))
        {
            out.push(None);
            continue;
        }
        let judgments = [
            Some(Judgment::Verdict(side)),
            Some(Judgment::Verdict(side.other())),
            None,
        ];
        let r = joint_rewards(reward, samples, i..i + 1, &judgments)?;
        out.push(Some(VerdictToken {
            position,
            options: [sampled, other],
            gains: [r[0] - r[2], r[1] - r[2]],
        }));
    }
    Ok(out)
}
