//! Helpers shared by the model crate's integration tests: tiny GQA configs, padded batches,
//! comparisons.
#![allow(dead_code)]

use anyhow::Result;
use candle_core::{DType, Device, Tensor, Var};
use thinkjudge_model::config::Llama3RopeScaling;
use thinkjudge_model::{KvCache, Llama, LlamaOptions, Mode, ModelConfig};

/// Tolerance for f32 comparisons of computations that differ only in op order / fusion.
pub const F32_TOL: f64 = 1e-5;

pub const VOCAB: usize = 61;

/// 2 layers, 4 heads, 2 kv heads (GQA), head_dim 8, untied head.
pub fn tiny() -> ModelConfig {
    ModelConfig::tiny(VOCAB)
}

pub fn tiny_tied() -> ModelConfig {
    ModelConfig {
        tie_word_embeddings: true,
        ..tiny()
    }
}

/// Llama 3 rope scaling whose wavelength bands split the tiny model's four frequencies
/// (wavelengths 6.3, 63, 628, 6283 against bands 16 and 64): one kept, one interpolated,
/// two divided.
pub fn tiny_llama3() -> ModelConfig {
    ModelConfig {
        rope_scaling: Some(Llama3RopeScaling {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 64,
        }),
        ..tiny()
    }
}

pub fn model(cfg: &ModelConfig, opts: LlamaOptions) -> Result<Llama> {
    Ok(Llama::random(cfg, 7, &Device::Cpu, opts)?)
}

/// Deterministic pseudo-random token ids in `[1, VOCAB)`.
pub fn tokens(n: usize, salt: u32) -> Vec<u32> {
    (0..n as u32)
        .map(|i| {
            (i.wrapping_mul(2_654_435_761)
                .wrapping_add(salt.wrapping_mul(40_503))
                >> 7)
                % (VOCAB as u32 - 1)
                + 1
        })
        .collect()
}

/// A padded batch: `(ids (B, T) u32, mask (B, T) u32)`; pads are token 0.
pub fn batch(rows: &[Vec<u32>], left_pad: bool) -> Result<(Tensor, Tensor)> {
    let t = rows.iter().map(Vec::len).max().unwrap_or(0);
    let (mut ids, mut mask) = (Vec::new(), Vec::new());
    for r in rows {
        let pad = t - r.len();
        let (ids_row, mask_row): (Vec<u32>, Vec<u32>) = if left_pad {
            (
                std::iter::repeat_n(0, pad)
                    .chain(r.iter().copied())
                    .collect(),
                std::iter::repeat_n(0, pad)
                    .chain(std::iter::repeat_n(1, r.len()))
                    .collect(),
            )
        } else {
            (
                r.iter()
                    .copied()
                    .chain(std::iter::repeat_n(0, pad))
                    .collect(),
                std::iter::repeat_n(1, r.len())
                    .chain(std::iter::repeat_n(0, pad))
                    .collect(),
            )
        };
        ids.extend(ids_row);
        mask.extend(mask_row);
    }
    let b = rows.len();
    Ok((
        Tensor::from_vec(ids, (b, t), &Device::Cpu)?,
        Tensor::from_vec(mask, (b, t), &Device::Cpu)?,
    ))
}

/// Hidden states of one unpadded sequence in a fresh cache, (1, T, H).
pub fn run_alone(m: &Llama, ids: &[u32], mode: Mode) -> Result<Tensor> {
    let (ids, mask) = batch(&[ids.to_vec()], false)?;
    let mut cache = m.new_cache();
    Ok(m.forward(&ids, &mask, &mut cache, mode)?)
}

/// Runs a chunk on a cache.
pub fn step(m: &Llama, cache: &mut KvCache, rows: &[Vec<u32>], mode: Mode) -> Result<Tensor> {
    let (ids, mask) = batch(rows, false)?;
    Ok(m.forward(&ids, &mask, cache, mode)?)
}

pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f64> {
    Ok((a.to_dtype(DType::F64)? - b.to_dtype(DType::F64)?)?
        .abs()?
        .flatten_all()?
        .max(0)?
        .to_scalar::<f64>()?)
}

pub fn max_abs(a: &Tensor) -> Result<f64> {
    Ok(a.to_dtype(DType::F64)?
        .abs()?
        .flatten_all()?
        .max(0)?
        .to_scalar::<f64>()?)
}

/// Sets every variable to seeded random values of about its own scale (B of LoRA is zero at
/// init, which would hide gradient bugs of A).
pub fn randomize(vars: &[(String, Var)], scale: f64, seed: u64) -> Result<()> {
    for (i, (_, v)) in vars.iter().enumerate() {
        let n = v.elem_count();
        let vals: Vec<f64> = (0..n)
            .map(|j| ((j as f64 + 1.0) * 0.7123 + (i as f64 + seed as f64) * 1.37).sin() * scale)
            .collect();
        let t = Tensor::from_vec(vals, v.shape(), v.device())?.to_dtype(v.dtype())?;
        v.set(&t)?;
    }
    Ok(())
}
