//! What a rollout returns: [`Rollout`]s grouped by prompt in a [`RolloutBatch`], with
//! throughput counters, and the [`Progress`] passed to the progress hook.

use serde::{Deserialize, Serialize};

/// Why a sample stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// It produced an eos id (kept as the completion's last token).
    Eos,
    /// Its decoded text came to contain a stop string; the completion ends with the token
    /// that completed it (which may carry text after the stop string).
    StopString,
    /// It reached `max_new_tokens`.
    Length,
}

/// How the thought ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThoughtEnd {
    /// The model wrote the closing tag itself.
    Closed,
    /// The thought budget forced the closing text (complete unless `max_new_tokens` cut it).
    Forced,
    /// The completion ended inside the thought (no closing tag).
    Open,
}

/// One sampled completion of one prompt.
///
/// `completion_ids`, `logprobs` and `forced` have one entry per completion token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    /// Index of the prompt in the request.
    pub prompt_index: usize,
    /// Index of this sample within its prompt's group (0..G).
    pub sample_index: usize,
    /// The completion, stop string / eos token included.
    pub completion_ids: Vec<u32>,
    /// `decode(completion_ids)` with special tokens skipped (no eos text).
    pub text: String,
    /// `log softmax(logits / temperature)[token]` of each completion token under the policy
    /// that produced it: the untruncated distribution, i.e. exactly what
    /// `Llama::token_logprobs_with_temperature` recomputes. Top-k/top-p truncation and the
    /// minimum-thought mask only restrict which tokens can be drawn; they are not reflected
    /// here (vLLM and TRL do the same). Forced tokens get their log-prob too.
    pub logprobs: Vec<f32>,
    /// `true` for tokens the thought budget forced rather than sampled: exclude them from the
    /// policy loss (the trainer's response mask is `!forced`).
    pub forced: Vec<bool>,
    /// Why the sample stopped.
    pub finish: FinishReason,
    /// How the thought ended.
    pub thought: ThoughtEnd,
    /// Tokens in the thought: up to and including the token that completed the closing tag
    /// ([`ThoughtEnd::Closed`]), the budget N ([`ThoughtEnd::Forced`]; the forced tokens are
    /// not counted), or the whole completion ([`ThoughtEnd::Open`]).
    pub thought_tokens: usize,
}

impl Rollout {
    /// Whether the thought budget forced the close.
    pub fn budget_forced(&self) -> bool {
        self.thought == ThoughtEnd::Forced
    }

    /// Number of sampled (not forced) tokens.
    pub fn sampled_tokens(&self) -> usize {
        self.forced.iter().filter(|f| !**f).count()
    }
}

/// Counters of one rollout request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RolloutStats {
    /// Prompts in the request.
    pub prompts: usize,
    /// Samples (prompts × group size).
    pub rollouts: usize,
    /// Prompt chunks run one after another (1 unless the memory guard split the request).
    pub chunks: usize,
    /// Real (unpadded) prompt tokens prefilled, each prompt once.
    pub prefill_tokens: usize,
    /// Completion tokens produced, forced ones included.
    pub decode_tokens: usize,
    /// Forced completion tokens.
    pub forced_tokens: usize,
    /// Decode-batch forwards run (after the prefill).
    pub decode_steps: usize,
    /// Wall time of prefill forwards and cache forks.
    pub prefill_seconds: f64,
    /// Wall time of the decode loops (sampling included).
    pub decode_seconds: f64,
}

impl RolloutStats {
    /// Total wall time.
    pub fn seconds(&self) -> f64 {
        self.prefill_seconds + self.decode_seconds
    }

    /// Prompt tokens per second of prefill.
    pub fn prefill_tokens_per_s(&self) -> f64 {
        rate(self.prefill_tokens, self.prefill_seconds)
    }

    /// Completion tokens per second of the decode loop.
    pub fn decode_tokens_per_s(&self) -> f64 {
        rate(self.decode_tokens, self.decode_seconds)
    }

    /// Completion tokens per second of the whole request (prefill included).
    pub fn tokens_per_s(&self) -> f64 {
        rate(self.decode_tokens, self.seconds())
    }

    pub(crate) fn add(&mut self, o: &RolloutStats) {
        self.chunks += o.chunks;
        self.prefill_tokens += o.prefill_tokens;
        self.decode_tokens += o.decode_tokens;
        self.forced_tokens += o.forced_tokens;
        self.decode_steps += o.decode_steps;
        self.prefill_seconds += o.prefill_seconds;
        self.decode_seconds += o.decode_seconds;
    }
}

fn rate(n: usize, s: f64) -> f64 {
    if s > 0.0 {
        n as f64 / s
    } else {
        0.0
    }
}

/// The samples of a request, prompt-major: `rollouts[p * group_size + g]` is sample `g` of
/// prompt `p`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutBatch {
    /// Every sample, grouped by prompt.
    pub rollouts: Vec<Rollout>,
    /// G.
    pub group_size: usize,
    /// Throughput counters.
    pub stats: RolloutStats,
}

impl RolloutBatch {
    /// The G samples of prompt `p` (empty when out of range).
    pub fn group(&self, p: usize) -> &[Rollout] {
        let g = self.group_size;
        self.rollouts.get(p * g..(p + 1) * g).unwrap_or(&[])
    }

    /// Groups in prompt order.
    pub fn groups(&self) -> impl Iterator<Item = &[Rollout]> {
        self.rollouts.chunks(self.group_size.max(1))
    }

    /// Every completion's ids, prompt-major (the input of [`crate::score_completions`]).
    pub fn completion_ids(&self) -> Vec<Vec<u32>> {
        self.rollouts
            .iter()
            .map(|r| r.completion_ids.clone())
            .collect()
    }
}

/// Where a running request stands; passed to the progress hook after every decode step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Decode step within the current chunk (0 = the first completion token).
    pub step: usize,
    /// Samples of the current chunk still generating.
    pub rows_alive: usize,
    /// Samples finished so far, over all chunks.
    pub rows_finished: usize,
    /// Samples in the request.
    pub rows_total: usize,
    /// Completion tokens produced so far, over all chunks.
    pub tokens_generated: usize,
    /// The current chunk (0-based) and the number of chunks.
    pub chunk: usize,
    /// Number of prompt chunks of the request.
    pub chunks: usize,
}
