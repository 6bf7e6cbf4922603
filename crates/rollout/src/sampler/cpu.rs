//! Token choice on the CPU: one copy of the logits, then one fused pass per row (scale,
//! max, exp, sum, draw), rows split across threads. candle's separate tensor ops (affine,
//! broadcast_sub, exp, sum, gather) each walk the whole (R, V) tensor and allocate; this is
//! ~10× cheaper for a 49k vocabulary.
//!
//! `exp` is a Cephes-style polynomial (≤ 2 ulp on the range used) written so the loop
//! vectorizes; the log-prob `x[y] − max − ln Σ exp` then matches candle's to ~1e-7.

use candle_core::{DType, Tensor};

use super::{argmax, pick_by_mass, Chooser, Chosen, Pick};
use crate::error::Result;

/// Rows × vocab below which threads are not worth spawning.
const PARALLEL_MIN_ELEMS: usize = 1 << 16;

impl Chooser {
    /// [`Chooser::choose`] on the host.
    ///
    /// # Shapes
    /// `logits` (R, V); `picks` has R entries.
    pub(crate) fn choose_on_cpu(
        &self,
        logits: &Tensor,
        picks: &[Pick],
    ) -> Result<Vec<Option<Chosen>>> {
        let (r, v) = logits.dims2()?;
        let flat = logits
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let rows: Vec<(&[f32], &Pick)> = flat.chunks(v.max(1)).zip(picks).collect();
        let threads = candle_core::utils::get_num_threads().clamp(1, r.max(1));
        if threads == 1 || r * v < PARALLEL_MIN_ELEMS {
            return Ok(rows.iter().map(|(l, p)| self.choose_row(l, p)).collect());
        }
        let per = r.div_ceil(threads);
        Ok(std::thread::scope(|s| {
            let handles: Vec<_> = rows
                .chunks(per)
                .map(|chunk| {
                    s.spawn(move || {
                        chunk
                            .iter()
                            .map(|(l, p)| self.choose_row(l, p))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        }))
    }

    /// One row: `None` for [`Pick::Skip`]; a NaN log-prob for non-finite logits or an
    /// out-of-vocab forced token (the engine turns it into an error).
    fn choose_row(&self, logits: &[f32], pick: &Pick) -> Option<Chosen> {
        if let Pick::Skip = pick {
            return None;
        }
        // Same scaling as candle's `affine(1 / T, 0)`.
        let inv_t = (1.0 / self.temperature) as f32;
        let mut x: Vec<f32> = if self.temperature == 1.0 {
            logits.to_vec()
        } else {
            logits.iter().map(|&l| l * inv_t + 0.0).collect()
        };
        let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        if !max.is_finite() || x.iter().any(|v| v.is_nan()) {
            return Some(Chosen {
                token: 0,
                logprob: f32::NAN,
            });
        }
        for v in &mut x {
            *v -= max;
        }
        let mut e = vec![0f32; x.len()];
        let z = exp_and_sum(&x, &mut e);
        let token = match *pick {
            Pick::Forced(t) => t,
            Pick::Greedy { suppress: [] } => argmax(&x),
            Pick::Sample { u, suppress } if suppress.is_empty() && !self.truncates() => {
                pick_by_mass(&e, u * z).0 as u32
            }
            _ => self.choose_with_rules(&x, pick),
        };
        let logprob = x
            .get(token as usize)
            .map_or(f32::NAN, |&s| s - z.ln() as f32);
        Some(Chosen { token, logprob })
    }
}

/// `e[i] = exp(x[i])` for `x ≤ 0`, and `Σ e` (f32 lanes per block of 256, blocks summed in
/// f64, so the rounding error stays ~1e-7 relative for any vocabulary size).
fn exp_and_sum(x: &[f32], e: &mut [f32]) -> f64 {
    let mut total = 0.0f64;
    for (xb, eb) in x.chunks(256).zip(e.chunks_mut(256)) {
        for (o, &v) in eb.iter_mut().zip(xb) {
            *o = exp_nonpositive(v);
        }
        total += f64::from(lane_sum(eb));
    }
    total
}

/// Sum with 8 independent accumulators (vectorizes).
fn lane_sum(x: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = x.chunks_exact(8);
    let rest: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + rest
}

/// `exp(x)` for `x ≤ 0` (Cephes `expf`: range reduction by ln 2, degree-5 polynomial), with
/// `x < −87` flushed to `exp(−87)` ≈ 1.6e-38 (negligible in a sum that contains 1). Branch
/// free, so loops over it vectorize.
#[inline(always)]
fn exp_nonpositive(x: f32) -> f32 {
    // 1.5 · 2^23: adding it rounds to an integer held in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.max(-87.0);
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let y = p * r * r + r + 1.0;
    // n as two's complement in the low bits of `shifted`; 2^n built from its exponent field.
    let k = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    y * f32::from_bits(k.wrapping_add(127) << 23)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_is_accurate() {
        let mut worst = 0.0f64;
        for i in 0..=200_000 {
            let x = -(i as f32) * 87.0 / 200_000.0;
            let want = f64::from(x).exp();
            let rel = (f64::from(exp_nonpositive(x)) - want).abs() / want;
            worst = worst.max(rel);
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert!(exp_nonpositive(-1000.0) < 1e-37);
        assert!(exp_nonpositive(f32::NEG_INFINITY) < 1e-37);
    }

    #[test]
    fn blocked_sum_is_accurate_for_large_vocabularies() {
        let x: Vec<f32> = (0..150_000).map(|i| -((i % 977) as f32) / 97.0).collect();
        let mut e = vec![0.0; x.len()];
        let got = exp_and_sum(&x, &mut e);
        let want: f64 = x.iter().map(|&v| f64::from(v).exp()).sum();
        assert!((got - want).abs() / want < 1e-6, "{got} vs {want}");
    }
}
