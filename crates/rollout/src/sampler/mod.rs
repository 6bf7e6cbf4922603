//! Picking the next token of every row of a decode batch, and its log-prob under
//! `softmax(logits / T)`.
//!
//! Two implementations with the same results (tested against each other): [`cpu`] copies the
//! logits once and runs a fused pass per row on threads; [`device`] keeps the work on a GPU and
//! copies O(√V) numbers per row. Rows with top-k/top-p truncation or a minimum-thought mask
//! follow the host rules of [`Chooser::choose_with_rules`] in both.

mod cpu;
mod device;

use candle_core::Tensor;

use crate::config::{Decoding, SamplingConfig};
use crate::error::Result;

/// What one row of the decode batch needs this step.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Pick<'a> {
    /// A finished row still in the batch: nothing.
    Skip,
    /// This token (forced by the thought budget).
    Forced(u32),
    /// The argmax among tokens not in `suppress` (sorted ids).
    Greedy { suppress: &'a [u32] },
    /// A draw with uniform `u` in [0, 1) among tokens not in `suppress`.
    Sample { u: f64, suppress: &'a [u32] },
}

/// A chosen token and its log-prob under `softmax(logits / T)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Chosen {
    pub token: u32,
    pub logprob: f32,
}

/// Token choice for a fixed config.
#[derive(Debug, Clone)]
pub(crate) struct Chooser {
    temperature: f64,
    top_k: usize,
    top_p: f64,
    /// Tokens per block of the two-level sampler (a divisor of V).
    block: usize,
}

impl Chooser {
    pub fn new(cfg: &SamplingConfig, vocab: usize) -> Self {
        Self {
            temperature: cfg.temperature,
            top_k: if cfg.decoding == Decoding::Greedy {
                0
            } else {
                cfg.top_k
            },
            top_p: cfg.top_p,
            block: block_size(vocab),
        }
    }

    fn truncates(&self) -> bool {
        self.top_k > 0 || self.top_p < 1.0
    }

    /// One entry per row: `None` for [`Pick::Skip`]. Non-finite logits give a NaN log-prob.
    ///
    /// # Shapes
    /// `logits` (R, V) in the model's float dtype; `picks` has R entries.
    pub fn choose(&self, logits: &Tensor, picks: &[Pick]) -> Result<Vec<Option<Chosen>>> {
        if logits.device().is_cpu() {
            self.choose_on_cpu(logits, picks)
        } else {
            self.choose_on_device(logits, picks)
        }
    }

    /// Greedy or sampled choice from one row of `x − max` under the mask and truncation.
    fn choose_with_rules(&self, shifted: &[f32], pick: &Pick) -> u32 {
        let (suppress, u) = match *pick {
            Pick::Greedy { suppress } => (suppress, None),
            Pick::Sample { u, suppress } => (suppress, Some(u)),
            Pick::Skip | Pick::Forced(_) => (&[][..], None),
        };
        let mut x = shifted.to_vec();
        for &s in suppress {
            if let Some(v) = x.get_mut(s as usize) {
                *v = f32::NEG_INFINITY;
            }
        }
        if x.iter().all(|v| *v == f32::NEG_INFINITY) {
            // Everything masked: ignore the mask rather than fail.
            x = shifted.to_vec();
        }
        let Some(u) = u else {
            return argmax(&x);
        };
        let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let w: Vec<f32> = x.iter().map(|&v| (v - max).exp()).collect();
        let kept = if self.truncates() {
            self.truncate(&w)
        } else {
            (0..w.len() as u32).collect()
        };
        let kept_w: Vec<f32> = kept.iter().map(|&i| w[i as usize]).collect();
        let total: f64 = kept_w.iter().map(|&v| f64::from(v)).sum();
        kept[pick_by_mass(&kept_w, u * total).0]
    }

    /// The ids kept by top-k then top-p (top-p over the top-k mass), most likely first (ties
    /// by id). Partial selection: sorts only as many candidates as the nucleus needs.
    fn truncate(&self, w: &[f32]) -> Vec<u32> {
        let mut idx: Vec<u32> = (0..w.len() as u32)
            .filter(|&i| w[i as usize] > 0.0)
            .collect();
        let by_weight = |a: &u32, b: &u32| w[*b as usize].total_cmp(&w[*a as usize]).then(a.cmp(b));
        if self.top_k > 0 && self.top_k < idx.len() {
            idx.select_nth_unstable_by(self.top_k, by_weight);
            idx.truncate(self.top_k);
        }
        if self.top_p >= 1.0 || idx.is_empty() {
            return idx;
        }
        let target = self.top_p * idx.iter().map(|&i| f64::from(w[i as usize])).sum::<f64>();
        let mut k = 64.min(idx.len());
        loop {
            if k < idx.len() {
                idx.select_nth_unstable_by(k, by_weight);
            }
            idx[..k].sort_unstable_by(by_weight);
            let mut acc = 0.0;
            for j in 0..k {
                acc += f64::from(w[idx[j] as usize]);
                if acc >= target {
                    idx.truncate(j + 1);
                    return idx;
                }
            }
            if k == idx.len() {
                return idx;
            }
            k = (k * 4).min(idx.len());
        }
    }
}

/// The index whose cumulative weight first exceeds `target`, and how far into its weight
/// the target falls. Rounding can leave `target` at or past the total: then the last
/// positive weight.
fn pick_by_mass(w: &[f32], target: f64) -> (usize, f64) {
    let mut acc = 0.0f64;
    let mut last = (0, 0.0);
    for (j, &v) in w.iter().enumerate() {
        let v = f64::from(v);
        if v > 0.0 {
            if acc + v > target {
                return (j, target - acc);
            }
            last = (j, v * (1.0 - f64::EPSILON));
        }
        acc += v;
    }
    last
}

/// First index of the maximum (NaN never wins).
fn argmax(x: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best as u32
}

/// The divisor of `v` that minimises the host copy `v / d + d` of the two-level sampler.
fn block_size(v: usize) -> usize {
    (1..=v.max(1))
        .filter(|d| v.is_multiple_of(*d))
        .min_by_key(|&d| v / d + d)
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    fn chooser(top_k: usize, top_p: f64, temperature: f64, vocab: usize) -> Chooser {
        let cfg = SamplingConfig {
            top_k,
            top_p,
            temperature,
            ..SamplingConfig::default()
        };
        Chooser::new(&cfg, vocab)
    }

    #[test]
    fn block_size_is_a_divisor_near_sqrt() {
        assert_eq!(block_size(49152), 192); // 192 + 256 = 448 transferred per row
        assert_eq!(block_size(61), 1);
        assert_eq!(block_size(100), 10);
    }

    #[test]
    fn pick_by_mass_follows_the_cdf() {
        let w = [0.0, 1.0, 0.0, 3.0];
        assert_eq!(pick_by_mass(&w, 0.0).0, 1);
        assert_eq!(pick_by_mass(&w, 0.99).0, 1);
        assert_eq!(pick_by_mass(&w, 1.0), (3, 0.0));
        assert_eq!(pick_by_mass(&w, 3.9).0, 3);
        // Rounding past the total: the last positive weight.
        assert_eq!(pick_by_mass(&w, 4.5).0, 3);
    }

    #[test]
    fn truncation_keeps_top_k_then_nucleus() {
        // Probabilities 0.4, 0.3, 0.2, 0.1 (ids 2, 0, 3, 1).
        let w = [0.3f32, 0.1, 0.4, 0.2];
        assert_eq!(chooser(2, 1.0, 1.0, 4).truncate(&w), vec![2, 0]);
        assert_eq!(chooser(0, 0.65, 1.0, 4).truncate(&w), vec![2, 0]);
        assert_eq!(chooser(0, 0.7, 1.0, 4).truncate(&w), vec![2, 0]);
        assert_eq!(chooser(0, 0.75, 1.0, 4).truncate(&w), vec![2, 0, 3]);
        // top-p over the top-3 mass 0.9: 0.4 / 0.9 < 0.5 → two tokens.
        assert_eq!(chooser(3, 0.5, 1.0, 4).truncate(&w), vec![2, 0]);
        // Many candidates: the growing partial sort reaches deep nuclei.
        let flat = vec![1.0f32; 1000];
        let kept = chooser(0, 0.5, 1.0, 1000).truncate(&flat);
        assert_eq!(kept.len(), 500);
        assert_eq!(kept[..3], [0, 1, 2]);
    }

    /// Deterministic logits in [-6, 6).
    fn logits(r: usize, v: usize) -> Result<Tensor> {
        let vals: Vec<f32> = (0..r * v)
            .map(|i| ((i * 7919) % 1013) as f32 / 1013.0 * 12.0 - 6.0)
            .collect();
        Ok(Tensor::from_vec(vals, (r, v), &Device::Cpu)?)
    }

    #[test]
    fn cpu_and_device_paths_agree() -> Result<()> {
        // 8 × 10 000 elements: the CPU path runs on threads; blocks of 100 on the device path.
        let (r, v) = (8, 10_000);
        let t = logits(r, v)?;
        let mask = [3u32, 17, 4242];
        for (top_k, top_p, temp) in [(0, 1.0, 1.0), (0, 1.0, 0.7), (50, 0.9, 1.3), (v, 1.0, 1.0)] {
            let c = chooser(top_k, top_p, temp, v);
            for k in 0..10 {
                let u = |i: usize| ((k * r + i) as f64 + 0.37) / (10 * r) as f64;
                let picks: Vec<Pick> = (0..r)
                    .map(|i| match i % 5 {
                        0 | 1 => Pick::Sample {
                            u: u(i),
                            suppress: &[],
                        },
                        2 => Pick::Greedy { suppress: &mask },
                        3 => Pick::Sample {
                            u: u(i),
                            suppress: &mask,
                        },
                        _ => Pick::Forced(5),
                    })
                    .collect();
                let a = c.choose_on_cpu(&t, &picks)?;
                let b = c.choose_on_device(&t, &picks)?;
                for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                    let (x, y) = (x.unwrap(), y.unwrap());
                    assert_eq!(
                        x.token, y.token,
                        "top_k {top_k} top_p {top_p} T {temp} row {i}"
                    );
                    assert!((x.logprob - y.logprob).abs() < 1e-5, "{x:?} vs {y:?}");
                    if i % 5 == 2 || i % 5 == 3 {
                        assert!(!mask.contains(&x.token));
                    }
                }
            }
        }
        Ok(())
    }

    #[test]
    fn logprobs_are_log_softmax_with_temperature() -> Result<()> {
        let (v, temp) = (100, 0.7);
        let t = logits(1, v)?;
        let l = t.to_vec2::<f32>()?.remove(0);
        let max = l.iter().copied().fold(f32::MIN, f32::max);
        let z: f64 = l.iter().map(|&x| (f64::from(x - max) / temp).exp()).sum();
        let c = chooser(0, 1.0, temp, v);
        for k in 0..20 {
            let pick = [Pick::Sample {
                u: k as f64 / 20.0,
                suppress: &[],
            }];
            for got in [c.choose_on_cpu(&t, &pick)?, c.choose_on_device(&t, &pick)?] {
                let got = got[0].unwrap();
                let want = f64::from(l[got.token as usize] - max) / temp - z.ln();
                assert!((f64::from(got.logprob) - want).abs() < 1e-5);
            }
        }
        Ok(())
    }

    #[test]
    fn non_finite_logits_give_nan_logprobs() -> Result<()> {
        let t = Tensor::new(&[[0.0f32, f32::NAN, 1.0]], &Device::Cpu)?;
        let c = chooser(0, 1.0, 1.0, 3);
        let pick = [Pick::Greedy { suppress: &[] }];
        assert!(c.choose(&t, &pick)?[0].unwrap().logprob.is_nan());
        Ok(())
    }

    #[test]
    fn greedy_forced_skip_and_mask() -> Result<()> {
        let t = Tensor::new(&[[0.0f32, 3.0, 1.0, 2.0]], &Device::Cpu)?;
        let t2 = Tensor::cat(&[&t, &t, &t, &t], 0)?;
        let c = chooser(0, 1.0, 1.0, 4);
        let out = c.choose(
            &t2,
            &[
                Pick::Greedy { suppress: &[] },
                Pick::Greedy { suppress: &[1] },
                Pick::Forced(0),
                Pick::Skip,
            ],
        )?;
        assert_eq!(out[0].unwrap().token, 1);
        assert_eq!(out[1].unwrap().token, 3);
        assert_eq!(out[2].unwrap().token, 0);
        assert!(out[3].is_none());
        // The log-prob of a forced token is still under the full distribution.
        let z: f32 = [0.0f32, 3.0, 1.0, 2.0]
            .iter()
            .map(|l| (l - 3.0).exp())
            .sum();
        assert!((out[2].unwrap().logprob - (-3.0 - z.ln())).abs() < 1e-6);
        // A masked sample never draws the masked ids.
        for k in 0..20 {
            let u = k as f64 / 20.0;
            let s = c.choose(
                &t,
                &[Pick::Sample {
                    u,
                    suppress: &[1, 3],
                }],
            )?[0]
                .unwrap();
            assert!(s.token == 0 || s.token == 2);
        }
        Ok(())
    }
}
