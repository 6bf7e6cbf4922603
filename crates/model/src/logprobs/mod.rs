//! Per-token log-probabilities and entropies from hidden states, chunked over rows.
//!
//! `logp(y) = logit[y] − logsumexp(logits)` in the float dtype (f32, f64 for f64 models). A
//! full `(B·T, V)` logits tensor never exists, not even inside the autograd graph: the forward
//! projects `chunk_elems / V` rows at a time through the LM head with detached tensors, and the
//! result is attached to `(hidden, head weight)` by a custom op (see [`crate::ops`]) whose
//! backward recomputes each chunk's logits (the forward keeps only the per-row logsumexp) and
//! returns
//! `d_hidden = ((onehot(y) − p) · g / τ) · W` and, only when the head is trainable,
//! `d_W = ((onehot(y) − p) · g / τ)ᵀ · hidden`.
//!
//! The entropy `H = logsumexp − Σ p·logit` comes out of the same pass and is detached (a
//! statistic for logging; J1 found an entropy bonus harmful, recipe.md §5). The
//! vocabulary-wide passes run as fused CPU kernels (`logprobs/kernels.rs`).

mod kernels;

use candle_core::{DType, Tensor};

use crate::error::{ModelError, Result};
use crate::ops::attach2;

/// Per-token statistics of the model's next-token distribution at each position.
#[derive(Debug, Clone)]
pub struct TokenStats {
    /// `log p(targets[b, t] | inputs[b, ..=t])`, (B, T) in the float dtype (f32, or f64 for f64
    /// models). Differentiable in `Mode::Train`.
    pub logprobs: Tensor,
    /// Entropy of the next-token distribution, (B, T) in the float dtype, detached.
    pub entropy: Tensor,
}

/// Default budget of logits elements materialised at once (64 MiB of f32: 341 rows at
/// V = 49k). Larger chunks amortise the head-gradient accumulation, a full `(V, H)` add per
/// chunk.
pub const DEFAULT_CHUNK_ELEMS: usize = 1 << 24;

/// Chunked log-probs and entropies; differentiable w.r.t. `hidden` and `head` when they carry
/// a graph.
///
/// # Shapes
/// `hidden` (B, T, H) and `head` (V, H) in the compute dtype; `targets` (B, T) u32 →
/// [`TokenStats`] with (B, T) tensors in `float`.
pub(crate) fn token_stats(
    hidden: &Tensor,
    head: &Tensor,
    targets: &Tensor,
    temperature: f64,
    float: DType,
    chunk_elems: usize,
) -> Result<TokenStats> {
    let (b, t, h) = hidden.dims3().map_err(|_| {
        ModelError::Shape(format!(
            "token_logprobs: hidden must be (B, T, H), got {:?}",
            hidden.dims()
        ))
    })?;
    let (v, hh) = head.dims2()?;
    if hh != h {
        return Err(ModelError::Shape(format!(
            "token_logprobs: hidden size {h} does not match the LM head {:?}",
            head.dims()
        )));
    }
    if targets.dims() != [b, t] || targets.dtype() != DType::U32 {
        return Err(ModelError::Shape(format!(
            "token_logprobs: targets must be ({b}, {t}) u32 like hidden, got {:?} {:?}",
            targets.dims(),
            targets.dtype()
        )));
    }
    if !(temperature > 0.0 && temperature.is_finite()) {
        return Err(ModelError::InvalidArgument(format!(
            "token_logprobs: temperature {temperature} must be > 0"
        )));
    }
    let n = b * t;
    if n > 0 {
        let max = targets.flatten_all()?.max(0)?.to_scalar::<u32>()?;
        if max as usize >= v {
            return Err(ModelError::InvalidArgument(format!(
                "token_logprobs: target id {max} is out of range for vocab size {v}"
            )));
        }
    }
    let chunk = Chunking {
        rows: (chunk_elems / v).max(1),
        inv_tau: 1.0 / temperature,
        float,
    };
    let hidden2 = hidden.detach().reshape((n, h))?;
    let targets2 = targets.reshape((n, 1))?;
    let head_d = head.detach();
    let stats = chunk
        .ranges(n)
        .map(|(start, len)| {
            let logits = chunk.logits(&hidden2.narrow(0, start, len)?, &head_d)?;
            kernels::row_stats(
                &logits,
                &targets2.narrow(0, start, len)?,
                chunk.inv_tau,
                true,
            )
        })
        .collect::<candle_core::Result<Vec<_>>>()?;
    let stats = Tensor::cat(&stats, 0)?; // (N, 3): logprob, entropy, logsumexp
    let logprobs = stats.narrow(1, 0, 1)?.reshape((b, t))?;
    let entropy = stats.narrow(1, 1, 1)?.reshape((b, t))?;
    // Kept for the backward: with the logsumexp, softmax is one pass over the recomputed logits.
    let lse = stats.narrow(1, 2, 1)?.contiguous()?;
    let logprobs = attach2(
        hidden,
        head,
        logprobs,
        "token-logprobs",
        move |hid, w, _, g| chunk.backward(hid, w, &targets2, &lse, g),
    )?;
    Ok(TokenStats { logprobs, entropy })
}

/// How the rows are split and scaled; shared by the forward and the recomputing backward.
#[derive(Clone, Copy)]
struct Chunking {
    rows: usize,
    inv_tau: f64,
    float: DType,
}

impl Chunking {
    fn ranges(&self, n: usize) -> impl Iterator<Item = (usize, usize)> {
        let rows = self.rows;
        (0..n).step_by(rows).map(move |s| (s, rows.min(n - s)))
    }

    /// Unscaled logits of one chunk in the float dtype: (n, H) × (V, H) → (n, V).
    fn logits(&self, h: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
        h.matmul(&w.t()?)?.to_dtype(self.float)
    }

    /// Gradients of `Σ g · logprobs` w.r.t. the hidden states and (if it has a graph) the head.
    fn backward(
        &self,
        hidden: &Tensor,
        head: &Tensor,
        targets: &Tensor,
        lse: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let dims = hidden.dims().to_vec();
        let h = *dims.last().unwrap_or(&0);
        let n = targets.dim(0)?;
        let hid = hidden.detach().reshape((n, h))?;
        let w = head.detach();
        let g = g.reshape((n, 1))?.to_dtype(self.float)?;
        let want_dw = head.track_op();
        let mut d_hidden = Vec::new();
        let mut d_head: Option<Tensor> = None;
        for (start, len) in self.ranges(n) {
            let h_c = hid.narrow(0, start, len)?;
            let d = kernels::logit_grad(
                self.logits(&h_c, &w)?,
                &targets.narrow(0, start, len)?,
                &g.narrow(0, start, len)?,
                &lse.narrow(0, start, len)?,
                self.inv_tau,
                true,
            )?
            .to_dtype(w.dtype())?; // (n, V): d logp / d logits · g
            d_hidden.push(d.matmul(&w)?);
            if want_dw {
                let dw = d.t()?.matmul(&h_c)?.to_dtype(self.float)?;
                d_head = Some(match d_head {
                    None => dw,
                    Some(acc) => (acc + dw)?,
                });
            }
        }
        let d_hidden = Tensor::cat(&d_hidden, 0)?.reshape(dims)?;
        let d_head = d_head.map(|d| d.to_dtype(head.dtype())).transpose()?;
        Ok((hidden.track_op().then_some(d_hidden), d_head))
    }
}
