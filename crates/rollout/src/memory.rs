//! The memory guard: an estimate of the largest buffers of a rollout, and the split of a
//! request into prompt chunks that fit [`SamplingConfig::max_memory_bytes`].
//!
//! For `P` prompts of at most `Lp` tokens, `G` samples each (`R = P·G` rows) and
//! `N = max_new_tokens`, with `s_c`/`s_f` the byte sizes of the compute/float dtypes:
//!
//! * **KV cache** `= 2 · R · (Lp + N) · layers · 2 · n_kv_heads · head_dim · s_c`: K and V of
//!   every row at full capacity (reserved up front), times 2 because `KvCache::retain` builds
//!   the compacted copy while the old cache is alive (the prompt cache, `P` rows, is dropped
//!   after the fork, within the same bound).
//! * **logits** `= 4 · R · V · s_f`: logits, scaled logits, `x − max` and its exponentials of
//!   a decode step.
//! * **prefill** `= P · Lp · (heads · Lp · 2 · s_f + Lp · s_f + 3 · intermediate · s_c)`:
//!   attention scores and probabilities, the attention bias, and the MLP activations of the
//!   prefill forward.
//!
//! Weights and small per-token activations are not counted.

use std::ops::Range;

use thinkjudge_model::{LlamaOptions, ModelConfig};

use crate::config::{MemoryPolicy, SamplingConfig};
use crate::error::{Result, RolloutError};

/// The terms of the estimate (bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryEstimate {
    /// KV cache, retain copy included.
    pub kv_cache_bytes: u64,
    /// Logits of one decode step.
    pub logits_bytes: u64,
    /// Attention and MLP activations of the prefill.
    pub prefill_bytes: u64,
}

impl MemoryEstimate {
    /// Sum of the terms.
    pub fn total_bytes(&self) -> u64 {
        self.kv_cache_bytes + self.logits_bytes + self.prefill_bytes
    }

    fn describe(&self) -> String {
        format!(
            "KV cache {:.1} MiB + logits {:.1} MiB + prefill {:.1} MiB",
            mib(self.kv_cache_bytes),
            mib(self.logits_bytes),
            mib(self.prefill_bytes)
        )
    }
}

/// The estimate of the module docs for one decode batch.
pub fn estimate(
    cfg: &ModelConfig,
    options: &LlamaOptions,
    prompts: usize,
    max_prompt_len: usize,
    group_size: usize,
    max_new_tokens: usize,
) -> MemoryEstimate {
    let sc = options.compute_dtype.size_in_bytes() as u64;
    let sf = options.float_dtype().size_in_bytes() as u64;
    let (p, lp) = (prompts as u64, max_prompt_len as u64);
    let rows = p * group_size as u64;
    let slot = cfg.num_layers as u64 * 2 * cfg.num_kv_heads as u64 * cfg.head_dim as u64 * sc;
    let attn = cfg.num_heads as u64 * lp * 2 * sf + lp * sf;
    MemoryEstimate {
        kv_cache_bytes: 2 * rows * (lp + max_new_tokens as u64) * slot,
        logits_bytes: 4 * rows * cfg.vocab_size as u64 * sf,
        prefill_bytes: p * lp * (attn + 3 * cfg.intermediate_size as u64 * sc),
    }
}

/// Consecutive prompt ranges whose estimates fit the budget (one range without a budget).
pub(crate) fn plan_chunks(
    cfg: &ModelConfig,
    options: &LlamaOptions,
    sampling: &SamplingConfig,
    prompt_lens: &[usize],
    group_size: usize,
) -> Result<Vec<Range<usize>>> {
    let n = prompt_lens.len();
    let Some(budget) = sampling.max_memory_bytes else {
        return Ok(std::iter::once(0..n).collect());
    };
    let est = |r: &Range<usize>| {
        let lp = prompt_lens[r.clone()].iter().copied().max().unwrap_or(0);
        estimate(
            cfg,
            options,
            r.len(),
            lp,
            group_size,
            sampling.max_new_tokens,
        )
    };
    let over = |what: String, e: MemoryEstimate, advice| RolloutError::MemoryBudget {
        what,
        needed_mib: mib(e.total_bytes()),
        budget_mib: mib(budget),
        detail: e.describe(),
        advice,
    };
    if sampling.memory_policy == MemoryPolicy::Refuse {
        let e = est(&(0..n));
        if e.total_bytes() > budget {
            let what = format!("{n} prompts x {group_size} samples");
            return Err(over(
                what,
                e,
                "lower group_size, max_new_tokens or the number of prompts, raise \
                 max_memory_bytes, or set memory_policy = \"split\"",
            ));
        }
        return Ok(std::iter::once(0..n).collect());
    }
    let mut chunks = Vec::new();
    let mut start = 0;
    while start < n {
        let first = est(&(start..start + 1));
        if first.total_bytes() > budget {
            let what = format!(
                "prompt {start} ({} tokens) x {group_size} samples",
                prompt_lens[start]
            );
            return Err(over(
                what,
                first,
                "lower group_size or max_new_tokens, shorten the prompt, or raise \
                 max_memory_bytes",
            ));
        }
        let mut end = start + 1;
        while end < n && est(&(start..end + 1)).total_bytes() <= budget {
            end += 1;
        }
        chunks.push(start..end);
        start = end;
    }
    Ok(chunks)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smollm2() -> ModelConfig {
        ModelConfig {
            hidden_size: 576,
            intermediate_size: 1536,
            num_layers: 30,
            num_heads: 9,
            num_kv_heads: 3,
            head_dim: 64,
            ..ModelConfig::tiny(49152)
        }
    }

    #[test]
    fn kv_term_follows_the_formula() {
        let e = estimate(&smollm2(), &LlamaOptions::default(), 8, 128, 4, 128);
        // 2 · 32 rows · 256 slots · 30 layers · 2 · 3 · 64 · 4 bytes.
        assert_eq!(e.kv_cache_bytes, 2 * 32 * 256 * 30 * 2 * 3 * 64 * 4);
        assert_eq!(e.logits_bytes, 4 * 32 * 49152 * 4);
        assert!(e.total_bytes() > e.kv_cache_bytes);
    }

    #[test]
    fn split_and_refuse() {
        let cfg = smollm2();
        let opts = LlamaOptions::default();
        let one = estimate(&cfg, &opts, 1, 100, 4, 64).total_bytes();
        let sampling = SamplingConfig {
            max_new_tokens: 64,
            max_memory_bytes: Some(one * 2 + one / 2),
            ..SamplingConfig::default()
        };
        let lens = vec![100; 5];
        let chunks = plan_chunks(&cfg, &opts, &sampling, &lens, 4).unwrap();
        assert_eq!(chunks, vec![0..2, 2..4, 4..5]);

        let refuse = SamplingConfig {
            memory_policy: MemoryPolicy::Refuse,
            ..sampling.clone()
        };
        let msg = plan_chunks(&cfg, &opts, &refuse, &lens, 4)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("5 prompts x 4 samples"), "{msg}");
        assert!(msg.contains("max_memory_bytes"), "{msg}");

        let tiny_budget = SamplingConfig {
            max_memory_bytes: Some(one / 2),
            ..sampling
        };
        let msg = plan_chunks(&cfg, &opts, &tiny_budget, &lens, 4)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("prompt 0 (100 tokens) x 4 samples"), "{msg}");
    }
}
