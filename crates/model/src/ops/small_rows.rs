//! `x·Wᵀ` for a few rows of `x` (decode steps), read straight from the row-major weight.
//!
//! gemm repacks its right-hand side on every call and sends single rows to a one-threaded
//! gemv; in a batch-32 decode step its packing and edge kernels took 27% of the CPU samples
//! (the microkernel 41%). Here each thread takes a block of W's rows (output features) and
//! streams them once, computing the dot products with every row of `x`, which stays in cache,
//! four rows of `x` by four of W at a time in AVX-512 registers. Inference only: no graph.

use candle_core::{CpuStorage, Device, Result, Storage, Tensor};
use rayon::prelude::*;

/// Rows of `x` up to which [`small_rows_matmul`] applies.
pub const MAX_ROWS: usize = 32;

/// Lanes of one accumulator: one AVX-512 register of f32.
const LANES: usize = 16;

/// Weight rows that share each load of `x`.
const OUT_BLOCK: usize = 4;

/// Weight rows per thread task.
const TASK_ROWS: usize = 64;

/// `x · wᵀ` for contiguous f32 CPU tensors with at most [`MAX_ROWS`] rows of `x`, on a CPU
/// with AVX-512F; `None` for anything else (the caller then uses `matmul`). Sums run in a
/// different order than gemm's, so results differ from `x.matmul(&w.t())` by rounding only.
///
/// # Shapes
/// `x` (M, K), `w` (N, K) → (M, N).
pub fn small_rows_matmul(x: &Tensor, w: &Tensor) -> Result<Option<Tensor>> {
    let ((m, k), (n, k2)) = (x.dims2()?, w.dims2()?);
    if m == 0 || m > MAX_ROWS || k == 0 || n == 0 || k != k2 || x.track_op() || w.track_op() {
        return Ok(None);
    }
    let (xs, xl) = x.storage_and_layout();
    let (ws, wl) = w.storage_and_layout();
    let (xd, wd) = match (&*xs, &*ws, xl.contiguous_offsets(), wl.contiguous_offsets()) {
        (
            Storage::Cpu(CpuStorage::F32(xd)),
            Storage::Cpu(CpuStorage::F32(wd)),
            Some((x0, x1)),
            Some((w0, w1)),
        ) => (&xd[x0..x1], &wd[w0..w1]),
        _ => return Ok(None),
    };
    if !avx512_available() {
        return Ok(None);
    }
    // yᵀ (N, M), so that each task owns a contiguous block of the output.
    let mut yt = vec![0f32; n * m];
    yt.par_chunks_mut(TASK_ROWS * m)
        .zip(wd.par_chunks(TASK_ROWS * k))
        // SAFETY: the CPU has AVX-512F (checked above); `task` keeps every access in bounds.
        .for_each(|(out, w)| unsafe { task(xd, w, out, m, k) });
    drop((xs, ws));
    let yt = Tensor::from_vec(yt, (n, m), &Device::Cpu)?;
    Ok(Some(if m == 1 {
        yt.reshape((1, n))?
    } else {
        yt.t()?.contiguous()?
    }))
}

fn avx512_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn task(_: &[f32], _: &[f32], _: &mut [f32], _: usize, _: usize) {
    unreachable!("small_rows_matmul checks for AVX-512 first")
}

/// `out[o·m + r] = x[r]·w[o]` for the weight rows `w` of one task.
///
/// # Safety
/// The CPU must support AVX-512F; `x` holds m rows and `w` `out.len() / m` rows of `k`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn task(x: &[f32], w: &[f32], out: &mut [f32], m: usize, k: usize) {
    for (wb, ob) in w.chunks(OUT_BLOCK * k).zip(out.chunks_mut(OUT_BLOCK * m)) {
        if wb.len() < OUT_BLOCK * k {
            for (o, wr) in wb.chunks_exact(k).enumerate() {
                for (r, xr) in x.chunks_exact(k).enumerate() {
                    ob[o * m + r] = dot1(xr, wr);
                }
            }
            continue;
        }
        let mut r = 0;
        while r < m {
            let rows = (m - r).min(ROW_BLOCK);
            let xs = &x[r * k..(r + rows) * k];
            let mut put = |d: &[[f32; OUT_BLOCK]]| {
                for (i, row) in d.iter().enumerate() {
                    for (j, &v) in row.iter().enumerate() {
                        ob[j * m + r + i] = v;
                    }
                }
            };
            match rows {
                ROW_BLOCK => put(&block::<ROW_BLOCK>(xs, wb, k)),
                3 => put(&block::<3>(xs, wb, k)),
                2 => put(&block::<2>(xs, wb, k)),
                _ => put(&block::<1>(xs, wb, k)),
            }
            r += rows;
        }
    }
}

/// Rows of `x` that share each load of the weight rows.
const ROW_BLOCK: usize = 4;

/// The dot products of the `R` rows of `x` (R·k) with the four rows of `w` (4·k), each in
/// 16-lane partial sums: R·4 accumulators, R + 4 loads per R·4 fused multiply-adds.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn block<const R: usize>(x: &[f32], w: &[f32], k: usize) -> [[f32; OUT_BLOCK]; R] {
    use std::arch::x86_64::*;
    assert!(x.len() == R * k && w.len() == OUT_BLOCK * k);
    let full = k / LANES * LANES;
    let (xp, wp) = (x.as_ptr(), w.as_ptr());
    let mut acc = [[_mm512_setzero_ps(); OUT_BLOCK]; R];
    let mut c = 0;
    while c < full {
        // SAFETY: c + LANES ≤ k, so every load stays inside its row of x or w.
        let wv: [__m512; OUT_BLOCK] = std::array::from_fn(|j| _mm512_loadu_ps(wp.add(j * k + c)));
        for (i, row) in acc.iter_mut().enumerate() {
            let xv = _mm512_loadu_ps(xp.add(i * k + c));
            for (a, wj) in row.iter_mut().zip(&wv) {
                *a = _mm512_fmadd_ps(xv, *wj, *a);
            }
        }
        c += LANES;
    }
    std::array::from_fn(|i| {
        std::array::from_fn(|j| {
            let tail: f32 = (full..k).map(|e| x[i * k + e] * w[j * k + e]).sum();
            _mm512_reduce_add_ps(acc[i][j]) + tail
        })
    })
}

/// The dot product of `x` and `w` (both k), in 16-lane partial sums.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dot1(x: &[f32], w: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    assert_eq!(x.len(), w.len());
    let full = x.len() / LANES * LANES;
    let mut acc = _mm512_setzero_ps();
    let mut c = 0;
    while c < full {
        // SAFETY: c + LANES ≤ len.
        acc = _mm512_fmadd_ps(
            _mm512_loadu_ps(x.as_ptr().add(c)),
            _mm512_loadu_ps(w.as_ptr().add(c)),
            acc,
        );
        c += LANES;
    }
    _mm512_reduce_add_ps(acc) + (full..x.len()).map(|i| x[i] * w[i]).sum::<f32>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_matmul_for_every_row_count_and_ragged_sizes() {
        let dev = Device::Cpu;
        // k with a tail past the lanes; n with a partial output block and a partial task.
        let (k, n) = (16 * 5 + 3, TASK_ROWS * 2 + OUT_BLOCK + 2);
        let w = Tensor::randn(0f32, 1.0, (n, k), &dev).unwrap();
        for m in [1, 2, 7, MAX_ROWS] {
            let x = Tensor::randn(0f32, 1.0, (m, k), &dev).unwrap();
            let Some(got) = small_rows_matmul(&x, &w).unwrap() else {
                assert!(!avx512_available(), "declined on an AVX-512 CPU");
                return;
            };
            let want = x.matmul(&w.t().unwrap()).unwrap();
            assert_eq!(got.dims(), want.dims());
            let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap();
            assert!(diff.to_scalar::<f32>().unwrap() < 1e-4, "m = {m}");
        }
        let x = Tensor::randn(0f32, 1.0, (MAX_ROWS + 1, k), &dev).unwrap();
        assert!(small_rows_matmul(&x, &w).unwrap().is_none());
        let x64 = Tensor::randn(0f64, 1.0, (2, k), &dev).unwrap();
        let w64 = w.to_dtype(candle_core::DType::F64).unwrap();
        assert!(small_rows_matmul(&x64, &w64).unwrap().is_none());
    }
}
