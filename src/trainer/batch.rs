//! The typed batches of one training step, in the order the step builds them.
//!
//! Shape legend: P prompts in the step (2 per pair), G samples per prompt, N = P·G samples,
//! p prompts in a micro-batch, n = p·G its samples, Lc its longest completion.

use candle_core::{DType, Device, Tensor};
use thinkjudge_rl::{Advantages, BatchTotals, Sample};
use thinkjudge_rollout::{Rollout, RolloutBatch};

use super::verdict::VerdictToken;
use crate::dataset::{EncodedPrompt, JudgeUnit};
use crate::error::Result;

/// The prompts of a step: whole units (a pair's two orders stay together), flattened.
#[derive(Debug)]
pub struct StepPrompts<'a> {
    /// The step's units, in batch order.
    pub units: Vec<&'a JudgeUnit>,
    /// (P) every unit's prompts in order, with the index of their unit in `units`.
    pub prompts: Vec<(usize, &'a EncodedPrompt)>,
}

impl<'a> StepPrompts<'a> {
    /// The prompts of `units`, siblings adjacent.
    pub fn new(units: Vec<&'a JudgeUnit>) -> Self {
        let prompts = units
            .iter()
            .enumerate()
            .flat_map(|(u, unit)| unit.prompts.iter().map(move |p| (u, p)))
            .collect();
        StepPrompts { units, prompts }
    }

    /// (P) the token ids of every prompt.
    pub fn ids(&self) -> Vec<Vec<u32>> {
        self.prompts.iter().map(|(_, p)| p.ids.clone()).collect()
    }

    /// (P) the random-stream key of every prompt.
    pub fn keys(&self) -> Vec<u64> {
        self.prompts.iter().map(|(_, p)| p.key).collect()
    }
}

/// A step's rollouts, judged and rewarded. Every vector has one entry per sample,
/// prompt-major: sample `i = p·G + g` is sample `g` of prompt `p`.
#[derive(Debug)]
pub struct JudgedRollouts {
    /// (N) the samples with their completions and sampling log-probs.
    pub batch: RolloutBatch,
    /// (N) parsed judgments and gold, as the reward sees them.
    pub samples: Vec<Sample>,
    /// (N) whether each judgment is correct (`None`: unparseable).
    pub correct: Vec<Option<bool>>,
    /// (N) rewards.
    pub rewards: Vec<f32>,
    /// (N) group-relative advantages and which samples are trained on.
    pub advantages: Advantages,
    /// (N) each sample's verdict letter under the expected-verdict gradient; all `None`
    /// under the sampled one.
    pub verdicts: Vec<Option<VerdictToken>>,
}

impl JudgedRollouts {
    /// G.
    pub fn group_size(&self) -> usize {
        self.batch.group_size
    }

    /// Indices of the prompts whose samples are trained on (dynamic sampling keeps or
    /// drops a prompt's G samples together).
    pub fn kept_prompts(&self) -> Vec<usize> {
        let g = self.group_size();
        (0..self.samples.len() / g.max(1))
            .filter(|&p| self.advantages.keep[p * g])
            .collect()
    }

    /// The samples of `prompts` (indices into the batch).
    fn sample_indices<'p>(&self, prompts: &'p [usize]) -> impl Iterator<Item = usize> + 'p {
        let g = self.group_size();
        prompts.iter().flat_map(move |&p| p * g..(p + 1) * g)
    }

    /// The loss normaliser of the samples of `prompts`: sampled (not forced) completion
    /// tokens, less the verdict letters the expected-verdict term trains, and sequences.
    pub fn totals(&self, prompts: &[usize]) -> BatchTotals {
        let mut t = BatchTotals {
            tokens: 0.0,
            sequences: 0.0,
        };
        for i in self.sample_indices(prompts) {
            let letter = usize::from(self.verdicts[i].is_some());
            t.tokens += (self.batch.rollouts[i].sampled_tokens() - letter) as f64;
            t.sequences += 1.0;
        }
        t
    }

    /// Whether any sample of `prompts` has a verdict letter for the expected-verdict term.
    pub fn has_verdicts(&self, prompts: &[usize]) -> bool {
        self.sample_indices(prompts)
            .any(|i| self.verdicts[i].is_some())
    }
}

/// One micro-batch of the update, ready for [`thinkjudge_rl::policy_loss`].
#[derive(Debug)]
pub struct MicroBatch {
    /// (p) prompt ids.
    pub prompts: Vec<Vec<u32>>,
    /// (n) completion ids, prompt-major.
    pub completions: Vec<Vec<u32>>,
    /// (n, Lc) log-probs recorded at sampling (π_old), 0 at padding.
    pub old_logprobs: Tensor,
    /// (n, Lc) 1 for sampled completion tokens, 0 for forced (budget) tokens and padding.
    pub sampled_mask: Tensor,
    /// (n,) advantages.
    pub advantages: Tensor,
    /// The expected-verdict rows, when the gradient is expected.
    pub verdict: Option<VerdictRows>,
}

/// What the expected-verdict term needs of a micro-batch (see [`super::verdict`]).
#[derive(Debug)]
pub struct VerdictRows {
    /// (n) each sample's completion with the other letter, cut after it; empty for samples
    /// without a verdict letter.
    pub alternatives: Vec<Vec<u32>>,
    /// (n, Lc) 1 at each sample's verdict letter, 0 elsewhere (all 0 without one).
    pub position: Tensor,
    /// (n, 2) R − R(unparseable) of the sampled letter and of the other one; 0 without one.
    pub gains: Tensor,
}

impl MicroBatch {
    /// The micro-batch of prompts `prompts` (indices into the step's prompts).
    ///
    /// # Errors
    /// Tensor creation failures.
    pub fn new(
        step: &StepPrompts,
        judged: &JudgedRollouts,
        prompts: &[usize],
        device: &Device,
    ) -> Result<Self> {
        let g = judged.group_size();
        let rollouts: Vec<&Rollout> = prompts
            .iter()
            .flat_map(|&p| judged.batch.group(p))
            .collect();
        let lc = rollouts
            .iter()
            .map(|r| r.completion_ids.len())
            .max()
            .unwrap_or(0);
        let n = rollouts.len();
        let (mut old, mut mask) = (vec![0f32; n * lc], vec![0f32; n * lc]);
        for (i, r) in rollouts.iter().enumerate() {
            for (j, (&lp, &forced)) in r.logprobs.iter().zip(&r.forced).enumerate() {
                old[i * lc + j] = lp;
                mask[i * lc + j] = if forced { 0.0 } else { 1.0 };
            }
        }
        let verdicts: Vec<Option<VerdictToken>> = judged
            .sample_indices(prompts)
            .map(|i| judged.verdicts[i])
            .collect();
        let verdict = if verdicts.iter().any(Option::is_some) {
            let mut position = vec![0f32; n * lc];
            let mut gains = vec![0f32; n * 2];
            let mut alternatives = Vec::with_capacity(n);
            for (i, (v, r)) in verdicts.iter().zip(&rollouts).enumerate() {
                let Some(v) = v else {
                    alternatives.push(Vec::new());
                    continue;
                };
                // The letter leaves the clipped surrogate: the expected term trains it.
                mask[i * lc + v.position] = 0.0;
                position[i * lc + v.position] = 1.0;
                gains[i * 2..i * 2 + 2].copy_from_slice(&v.gains);
                alternatives.push(v.alternative(&r.completion_ids));
            }
            Some(VerdictRows {
                alternatives,
                position: Tensor::from_vec(position, (n, lc), device)?,
                gains: Tensor::from_vec(gains, (n, 2), device)?,
            })
        } else {
            None
        };
        let advantages: Vec<f32> = prompts
            .iter()
            .flat_map(|&p| judged.advantages.values[p * g..(p + 1) * g].iter().copied())
            .collect();
        Ok(MicroBatch {
            prompts: prompts
                .iter()
                .map(|&p| step.prompts[p].1.ids.clone())
                .collect(),
            completions: rollouts.iter().map(|r| r.completion_ids.clone()).collect(),
            old_logprobs: Tensor::from_vec(old, (n, lc), device)?,
            sampled_mask: Tensor::from_vec(mask, (n, lc), device)?,
            advantages: Tensor::from_vec(advantages, n, device)?.to_dtype(DType::F32)?,
            verdict,
        })
    }

    /// Tokens the training forward processes: prompts once, completions (and the
    /// expected-verdict alternatives) per sample.
    pub fn tokens(&self) -> usize {
        let alternatives = self
            .verdict
            .as_ref()
            .map_or(0, |v| v.alternatives.iter().map(Vec::len).sum::<usize>());
        self.prompts.iter().map(Vec::len).sum::<usize>()
            + self.completions.iter().map(Vec::len).sum::<usize>()
            + alternatives
    }

    /// Training-mode forwards [`thinkjudge_rollout::score_completions`] runs for this
    /// micro-batch: the prompt heads (when any prompt has more than one token) and the
    /// completions (when any is non-empty). Tracks the model's LoRA-dropout stream.
    pub fn train_forwards(&self) -> u64 {
        if self.completions.iter().all(Vec::is_empty) {
            return 0;
        }
        1 + u64::from(self.prompts.iter().any(|p| p.len() > 1))
    }
}
