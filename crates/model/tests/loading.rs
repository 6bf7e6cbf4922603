//! Round trips through every source: HF single file, HF shards (bf16), GGUF (with llama.cpp's
//! q/k permutation), GGUF → HF conversion, the offline HF cache, and candle-transformers'
//! Llama as an independent reader of what we write.

mod io_fixtures;

use std::collections::HashMap;
use std::path::Path;

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::{llama, quantized_llama};
use io_fixtures::*;
use thinkjudge_model::{
    convert_gguf_to_hf, load, load_with, save_hf_model, JudgeTokenizer, LoadOptions, ModelFormat,
    ModelSource, SaveDtype,
};

fn assert_weights_equal(
    expected: &[(String, Tensor)],
    got: &thinkjudge_model::WeightMap,
) -> Result<()> {
    assert_eq!(got.len(), expected.len(), "tensor count");
    for (name, t) in expected {
        assert_same(name, t, got.get(name)?)?;
    }
    Ok(())
}

#[test]
fn single_file_round_trip() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let tok = tiny_tokenizer(tmp.path(), Some("smollm"))?;
    for tied in [false, true] {
        let config = tiny_config(tied);
        let tensors = tiny_tensors(&config)?;
        let dir = tmp.path().join(format!("model-tied-{tied}"));
        save_hf_model(&dir, &config, &tensors, SaveDtype::F32, Some(&tok))?;

        let m = load(&ModelSource::Dir(dir.clone()), &Device::Cpu)?;
        assert_eq!(m.config, config);
        assert_eq!(m.origin.format, ModelFormat::HfSafetensors);
        assert_eq!(m.origin.path, dir);
        assert_weights_equal(&tensors, &m.weights)?;
        let text = "<|im_start|>user\nthe 12<|im_end|>\n";
        assert_eq!(m.tokenizer.encode(text)?, tok.encode(text)?);
        assert_eq!(m.tokenizer.special_ids(), tok.special_ids());
        assert_eq!(m.tokenizer.chat_template(), Some(CHAT_TEMPLATE));
    }
    Ok(())
}

#[test]
fn saving_replaces_an_existing_model() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let tok = tiny_tokenizer(tmp.path(), Some("smollm"))?;
    let config = tiny_config(true);
    let tensors = tiny_tensors(&config)?;
    let dir = tmp.path().join("ckpt");
    save_hf_model(&dir, &config, &tensors, SaveDtype::F32, Some(&tok))?;
    let doubled: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(n, t)| Ok((n.clone(), (t * 2.0)?)))
        .collect::<Result<_>>()?;
    save_hf_model(&dir, &config, &doubled, SaveDtype::F32, Some(&tok))?;
    let m = load(&ModelSource::Dir(dir.clone()), &Device::Cpu)?;
    assert_weights_equal(&doubled, &m.weights)?;
    // No staging or backup directories are left behind.
    let names: Vec<String> = std::fs::read_dir(tmp.path())?
        .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_>>()?;
    assert_eq!(
        names.iter().filter(|n| n.starts_with('.')).count(),
        0,
        "{names:?}"
    );
    Ok(())
}

#[test]
fn sharded_bf16_round_trip() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let tok = tiny_tokenizer(tmp.path(), Some("smollm"))?;
    let config = tiny_config(false);
    let tensors = tiny_tensors(&config)?;
    let dir = tmp.path().join("sharded");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string(&config.to_hf_json())?,
    )?;
    tok.save_to_dir(&dir)?;
    // Two shards in bf16, as HF writes big checkpoints.
    let mut weight_map = serde_json::Map::new();
    let (first, second) = tensors.split_at(tensors.len() / 2);
    for (i, part) in [first, second].into_iter().enumerate() {
        let shard = format!("model-0000{}-of-00002.safetensors", i + 1);
        let mut map = HashMap::new();
        for (name, t) in part {
            map.insert(name.clone(), t.to_dtype(DType::BF16)?);
            weight_map.insert(name.clone(), shard.clone().into());
        }
        candle_core::safetensors::save(&map, dir.join(&shard))?;
    }
    let index = serde_json::json!({"metadata": {"total_size": 0}, "weight_map": weight_map});
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        serde_json::to_string(&index)?,
    )?;

    let m = load(&ModelSource::Dir(dir), &Device::Cpu)?;
    assert_eq!(m.config, config);
    let rounded: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(n, t)| Ok((n.clone(), t.to_dtype(DType::BF16)?.to_dtype(DType::F32)?)))
        .collect::<Result<_>>()?;
    assert_weights_equal(&rounded, &m.weights)?;
    for (_, t) in m.weights.iter() {
        assert_eq!(t.dtype(), DType::F32);
    }
    Ok(())
}

#[test]
fn gguf_loads_with_qk_unpermuted() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    for tied in [true, false] {
        let config = tiny_config(tied);
        let tensors = tiny_tensors(&config)?;
        let path = tmp.path().join(format!("tiny-{tied}.gguf"));
        write_tiny_gguf(&path, &config, &tensors, &GgufSpec::default())?;

        let m = load(&ModelSource::Gguf(path.clone()), &Device::Cpu)?;
        assert_eq!(m.config, config, "config from GGUF metadata (tied={tied})");
        assert_eq!(m.origin.format, ModelFormat::Gguf);
        // Bit-identical to the HF tensors the GGUF was made from: q/k rows are back in HF
        // order, names are HF names, and `output.weight` exists only when untied.
        assert_weights_equal(&tensors, &m.weights)?;
        assert_eq!(m.tokenizer.chat_template(), Some(CHAT_TEMPLATE));
        assert_eq!(m.tokenizer.eos_ids(), &[2]);
        assert_eq!(m.tokenizer.bos_id(), Some(1));
        assert_eq!(m.tokenizer.pad_id(), Some(2));
    }
    Ok(())
}

#[test]
fn converted_gguf_equals_gguf() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let config = tiny_config(true);
    let tensors = tiny_tensors(&config)?;
    let gguf = tmp.path().join("tiny.gguf");
    write_tiny_gguf(&gguf, &config, &tensors, &GgufSpec::default())?;
    let out = tmp.path().join("hf");
    let converted_config = convert_gguf_to_hf(&gguf, &out, SaveDtype::F32)?;
    assert_eq!(converted_config, config);

    let a = load(&ModelSource::Gguf(gguf), &Device::Cpu)?;
    let b = load(&ModelSource::Dir(out.clone()), &Device::Cpu)?;
    assert_eq!(a.config, b.config);
    assert_weights_equal(&tensors, &b.weights)?;
    let text = "<|im_start|>assistant\n<think>the $12.5</think><|im_end|>";
    assert_eq!(a.tokenizer.encode(text)?, b.tokenizer.encode(text)?);
    assert_eq!(a.tokenizer.special_ids(), b.tokenizer.special_ids());
    assert_eq!(a.tokenizer.chat_template(), b.tokenizer.chat_template());
    let marker = thinkjudge_model::convert::ConversionMarker::read(&out).expect("marker");
    assert_eq!(marker.source, "tiny.gguf");
    assert_eq!(
        marker.sha256,
        thinkjudge_model::convert::sha256_file(&tmp.path().join("tiny.gguf"))?
    );
    Ok(())
}

/// candle-transformers reads both files independently: its quantized Llama runs the GGUF with
/// interleaved RoPE on permuted rows, its HF Llama runs our conversion with half-split RoPE.
/// Equal logits mean names, shapes, un-permutation and config all agree.
#[test]
fn candle_runs_conversion_like_the_gguf() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dev = Device::Cpu;
    for tied in [true, false] {
        let config = tiny_config(tied);
        let gguf = tmp.path().join(format!("tiny-{tied}.gguf"));
        write_tiny_gguf(
            &gguf,
            &config,
            &tiny_tensors(&config)?,
            &GgufSpec::default(),
        )?;
        let out = tmp.path().join(format!("hf-{tied}"));
        convert_gguf_to_hf(&gguf, &out, SaveDtype::F32)?;

        let ids = Tensor::new(&[[1u32, 70, 71, 200, 5, 9, 260]], &dev)?;
        let mut file = std::fs::File::open(&gguf)?;
        let content = candle_core::quantized::gguf_file::Content::read(&mut file)?;
        let mut q = quantized_llama::ModelWeights::from_gguf(content, &mut file, &dev)?;
        let from_gguf: Vec<f32> = q.forward(&ids, 0)?.flatten_all()?.to_vec1()?;

        let cfg: llama::LlamaConfig =
            serde_json::from_str(&std::fs::read_to_string(out.join("config.json"))?)?;
        let cfg = cfg.into_config(false);
        let vb = unsafe {
            VarBuilder::from_mmaped_safetensors(&[out.join("model.safetensors")], DType::F32, &dev)?
        };
        let model = llama::Llama::load(vb, &cfg)?;
        let mut cache = llama::Cache::new(false, DType::F32, &cfg, &dev)?;
        let from_hf: Vec<f32> = model
            .forward(&ids, 0, &mut cache)?
            .flatten_all()?
            .to_vec1()?;

        assert_eq!(from_gguf.len(), VOCAB);
        let max_diff = from_gguf
            .iter()
            .zip(&from_hf)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        // f32 everywhere; only summation order differs between the two implementations.
        assert!(max_diff < 1e-4, "tied={tied}: max |Δlogit| = {max_diff}");
        // A wrong q/k order would change attention, not leave logits within 1e-4: check that
        // the logits are not trivially insensitive to the input.
        let other = Tensor::new(&[[1u32, 70, 71, 200, 5, 9, 261]], &dev)?;
        let moved: Vec<f32> = q.forward(&other, 0)?.flatten_all()?.to_vec1()?;
        let delta = moved
            .iter()
            .zip(&from_gguf)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(delta > 1e-3, "logits barely depend on the input: {delta}");
    }
    Ok(())
}

fn fake_hub_cache(root: &Path, id: &str, commit: &str, tok: &JudgeTokenizer) -> Result<()> {
    let repo = root.join(format!("models--{}", id.replace('/', "--")));
    let config = tiny_config(true);
    let snapshot = repo.join("snapshots").join(commit);
    save_hf_model(
        &snapshot,
        &config,
        &tiny_tensors(&config)?,
        SaveDtype::Bf16,
        Some(tok),
    )?;
    std::fs::create_dir_all(repo.join("refs"))?;
    std::fs::write(repo.join("refs").join("main"), format!("{commit}\n"))?;
    Ok(())
}

#[test]
fn hub_models_load_offline_from_the_cache() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let tok = tiny_tokenizer(tmp.path(), Some("smollm"))?;
    let cache = tmp.path().join("hub");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    fake_hub_cache(&cache, "org/tiny-judge", commit, &tok)?;
    let opts = LoadOptions {
        allow_download: false,
        hf_cache: Some(cache.clone()),
        cache_root: None,
    };
    for source in ["hf:org/tiny-judge", &format!("hf:org/tiny-judge@{commit}")] {
        let m = load_with(&ModelSource::parse(source)?, &Device::Cpu, &opts)?;
        assert_eq!(m.config, tiny_config(true), "{source}");
        assert!(m.origin.path.ends_with(format!("snapshots/{commit}")));
    }

    // Not cached and downloads disabled: the error names the id and the cache.
    let e = load_with(&ModelSource::parse("hf:org/absent")?, &Device::Cpu, &opts)
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"org/absent\""), "{e}");
    assert!(e.contains(&cache.display().to_string()), "{e}");
    assert!(e.contains("downloads are disabled"), "{e}");

    // A snapshot missing its weights is reported file by file.
    let snap = cache.join("models--org--tiny-judge/snapshots").join(commit);
    std::fs::remove_file(snap.join("model.safetensors"))?;
    let e = load_with(
        &ModelSource::parse("hf:org/tiny-judge")?,
        &Device::Cpu,
        &opts,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("missing model.safetensors"), "{e}");
    Ok(())
}
