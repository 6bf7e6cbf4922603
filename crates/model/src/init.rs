//! Deterministic random weights for tests and benchmarks.
//!
//! Every tensor draws from its own ChaCha8 stream seeded by `(seed, tensor name)`, so a tensor's
//! values do not depend on which other tensors exist or in which order they are created.
//! Scales keep a random model numerically tame: matrices `U(±1/√fan_in)` (activations stay
//! O(1)), embeddings `U(±1)`, norm weights `1 + U(±0.2)` (not all ones, so a norm-weight
//! gradient bug cannot hide behind symmetry).

use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};

use crate::config::ModelConfig;
use crate::error::Result;
use crate::llama::tensor_shapes;
use crate::weights::WeightMap;

/// splitmix64 of `seed ⊕ salt`: independent-looking seeds for sub-streams.
pub(crate) fn mix_seed(seed: u64, salt: u64) -> u64 {
    let mut z = seed ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a hash of a name, to derive a per-tensor seed.
pub(crate) fn name_salt(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `center + U(−bound, bound)` elementwise, from a ChaCha8 stream seeded with `seed`.
pub(crate) fn uniform(
    shape: &[usize],
    center: f32,
    bound: f32,
    seed: u64,
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n)
        .map(|_| center + rng.random_range(-bound..=bound))
        .collect();
    Ok(Tensor::from_vec(values, shape, device)?.to_dtype(dtype)?)
}

/// A full set of random weights (HF names) for `cfg`, in `dtype` on `device`.
pub fn random_weights(
    cfg: &ModelConfig,
    seed: u64,
    dtype: DType,
    device: &Device,
) -> Result<WeightMap> {
    let mut map = WeightMap::new(format!("<random weights, seed {seed}>"));
    for (name, shape) in tensor_shapes(cfg) {
        let s = mix_seed(seed, name_salt(&name));
        let t = if name.ends_with("norm.weight") {
            uniform(&shape, 1.0, 0.2, s, dtype, device)?
        } else if name == "model.embed_tokens.weight" {
            uniform(&shape, 0.0, 1.0, s, dtype, device)?
        } else {
            let fan_in = shape[1] as f32;
            uniform(&shape, 0.0, fan_in.sqrt().recip(), s, dtype, device)?
        };
        map.insert(name, t);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_weights_are_deterministic_per_name() {
        let cfg = ModelConfig::tiny(50);
        let a = random_weights(&cfg, 3, DType::F32, &Device::Cpu).unwrap();
        let b = random_weights(&cfg, 3, DType::F32, &Device::Cpu).unwrap();
        let c = random_weights(&cfg, 4, DType::F32, &Device::Cpu).unwrap();
        let name = "model.layers.1.mlp.up_proj.weight";
        let get = |m: &WeightMap| -> Vec<f32> {
            m.get(name)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        };
        assert_eq!(get(&a), get(&b));
        assert_ne!(get(&a), get(&c));
        assert_eq!(a.len(), tensor_shapes(&cfg).len());
        let bound = (cfg.hidden_size as f32).sqrt().recip();
        assert!(get(&a).iter().all(|v| v.abs() <= bound));
    }
}
