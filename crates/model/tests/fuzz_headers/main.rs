//! Fuzz tests of the model crate's readers: GGUF files, safetensors files and shard indexes,
//! HF `config.json` (alone and inside whole model directories, with their tokenizer files),
//! `ModelSource` text, and the crate's TOML sections (`LoraConfig`, `ModelSource`).
//!
//! Inputs are valid files, written by writers here that can lie (so a mutation can target a
//! length, count, offset, type tag, dimension or dtype precisely), then mutated: header
//! fields set to 0, 2^32, 2^60 or `u64::MAX`, metadata retyped, tensors renamed, dropped or
//! re-shaped, files truncated at random points or salted with random bytes; plus plain
//! random bytes. Every reader is called through its public entry point on a file in a
//! temporary directory. Properties:
//!
//! - no panic, no hang, and no absurd allocation: the harness refuses any single allocation
//!   above 512 MiB, so a lying length that is believed aborts the test with the case named;
//! - every error names the file (or, for a model directory, a file in it);
//! - an unmutated file loads, and loads the values written.
//!
//! CI runs a quick subset; the long run (≥ 100k inputs per target):
//!
//! ```sh
//! FUZZ_CASES=100000 cargo test --release -p thinkjudge-model --test fuzz_headers -- --nocapture
//! ```
//!
//! The harness is shared with the data crate (`crates/data/tests/fuzz_support/mod.rs`),
//! which documents its knobs (`FUZZ_SEED`, `FUZZ_ONLY`, `FUZZ_HANG_SECS`, …).

#[path = "../../../data/tests/fuzz_support/mod.rs"]
mod fuzz_support;
#[path = "../io_fixtures/mod.rs"]
mod io_fixtures;

mod gguf;
mod gguf_writer;
mod lying;
mod model_dirs;
mod model_source;
mod safetensors;

use std::path::Path;

use candle_core::Tensor;
use fuzz_support::Rng;
use io_fixtures::{tiny_config, tiny_tensors};
use thinkjudge_model::{ModelConfig, WeightMap};

/// One layer, hidden 16, GQA (2 heads, 1 kv head), the 264-token fixture vocabulary, tied.
fn small_config() -> ModelConfig {
    ModelConfig {
        hidden_size: 16,
        intermediate_size: 32,
        num_layers: 1,
        num_heads: 2,
        num_kv_heads: 1,
        head_dim: 8,
        ..tiny_config(true)
    }
}

fn small_tensors() -> Vec<(String, Tensor)> {
    tiny_tensors(&small_config()).expect("fixture tensors")
}

fn err_names(e: &thinkjudge_model::ModelError, paths: &[&Path]) -> Result<(), String> {
    let msg = e.to_string();
    if paths.iter().any(|p| msg.contains(&p.display().to_string())) {
        Ok(())
    } else {
        Err(format!("error names none of {paths:?}: {msg}"))
    }
}

fn u64_interesting(rng: &mut Rng, current: u64) -> u64 {
    match rng.below(12) {
        0 => 0,
        1 => 1,
        2 => current.wrapping_sub(1),
        3 => current.wrapping_add(1),
        4 => 1 << 32,
        5 => (1 << 32) - 1,
        6 => 1 << 60,
        7 => 1 << 63,
        8 => u64::MAX,
        9 => current.wrapping_mul(2),
        10 => rng.below(64) as u64,
        _ => rng.next_u64(),
    }
}

fn same_weights(got: &WeightMap, want: &[(String, Tensor)]) -> Result<(), String> {
    for (name, t) in want {
        let g = got.get(name).map_err(|e| e.to_string())?;
        let a: Vec<f32> = g
            .flatten_all()
            .and_then(|t| t.to_vec1())
            .map_err(|e| e.to_string())?;
        let b: Vec<f32> = t
            .flatten_all()
            .and_then(|t| t.to_vec1())
            .map_err(|e| e.to_string())?;
        if a != b {
            return Err(format!("{name}: values differ after loading"));
        }
    }
    Ok(())
}
