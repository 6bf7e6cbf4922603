//! Fused CPU attention for one new query token per row (a decode step), with GQA.
//!
//! The generic path runs, per layer, a batched `q·kᵀ` of (B·n_kv) tiny matmuls, the masked
//! softmax, and a batched `p·v` of as many: at batch 32 with 3 kv heads that is 96 matmuls of a
//! few hundred FLOPs each twice per layer, dominated by per-call overhead and packing. This
//! kernel does the whole thing per (row, kv head) in one pass over that head's keys and values,
//! the `rep` query heads of the group sharing each key and value line, reading the cache
//! buffers in place through their strides (no contiguous copy of the filled slots).
//!
//! Inference only (no graph). Scores, softmax and the weighted sum run in the tensors' dtype
//! (f32 or f64) with the row sums in f64, like [`super::masked_softmax`].

use candle_core::{bail, CpuStorage, Layout, Result, Storage, Tensor};

use super::cpu::{par_rows, Real};

/// Strides and offset of a rank-4 view.
#[derive(Clone, Copy)]
struct View4 {
    start: usize,
    stride: [usize; 4],
}

impl View4 {
    fn of(l: &Layout) -> Result<Self> {
        let s = l.stride();
        if s.len() != 4 {
            bail!(
                "decode attention: expected a rank-4 view, got {:?}",
                l.dims()
            );
        }
        Ok(Self {
            start: l.start_offset(),
            stride: [s[0], s[1], s[2], s[3]],
        })
    }

    fn at(&self, i: usize, j: usize) -> usize {
        self.start + i * self.stride[0] + j * self.stride[1]
    }
}

struct Dims {
    nkv: usize,
    rep: usize,
    d: usize,
    s: usize,
    scale: f64,
}

#[allow(clippy::too_many_arguments)]
fn kernel<T: Real>(
    q: &[T],
    kt: &[T],
    ktv: View4,
    v: &[T],
    vv: View4,
    bias: &[T],
    dims: &Dims,
    b: usize,
) -> Vec<T> {
    let Dims { nkv, rep, d, s, .. } = *dims;
    let mut out = vec![T::zero(); b * nkv * rep * d];
    let scale = T::from_f64(dims.scale);
    // One output "row" per (batch row, kv head): its `rep` query heads, rep·D contiguous values.
    let avx512 = super::avx512_available();
    par_rows(&mut out, rep * d, 2 * rep * s * d, |first, block| {
        let mut scores = vec![T::zero(); rep * s];
        for (k, o) in block.chunks_mut(rep * d).enumerate() {
            let pair = Pair {
                q,
                kt,
                ktv,
                v,
                vv,
                bias,
                dims,
                scale,
                index: first + k,
            };
            if avx512 {
                // SAFETY: the CPU has AVX-512F (checked above).
                unsafe { pair_avx512(&pair, &mut scores, o) }
            } else {
                pair.run(&mut scores, o)
            }
        }
    });
    out
}

/// One (batch row, kv head) of [`kernel`]: its `rep` query heads against that head's keys and
/// values.
struct Pair<'a, T> {
    q: &'a [T],
    kt: &'a [T],
    ktv: View4,
    v: &'a [T],
    vv: View4,
    bias: &'a [T],
    dims: &'a Dims,
    scale: T,
    index: usize,
}

impl<T: Real> Pair<'_, T> {
    /// Writes the pair's `rep`·D outputs into `o`; `scores` is scratch of `rep`·S.
    #[inline(always)]
    fn run(&self, scores: &mut [T], o: &mut [T]) {
        let Dims { nkv, rep, d, s, .. } = *self.dims;
        let (q, kt, v, ktv, vv, scale) = (self.q, self.kt, self.v, self.ktv, self.vv, self.scale);
        let nh = nkv * rep;
        let (row, g) = (self.index / nkv, self.index % nkv);
        let q0 = (row * nh + g * rep) * d;
        let kbase = ktv.at(row, g);
        let vbase = vv.at(row, g);
        let brow = &self.bias[row * s..(row + 1) * s];
        // scores[r] = bias + scale · q_r·kᵀ, streaming kᵀ line by line (slots contiguous).
        for r in 0..rep {
            scores[r * s..(r + 1) * s].copy_from_slice(brow);
        }
        for dd in 0..d {
            let line = &kt[kbase + dd * ktv.stride[2]..][..s];
            for r in 0..rep {
                let qv = q[q0 + r * d + dd] * scale;
                let sc = &mut scores[r * s..(r + 1) * s];
                for (x, &kv) in sc.iter_mut().zip(line) {
                    *x += qv * kv;
                }
            }
        }
        for r in 0..rep {
            let sc = &mut scores[r * s..(r + 1) * s];
            let max = sc.iter().fold(sc[0], |m, &e| if e > m { e } else { m });
            sc.iter_mut().for_each(|e| *e -= max);
            T::exp_in_place(sc);
            let inv = T::from_f64(1.0 / T::sum(sc));
            sc.iter_mut().for_each(|e| *e *= inv);
        }
        // o_r = Σ_s p_r[s] · v[s], streaming v slot by slot (D contiguous).
        o.iter_mut().for_each(|e| *e = T::zero());
        for slot in 0..s {
            let vline = &v[vbase + slot * vv.stride[2]..][..d];
            for r in 0..rep {
                let p = scores[r * s + slot];
                for (e, &x) in o[r * d..(r + 1) * d].iter_mut().zip(vline) {
                    *e += p * x;
                }
            }
        }
    }
}

/// [`Pair::run`] compiled for AVX-512: the same operations in the same order (no reassociated
/// sums, no fused multiply-adds), so the same results, in 16-lane vectors instead of the
/// baseline's 4.
///
/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn pair_avx512<T: Real>(pair: &Pair<'_, T>, scores: &mut [T], o: &mut [T]) {
    pair.run(scores, o)
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn pair_avx512<T: Real>(pair: &Pair<'_, T>, scores: &mut [T], o: &mut [T]) {
    pair.run(scores, o)
}

/// Whether [`decode_attention`] applies: CPU, f32/f64, one query token, no graph, unit stride
/// along the slots of kᵀ and along D of q and v.
pub(crate) fn applies(q: &Tensor, kt: &Tensor, v: &Tensor) -> bool {
    let unit_last = |t: &Tensor| t.layout().stride().last() == Some(&1);
    q.device().is_cpu()
        && matches!(q.dtype(), candle_core::DType::F32 | candle_core::DType::F64)
        && q.dim(2).ok() == Some(1)
        && q.is_contiguous()
        && unit_last(kt)
        && unit_last(v)
        && !(q.track_op() || kt.track_op() || v.track_op())
}

/// `softmax(scale · q·kᵀ + bias) · v` for one query token per row, GQA: query head `h` uses kv
/// head `h / rep`. No graph.
///
/// # Shapes
/// `q` (B, n_heads, 1, D) contiguous; `kt` (B, n_kv, D, S) and `v` (B, n_kv, S, D) any strided
/// views with unit stride on their last axis (the cache buffers); `bias` (B, 1, S) →
/// (B, n_heads, 1, D).
pub(crate) fn decode_attention(
    q: &Tensor,
    kt: &Tensor,
    v: &Tensor,
    bias: &Tensor,
    scale: f64,
) -> Result<Tensor> {
    let (b, nh, one, d) = q.dims4()?;
    let (b2, nkv, d2, s) = kt.dims4()?;
    if one != 1
        || b2 != b
        || d2 != d
        || nkv == 0
        || nh % nkv != 0
        || v.dims() != [b, nkv, s, d]
        || bias.elem_count() != b * s
    {
        bail!(
            "decode attention: q {:?}, kᵀ {:?}, v {:?}, bias {:?} do not fit",
            q.dims(),
            kt.dims(),
            v.dims(),
            bias.dims()
        );
    }
    let bias = bias.to_dtype(q.dtype())?.contiguous()?;
    let dims = Dims {
        nkv,
        rep: nh / nkv,
        d,
        s,
        scale,
    };
    let (qs, ql) = q.storage_and_layout();
    let (ks, kl) = kt.storage_and_layout();
    let (vs, vl) = v.storage_and_layout();
    let (bs, bl) = bias.storage_and_layout();
    let (ktv, vv) = (View4::of(kl)?, View4::of(vl)?);
    let Some((q0, q1)) = ql.contiguous_offsets() else {
        bail!("decode attention: q must be contiguous")
    };
    let Some((b0, b1)) = bl.contiguous_offsets() else {
        bail!("decode attention: bias must be contiguous")
    };
    let out = match (&*qs, &*ks, &*vs, &*bs) {
        (
            Storage::Cpu(CpuStorage::F32(q)),
            Storage::Cpu(CpuStorage::F32(k)),
            Storage::Cpu(CpuStorage::F32(vd)),
            Storage::Cpu(CpuStorage::F32(bi)),
        ) => CpuStorage::F32(kernel(&q[q0..q1], k, ktv, vd, vv, &bi[b0..b1], &dims, b)),
        (
            Storage::Cpu(CpuStorage::F64(q)),
            Storage::Cpu(CpuStorage::F64(k)),
            Storage::Cpu(CpuStorage::F64(vd)),
            Storage::Cpu(CpuStorage::F64(bi)),
        ) => CpuStorage::F64(kernel(&q[q0..q1], k, ktv, vd, vv, &bi[b0..b1], &dims, b)),
        _ => bail!("decode attention: q, kᵀ, v and bias must be f32 or f64 CPU tensors"),
    };
    drop((qs, ks, vs, bs));
    match out {
        CpuStorage::F32(o) => Tensor::from_vec(o, (b, nh, 1, d), q.device()),
        CpuStorage::F64(o) => Tensor::from_vec(o, (b, nh, 1, d), q.device()),
        _ => bail!("decode attention: unreachable dtype"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, D};

    /// Against the generic path: GQA matmuls on strided views of larger buffers, the bias
    /// added, softmax, matmul.
    #[test]
    fn matches_the_composed_attention_on_strided_cache_views() -> Result<()> {
        let dev = Device::Cpu;
        let (b, nkv, rep, d, s, cap) = (3, 2, 3, 8, 11, 16);
        let nh = nkv * rep;
        for dtype in [DType::F32, DType::F64] {
            let q = Tensor::randn(0f32, 1.0, (b, nh, 1, d), &dev)?.to_dtype(dtype)?;
            let kt_buf = Tensor::randn(0f32, 1.0, (b, nkv, d, cap), &dev)?.to_dtype(dtype)?;
            let v_buf = Tensor::randn(0f32, 1.0, (b, nkv, cap, d), &dev)?.to_dtype(dtype)?;
            let (kt, v) = (kt_buf.narrow(3, 0, s)?, v_buf.narrow(2, 0, s)?);
            // Row 1 has masked slots (left padding and a gap).
            let mut bias = vec![0f32; b * s];
            for j in [0, 1, 5] {
                bias[s + j] = -1e9;
            }
            let bias = Tensor::from_vec(bias, (b, 1, s), &dev)?;
            let scale = (d as f64).powf(-0.5);
            assert!(applies(&q, &kt, &v));
            let fused = decode_attention(&q, &kt, &v, &bias, scale)?;

            let qg = q.affine(scale, 0.0)?.reshape((b, nkv, rep, d))?;
            let scores = qg
                .matmul(&kt.contiguous()?)?
                .broadcast_add(&bias.unsqueeze(1)?.to_dtype(dtype)?)?;
            let p = candle_nn::ops::softmax(&scores, D::Minus1)?;
            let reference = p.matmul(&v.contiguous()?)?.reshape((b, nh, 1, d))?;
            let diff = (fused - reference)?
                .abs()?
                .flatten_all()?
                .max(0)?
                .to_dtype(DType::F64)?
                .to_scalar::<f64>()?;
            assert!(diff < 1e-5, "{dtype:?}: differs by {diff}");
        }
        Ok(())
    }

    /// The AVX-512 build of a pair computes the same operations in the same order, so its
    /// output is bit-identical to the portable one's.
    #[test]
    fn avx512_build_is_bit_identical_to_the_portable_one() {
        if !crate::ops::avx512_available() {
            return;
        }
        let (nkv, rep, d, s) = (2, 3, 64, 67); // s past several 16-lane vectors, with a tail
        let fill = |n: usize, seed: f32| -> Vec<f32> {
            (0..n).map(|i| ((i as f32 + seed) * 0.731).sin()).collect()
        };
        let (q, kt, v) = (
            fill(nkv * rep * d, 1.0),
            fill(nkv * d * s, 2.0),
            fill(nkv * s * d, 3.0),
        );
        let bias: Vec<f32> = (0..s)
            .map(|j| if j % 7 == 0 { -1e9 } else { 0.0 })
            .collect();
        let dims = Dims {
            nkv,
            rep,
            d,
            s,
            scale: 0.125,
        };
        let view = |s1: usize, s2: usize| View4 {
            start: 0,
            stride: [nkv * s1, s1, s2, 1],
        };
        for index in 0..nkv {
            let pair = Pair {
                q: &q,
                kt: &kt,
                ktv: view(d * s, s),
                v: &v,
                vv: view(s * d, d),
                bias: &bias,
                dims: &dims,
                scale: 0.125f32,
                index,
            };
            let (mut s1, mut o1) = (vec![0f32; rep * s], vec![0f32; rep * d]);
            let (mut s2, mut o2) = (vec![0f32; rep * s], vec![0f32; rep * d]);
            pair.run(&mut s1, &mut o1);
            // SAFETY: AVX-512F checked above.
            unsafe { pair_avx512(&pair, &mut s2, &mut o2) };
            let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&o1), bits(&o2), "kv head {index}");
        }
    }
}
