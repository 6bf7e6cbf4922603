//! Rotary position embedding angles, including Llama 3 frequency-dependent scaling.
//!
//! The angles are computed per forward from each row's positions (`pos · inv_freq`, in the
//! float dtype like HF), not looked up in a fixed table, so left-padded rows and cached rows at
//! different offsets need nothing special and positions are not capped by a table size.

use candle_core::{DType, Device, Result, Tensor};

use crate::config::ModelConfig;

/// `inv_freq[i] = θ^(−2i/D)`, with Llama 3 scaling applied when configured (the same formula
/// as HF `_compute_llama3_parameters` and candle-transformers' `llama.rs`).
pub(crate) fn inv_freq(cfg: &ModelConfig) -> Vec<f64> {
    let d = cfg.head_dim;
    let base: Vec<f64> = (0..d)
        .step_by(2)
        .map(|i| 1.0 / cfg.rope_theta.powf(i as f64 / d as f64))
        .collect();
    let Some(s) = cfg.rope_scaling else {
        return base;
    };
    let old_ctx = s.original_max_position_embeddings as f64;
    let low_freq_wavelen = old_ctx / s.low_freq_factor;
    let high_freq_wavelen = old_ctx / s.high_freq_factor;
    base.into_iter()
        .map(|freq| {
            let wavelen = 2.0 * std::f64::consts::PI / freq;
            if wavelen < high_freq_wavelen {
                freq
            } else if wavelen > low_freq_wavelen {
                freq / s.factor
            } else {
                let smooth = (old_ctx / wavelen - s.low_freq_factor)
                    / (s.high_freq_factor - s.low_freq_factor);
                (1.0 - smooth) * freq / s.factor + smooth * freq
            }
        })
        .collect()
}

/// The inverse frequencies as a `(1, 1, D/2)` tensor in the float dtype.
pub(crate) fn inv_freq_tensor(cfg: &ModelConfig, float: DType, device: &Device) -> Result<Tensor> {
    let f = inv_freq(cfg);
    let n = f.len();
    Tensor::from_vec(f, (1, 1, n), device)?.to_dtype(float)
}

/// `cos` and `sin` of the angles `positions · inv_freq`, computed in `inv_freq`'s dtype and
/// returned in `dtype`.
///
/// # Shapes
/// `positions` (B, T) u32, `inv_freq` (1, 1, D/2) → `cos`, `sin` (B, T, D/2).
pub(crate) fn cos_sin(
    positions: &Tensor,
    inv_freq: &Tensor,
    dtype: DType,
) -> Result<(Tensor, Tensor)> {
    let angles = positions
        .to_dtype(inv_freq.dtype())?
        .unsqueeze(2)?
        .broadcast_mul(inv_freq)?; // (B, T, D/2)
    Ok((
        angles.cos()?.to_dtype(dtype)?,
        angles.sin()?.to_dtype(dtype)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Llama3RopeScaling;

    #[test]
    fn llama3_scaling_keeps_high_and_scales_low_frequencies() {
        let mut cfg = ModelConfig::tiny(16);
        cfg.head_dim = 64;
        cfg.rope_theta = 500_000.0;
        let plain = inv_freq(&cfg);
        cfg.rope_scaling = Some(Llama3RopeScaling {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192,
        });
        let scaled = inv_freq(&cfg);
        assert_eq!(plain[0], scaled[0], "the highest frequency is untouched");
        let last = plain.len() - 1;
        assert!(
            (scaled[last] - plain[last] / 8.0).abs() < 1e-18,
            "lowest is divided by factor"
        );
        // Somewhere in between the frequencies are interpolated, strictly between both ends.
        assert!(plain
            .iter()
            .zip(&scaled)
            .any(|(p, s)| *s < *p && *s > *p / 8.0));
    }
}
