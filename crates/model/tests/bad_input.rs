//! Broken inputs give errors (never panics) that name the file, the tensor or field, and the
//! problem.

mod io_fixtures;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use candle_core::quantized::gguf_file::Value;
use candle_core::{DType, Device, Tensor};
use io_fixtures::*;
use thinkjudge_model::{load, save_hf_model, ModelConfig, ModelError, ModelSource, SaveDtype};

/// A valid saved model in `<tmp>/model`.
fn saved_model(tmp: &Path) -> Result<PathBuf> {
    let tok = tiny_tokenizer(tmp, Some("smollm"))?;
    let config = tiny_config(true);
    let dir = tmp.join("model");
    save_hf_model(
        &dir,
        &config,
        &tiny_tensors(&config)?,
        SaveDtype::F32,
        Some(&tok),
    )?;
    Ok(dir)
}

fn load_err(source: ModelSource) -> String {
    match load(&source, &Device::Cpu) {
        Ok(_) => panic!("{source} loaded but should not have"),
        Err(e) => e.to_string(),
    }
}

fn assert_has(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "{msg:?} should mention {p:?}");
    }
}

/// Rewrites `model.safetensors` with `edit` applied to the tensor map.
fn rewrite_weights(dir: &Path, edit: impl FnOnce(&mut HashMap<String, Tensor>)) -> Result<()> {
    let path = dir.join("model.safetensors");
    let mut map = candle_core::safetensors::load(&path, &Device::Cpu)?;
    edit(&mut map);
    candle_core::safetensors::save(&map, &path)?;
    Ok(())
}

#[test]
fn truncated_safetensors() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = saved_model(tmp.path())?;
    let path = dir.join("model.safetensors");
    let len = std::fs::metadata(&path)?.len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)?
        .set_len(len - 100)?;
    let e = load_err(ModelSource::Dir(dir));
    // The last tensor in the file is the one cut short; the message names it.
    assert_has(&e, &["model.safetensors", "tensor \"", "truncated"]);
    Ok(())
}

#[test]
fn corrupt_safetensors_header() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = saved_model(tmp.path())?;
    let path = dir.join("model.safetensors");
    let mut bytes = std::fs::read(&path)?;

    // A length prefix larger than the file.
    let mut huge = bytes.clone();
    huge[..8].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
    std::fs::write(&path, &huge)?;
    let e = load_err(ModelSource::Dir(dir.clone()));
    assert_has(
        &e,
        &["model.safetensors", "corrupt header", "header length"],
    );

    // Garbage inside the JSON.
    bytes[9] = b'#';
    std::fs::write(&path, &bytes)?;
    let e = load_err(ModelSource::Dir(dir.clone()));
    assert_has(&e, &["model.safetensors", "corrupt header JSON"]);

    // Too short to hold a header at all.
    std::fs::write(&path, b"abc")?;
    let e = load_err(ModelSource::Dir(dir));
    assert_has(&e, &["model.safetensors", "too short"]);
    Ok(())
}

#[test]
fn unsupported_dtype() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = saved_model(tmp.path())?;
    rewrite_weights(&dir, |m| {
        let t = m["model.norm.weight"].to_dtype(DType::I64).unwrap();
        m.insert("model.norm.weight".into(), t);
    })?;
    let e = load_err(ModelSource::Dir(dir));
    assert_has(
        &e,
        &[
            "model.safetensors",
            "\"model.norm.weight\"",
            "dtype I64 is not supported",
        ],
    );
    Ok(())
}

#[test]
fn wrong_shape() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = saved_model(tmp.path())?;
    rewrite_weights(&dir, |m| {
        let name = "model.layers.1.self_attn.k_proj.weight";
        let t = Tensor::zeros((8, 32), DType::F32, &Device::Cpu).unwrap();
        m.insert(name.into(), t);
    })?;
    let e = load_err(ModelSource::Dir(dir));
    assert_has(
        &e,
        &[
            "model",
            "\"model.layers.1.self_attn.k_proj.weight\"",
            "expected shape [16, 32], found [8, 32]",
        ],
    );
    Ok(())
}

#[test]
fn missing_tensor() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = saved_model(tmp.path())?;
    rewrite_weights(&dir, |m| {
        m.remove("model.layers.0.mlp.down_proj.weight");
    })?;
    let e = load_err(ModelSource::Dir(dir.clone()));
    assert_has(
        &e,
        &[
            &dir.display().to_string(),
            "\"model.layers.0.mlp.down_proj.weight\"",
            "missing",
        ],
    );
    Ok(())
}

#[test]
fn unsupported_rope_type_in_config() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = saved_model(tmp.path())?;
    let path = dir.join("config.json");
    let mut cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    cfg["rope_scaling"] = serde_json::json!({"rope_type": "yarn", "factor": 4.0});
    std::fs::write(&path, cfg.to_string())?;
    let e = load_err(ModelSource::Dir(dir));
    assert_has(&e, &["config.json", "rope_type \"yarn\" is not supported"]);
    Ok(())
}

#[test]
fn index_naming_a_missing_shard() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = saved_model(tmp.path())?;
    std::fs::remove_file(dir.join("model.safetensors"))?;
    let config = tiny_config(true);
    let weight_map: serde_json::Map<String, serde_json::Value> = tiny_tensors(&config)?
        .into_iter()
        .map(|(n, _)| (n, "model-00001-of-00002.safetensors".into()))
        .collect();
    let index = serde_json::json!({ "weight_map": weight_map });
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string())?;
    let e = load_err(ModelSource::Dir(dir));
    assert_has(
        &e,
        &[
            "model.safetensors.index.json",
            "shard \"model-00001-of-00002.safetensors\" is missing",
        ],
    );
    Ok(())
}

#[test]
fn tokenizer_larger_than_model_vocab() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let tok = tiny_tokenizer(tmp.path(), Some("smollm"))?;
    let config = ModelConfig {
        vocab_size: 200,
        ..tiny_config(true)
    };
    let dir = tmp.path().join("small-vocab");
    // save_hf_model itself refuses the pair, naming both sizes.
    let e = save_hf_model(
        &dir,
        &config,
        &tiny_tensors(&config)?,
        SaveDtype::F32,
        Some(&tok),
    )
    .unwrap_err();
    assert!(matches!(e, ModelError::VocabMismatch { .. }), "{e}");
    assert!(!dir.exists(), "nothing is written when saving fails");

    // Written by hand, loading reports it with both numbers and both files.
    save_hf_model(&dir, &config, &tiny_tensors(&config)?, SaveDtype::F32, None)?;
    tok.save_to_dir(&dir)?;
    let e = load_err(ModelSource::Dir(dir.clone()));
    assert_has(
        &e,
        &[
            &dir.join("tokenizer.json").display().to_string(),
            "264 tokens",
            "highest id 263",
            "vocab_size 200",
            &dir.display().to_string(),
        ],
    );
    Ok(())
}

#[test]
fn not_a_model_directory() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let e = load_err(ModelSource::Dir(tmp.path().join("nope")));
    assert_has(&e, &["nope", "does not exist"]);
    let dir = saved_model(tmp.path())?;
    std::fs::remove_file(dir.join("model.safetensors"))?;
    let e = load_err(ModelSource::Dir(dir.clone()));
    assert_has(
        &e,
        &["no model.safetensors or model.safetensors.index.json"],
    );
    std::fs::remove_file(dir.join("tokenizer.json"))?;
    let e = load_err(ModelSource::Dir(dir));
    assert_has(&e, &["tokenizer.json", "not found"]);
    Ok(())
}

#[test]
fn save_rejects_misnamed_or_missing_tensors() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let config = tiny_config(true);
    let mut tensors = tiny_tensors(&config)?;
    let dir = tmp.path().join("out");

    let mut extra = tensors.clone();
    extra.push(("lm_head.weight".into(), tensors[0].1.clone()));
    let e = save_hf_model(&dir, &config, &extra, SaveDtype::F32, None).unwrap_err();
    assert_has(
        &e.to_string(),
        &["\"lm_head.weight\"", "is not a tensor of this Llama config"],
    );

    tensors.retain(|(n, _)| n != "model.norm.weight");
    let e = save_hf_model(&dir, &config, &tensors, SaveDtype::F32, None).unwrap_err();
    assert_has(&e.to_string(), &["\"model.norm.weight\"", "missing"]);
    assert!(!dir.exists());
    Ok(())
}

fn gguf_err(spec: GgufSpec<'_>) -> Result<String> {
    let tmp = tempfile::tempdir()?;
    let config = tiny_config(true);
    let path = tmp.path().join("bad.gguf");
    write_tiny_gguf(&path, &config, &tiny_tensors(&config)?, &spec)?;
    Ok(load_err(ModelSource::Gguf(path)))
}

#[test]
fn gguf_unsupported_tokenizers_and_architectures() -> Result<()> {
    let e = gguf_err(GgufSpec {
        tokenizer_model: "llama",
        ..GgufSpec::default()
    })?;
    assert_has(
        &e,
        &[
            "bad.gguf",
            "tokenizer.ggml.model = \"llama\" is not supported",
        ],
    );

    let e = gguf_err(GgufSpec {
        pre: Some("qwen2"),
        ..GgufSpec::default()
    })?;
    assert_has(
        &e,
        &[
            "bad.gguf",
            "tokenizer.ggml.pre = \"qwen2\" is not supported",
        ],
    );

    let e = gguf_err(GgufSpec {
        extra: vec![("general.architecture", Value::String("gemma".into()))],
        ..GgufSpec::default()
    })?;
    assert_has(
        &e,
        &[
            "bad.gguf",
            "general.architecture",
            "\"gemma\" is not supported",
        ],
    );

    let e = gguf_err(GgufSpec {
        extra: vec![("llama.block_count", Value::String("two".into()))],
        ..GgufSpec::default()
    })?;
    assert_has(
        &e,
        &["bad.gguf", "llama.block_count", "expected an integer"],
    );

    let e = gguf_err(GgufSpec {
        extra: vec![("tokenizer.ggml.eos_token_id", Value::U32(9999))],
        ..GgufSpec::default()
    })?;
    assert_has(
        &e,
        &["bad.gguf", "tokenizer.ggml.eos_token_id = 9999 is outside"],
    );
    Ok(())
}

#[test]
fn gguf_truncated_or_garbage() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let config = tiny_config(true);
    let path = tmp.path().join("cut.gguf");
    write_tiny_gguf(
        &path,
        &config,
        &tiny_tensors(&config)?,
        &GgufSpec::default(),
    )?;
    let len = std::fs::metadata(&path)?.len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)?
        .set_len(len - 64)?;
    let e = load_err(ModelSource::Gguf(path.clone()));
    // The last tensor written is the final norm; its data is what got cut.
    assert_has(&e, &["cut.gguf", "tensor \"", "remaining in file"]);

    std::fs::write(&path, b"definitely not gguf")?;
    let e = load_err(ModelSource::Gguf(path));
    assert_has(&e, &["cut.gguf", "not a readable GGUF file"]);
    Ok(())
}
