//! Differentiable building blocks for the Llama forward, each with two implementations.
//!
//! candle-nn's fused kernels (`ops::rms_norm`, `rotary_emb::rope`, `ops::softmax_last_dim`)
//! record no backward op: used on an autograd graph they silently drop every gradient upstream
//! (candle.md §1, huggingface/candle#2168). So every op here comes in two [`Kernels`]:
//!
//! * [`Kernels::Composed`]: ordinary differentiable tensor ops. Obviously correct, but each op
//!   expands into 5–10 kernels per direction, and each of them costs a `zeros_like + add` in
//!   candle's `GradStore`.
//! * [`Kernels::Fused`]: the "attach" pattern ([`attach1`] …). The forward runs a fused kernel
//!   on *detached* inputs (candle's, or on the CPU the faster ones in `ops/cpu.rs`); the result
//!   is attached to the inputs by a custom op whose forward only hands back the precomputed
//!   storage (device-agnostic: CPU and CUDA) and whose `bwd` is the analytic gradient.
//!   Inputs that carry no graph get no gradient computed at all.
//!
//! Ops: [`rms_norm`], [`rope`], [`softmax_last_dim`], [`masked_softmax`] (attention scores plus
//! the padding/causal bias), [`silu_mul`] (SwiGLU), [`frozen_linear`], [`lora_linear`].
//!
//! The tests check that both kernels agree on values and gradients (and, for f64 inputs, that
//! the analytic gradients match central finite differences).
//!
//! [`frozen_linear`] is a matmul against a frozen weight whose backward computes only `dx`:
//! candle's matmul backward computes the gradients of *both* operands unconditionally, so a
//! frozen LoRA base would otherwise cost one useless weight-sized matmul per projection.
//! [`dropout`] draws its mask from a seeded host RNG, so training runs are reproducible
//! (candle's CPU RNG cannot be seeded). [`flush_denormals`] keeps subnormal floats from
//! slowing the CPU backward down several-fold.

mod attach;
pub(crate) mod cpu;
pub(crate) mod decode_attention;
pub mod panel;

pub use attach::{attach1, attach2, attach3};

use candle_core::{bail, DType, Result, Tensor, D};
use rand::{Rng, SeedableRng};

/// Which implementation the training forward uses for norms, rotary embeddings, softmax,
/// SwiGLU and LoRA projections. Inference modes always use the fused kernels (no graph is built
/// there).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kernels {
    /// Differentiable compositions of elementary tensor ops.
    Composed,
    /// Fused candle kernels forward, analytic backward via an attached custom op (default).
    #[default]
    Fused,
}

/// `x · wᵀ` for a frozen `w`: the backward returns only `dx = dy · w` (no weight gradient).
///
/// # Shapes
/// `x` (N, in), `w` (out, in) → (N, out).
pub fn frozen_linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let w = w.detach();
    let y = x.detach().matmul(&w.t()?)?;
    attach1(x, y, "frozen-linear", move |_, g| Ok(Some(g.matmul(&w)?)))
}

/// Multiply-adds below which [`split_matmul`] does not split (the thread hand-off costs more).
const SPLIT_MIN_WORK: usize = 1 << 17;

/// `a · b` with the output split along its longer side across the rayon pool, for products
/// with a single row or column: gemm sends those to its gemv kernel, which runs on one thread
/// whatever parallelism it is given, so a batch-1 decode step would leave the other cores idle.
/// Each part is an ordinary gemv on a slice of the larger operand; results equal `a.matmul(b)`
/// (the same per-element sums). Inference only: no graph is recorded.
///
/// # Shapes
/// `a` (M, K), `b` (K, N) with M = 1 or N = 1 → (M, N). Other shapes fall back to `matmul`.
pub fn split_matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    use rayon::prelude::*;
    let (m, k) = a.dims2()?;
    let (_, n) = b.dims2()?;
    let threads = candle_core::utils::get_num_threads();
    let (dim, len) = if m == 1 { (1, n) } else { (0, m) };
    if threads < 2 || (m != 1 && n != 1) || len * k < SPLIT_MIN_WORK || !a.device().is_cpu() {
        return a.matmul(b);
    }
    let chunk = len.div_ceil(threads);
    let parts = (0..len)
        .step_by(chunk)
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|start| {
            let size = chunk.min(len - start);
            if dim == 1 {
                a.matmul(&b.narrow(1, start, size)?)
            } else {
                a.narrow(0, start, size)?.matmul(b)
            }
        })
        .collect::<Result<Vec<_>>>()?;
    Tensor::cat(&parts, dim)
}

/// A frozen projection plus its LoRA update, `x·wᵀ + s·(x·aᵀ)·bᵀ`, as one graph node whose
/// backward computes `dx`, `da`, `db` (whichever carry a graph) and never `dw`. One node
/// instead of five saves their gradient buffers (candle allocates a zeroed gradient per node).
///
/// # Shapes
/// `x` (N, in), `w` (out, in), `a` (r, in), `b` (out, r) → (N, out).
pub fn lora_linear(x: &Tensor, w: &Tensor, a: &Tensor, b: &Tensor, scale: f64) -> Result<Tensor> {
    let w = w.detach();
    let (xd, ad, bd) = (x.detach(), a.detach(), b.detach());
    let low = xd.matmul(&ad.t()?)?; // (N, r)
    let y = (xd.matmul(&w.t()?)? + low.affine(scale, 0.0)?.matmul(&bd.t()?)?)?;
    attach3(x, a, b, y, "lora-linear", move |x, a, b, g| {
        let gb = g.matmul(&bd)?.affine(scale, 0.0)?; // s·g·b, (N, r)
        let dx = x
            .track_op()
            .then(|| g.matmul(&w)? + gb.matmul(&ad)?)
            .transpose()?;
        let da = a.track_op().then(|| gb.t()?.matmul(&xd)).transpose()?;
        let db = if b.track_op() {
            let low = xd.matmul(&ad.t()?)?.affine(scale, 0.0)?;
            Some(g.t()?.matmul(&low)?)
        } else {
            None
        };
        Ok((dx, da, db))
    })
}

/// RMSNorm `x / sqrt(mean(x²) + eps) · w`, normalised in `float` (f32 for half compute dtypes)
/// and multiplied by `w` in `x`'s dtype, like HF `LlamaRMSNorm`.
///
/// # Shapes
/// `x` (…, H), `w` (H) of `x`'s dtype → same shape as `x`.
pub fn rms_norm(
    x: &Tensor,
    w: &Tensor,
    eps: f64,
    float: DType,
    kernels: Kernels,
) -> Result<Tensor> {
    let composed = |x: &Tensor, w: &Tensor| -> Result<Tensor> {
        let xf = x.to_dtype(float)?;
        let r = xf
            .sqr()?
            .mean_keepdim(D::Minus1)?
            .affine(1.0, eps)?
            .sqrt()?
            .recip()?;
        xf.broadcast_mul(&r)?.to_dtype(x.dtype())?.broadcast_mul(w)
    };
    if kernels == Kernels::Composed && (x.track_op() || w.track_op()) {
        return composed(x, w);
    }
    let (xd, wd) = (x.detach(), w.detach());
    // candle's fused rms_norm has no f64 CPU kernel; f64 models (gradient checks) compose it.
    let y = if x.dtype() == DType::F64 {
        composed(&xd, &wd)?
    } else {
        candle_nn::ops::rms_norm(&xd.contiguous()?, &wd, eps as f32)?
    };
    attach2(x, w, y, "rms-norm", move |x, w, _, g| {
        let xf = x.detach().to_dtype(float)?;
        let r = xf
            .sqr()?
            .mean_keepdim(D::Minus1)?
            .affine(1.0, eps)?
            .sqrt()?
            .recip()?;
        let xhat = xf.broadcast_mul(&r)?;
        let g = g.to_dtype(float)?;
        let dw = if w.track_op() {
            let h = w.dim(0)?;
            let gx = (&g * &xhat)?.reshape(((), h))?.sum(0)?;
            Some(gx.to_dtype(w.dtype())?)
        } else {
            None
        };
        let dx = if x.track_op() {
            let gw = g.broadcast_mul(&w.detach().to_dtype(float)?)?;
            let proj = (&gw * &xhat)?.mean_keepdim(D::Minus1)?;
            let dx = gw.sub(&xhat.broadcast_mul(&proj)?)?.broadcast_mul(&r)?;
            Some(dx.to_dtype(x.dtype())?)
        } else {
            None
        };
        Ok((dx, dw))
    })
}

/// Rotary embedding in the HF (non-interleaved, `rotate_half`) layout with per-row angles, so
/// left-padded rows and cached rows at different positions rotate correctly.
///
/// # Shapes
/// `x` (B, heads, T, D); `cos`, `sin` (B, T, D/2) of `x`'s dtype → (B, heads, T, D).
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor, kernels: Kernels) -> Result<Tensor> {
    if kernels == Kernels::Composed && x.track_op() {
        let d = x.dim(D::Minus1)?;
        let cos = Tensor::cat(&[cos, cos], D::Minus1)?.unsqueeze(1)?; // (B, 1, T, D)
        let sin = Tensor::cat(&[sin, sin], D::Minus1)?.unsqueeze(1)?;
        let x1 = x.narrow(D::Minus1, 0, d / 2)?;
        let x2 = x.narrow(D::Minus1, d / 2, d / 2)?;
        let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
        return x.broadcast_mul(&cos)? + rotated.broadcast_mul(&sin)?;
    }
    let y = candle_nn::rotary_emb::rope(&x.detach().contiguous()?, cos, sin)?;
    let (cos, neg_sin) = (cos.detach(), sin.detach().neg()?);
    // The rotation is linear and orthogonal: its adjoint is the rotation by −θ.
    attach1(x, y, "rope", move |_, g| {
        Ok(Some(candle_nn::rotary_emb::rope(
            &g.contiguous()?,
            &cos,
            &neg_sin,
        )?))
    })
}

/// `softmax(x + bias)` over the last dimension, for attention scores and an additive mask
/// (the bias carries no gradient). Adding the mask inside the kernel saves a full-size tensor
/// in the forward and two in the backward.
///
/// # Shapes
/// `x` (B, H, T, S), `bias` (B, T, S) → (B, H, T, S).
pub fn masked_softmax(x: &Tensor, bias: &Tensor, kernels: Kernels) -> Result<Tensor> {
    if kernels == Kernels::Composed && x.track_op() {
        return softmax_last_dim(&x.broadcast_add(&bias.unsqueeze(1)?)?, kernels);
    }
    let y = if cpu::applies(x) {
        cpu::masked_softmax(&x.detach(), &bias.detach())?
    } else {
        let masked = x.detach().broadcast_add(&bias.detach().unsqueeze(1)?)?;
        candle_nn::ops::softmax_last_dim(&masked)?
    };
    attach1(x, y, "masked-softmax", softmax_backward)
}

/// Softmax over the last dimension.
///
/// # Shapes
/// any shape → same shape.
pub fn softmax_last_dim(x: &Tensor, kernels: Kernels) -> Result<Tensor> {
    if kernels == Kernels::Composed && x.track_op() {
        // The max is a constant shift: detaching it keeps its (zero) gradient out of the graph.
        let max = x.max_keepdim(D::Minus1)?.detach();
        let e = x.broadcast_sub(&max)?.exp()?;
        return e.broadcast_div(&e.sum_keepdim(D::Minus1)?);
    }
    let y = if cpu::applies(x) {
        cpu::softmax_last_dim(&x.detach())?
    } else {
        candle_nn::ops::softmax_last_dim(&x.detach().contiguous()?)?
    };
    attach1(x, y, "softmax", softmax_backward)
}

/// `dx = y ⊙ (dy − Σ dy ⊙ y)` for `y = softmax(x)` over the last dimension.
fn softmax_backward(y: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
    let gy = (g * y)?.sum_keepdim(D::Minus1)?;
    Ok(Some((y * g.broadcast_sub(&gy)?)?))
}

/// Sets flush-to-zero and denormals-are-zero on the calling thread and on every candle CPU
/// worker thread (its barrier pool, its private rayon pool and rayon's global pool, which runs
/// the matmuls). Subnormal floats then compute as 0.
///
/// Why: peaked attention makes softmax probabilities like 1e-36, and the backward multiplies
/// them by small gradients into the subnormal range, where x86 arithmetic takes microcode
/// assists: measured 4–5× slower backward on the SmolLM2-sized model (105 s vs 28 s per
/// step). TensorFlow and XLA run their CPU pools this way too. No-op off x86-64.
pub fn flush_denormals() {
    flush_denormals_on_this_thread();
    candle_core::utils::barrier_pool().execute(|_| flush_denormals_on_this_thread());
    rayon::broadcast(|_| flush_denormals_on_this_thread());
    candle_core::utils::with_threadpool(|| {
        rayon::broadcast(|_| flush_denormals_on_this_thread());
    });
}

/// [`flush_denormals`] for the calling thread only (cheap: one register write).
#[cfg(target_arch = "x86_64")]
#[allow(deprecated)] // `_mm_setcsr` is deprecated in favour of inline asm; same instruction.
pub fn flush_denormals_on_this_thread() {
    use std::arch::x86_64::{_mm_getcsr, _mm_setcsr};
    const FTZ: u32 = 1 << 15;
    const DAZ: u32 = 1 << 6;
    // SAFETY: sets two MXCSR mode bits (SSE is part of x86-64); no memory is touched.
    unsafe { _mm_setcsr(_mm_getcsr() | FTZ | DAZ) }
}

/// [`flush_denormals`] for the calling thread only (no-op off x86-64).
#[cfg(not(target_arch = "x86_64"))]
pub fn flush_denormals_on_this_thread() {}

/// The SwiGLU product `silu(gate) ⊙ up`.
///
/// # Shapes
/// `gate`, `up` (N, I) of one dtype → (N, I).
pub fn silu_mul(gate: &Tensor, up: &Tensor, kernels: Kernels) -> Result<Tensor> {
    if kernels == Kernels::Composed && (gate.track_op() || up.track_op()) {
        return gate.silu()? * up;
    }
    let (gd, ud) = (gate.detach(), up.detach());
    let fused = cpu::applies(gate);
    let y = if fused {
        cpu::silu_mul(&gd, &ud)?
    } else {
        (gd.silu()? * &ud)?
    };
    attach2(gate, up, y, "silu-mul", move |gate, up, _, g| {
        let (d_gate, d_up) = if fused {
            cpu::silu_mul_grad(&gd, &ud, g)?
        } else {
            // σ(gate) and d silu / d gate = σ · (1 + gate · (1 − σ)).
            let s = (gd.neg()?.exp()? + 1.0)?.recip()?;
            let dsilu = (&s * ((&gd * (1.0 - &s)?)? + 1.0)?)?;
            ((g * &ud)?.mul(&dsilu)?, (g * (&gd * &s)?)?)
        };
        Ok((
            gate.track_op().then_some(d_gate),
            up.track_op().then_some(d_up),
        ))
    })
}

/// Inverted dropout with a mask drawn from a ChaCha8 RNG seeded with `seed`: each element is
/// zeroed with probability `p`, the rest scaled by `1 / (1 − p)`.
///
/// # Shapes
/// any shape → same shape.
pub fn dropout(x: &Tensor, p: f64, seed: u64) -> Result<Tensor> {
    if p <= 0.0 {
        return Ok(x.clone());
    }
    if p >= 1.0 {
        bail!("dropout probability {p} must be < 1");
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let keep = 1.0 / (1.0 - p);
    let mask: Vec<f32> = (0..x.elem_count())
        .map(|_| {
            if rng.random::<f64>() < p {
                0.0
            } else {
                keep as f32
            }
        })
        .collect();
    let mask = Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?;
    x * mask
}

/// Whether this CPU runs the AVX-512F kernels of [`panel`].
pub(crate) fn avx512_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(test)]
mod tests;
