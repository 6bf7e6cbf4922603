//! The typed batches of one training step, in the order the step builds them.
//!
//! Shape legend: P prompts in the step (2 per pair), G samples per prompt, N = P·G samples,
//! p prompts in a micro-batch, n = p·G its samples, Lc its longest completion.

use candle_core::{DType, Device, Tensor};
use thinkjudge_rl::{Advantages, BatchTotals, Sample};
use thinkjudge_rollout::{Rollout, RolloutBatch};

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

    /// The loss normaliser of the samples of `prompts`: sampled (not forced) completion
    /// tokens and sequences.
    pub fn totals(&self, prompts: &[usize]) -> BatchTotals {
        let rollouts = prompts.iter().flat_map(|&p| self.batch.group(p));
        let mut t = BatchTotals {
            tokens: 0.0,
            sequences: 0.0,
        };
        for r in rollouts {
            t.tokens += r.sampled_tokens() as f64;
            t.sequences += 1.0;
        }
        t
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
        })
    }

    /// Tokens the training forward processes: prompts once, completions per sample.
    pub fn tokens(&self) -> usize {
        self.prompts.iter().map(Vec::len).sum::<usize>()
            + self.completions.iter().map(Vec::len).sum::<usize>()
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
