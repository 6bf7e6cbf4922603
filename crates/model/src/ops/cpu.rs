//! Fused CPU kernels for the elementwise-heavy parts of the forward and backward: softmax over
//! the last dimension and the SwiGLU product `silu(gate) · up` (and its gradient).
//!
//! Why hand-written: candle's CPU `exp` is libm's scalar `expf` (about 10 ns with its errno
//! handling), and a composed op allocates one full-size tensor per elementary step. The kernels
//! below make one pass per row with a branch-free polynomial `exp` that the compiler
//! vectorises, and split rows over `get_num_threads()` threads. f64 (gradient checks) uses
//! `f64::exp`. Other devices fall back to candle ops in [`super`].

use candle_core::backend::BackendStorage;
use candle_core::{
    bail, CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor, WithDType,
};

/// The float types the kernels run in.
pub(crate) trait Real: WithDType + PartialOrd + Send + Sync {
    /// `x ← exp(x)` elementwise.
    fn exp_in_place(xs: &mut [Self]);
    /// Sum, accumulated in f64 across blocks.
    fn sum(xs: &[Self]) -> f64;
}

impl Real for f32 {
    fn exp_in_place(xs: &mut [f32]) {
        for x in xs.iter_mut() {
            *x = exp_f32(*x);
        }
    }

    fn sum(xs: &[f32]) -> f64 {
        // 16 f32 lanes per 256-element block (vectorised), blocks added in f64.
        xs.chunks(256)
            .map(|block| {
                let mut lanes = [0f32; 16];
                let mut it = block.chunks_exact(16);
                for c in &mut it {
                    for (l, v) in lanes.iter_mut().zip(c) {
                        *l += v;
                    }
                }
                let tail: f32 = it.remainder().iter().sum();
                f64::from(lanes.iter().sum::<f32>() + tail)
            })
            .sum()
    }
}

impl Real for f64 {
    fn exp_in_place(xs: &mut [f64]) {
        for x in xs.iter_mut() {
            *x = x.exp();
        }
    }

    fn sum(xs: &[f64]) -> f64 {
        xs.iter().sum()
    }
}

/// `exp(x)` in f32 to about 2 ulp (Cephes `expf`: `x = n·ln2 + r`, a degree-5 polynomial for
/// `eʳ`, `2ⁿ` built in the exponent bits). Branch-free so that loops over it vectorise.
/// `exp(x) = 0` below −87.3 (where f32 would go subnormal); `x` is clamped above 88.37.
#[inline(always)]
pub(crate) fn exp_f32(x: f32) -> f32 {
    const LO: f32 = -87.336_55;
    const HI: f32 = 88.376_26;
    let xc = x.clamp(LO, HI);
    let t = xc * std::f32::consts::LOG2_E + 0.5;
    // floor(t) without a libm call: truncate, then step down for negative non-integers.
    let n = t as i32;
    let n = n - i32::from(t < n as f32);
    let nf = n as f32;
    let r = xc - nf * 0.693_359_4 - nf * -2.121_944_4e-4;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 0.166_666_65)
        * r
        + 0.5;
    let e = p * r * r + r + 1.0;
    let y = e * f32::from_bits(((n + 127) as u32) << 23);
    if x < LO {
        0.0
    } else {
        y
    }
}

/// The contiguous slice a layout views (the kernels only take contiguous tensors).
pub(crate) fn contiguous<'a, T>(data: &'a [T], l: &Layout, what: &str) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => bail!("{what} must be contiguous"),
    }
}

/// Runs `f(first_row, block)` on `out` split into one block of whole rows per thread (the
/// last block may end in a partial row when `out.len()` is not a multiple of `width`).
/// `row_cost` is the number of elements a row's work touches (its width for elementwise
/// kernels, the vocabulary for per-row statistics): small jobs stay on the calling thread.
pub(crate) fn par_rows<T: Send>(
    out: &mut [T],
    width: usize,
    row_cost: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    let n = out.len() / width.max(1);
    // Below ~32k elements of work (decode steps) a thread spawn costs more than it saves.
    let threads = if n.saturating_mul(row_cost) < 1 << 15 {
        1
    } else {
        candle_core::utils::get_num_threads()
    };
    par_rows_on(threads, out, width, f)
}

fn par_rows_on<T: Send>(
    threads: usize,
    out: &mut [T],
    width: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    let threads = threads.max(1);
    let n = out.len() / width.max(1);
    let per = n.div_ceil(threads).max(1);
    if threads == 1 || n <= 1 {
        f(0, out);
        return;
    }
    // On rayon's pool, which also runs the matmuls: threads spawned per call competed for the
    // cores with its idle-spinning workers (decode attention at batch 32 took 60 ms per step
    // that way, 35 ms on the pool).
    use rayon::prelude::*;
    out.par_chunks_mut(per * width)
        .enumerate()
        .for_each(|(i, block)| {
            super::flush_denormals_on_this_thread();
            f(i * per, block)
        });
}

/// Dispatches `$f::<T>($a, $b, …)` on the dtype of f32/f64 CPU storages.
macro_rules! float_dispatch {
    ($name:expr, $f:ident, $($s:ident, $l:ident),+) => {
        match ($($s),+) {
            ($(CpuStorage::F32($s)),+) => $f::<f32>($(contiguous($s, $l, $name)?),+),
            ($(CpuStorage::F64($s)),+) => $f::<f64>($(contiguous($s, $l, $name)?),+),
            _ => bail!("{}: only f32 and f64 are supported", $name),
        }
    };
}

/// Softmax over the last dimension.
struct Softmax;

fn softmax_kernel<T: Real>(x: &[T], v: usize) -> Result<CpuStorage> {
    let mut out = x.to_vec();
    par_rows(&mut out, v, v, |_, block| {
        for row in block.chunks_mut(v) {
            let max = row.iter().fold(row[0], |m, &e| if e > m { e } else { m });
            row.iter_mut().for_each(|e| *e -= max);
            T::exp_in_place(row);
            let inv = T::from_f64(1.0 / T::sum(row));
            row.iter_mut().for_each(|e| *e *= inv);
        }
    });
    Ok(T::to_cpu_storage_owned(out))
}

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "softmax-cpu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let v = l.dims().last().copied().unwrap_or(1).max(1);
        let out = match s {
            CpuStorage::F32(x) => softmax_kernel(contiguous(x, l, "softmax")?, v)?,
            CpuStorage::F64(x) => softmax_kernel(contiguous(x, l, "softmax")?, v)?,
            other => bail!("softmax-cpu: unsupported dtype {:?}", other.dtype()),
        };
        Ok((out, l.shape().clone()))
    }
}

/// `softmax(x + bias)` with `x` (B, G, T, S) and `bias` (B, T, S) broadcast over G.
struct MaskedSoftmax;

fn masked_softmax_kernel<T: Real>(
    x: &[T],
    bias: &[T],
    g: usize,
    t: usize,
    s: usize,
) -> Result<CpuStorage> {
    let mut out = x.to_vec();
    par_rows(&mut out, s, s, |first, block| {
        for (k, row) in block.chunks_mut(s).enumerate() {
            let r = first + k; // row of (B·G·T)
            let bias_row = (r / (g * t)) * t + r % t;
            let brow = &bias[bias_row * s..(bias_row + 1) * s];
            row.iter_mut().zip(brow).for_each(|(e, &b)| *e += b);
            let max = row.iter().fold(row[0], |m, &e| if e > m { e } else { m });
            row.iter_mut().for_each(|e| *e -= max);
            T::exp_in_place(row);
            let inv = T::from_f64(1.0 / T::sum(row));
            row.iter_mut().for_each(|e| *e *= inv);
        }
    });
    Ok(T::to_cpu_storage_owned(out))
}

impl CustomOp2 for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "masked-softmax-cpu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, g, t, s) = l1.shape().dims4()?;
        if l2.dims() != [b, t, s] {
            bail!(
                "masked-softmax: bias {:?} does not match scores {:?}",
                l2.dims(),
                l1.dims()
            );
        }
        let out = match (s1, s2) {
            (CpuStorage::F32(x), CpuStorage::F32(m)) => masked_softmax_kernel(
                contiguous(x, l1, "scores")?,
                contiguous(m, l2, "bias")?,
                g,
                t,
                s,
            )?,
            (CpuStorage::F64(x), CpuStorage::F64(m)) => masked_softmax_kernel(
                contiguous(x, l1, "scores")?,
                contiguous(m, l2, "bias")?,
                g,
                t,
                s,
            )?,
            _ => bail!("masked-softmax: scores and bias must both be f32 or f64"),
        };
        Ok((out, l1.shape().clone()))
    }
}

/// `silu(gate) · up = gate · up / (1 + e^(−gate))`.
struct SiluMul;

fn silu_mul_kernel<T: Real>(gate: &[T], up: &[T]) -> Result<CpuStorage> {
    let mut out: Vec<T> = gate.iter().map(|&g| T::zero() - g).collect();
    // Rows of 1024 elements are only a work split: the op is elementwise.
    par_rows(&mut out, 1024, 1024, |first, block| {
        T::exp_in_place(block);
        let (g, u) = (&gate[first * 1024..], &up[first * 1024..]);
        for (i, e) in block.iter_mut().enumerate() {
            *e = g[i] * u[i] / (T::one() + *e);
        }
    });
    Ok(T::to_cpu_storage_owned(out))
}

impl CustomOp2 for SiluMul {
    fn name(&self) -> &'static str {
        "silu-mul-cpu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        if l1.shape() != l2.shape() {
            bail!(
                "silu-mul: shapes {:?} and {:?} differ",
                l1.shape(),
                l2.shape()
            );
        }
        let out = float_dispatch!("silu-mul", silu_mul_kernel, s1, l1, s2, l2)?;
        Ok((out, l1.shape().clone()))
    }
}

/// Gradient of `Σ g · silu(gate) · up`: `[d_gate; d_up]` stacked on a new leading axis.
struct SiluMulGrad;

fn silu_mul_grad_kernel<T: Real>(gate: &[T], up: &[T], grad: &[T]) -> Result<CpuStorage> {
    const W: usize = 1024;
    let n = gate.len();
    let mut out = vec![T::zero(); 2 * n];
    let (d_gate, d_up) = out.split_at_mut(n);
    // 1. d_up ← e^(−gate)
    par_rows(d_up, W, W, |first, block| {
        for (i, e) in block.iter_mut().enumerate() {
            *e = T::zero() - gate[first * W + i];
        }
        T::exp_in_place(block);
    });
    // 2. d_gate = grad · up · σ · (1 + gate · (1 − σ)), σ = 1 / (1 + e^(−gate))
    let e_neg: &[T] = d_up;
    par_rows(d_gate, W, W, |first, block| {
        for (i, d) in block.iter_mut().enumerate() {
            let k = first * W + i;
            let s = T::one() / (T::one() + e_neg[k]);
            *d = grad[k] * up[k] * s * (T::one() + gate[k] * (T::one() - s));
        }
    });
    // 3. d_up = grad · silu(gate) = grad · gate · σ
    par_rows(d_up, W, W, |first, block| {
        for (i, d) in block.iter_mut().enumerate() {
            let k = first * W + i;
            *d = grad[k] * gate[k] / (T::one() + *d);
        }
    });
    Ok(T::to_cpu_storage_owned(out))
}

impl CustomOp3 for SiluMulGrad {
    fn name(&self) -> &'static str {
        "silu-mul-grad-cpu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        if l1.shape() != l2.shape() || l1.shape() != l3.shape() {
            bail!("silu-mul-grad: shapes differ");
        }
        let out = float_dispatch!(
            "silu-mul-grad",
            silu_mul_grad_kernel,
            s1,
            l1,
            s2,
            l2,
            s3,
            l3
        )?;
        let mut dims = vec![2];
        dims.extend(l1.dims());
        Ok((out, Shape::from(dims)))
    }
}

/// Whether the fused CPU kernels apply to `x`.
pub(crate) fn applies(x: &Tensor) -> bool {
    x.device().is_cpu() && matches!(x.dtype(), candle_core::DType::F32 | candle_core::DType::F64)
}

/// Softmax over the last dimension (no graph). # Shapes: any → same.
pub(crate) fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1_no_bwd(&Softmax)
}

/// `softmax(x + bias)` (no graph). # Shapes: (B, G, T, S), (B, T, S) → (B, G, T, S).
pub(crate) fn masked_softmax(x: &Tensor, bias: &Tensor) -> Result<Tensor> {
    x.contiguous()?
        .apply_op2_no_bwd(&bias.contiguous()?, &MaskedSoftmax)
}

/// `silu(gate) · up` (no graph). # Shapes: (N, I), (N, I) → (N, I).
pub(crate) fn silu_mul(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    gate.contiguous()?
        .apply_op2_no_bwd(&up.contiguous()?, &SiluMul)
}

/// `(d_gate, d_up)` of `Σ grad · silu(gate) · up`. # Shapes: three (N, I) → two (N, I).
pub(crate) fn silu_mul_grad(gate: &Tensor, up: &Tensor, grad: &Tensor) -> Result<(Tensor, Tensor)> {
    let both = gate.contiguous()?.apply_op3_no_bwd(
        &up.contiguous()?,
        &grad.contiguous()?,
        &SiluMulGrad,
    )?;
    Ok((both.get(0)?, both.get(1)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_is_accurate_and_safe_at_the_ends() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let rel = ((exp_f32(x) as f64) - (x as f64).exp()).abs() / (x as f64).exp();
            worst = worst.max(rel);
            x += 0.0137;
        }
        assert!(worst < 5e-7, "max relative error {worst}");
        assert_eq!(exp_f32(-1e9), 0.0);
        assert_eq!(exp_f32(-88.0), 0.0);
        assert!(exp_f32(1e9).is_finite());
        assert_eq!(exp_f32(0.0), 1.0);
    }

    #[test]
    fn row_blocks_cover_every_element_once_with_its_row() {
        for (len, width) in [
            (50_000usize, 1024usize),
            (40 * 1100, 1100),
            (3 * 70_000, 70_000),
        ] {
            let mut out = vec![usize::MAX; len];
            par_rows_on(3, &mut out, width, |first, block| {
                for (i, e) in block.iter_mut().enumerate() {
                    *e = first * width + i;
                }
            });
            assert!(
                out.iter().enumerate().all(|(i, &e)| e == i),
                "{len} / {width}"
            );
        }
    }

    #[test]
    fn blocked_sum_matches_f64_sum() {
        let xs: Vec<f32> = (0..10_007)
            .map(|i| ((i as f32) * 0.37).sin().abs())
            .collect();
        let exact: f64 = xs.iter().map(|&x| f64::from(x)).sum();
        assert!((<f32 as Real>::sum(&xs) - exact).abs() < 1e-6 * exact);
    }
}
