//! Every random stream of a run, as a pure function of the run seed and where it is used.
//!
//! Exact resume needs no RNG state in checkpoints: a step's data order, samples and LoRA
//! initialisation are derived from `(seed, purpose, step | epoch)` here, so a resumed run
//! draws exactly what the uninterrupted one did.
//!
//! | stream | derived from |
//! |---|---|
//! | data order of epoch `e` | `derive(seed, DATA_ORDER, e)` |
//! | rollout samples of step `s` | `derive(seed, ROLLOUT, s)`, then the rollout crate keys each sample by `(prompt key, sample index)` |
//! | evaluation samples (SC@N) | `derive(seed, EVAL, 0)`: the same at every evaluation, so evaluations compare |
//! | LoRA adapter initialisation | `derive(seed, LORA_INIT, 0)` |
//! | held-out split | `data.eval.seed` (its own, so a split stays fixed while the training seed varies) |

/// Purpose tag of the per-epoch data order.
pub const DATA_ORDER: u64 = 0x6461_7461; // "data"
/// Purpose tag of the per-step rollout streams.
pub const ROLLOUT: u64 = 0x726f_6c6c; // "roll"
/// Purpose tag of evaluation sampling.
pub const EVAL: u64 = 0x6576_616c; // "eval"
/// Purpose tag of the LoRA initialisation.
pub const LORA_INIT: u64 = 0x6c6f_7261; // "lora"

/// SplitMix64's finaliser: a bijection that scatters nearby inputs.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The seed of stream `purpose` at `index` (a step or an epoch) of a run seeded `seed`.
pub fn derive(seed: u64, purpose: u64, index: u64) -> u64 {
    mix(mix(mix(seed) ^ purpose) ^ index)
}

/// A stable 64-bit key of a text (FNV-1a), e.g. a prompt's pair id and order: the same on
/// every platform and run, unlike `std`'s randomly seeded hasher.
pub fn text_key(text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_differ_by_purpose_and_index_and_are_stable() {
        assert_eq!(derive(1, ROLLOUT, 5), derive(1, ROLLOUT, 5));
        assert_ne!(derive(1, ROLLOUT, 5), derive(1, ROLLOUT, 6));
        assert_ne!(derive(1, ROLLOUT, 5), derive(1, DATA_ORDER, 5));
        assert_ne!(derive(1, ROLLOUT, 5), derive(2, ROLLOUT, 5));
        // FNV-1a of "a" (published test vector).
        assert_eq!(text_key("a"), 0xaf63_dc4c_8601_ec8c);
    }
}
