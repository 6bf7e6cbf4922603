//! The two vocabulary-wide passes of the chunked log-prob op, as fused CPU kernels with a
//! tensor-op fallback for other devices.
//!
//! Composed from tensor ops, `logsumexp` + `gather` + entropy costs about eight passes over the
//! `(n, V)` logits (each allocating a fresh `(n, V)` tensor); the backward's
//! `(onehot − softmax)·g` another five. At V = 49k these passes cost more than the LM-head
//! matmul on a CPU. The kernels below do each in one read (forward) or one in-place
//! read-modify-write (backward) per row, split over `get_num_threads()` threads.
//!
//! All math is in the logits' dtype (f32 or f64) with f64 row sums, `exp` from
//! [`crate::ops::cpu`]. `s = logit / τ`.

use candle_core::backend::BackendStorage;
use candle_core::{
    bail, CpuStorage, CustomOp2, DType, InplaceOp3, Layout, Result, Shape, Tensor, D,
};

use crate::ops::cpu::{contiguous, par_rows, Real};

/// Per row of scaled logits: `[logprob of the target, entropy, logsumexp]`.
struct RowStats {
    inv_tau: f64,
}

impl RowStats {
    fn run<T: Real>(&self, x: &[T], targets: &[u32], v: usize) -> Result<CpuStorage> {
        let n = targets.len();
        let mut out = vec![T::zero(); n * 3];
        let inv_tau = T::from_f64(self.inv_tau);
        par_rows(&mut out, 3, v, |first, block| {
            let (mut d, mut e) = (vec![T::zero(); v], vec![T::zero(); v]);
            for (k, o) in block.chunks_mut(3).enumerate() {
                let r = first + k;
                let row = &x[r * v..(r + 1) * v];
                let max = row.iter().fold(row[0], |m, &l| if l > m { l } else { m }) * inv_tau;
                for (dj, &l) in d.iter_mut().zip(row) {
                    *dj = l * inv_tau - max;
                }
                e.copy_from_slice(&d);
                T::exp_in_place(&mut e);
                let z = T::sum(&e);
                e.iter_mut().zip(&d).for_each(|(ej, &dj)| *ej *= dj);
                let t = T::sum(&e); // Σ e·d
                let log_z = z.ln();
                o[0] = T::from_f64(d[targets[r] as usize].to_f64() - log_z);
                o[1] = T::from_f64(log_z - t / z);
                o[2] = T::from_f64(max.to_f64() + log_z);
            }
        });
        Ok(T::to_cpu_storage_owned(out))
    }
}

impl CustomOp2 for RowStats {
    fn name(&self) -> &'static str {
        "logprob-row-stats"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, v) = l1.shape().dims2()?;
        let CpuStorage::U32(targets) = s2 else {
            bail!("targets must be u32")
        };
        let targets = contiguous(targets, l2, "targets")?;
        if targets.len() != n || v == 0 || targets.iter().any(|&t| t as usize >= v) {
            bail!(
                "row-stats: {} targets for {n} rows of {v} logits, or out of range",
                targets.len()
            );
        }
        let out = match s1 {
            CpuStorage::F32(x) => self.run(contiguous(x, l1, "logits")?, targets, v)?,
            CpuStorage::F64(x) => self.run(contiguous(x, l1, "logits")?, targets, v)?,
            other => bail!("row-stats: unsupported dtype {:?}", other.dtype()),
        };
        Ok((out, Shape::from((n, 3))))
    }
}

/// Overwrites scaled logits with `d logp / d logit · g = (onehot(y) − softmax) · g / τ`.
struct LogitGrad {
    inv_tau: f64,
}

impl LogitGrad {
    /// `coef` is (n, 2): `[g / τ, logsumexp]` per row.
    fn run<T: Real>(&self, x: &mut [T], targets: &[u32], coef: &[T], v: usize) {
        let inv_tau = T::from_f64(self.inv_tau);
        par_rows(x, v, v, |first, block| {
            for (k, row) in block.chunks_mut(v).enumerate() {
                let r = first + k;
                let (g, lse) = (coef[2 * r], coef[2 * r + 1]);
                row.iter_mut().for_each(|l| *l = *l * inv_tau - lse);
                T::exp_in_place(row); // softmax
                row.iter_mut().for_each(|p| *p = T::zero() - g * *p);
                row[targets[r] as usize] += g;
            }
        });
    }
}

impl InplaceOp3 for LogitGrad {
    fn name(&self) -> &'static str {
        "logprob-logit-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<()> {
        let (n, v) = l1.shape().dims2()?;
        let CpuStorage::U32(targets) = s2 else {
            bail!("targets must be u32")
        };
        let targets = contiguous(targets, l2, "targets")?;
        let Some((a, b)) = l1.contiguous_offsets() else {
            bail!("logits must be contiguous")
        };
        if targets.len() != n || l3.shape().elem_count() != 2 * n {
            bail!("logit-grad: {n} rows but {} targets", targets.len());
        }
        match (s1, s3) {
            (CpuStorage::F32(x), CpuStorage::F32(c)) => {
                self.run(&mut x[a..b], targets, contiguous(c, l3, "coef")?, v)
            }
            (CpuStorage::F64(x), CpuStorage::F64(c)) => {
                self.run(&mut x[a..b], targets, contiguous(c, l3, "coef")?, v)
            }
            (x, _) => bail!("logit-grad: unsupported dtype {:?}", x.dtype()),
        }
        Ok(())
    }
}

/// `[logprob, entropy, logsumexp]` of each row of `logits / τ` at `targets`.
///
/// # Shapes
/// `logits` (n, V) f32/f64, `targets` (n, 1) u32 → (n, 3) in the logits' dtype.
pub(crate) fn row_stats(
    logits: &Tensor,
    targets: &Tensor,
    inv_tau: f64,
    fused: bool,
) -> Result<Tensor> {
    if fused && logits.device().is_cpu() && matches!(logits.dtype(), DType::F32 | DType::F64) {
        return logits
            .contiguous()?
            .apply_op2_no_bwd(&targets.flatten_all()?.contiguous()?, &RowStats { inv_tau });
    }
    let s = logits.affine(inv_tau, 0.0)?;
    let max = s.max_keepdim(D::Minus1)?;
    let shifted = s.broadcast_sub(&max)?;
    let e = shifted.exp()?;
    let z = e.sum_keepdim(D::Minus1)?;
    let log_z = z.log()?;
    let logprob = shifted.gather(targets, D::Minus1)?.sub(&log_z)?;
    let mean_shifted = (e.broadcast_div(&z)? * &shifted)?.sum_keepdim(D::Minus1)?;
    let entropy = log_z.sub(&mean_shifted)?;
    Tensor::cat(&[logprob, entropy, (max + log_z)?], 1)
}

/// `(onehot(targets) − softmax(logits / τ)) · g / τ`, reusing `logits`' storage on the CPU.
///
/// # Shapes
/// `logits` (n, V) f32/f64 (consumed), `targets` (n, 1) u32, `g` and `lse` (n, 1) in the
/// logits' dtype → (n, V).
pub(crate) fn logit_grad(
    logits: Tensor,
    targets: &Tensor,
    g: &Tensor,
    lse: &Tensor,
    inv_tau: f64,
    fused: bool,
) -> Result<Tensor> {
    let g = g.affine(inv_tau, 0.0)?;
    if fused && logits.device().is_cpu() && matches!(logits.dtype(), DType::F32 | DType::F64) {
        let logits = logits.contiguous()?;
        let coef = Tensor::cat(&[&g, lse], 1)?.contiguous()?;
        logits.inplace_op3(&targets.contiguous()?, &coef, &LogitGrad { inv_tau })?;
        return Ok(logits);
    }
    let p = logits.affine(inv_tau, 0.0)?.broadcast_sub(lse)?.exp()?;
    p.broadcast_mul(&g.neg()?)?
        .scatter_add(targets, &g, D::Minus1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn inputs(dtype: DType) -> (Tensor, Tensor) {
        // 7 rows of 5000: enough work to be split over threads.
        let logits = Tensor::arange(0f64, 7.0 * 5000.0, &Device::Cpu)
            .and_then(|t| t.reshape((7, 5000)))
            .and_then(|t| (t * 0.37)?.sin()? * 4.0)
            .and_then(|t| t.to_dtype(dtype))
            .unwrap();
        let targets: Vec<u32> = (0..7).map(|i| (i * 1303 + 5) % 5000).collect();
        let targets = Tensor::from_vec(targets, (7, 1), &Device::Cpu).unwrap();
        (logits, targets)
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a.to_dtype(DType::F64).unwrap() - b.to_dtype(DType::F64).unwrap())
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap()
    }

    #[test]
    fn fused_row_stats_match_tensor_ops() {
        for (dtype, tol) in [(DType::F32, 1e-5), (DType::F64, 1e-12)] {
            let (logits, targets) = inputs(dtype);
            for inv_tau in [1.0, 1.0 / 0.7] {
                let fused = row_stats(&logits, &targets, inv_tau, true).unwrap();
                let plain = row_stats(&logits, &targets, inv_tau, false).unwrap();
                let d = max_diff(&fused, &plain);
                assert!(d < tol, "{dtype:?} τ⁻¹={inv_tau}: {d}");
            }
        }
    }

    #[test]
    fn fused_logit_grad_matches_tensor_ops() {
        for (dtype, tol) in [(DType::F32, 1e-6), (DType::F64, 1e-14)] {
            let (logits, targets) = inputs(dtype);
            let g = Tensor::arange(1f64, 8.0, &Device::Cpu)
                .and_then(|t| t.reshape((7, 1))?.cos()?.to_dtype(dtype))
                .unwrap();
            let inv_tau = 1.3;
            let stats = row_stats(&logits, &targets, inv_tau, false).unwrap();
            let lse = stats.narrow(1, 2, 1).unwrap();
            let fused =
                logit_grad(logits.copy().unwrap(), &targets, &g, &lse, inv_tau, true).unwrap();
            let plain = logit_grad(logits.clone(), &targets, &g, &lse, inv_tau, false).unwrap();
            let d = max_diff(&fused, &plain);
            assert!(d < tol, "{dtype:?}: {d}");
            // Each row of (onehot − p)·g sums to zero.
            let row_sums = fused.sum(1).unwrap();
            assert!(max_diff(&row_sums, &row_sums.zeros_like().unwrap()) < tol * 100.0);
        }
    }

    #[test]
    fn out_of_range_targets_are_rejected() {
        let (logits, _) = inputs(DType::F32);
        let bad = Tensor::full(5000u32, (7, 1), &Device::Cpu).unwrap();
        assert!(row_stats(&logits, &bad, 1.0, true).is_err());
    }
}
