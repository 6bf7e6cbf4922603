//! Teacher-forced scoring of completions with the shared-prefix forward (the recipe in
//! thinkjudge-model's `kv_cache` module docs): per-token log-probs and entropies of the G
//! completions of each prompt, with each prompt's activations computed once.
//!
//! 1. The prompts minus their last token run once, left-padded (a fresh cache in `mode`).
//! 2. The cache is forked into G rows per prompt (differentiable in `Mode::Train`).
//! 3. `[last prompt token ‖ completion]` runs right-padded on the fork; the hidden state at
//!    position `j` predicts completion token `j`.
//! 4. `Llama::token_logprobs_with_temperature` on those targets.
//!
//! Use `Mode::Train` for the policy loss (differentiable), `Mode::Infer` for old-policy
//! log-probs, and `Mode::Reference` for the KL reference. Every prompt has exactly G
//! completions (prompt-major, as [`RolloutBatch`](crate::RolloutBatch) orders them); to
//! micro-batch, call this on a slice of prompts and the matching `G ×` slice of completions.

use candle_core::Tensor;
use thinkjudge_model::{Llama, Mode};

use crate::error::{Result, RolloutError};
use crate::padding::{check_ids, owners, pad_rows, Side};

/// Per-token statistics of a batch of completions.
#[derive(Debug, Clone)]
pub struct CompletionScores {
    /// `log softmax(logits / T)[token]` per completion token, 0 at padding; (P·G, Lc) in the
    /// model's float dtype. Differentiable in `Mode::Train`.
    pub logprobs: Tensor,
    /// Entropy of the next-token distribution at each completion token (detached), 0 at
    /// padding; (P·G, Lc).
    pub entropy: Tensor,
    /// 1 for completion tokens, 0 for padding; (P·G, Lc) in the float dtype.
    pub mask: Tensor,
}

/// Scores `completions` (prompt-major, `group_size` per prompt) given their `prompts`.
///
/// `Lc` is the longest completion. Empty completions are allowed (all-zero mask rows).
///
/// # Shapes
/// `prompts` P id lists (non-empty), `completions` P·G id lists → [`CompletionScores`] with
/// (P·G, Lc) tensors.
pub fn score_completions(
    model: &Llama,
    prompts: &[Vec<u32>],
    completions: &[Vec<u32>],
    group_size: usize,
    temperature: f64,
    mode: Mode,
) -> Result<CompletionScores> {
    let (p, g) = (prompts.len(), group_size);
    if g == 0 || completions.len() != p * g {
        return Err(RolloutError::InvalidInput(format!(
            "score_completions needs group_size >= 1 and exactly group_size x prompts \
             completions: got {} completions for {p} prompts, group_size {g}",
            completions.len()
        )));
    }
    if let Some(i) = prompts.iter().position(Vec::is_empty) {
        return Err(RolloutError::InvalidInput(format!("prompt {i} is empty")));
    }
    let vocab = model.config().vocab_size;
    check_ids("prompt", prompts, vocab)?;
    check_ids("completion", completions, vocab)?;
    let (n, dev) = (p * g, model.device());
    let float = model.options().float_dtype();
    let lc = completions.iter().map(Vec::len).max().unwrap_or(0);
    if n == 0 || lc == 0 {
        let zeros = Tensor::zeros((n, lc), float, dev)?;
        return Ok(CompletionScores {
            logprobs: zeros.clone(),
            entropy: zeros.clone(),
            mask: zeros,
        });
    }

    // 1–2. Prompt heads once, forked G times. All heads empty (one-token prompts): no prefix.
    let owners = owners(p, g);
    let heads: Vec<&[u32]> = prompts.iter().map(|r| &r[..r.len() - 1]).collect();
    let mut cache = model.new_cache();
    if heads.iter().any(|h| !h.is_empty()) {
        let (ids, mask) = pad_rows(&heads, Side::Left, dev)?;
        model.forward(&ids, &mask, &mut cache, mode)?;
        cache = cache.fork(&owners)?;
    }

    // 3. [last prompt token ‖ completion], right-padded: (P·G, 1 + Lc).
    let chunks: Vec<Vec<u32>> = owners
        .iter()
        .zip(completions)
        .map(|(&o, c)| {
            let prompt = &prompts[o as usize];
            let mut row = Vec::with_capacity(1 + c.len());
            row.push(prompt[prompt.len() - 1]);
            row.extend_from_slice(c);
            row
        })
        .collect();
    let refs: Vec<&[u32]> = chunks.iter().map(Vec::as_slice).collect();
    let (ids, mask) = pad_rows(&refs, Side::Right, dev)?;
    let hidden = model.forward(&ids, &mask, &mut cache, mode)?; // (N, 1 + Lc, H)
    let hidden = hidden.narrow(1, 0, lc)?; // (N, Lc, H): position j predicts token j

    // 4. Targets are the completions themselves.
    let targets = ids.narrow(1, 1, lc)?; // (N, Lc), pads are id 0
    let stats = model.token_logprobs_with_temperature(&hidden, &targets, temperature, mode)?;
    let cmask = mask.narrow(1, 1, lc)?.to_dtype(float)?; // (N, Lc)
    Ok(CompletionScores {
        logprobs: stats.logprobs.mul(&cmask)?,
        entropy: stats.entropy.mul(&cmask)?,
        mask: cmask,
    })
}
