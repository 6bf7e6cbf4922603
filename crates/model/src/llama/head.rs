//! The LM head: full logits and chunked token log-probs.

use candle_core::Tensor;

use super::layers::Param;
use super::{Llama, Mode};
use crate::error::Result;
use crate::logprobs::{self, TokenStats};

/// Most rows for which [`Llama::logits_mode`] (inference modes, CPU) avoids gemm's `h·Wᵀ`,
/// which repacks the whole (V, H) head on every call: through the packed head
/// ([`crate::ops::panel`]) when the head is frozen, else as `(W·hᵀ)ᵀ`. On SmolLM2's
/// 49152×576 head, 2 threads, at 1 / 8 / 32 rows: packed 4.8 / 8.9 / 14.7 ms, `(W·hᵀ)ᵀ`
/// 6.3 / 16.7 / 27.0 ms (`h·Wᵀ` was 57–62 ms at 32 rows).
pub const LOGITS_SMALL_ROWS: usize = crate::ops::panel::MAX_ROWS;

impl Llama {
    fn head(&self) -> &Param {
        self.lm_head.as_ref().unwrap_or(&self.embed_tokens)
    }

    /// The LM head weight as `mode` uses it, in the compute dtype.
    fn head_weight(&self, mode: Mode) -> Result<Tensor> {
        Ok(self
            .head()
            .in_dtype(self.options.compute_dtype, mode == Mode::Train)?)
    }

    /// Full logits, for tests and evaluation (differentiable through a trainable head; prefer
    /// [`Llama::token_logprobs`] in training: this materialises (B, T, V)). The same as
    /// [`Llama::logits_mode`] with `Mode::Train`.
    ///
    /// # Shapes
    /// `hidden` (B, T, H) → (B, T, V) in the float dtype (f32, or f64 for f64 models).
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        self.logits_mode(hidden, Mode::Train)
    }

    /// Full logits with the LM head as `mode` uses it: in `Mode::Train` differentiable through
    /// a trainable head (as [`Llama::logits`]); in `Mode::Infer` / `Mode::Reference` the head
    /// is detached, so no graph is recorded even under full fine-tuning (use this for
    /// sampling), and a CPU decode batch (at most [`LOGITS_SMALL_ROWS`] rows) avoids gemm's
    /// repacking of the head (see there).
    ///
    /// # Shapes
    /// `hidden` (B, T, H) → (B, T, V) in the float dtype (f32, or f64 for f64 models).
    pub fn logits_mode(&self, hidden: &Tensor, mode: Mode) -> Result<Tensor> {
        self.prepare_thread();
        let (b, t, h) = hidden.dims3()?;
        let w = self.head_weight(mode)?;
        let x = hidden.reshape((b * t, h))?;
        let small = mode != Mode::Train && b * t <= LOGITS_SMALL_ROWS;
        let packed = if small {
            super::layers::packed_matmul(self.head(), &x, self.options.compute_dtype)?
        } else {
            None
        };
        let logits = if let Some(y) = packed {
            y
        } else if small && w.device().is_cpu() && !hidden.track_op() {
            // (V, H)·(H, n) with a row-major W: gemm packs the n-column right-hand side
            // (small) instead of the whole transposed head; at n = 1 the rows of W are split
            // across threads (gemm's gemv runs on one).
            crate::ops::split_matmul(&w, &x.t()?)?.t()?.contiguous()?
        } else {
            x.matmul(&w.t()?)?
        };
        Ok(logits
            .to_dtype(self.options.float_dtype())?
            .reshape((b, t, self.cfg.vocab_size))?)
    }

    /// Log-probabilities of `targets` and next-token entropies, chunked over rows so that no
    /// (B·T, V) tensor is ever materialised (see [`crate::logprobs`]). In `Mode::Train` the
    /// log-probs are differentiable w.r.t. `hidden` and a trainable LM head.
    ///
    /// # Shapes
    /// `hidden` (B, T, H) from [`Llama::forward`], `targets` (B, T) u32 → (B, T) tensors in the
    /// float dtype.
    pub fn token_logprobs(
        &self,
        hidden: &Tensor,
        targets: &Tensor,
        mode: Mode,
    ) -> Result<TokenStats> {
        self.token_logprobs_with_temperature(hidden, targets, 1.0, mode)
    }

    /// [`Llama::token_logprobs`] of the distribution `softmax(logits / temperature)`, the one a
    /// sampler with that temperature draws from.
    pub fn token_logprobs_with_temperature(
        &self,
        hidden: &Tensor,
        targets: &Tensor,
        temperature: f64,
        mode: Mode,
    ) -> Result<TokenStats> {
        self.prepare_thread();
        logprobs::token_stats(
            hidden,
            &self.head_weight(mode)?,
            targets,
            temperature,
            self.options.float_dtype(),
            self.options.logprob_chunk_elems,
        )
    }
}
