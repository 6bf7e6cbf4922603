//! HF model directories (config, weights, tokenizer files, shard index) through `load`, and
//! `config.json` alone through `LlamaConfig::from_file`.
use std::path::{Path, PathBuf};

use candle_core::Device;
use serde_json::{json, Value};
use thinkjudge_model::config::LlamaConfig;
use thinkjudge_model::{load, save_hf_model, ModelSource, SaveDtype};

use crate::fuzz_support::{run, show, Rng};
use crate::io_fixtures;
use crate::safetensors::{mutate_st_header, odd_json, st_bytes};
use crate::{err_names, same_weights, small_config, small_tensors};

/// The files of a valid saved small model: (name, bytes).
pub(crate) fn base_hf_files() -> Vec<(String, Vec<u8>)> {
    let tmp = tempfile::tempdir().expect("temp dir");
    let tok = io_fixtures::tiny_tokenizer(tmp.path(), Some("smollm")).expect("tokenizer");
    let dir = tmp.path().join("model");
    save_hf_model(
        &dir,
        &small_config(),
        &small_tensors(),
        SaveDtype::F32,
        Some(&tok),
    )
    .expect("save");
    let gen = json!({"bos_token_id": 1, "eos_token_id": [2, 0]});
    std::fs::write(dir.join("generation_config.json"), gen.to_string()).expect("write");
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .expect("read dir")
        .map(|e| {
            let e = e.expect("entry");
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).expect("read"),
            )
        })
        .collect();
    files.sort();
    files
}

const CONFIG_KEYS: &[&str] = &[
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "vocab_size",
    "rms_norm_eps",
    "rope_theta",
    "rope_scaling",
    "max_position_embeddings",
    "tie_word_embeddings",
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
    "hidden_act",
    "model_type",
    "attention_bias",
    "mlp_bias",
];

fn config_value(rng: &mut Rng) -> Value {
    match rng.below(14) {
        0 => json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                    "high_freq_factor": 4.0, "original_max_position_embeddings": 64}),
        1 => json!({"type": "linear", "factor": 2.0}),
        2 => json!({"rope_type": "llama3", "factor": -1}),
        3 => json!(1u64 << 40),
        4 => json!(1u64 << 32),
        5 => json!(u64::MAX),
        6 => json!(1e30),
        7 => json!(-1e-30),
        8 => json!([2, 0, 1u64 << 33]),
        9 => json!("silu"),
        _ => odd_json(rng),
    }
}

/// A random node of a JSON document replaced, removed or duplicated.
fn mutate_json(rng: &mut Rng, v: &mut Value, depth: usize) {
    let descend = depth < 12 && rng.chance(0.7);
    match v {
        Value::Object(o) if !o.is_empty() => {
            let keys: Vec<String> = o.keys().cloned().collect();
            let k = rng.pick(&keys).clone();
            if descend {
                if let Some(child) = o.get_mut(&k) {
                    mutate_json(rng, child, depth + 1);
                }
                return;
            }
            match rng.below(3) {
                0 => {
                    o.remove(&k);
                }
                1 => {
                    let n = rng.len(20);
                    o.insert(rng.text(n), odd_json(rng));
                }
                _ => {
                    o.insert(k, odd_json(rng));
                }
            }
        }
        Value::Array(a) if !a.is_empty() => {
            let i = rng.below(a.len());
            if descend {
                mutate_json(rng, &mut a[i], depth + 1);
                return;
            }
            match rng.below(3) {
                0 => {
                    a.remove(i);
                }
                1 => {
                    let dup = a[i].clone();
                    a.push(dup);
                }
                _ => a[i] = odd_json(rng),
            }
        }
        _ => *v = odd_json(rng),
    }
}

fn mutate_text(rng: &mut Rng, b: &mut Vec<u8>) {
    match rng.below(3) {
        0 => {
            let at = rng.below(b.len() + 1);
            b.truncate(at);
        }
        1 if !b.is_empty() => {
            let at = rng.below(b.len());
            b[at] = rng.next_u64() as u8;
        }
        _ => {
            let at = rng.below(b.len() + 1);
            let junk = rng.bytes(rng.clone().len(8));
            b.splice(at..at, junk);
        }
    }
}

/// Mutates one file of a model directory (or adds a shard index, or removes a file).
fn mutate_hf_dir(rng: &mut Rng, files: &mut Vec<(String, Vec<u8>)>, elsewhere: &Path) -> String {
    let pick = |files: &[(String, Vec<u8>)], name: &str| files.iter().position(|(n, _)| n == name);
    match rng.below(10) {
        0..=2 => {
            let Some(i) = pick(files, "config.json") else {
                return "no config".into();
            };
            let mut v: Value = serde_json::from_slice(&files[i].1).unwrap_or(Value::Null);
            if rng.one_in(5) {
                mutate_json(rng, &mut v, 0);
            } else if let Some(o) = v.as_object_mut() {
                for _ in 0..rng.range(1, 2) {
                    let k = rng.pick(CONFIG_KEYS).to_string();
                    if rng.one_in(6) {
                        o.remove(&k);
                    } else {
                        o.insert(k, config_value(rng));
                    }
                }
            }
            files[i].1 = serde_json::to_vec(&v).unwrap_or_default();
            if rng.one_in(8) {
                mutate_text(rng, &mut files[i].1);
            }
            "config.json".into()
        }
        3 => {
            let Some(i) = pick(files, "model.safetensors") else {
                return "no weights".into();
            };
            let b = &files[i].1;
            let n = b
                .get(..8)
                .and_then(|p| p.try_into().ok())
                .map_or(0, u64::from_le_bytes) as usize;
            // An earlier mutation may have cut the file: then the header reads as empty.
            let header_bytes = b.get(8..8usize.saturating_add(n)).unwrap_or_default();
            let mut header: serde_json::Map<String, Value> =
                serde_json::from_slice(header_bytes).unwrap_or_default();
            let data = b.get(8 + header_bytes.len()..).unwrap_or_default().to_vec();
            if header.is_empty() || rng.one_in(3) {
                mutate_text(rng, &mut files[i].1);
            } else {
                mutate_st_header(rng, &mut header);
                let h = serde_json::to_vec(&Value::Object(header)).unwrap_or_default();
                files[i].1 = st_bytes(&h, &data, None);
            }
            "model.safetensors".into()
        }
        4 | 5 => {
            let name = *rng.pick(&[
                "tokenizer.json",
                "tokenizer_config.json",
                "generation_config.json",
            ]);
            let Some(i) = pick(files, name) else {
                return format!("no {name}");
            };
            let mut v: Value = serde_json::from_slice(&files[i].1).unwrap_or(Value::Null);
            if name != "tokenizer.json" && rng.one_in(2) {
                let keys = [
                    "bos_token",
                    "eos_token",
                    "pad_token",
                    "chat_template",
                    "eos_token_id",
                    "bos_token_id",
                    "pad_token_id",
                ];
                if let Some(o) = v.as_object_mut() {
                    let k = rng.pick(&keys).to_string();
                    let val = match rng.below(4) {
                        0 => json!("<|not_a_token|>"),
                        1 => json!({"content": "<|im_end|>", "lstrip": false}),
                        2 => json!([{"name": "default", "template": "{{ x"}]),
                        _ => odd_json(rng),
                    };
                    o.insert(k, val);
                }
            } else {
                mutate_json(rng, &mut v, 0);
            }
            files[i].1 = serde_json::to_vec(&v).unwrap_or_default();
            if rng.one_in(8) {
                mutate_text(rng, &mut files[i].1);
            }
            name.into()
        }
        6 => {
            // A shard index whose shards are odd paths.
            let shard = match rng.below(8) {
                0 => "model.safetensors".to_string(),
                1 => "../x.safetensors".into(),
                2 => elsewhere.display().to_string(),
                3 => String::new(),
                4 => "/".into(),
                5 => "s".repeat(300),
                6 => "a\u{0}b".into(),
                _ => ".".into(),
            };
            let tensor = if rng.one_in(2) {
                "model.norm.weight"
            } else {
                "not.a.tensor"
            };
            let index = if rng.one_in(5) {
                odd_json(rng)
            } else {
                json!({"metadata": {}, "weight_map": {tensor: shard}})
            };
            files.push((
                "model.safetensors.index.json".into(),
                serde_json::to_vec(&index).unwrap_or_default(),
            ));
            "index".into()
        }
        7 => {
            let i = rng.below(files.len());
            let (name, _) = files.remove(i);
            format!("removed {name}")
        }
        _ => {
            // The lying layout through config.json.
            let Some(i) = pick(files, "config.json") else {
                return "no config".into();
            };
            let mut v: Value = serde_json::from_slice(&files[i].1).unwrap_or(Value::Null);
            let k = *rng.pick(&[
                "num_hidden_layers",
                "hidden_size",
                "intermediate_size",
                "vocab_size",
                "num_attention_heads",
            ]);
            v[k] = json!(1u64 << (20 + rng.below(44)));
            files[i].1 = serde_json::to_vec(&v).unwrap_or_default();
            format!("huge {k}")
        }
    }
}

/// Mutated HF model directories (config, weights, tokenizer files, shard index) through
/// `load`.
#[test]
fn fuzz_hf_model_dirs() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = tmp.path().to_path_buf();
    let elsewhere = root.join("elsewhere.safetensors");
    std::fs::write(&elsewhere, b"\x10\0\0\0\0\0\0\0{\"a\":1}         ").expect("write");
    let base = base_hf_files();
    run("hf_model_dirs", 300, move |rng| {
        let _keep = &tmp;
        let dir: PathBuf = root.join("model");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let mut files = base.clone();
        let clean = rng.one_in(10);
        let what = if clean {
            "clean".to_string()
        } else {
            (0..rng.range(1, 2))
                .map(|_| mutate_hf_dir(rng, &mut files, &elsewhere))
                .collect::<Vec<_>>()
                .join(", ")
        };
        show("mutations", &what);
        for (name, bytes) in &files {
            std::fs::write(dir.join(name), bytes).map_err(|e| e.to_string())?;
        }
        match load(&ModelSource::Dir(dir.clone()), &Device::Cpu) {
            Ok(m) if clean => same_weights(&m.weights, &small_tensors()),
            Ok(_) => Ok(()),
            Err(e) if clean => Err(format!("the unmutated directory does not load: {e}")),
            Err(e) => err_names(&e, &[&dir, &elsewhere]),
        }
        .map_err(|e| format!("{what}: {e}"))
    });
}

/// `config.json` alone: mutated documents through `LlamaConfig::from_file`; a resolved
/// config keeps `resolve`'s guarantees.
#[test]
fn fuzz_config_json() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("config.json");
    let base = small_config().to_hf_json();
    run("config_json", 1_000, move |rng| {
        let _keep = &dir;
        let mut v = base.clone();
        for _ in 0..rng.range(1, 3) {
            if rng.one_in(4) {
                mutate_json(rng, &mut v, 0);
            } else if let Some(o) = v.as_object_mut() {
                o.insert(rng.pick(CONFIG_KEYS).to_string(), config_value(rng));
            }
        }
        let mut bytes = serde_json::to_vec(&v).unwrap_or_default();
        if rng.one_in(10) {
            mutate_text(rng, &mut bytes);
        }
        show("config", &String::from_utf8_lossy(&bytes));
        std::fs::write(&path, &bytes).map_err(|e| e.to_string())?;
        match LlamaConfig::from_file(&path) {
            Err(e) => err_names(&e, &[&path]),
            Ok(c) => {
                let ok = c.hidden_size > 0
                    && c.intermediate_size > 0
                    && c.num_layers > 0
                    && c.vocab_size > 0
                    && c.head_dim > 0
                    && c.head_dim % 2 == 0
                    && c.num_kv_heads > 0
                    && c.num_heads % c.num_kv_heads == 0
                    && c.rms_norm_eps > 0.0
                    && c.rms_norm_eps.is_finite()
                    && c.rope_theta > 0.0
                    && c.rope_theta.is_finite()
                    && c.rope_scaling.is_none_or(|s| s.factor > 0.0);
                if ok {
                    Ok(())
                } else {
                    Err(format!("resolved an invalid config: {c:?}"))
                }
            }
        }
    });
}

/// Regression (found by `fuzz_hf_model_dirs`): `tokenizers` panics ("Helper") on a
/// `tokenizer.json` whose decoder does not parse, e.g. a file cut short.
#[test]
fn malformed_tokenizer_json_is_an_error() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("model");
    std::fs::create_dir_all(&dir).expect("mkdir");
    for (name, bytes) in base_hf_files() {
        std::fs::write(dir.join(name), bytes).expect("write");
    }
    let tok = dir.join("tokenizer.json");
    std::fs::write(
        &tok,
        br#"{"version": "1.0", "decoder": {"type": "ByteLevel", "#,
    )
    .expect("write");
    let e = load(&ModelSource::Dir(dir), &Device::Cpu).expect_err("loaded");
    assert!(e.to_string().contains(&tok.display().to_string()), "{e}");
}
