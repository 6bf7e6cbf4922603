//! Row gathers of inference KV buffers that copy only the filled key slots.
//!
//! An inference buffer holds `capacity` slots per row, of which only the first `len` are
//! filled. `index_select` copies every slot; at batch 32 × 256 slots that is ~377 MB per
//! `retain` for SmolLM2-135M. These CPU kernels copy the filled slots only: [`gather`] into a
//! fresh zeroed buffer (for `fork`), [`compact_in_place`] within the buffer itself (for
//! `retain` with increasing rows, no allocation at all).
//!
//! A buffer row is viewed as `lines` lines of `line_len` elements whose first `live` are
//! filled: kᵀ `(B, n_kv, D, cap)` has `n_kv·D` lines of `cap` slots; v `(B, n_kv, cap, D)` has
//! `n_kv` lines of `cap·D` elements, `len·D` of them live.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp1, InplaceOp1, Layout, Result, Shape, Tensor};

/// Where a buffer row's filled elements are: `lines` lines of `line_len`, the first `live` of
/// each filled.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lines {
    pub lines: usize,
    pub line_len: usize,
    pub live: usize,
}

/// Which rows to copy and where their filled slots are.
struct RowCopy<'a> {
    /// Output row `j` is input row `rows[j]`.
    rows: &'a [u32],
    lines: usize,
    line_len: usize,
    live: usize,
}

impl<'a> RowCopy<'a> {
    fn new(rows: &'a [u32], l: Lines) -> Self {
        Self {
            rows,
            lines: l.lines,
            line_len: l.line_len,
            live: l.live,
        }
    }

    fn row_len(&self) -> usize {
        self.lines * self.line_len
    }

    /// Fresh buffer (zeros outside the filled slots) whose row `j` is row `rows[j]` of `src`.
    fn gather<T: Copy + Default>(&self, src: &[T]) -> Vec<T> {
        let n = self.row_len();
        let mut dst = vec![T::default(); self.rows.len() * n];
        for (j, &r) in self.rows.iter().enumerate() {
            for l in 0..self.lines {
                let s = r as usize * n + l * self.line_len;
                let d = j * n + l * self.line_len;
                dst[d..d + self.live].copy_from_slice(&src[s..s + self.live]);
            }
        }
        dst
    }

    /// Moves row `rows[j]` to row `j` within `buf`; `rows` must be strictly increasing (so no
    /// source row is overwritten before it is read).
    fn compact<T: Copy>(&self, buf: &mut [T]) {
        let n = self.row_len();
        for (j, &r) in self.rows.iter().enumerate() {
            let r = r as usize;
            if r == j {
                continue;
            }
            for l in 0..self.lines {
                let s = r * n + l * self.line_len;
                buf.copy_within(s..s + self.live, j * n + l * self.line_len);
            }
        }
    }

    fn check(&self, l: &Layout) -> Result<(usize, usize)> {
        let Some((start, end)) = l.contiguous_offsets() else {
            bail!("kv row copy: the buffer must be contiguous")
        };
        let b = l.dims().first().copied().unwrap_or(0);
        if b * self.row_len() != end - start || self.live > self.line_len {
            bail!("kv row copy: layout {:?} does not match the plan", l.dims());
        }
        if let Some(&r) = self.rows.iter().find(|&&r| r as usize >= b) {
            bail!("kv row copy: row {r} out of range ({b} rows)");
        }
        Ok((start, end))
    }
}

/// Applies `$body` with `$v` bound to the typed vector (or slice) of a CPU storage.
macro_rules! with_typed {
    ($s:expr, $v:ident => $body:expr) => {
        match $s {
            CpuStorage::U8($v) => CpuStorage::U8($body),
            CpuStorage::U32($v) => CpuStorage::U32($body),
            CpuStorage::I16($v) => CpuStorage::I16($body),
            CpuStorage::I32($v) => CpuStorage::I32($body),
            CpuStorage::I64($v) => CpuStorage::I64($body),
            CpuStorage::BF16($v) => CpuStorage::BF16($body),
            CpuStorage::F16($v) => CpuStorage::F16($body),
            CpuStorage::F32($v) => CpuStorage::F32($body),
            CpuStorage::F64($v) => CpuStorage::F64($body),
            other => bail!("kv row copy: unsupported dtype {:?}", other.dtype()),
        }
    };
}

impl CustomOp1 for RowCopy<'_> {
    fn name(&self) -> &'static str {
        "kv-gather-live"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (start, end) = self.check(l)?;
        let out = with_typed!(s, v => self.gather(&v[start..end]));
        let mut dims = l.dims().to_vec();
        dims[0] = self.rows.len();
        Ok((out, Shape::from(dims)))
    }
}

impl InplaceOp1 for RowCopy<'_> {
    fn name(&self) -> &'static str {
        "kv-compact-live"
    }

    fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout) -> Result<()> {
        if self.rows.windows(2).any(|w| w[0] >= w[1]) {
            bail!("kv compaction: rows must be strictly increasing");
        }
        let (start, end) = self.check(l)?;
        macro_rules! go {
            ($($variant:ident),*) => {
                match s {
                    $(CpuStorage::$variant(v) => self.compact(&mut v[start..end]),)*
                    other => bail!("kv compaction: unsupported dtype {:?}", other.dtype()),
                }
            };
        }
        go!(U8, U32, I16, I32, I64, BF16, F16, F32, F64);
        Ok(())
    }
}

/// Whether the kernels here handle `t` (a contiguous CPU tensor).
pub(crate) fn applies(t: &Tensor) -> bool {
    t.device().is_cpu() && t.is_contiguous()
}

/// A new buffer whose row `j` is row `rows[j]` of `buf`, with only the filled elements
/// (`lines`) copied and zeros elsewhere.
pub(crate) fn gather(buf: &Tensor, rows: &[u32], lines: Lines) -> Result<Tensor> {
    buf.apply_op1_no_bwd(&RowCopy::new(rows, lines))
}

/// Moves row `rows[j]` of `buf` to row `j` in place (filled elements only; `rows` strictly
/// increasing) and returns the first `rows.len()` rows, a view of the same storage.
pub(crate) fn compact_in_place(buf: &Tensor, rows: &[u32], lines: Lines) -> Result<Tensor> {
    buf.inplace_op1(&RowCopy::new(rows, lines))?;
    buf.narrow(0, 0, rows.len())
}
