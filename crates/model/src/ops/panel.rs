//! `x·Wᵀ` for decode batches (a few dozen rows of `x`) from a frozen weight packed once into
//! column panels.
//!
//! On a 32-row decode step gemm reaches a third of its large-product rate here (58 vs 173
//! GFLOP/s on (32, 576)·(576, 1536), 2 threads): it re-packs an operand on every call and its
//! microkernel is shaped for large `m`. A frozen weight can be packed once instead: panel `p`
//! holds `Wᵀ[·, 48p..48p+48]` row after row (K × 48, contiguous), so a thread streams a panel
//! straight through while 8 rows of `x` × 48 columns accumulate in 24 AVX-512 registers
//! (3 loads and 8 broadcasts per 24 fused multiply-adds). The panel is then still in L2 for
//! the next 8 rows. Inference only: no graph.

use candle_core::{CpuStorage, Device, Result, Storage, Tensor};
use rayon::prelude::*;

/// Output columns per panel: three AVX-512 registers of f32.
const NR: usize = 48;

/// Rows of `x` per register block.
const MR: usize = 8;

/// Rows of `x` up to which [`PackedWeight::matmul`] applies. At 64 rows it was level with
/// gemm (0.85–1.09× on SmolLM2's weights and head), so larger inputs go to gemm.
pub const MAX_ROWS: usize = 64;

/// A weight `W` (N, K) repacked for [`PackedWeight::matmul`]: `N.div_ceil(48)` panels of
/// K × 48 f32, the last zero-padded. Same size as `W` (plus padding).
#[derive(Debug)]
pub struct PackedWeight {
    panels: Vec<f32>,
    n: usize,
    k: usize,
}

impl PackedWeight {
    /// Packs a contiguous f32 CPU weight on a CPU with AVX-512F; `None` for anything else.
    ///
    /// # Shapes
    /// `w` (N, K).
    pub fn pack(w: &Tensor) -> Result<Option<Self>> {
        let (n, k) = w.dims2()?;
        if n == 0 || k == 0 || !super::avx512_available() {
            return Ok(None);
        }
        let (ws, wl) = w.storage_and_layout();
        let wd = match (&*ws, wl.contiguous_offsets()) {
            (Storage::Cpu(CpuStorage::F32(d)), Some((a, b))) => &d[a..b],
            _ => return Ok(None),
        };
        let mut panels = vec![0f32; n.div_ceil(NR) * k * NR];
        panels
            .par_chunks_mut(k * NR)
            .zip(wd.par_chunks(k * NR))
            .for_each(|(panel, rows)| {
                for (j, row) in rows.chunks_exact(k).enumerate() {
                    for (c, &v) in row.iter().enumerate() {
                        panel[c * NR + j] = v;
                    }
                }
            });
        Ok(Some(PackedWeight { panels, n, k }))
    }

    /// `x·Wᵀ` for a contiguous f32 CPU `x` of at most [`MAX_ROWS`] rows that carries no
    /// graph; `None` otherwise (the caller then uses `matmul`). Sums run in another order than
    /// gemm's, so results differ from `x.matmul(&w.t())` by rounding only.
    ///
    /// # Shapes
    /// `x` (M, K) → (M, N).
    pub fn matmul(&self, x: &Tensor) -> Result<Option<Tensor>> {
        let (m, k) = x.dims2()?;
        if m == 0 || m > MAX_ROWS || k != self.k || x.track_op() {
            return Ok(None);
        }
        let (xs, xl) = x.storage_and_layout();
        let xd = match (&*xs, xl.contiguous_offsets()) {
            (Storage::Cpu(CpuStorage::F32(d)), Some((a, b))) => &d[a..b],
            _ => return Ok(None),
        };
        let mut xt = vec![0f32; k * m];
        for (i, row) in xd.chunks_exact(k).enumerate() {
            for (c, &v) in row.iter().enumerate() {
                xt[c * m + i] = v;
            }
        }
        drop(xs);
        // Panel-major result (panel, row, 48), then rows of y.
        let mut out = vec![0f32; self.panels.len() / k * m];
        out.par_chunks_mut(m * NR)
            .zip(self.panels.par_chunks(k * NR))
            // SAFETY: `pack` succeeded only on a CPU with AVX-512F; `panel_task` checks sizes.
            .for_each(|(o, panel)| unsafe { panel_task(&xt, panel, o, m, k) });
        let n = self.n;
        let mut y = vec![0f32; m * n];
        y.par_chunks_mut(n).enumerate().for_each(|(i, row)| {
            for (p, cols) in row.chunks_mut(NR).enumerate() {
                let src = &out[(p * m + i) * NR..][..cols.len()];
                cols.copy_from_slice(src);
            }
        });
        Tensor::from_vec(y, (m, n), &Device::Cpu).map(Some)
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn panel_task(_: &[f32], _: &[f32], _: &mut [f32], _: usize, _: usize) {
    unreachable!("PackedWeight::pack checks for AVX-512 first")
}

/// `out[i·48 + j] = Σ_c xt[c·m + i] · panel[c·48 + j]` for the `m` rows of one panel, in
/// blocks of 8 rows and then 4, 2, 1 for the rest.
///
/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn panel_task(xt: &[f32], panel: &[f32], out: &mut [f32], m: usize, k: usize) {
    assert!(xt.len() == k * m && panel.len() == k * NR && out.len() == m * NR);
    let mut i0 = 0;
    while i0 < m {
        let rows = match m - i0 {
            r if r >= MR => MR,
            r if r >= 4 => 4,
            r if r >= 2 => 2,
            _ => 1,
        };
        let out = &mut out[i0 * NR..(i0 + rows) * NR];
        match rows {
            MR => block::<MR>(xt, panel, out, m, i0, k),
            4 => block::<4>(xt, panel, out, m, i0, k),
            2 => block::<2>(xt, panel, out, m, i0, k),
            _ => block::<1>(xt, panel, out, m, i0, k),
        }
        i0 += rows;
    }
}

/// Rows `i0..i0 + R` of one panel's output: R × 3 accumulators, 3 loads and R broadcasts per
/// 3·R fused multiply-adds.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn block<const R: usize>(
    xt: &[f32],
    panel: &[f32],
    out: &mut [f32],
    m: usize,
    i0: usize,
    k: usize,
) {
    use std::arch::x86_64::*;
    assert!(i0 + R <= m && xt.len() == k * m && panel.len() == k * NR && out.len() == R * NR);
    let (pp, xp) = (panel.as_ptr(), xt.as_ptr().add(i0));
    let mut acc = [[_mm512_setzero_ps(); 3]; R];
    for c in 0..k {
        // SAFETY: c < k and i0 + R ≤ m, so every read is inside `panel` and `xt`.
        let w: [__m512; 3] = std::array::from_fn(|j| _mm512_loadu_ps(pp.add(c * NR + 16 * j)));
        for (i, row) in acc.iter_mut().enumerate() {
            let xv = _mm512_set1_ps(*xp.add(c * m + i));
            for (a, wj) in row.iter_mut().zip(&w) {
                *a = _mm512_fmadd_ps(xv, *wj, *a);
            }
        }
    }
    for (i, row) in acc.iter().enumerate() {
        for (j, a) in row.iter().enumerate() {
            _mm512_storeu_ps(out.as_mut_ptr().add(i * NR + 16 * j), *a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_matmul_for_row_counts_and_ragged_sizes() {
        let dev = Device::Cpu;
        // n with a partial last panel; k not a multiple of anything.
        let (n, k) = (NR * 3 + 5, 37);
        let w = Tensor::randn(0f32, 1.0, (n, k), &dev).unwrap();
        let Some(packed) = PackedWeight::pack(&w).unwrap() else {
            assert!(
                !super::super::avx512_available(),
                "declined on an AVX-512 CPU"
            );
            return;
        };
        for m in [1, MR - 1, MR, MR + 3, MAX_ROWS] {
            let x = Tensor::randn(0f32, 1.0, (m, k), &dev).unwrap();
            let got = packed.matmul(&x).unwrap().expect("applies");
            let want = x.matmul(&w.t().unwrap()).unwrap();
            assert_eq!(got.dims(), want.dims());
            let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap();
            assert!(diff.to_scalar::<f32>().unwrap() < 1e-4, "m = {m}");
        }
        let x = Tensor::randn(0f32, 1.0, (MAX_ROWS + 1, k), &dev).unwrap();
        assert!(packed.matmul(&x).unwrap().is_none());
        let x = Tensor::randn(0f32, 1.0, (2, k + 1), &dev).unwrap();
        assert!(packed.matmul(&x).unwrap().is_none());
        let w64 = w.to_dtype(candle_core::DType::F64).unwrap();
        assert!(PackedWeight::pack(&w64).unwrap().is_none());
    }
}
