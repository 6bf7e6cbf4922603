//! Lying lengths, one at a time: each must fail fast, without a large allocation, with an
//! error naming the file.
use std::path::{Path, PathBuf};

use candle_core::Device;
use serde_json::{json, Value};
use thinkjudge_model::{load, ModelSource, SaveDtype};

use crate::fuzz_support;
use crate::gguf_writer::{base_gguf, Gguf, G};
use crate::model_dirs::base_hf_files;
use crate::{same_weights, small_tensors};

fn gguf_with(edit: impl FnOnce(&mut Gguf)) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("lying.gguf");
    let mut g = base_gguf();
    edit(&mut g);
    std::fs::write(&path, g.write().bytes).expect("write");
    (dir, path)
}

fn assert_load_error(source: ModelSource, path: &Path, what: &str) {
    let e = fuzz_support::guarded("lying header", move || {
        load(&source, &Device::Cpu).err().map(|e| e.to_string())
    });
    let e = e.unwrap_or_else(|| panic!("{what}: loaded"));
    assert!(e.contains(&path.display().to_string()), "{what}: {e}");
}

/// A valid GGUF loads (the writer above is right, so the fuzz cases start from valid files).
#[test]
fn the_gguf_writer_writes_loadable_files() {
    let (_dir, path) = gguf_with(|_| {});
    let m = load(&ModelSource::Gguf(path), &Device::Cpu).expect("load");
    same_weights(&m.weights, &small_tensors()).expect("values");
}

#[test]
fn lying_gguf_counts_and_lengths_fail_fast() {
    let (_d, path) = gguf_with(|_| {});
    let good = std::fs::read(&path).expect("read");
    // tensor_count, metadata_kv_count, the first key's length, the token array's length.
    let tokens_len_at = good
        .windows(b"tokenizer.ggml.tokens".len())
        .position(|w| w == b"tokenizer.ggml.tokens")
        .expect("tokens key")
        + b"tokenizer.ggml.tokens".len()
        + 4;
    for (what, at) in [
        ("tensor count", 8),
        ("kv count", 16),
        ("key length", 24),
        ("array length", tokens_len_at),
    ] {
        for v in [1u64 << 60, u64::MAX, 1 << 32] {
            let mut b = good.clone();
            b[at..at + 8].copy_from_slice(&v.to_le_bytes());
            std::fs::write(&path, &b).expect("write");
            assert_load_error(ModelSource::Gguf(path.clone()), &path, what);
        }
    }
}

/// A GGUF whose metadata claims 2^40 layers (or a 2^40-wide model) over a one-layer file,
/// loaded and converted to an HF directory.
#[test]
fn lying_gguf_config_fails_fast() {
    for key in [
        "llama.block_count",
        "llama.embedding_length",
        "llama.feed_forward_length",
    ] {
        let (dir, path) = gguf_with(|g| g.meta.push((key.as_bytes().to_vec(), G::U64(1 << 40))));
        assert_load_error(ModelSource::Gguf(path.clone()), &path, key);
        let out = dir.path().join("converted");
        let gguf = path.clone();
        let e = fuzz_support::guarded("lying header conversion", move || {
            thinkjudge_model::convert_gguf_to_hf(&gguf, &out, SaveDtype::F32)
                .err()
                .map(|e| e.to_string())
        });
        let e = e.unwrap_or_else(|| panic!("{key}: converted"));
        assert!(e.contains(&path.display().to_string()), "{key}: {e}");
    }
}

/// `general.alignment = 0` (a division by zero in the reader).
#[test]
fn gguf_alignment_zero_is_an_error() {
    let (_d, path) = gguf_with(|g| g.meta.push((b"general.alignment".to_vec(), G::U32(0))));
    assert_load_error(ModelSource::Gguf(path.clone()), &path, "alignment 0");
}

/// An HF directory whose config.json claims 2^40 layers over one layer of weights.
#[test]
fn lying_config_json_fails_fast() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("model");
    std::fs::create_dir_all(&dir).expect("mkdir");
    for (name, bytes) in base_hf_files() {
        std::fs::write(dir.join(name), bytes).expect("write");
    }
    let mut cfg: Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).expect("read"))
            .expect("json");
    cfg["num_hidden_layers"] = json!(1u64 << 40);
    std::fs::write(dir.join("config.json"), cfg.to_string()).expect("write");
    assert_load_error(
        ModelSource::Dir(dir.clone()),
        &dir,
        "num_hidden_layers 2^40",
    );
}
