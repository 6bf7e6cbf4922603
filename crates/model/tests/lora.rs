//! LoRA: PEFT save/load round trip and its errors, merging, the reference policy (adapters
//! off) and dropout.

mod common;

use std::collections::HashMap;
use std::path::Path;

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use common::*;
use thinkjudge_model::lora::{ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE};
use thinkjudge_model::{Finetune, Llama, LlamaOptions, LoraConfig, LoraTarget, Mode};

fn lora_options(config: LoraConfig, seed: u64) -> LlamaOptions {
    LlamaOptions {
        finetune: Finetune::Lora { config, seed },
        ..LlamaOptions::default()
    }
}

fn qv() -> LoraConfig {
    LoraConfig {
        rank: 4,
        alpha: 8.0,
        dropout: 0.0,
        targets: vec![LoraTarget::Q, LoraTarget::V, LoraTarget::Down],
        layers: None,
    }
}

/// A LoRA model whose B matrices are non-zero (so adapters change the outputs).
fn trained(config: LoraConfig) -> Result<Llama> {
    let m = model(&tiny(), lora_options(config, 1))?;
    randomize(&m.trainable_vars(), 0.2, 4)?;
    Ok(m)
}

fn logits(m: &Llama, mode: Mode) -> Result<Tensor> {
    let (ids, mask) = batch(&[tokens(8, 70), tokens(5, 71)], true)?;
    let h = m.forward(&ids, &mask, &mut m.new_cache(), mode)?;
    Ok(m.logits(&h)?)
}

#[test]
fn save_load_round_trip_is_bit_exact() -> Result<()> {
    let a = trained(qv())?;
    let dir = tempfile::tempdir()?;
    a.save_adapters(dir.path())?;
    // A different seed: every adapter value must come from the file.
    let mut b = model(&tiny(), lora_options(qv(), 99))?;
    b.load_adapters(dir.path())?;
    assert_eq!(b.lora_config(), Some(&qv()));
    let (va, vb) = (a.trainable_vars(), b.trainable_vars());
    assert_eq!(va.len(), 2 * 3 * 2);
    for ((na, ta), (nb, tb)) in va.iter().zip(&vb) {
        assert_eq!(na, nb);
        assert_eq!(
            ta.flatten_all()?.to_vec1::<f32>()?,
            tb.flatten_all()?.to_vec1::<f32>()?,
            "{na}"
        );
    }
    assert_eq!(
        max_abs_diff(&logits(&a, Mode::Infer)?, &logits(&b, Mode::Infer)?)?,
        0.0
    );

    // A frozen model (no adapters) can load them too.
    let mut c = model(&tiny(), LlamaOptions::default())?;
    c.load_adapters(dir.path())?;
    assert_eq!(
        max_abs_diff(&logits(&a, Mode::Infer)?, &logits(&c, Mode::Infer)?)?,
        0.0
    );
    Ok(())
}

#[test]
fn saved_files_follow_peft() -> Result<()> {
    let dir = tempfile::tempdir()?;
    trained(qv())?.save_adapters(dir.path())?;
    let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        dir.path().join(ADAPTER_CONFIG_FILE),
    )?)?;
    assert_eq!(cfg["peft_type"], "LORA");
    assert_eq!(cfg["task_type"], "CAUSAL_LM");
    assert_eq!(cfg["bias"], "none");
    assert_eq!(cfg["r"], 4);
    assert_eq!(cfg["lora_alpha"], 8.0);
    assert_eq!(cfg["lora_dropout"], 0.0);
    assert_eq!(
        cfg["target_modules"],
        serde_json::json!(["q_proj", "v_proj", "down_proj"])
    );
    let tensors =
        candle_core::safetensors::load(dir.path().join(ADAPTER_WEIGHTS_FILE), &Device::Cpu)?;
    let a = &tensors["base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight"];
    let b = &tensors["base_model.model.model.layers.0.mlp.down_proj.lora_B.weight"];
    assert_eq!(a.dims(), [4, 32]);
    assert_eq!(b.dims(), [32, 4]);
    assert_eq!(a.dtype(), DType::F32);
    assert_eq!(tensors.len(), 12);
    Ok(())
}

/// Saves a trained adapter, lets `edit` tamper with the tensors, and returns the load error.
fn load_error(edit: impl FnOnce(&mut HashMap<String, Tensor>)) -> Result<String> {
    let dir = tempfile::tempdir()?;
    trained(qv())?.save_adapters(dir.path())?;
    let path = dir.path().join(ADAPTER_WEIGHTS_FILE);
    let mut tensors = candle_core::safetensors::load(&path, &Device::Cpu)?;
    edit(&mut tensors);
    candle_core::safetensors::save(&tensors, &path)?;
    let mut m = model(&tiny(), LlamaOptions::default())?;
    let before = logits(&m, Mode::Infer)?;
    let err = m.load_adapters(dir.path()).unwrap_err().to_string();
    // A failed load leaves the model untouched.
    assert!(m.lora_config().is_none());
    assert_eq!(max_abs_diff(&before, &logits(&m, Mode::Infer)?)?, 0.0);
    assert!(err.contains(&path.display().to_string()), "{err}");
    Ok(err)
}

#[test]
fn load_errors_name_the_file_and_the_tensor() -> Result<()> {
    let key = "base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight";
    let err = load_error(|t| {
        t.remove(key);
    })?;
    assert!(err.contains(key) && err.contains("missing"), "{err}");

    let err = load_error(|t| {
        t.insert(
            key.into(),
            Tensor::zeros((16, 5), DType::F32, &Device::Cpu).unwrap(),
        );
    })?;
    assert!(
        err.contains(key) && err.contains("expected shape [16, 4], found [16, 5]"),
        "{err}"
    );

    let extra = "base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight";
    let err = load_error(|t| {
        t.insert(
            extra.into(),
            Tensor::zeros((4, 32), DType::F32, &Device::Cpu).unwrap(),
        );
    })?;
    assert!(
        err.contains(extra) && err.contains("unexpected tensor"),
        "{err}"
    );
    Ok(())
}

fn config_error(key: &str, value: serde_json::Value) -> Result<String> {
    let dir = tempfile::tempdir()?;
    trained(qv())?.save_adapters(dir.path())?;
    let path = dir.path().join(ADAPTER_CONFIG_FILE);
    let mut cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    cfg[key] = value;
    std::fs::write(&path, cfg.to_string())?;
    let err = model(&tiny(), LlamaOptions::default())?
        .load_adapters(dir.path())
        .unwrap_err()
        .to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
    Ok(err)
}

#[test]
fn unsupported_peft_configs_are_rejected() -> Result<()> {
    let err = config_error("use_dora", true.into())?;
    assert!(err.contains("use_dora"), "{err}");
    let err = config_error("target_modules", ".*proj".into())?;
    assert!(err.contains("regex"), "{err}");
    let err = config_error("target_modules", serde_json::json!(["q_proj", "lm_head"]))?;
    assert!(err.contains("lm_head"), "{err}");
    let err = config_error("peft_type", "IA3".into())?;
    assert!(err.contains("IA3"), "{err}");
    let err = config_error("r", 0.into())?;
    assert!(err.contains("rank"), "{err}");
    Ok(())
}

#[test]
fn merged_model_equals_adapter_model() -> Result<()> {
    let mut m = trained(LoraConfig::default())?;
    let adapted = logits(&m, Mode::Infer)?;
    let base = logits(&m, Mode::Reference)?;
    assert!(
        max_abs_diff(&adapted, &base)? > 1e-2,
        "adapters must change the outputs"
    );
    m.merge_adapters()?;
    assert!(m.trainable_vars().is_empty() && m.lora_config().is_none());
    let merged = logits(&m, Mode::Infer)?;
    let d = max_abs_diff(&merged, &adapted)?;
    assert!(
        d <= F32_TOL * max_abs(&adapted)?.max(1.0),
        "merged differs by {d}"
    );
    Ok(())
}

#[test]
fn disabled_adapters_are_the_base_model() -> Result<()> {
    let m = trained(LoraConfig::default())?;
    let base = model(&tiny(), LlamaOptions::default())?;
    assert_eq!(
        max_abs_diff(&logits(&m, Mode::Reference)?, &logits(&base, Mode::Infer)?)?,
        0.0
    );
    Ok(())
}

#[test]
fn fresh_adapters_leave_the_model_unchanged() -> Result<()> {
    let m = model(&tiny(), lora_options(LoraConfig::default(), 2))?;
    assert_eq!(
        max_abs_diff(&logits(&m, Mode::Infer)?, &logits(&m, Mode::Reference)?)?,
        0.0
    );
    Ok(())
}

#[test]
fn dropout_only_acts_in_training() -> Result<()> {
    let config = LoraConfig {
        dropout: 0.3,
        ..LoraConfig::default()
    };
    let m = trained(config)?;
    let infer = logits(&m, Mode::Infer)?;
    let t1 = logits(&m, Mode::Train)?;
    let t2 = logits(&m, Mode::Train)?;
    assert!(
        max_abs_diff(&t1, &infer)? > 1e-3,
        "dropout had no effect in Train"
    );
    assert!(
        max_abs_diff(&t1, &t2)? > 1e-3,
        "each training forward draws a new mask"
    );
    assert_eq!(max_abs_diff(&logits(&m, Mode::Infer)?, &infer)?, 0.0);
    Ok(())
}

#[test]
fn lora_config_validates_and_rejects_unknown_fields() -> Result<()> {
    assert!(LoraConfig::default().validate().is_ok());
    let bad = [
        LoraConfig {
            rank: 0,
            ..LoraConfig::default()
        },
        LoraConfig {
            alpha: -1.0,
            ..LoraConfig::default()
        },
        LoraConfig {
            dropout: 1.0,
            ..LoraConfig::default()
        },
        LoraConfig {
            targets: vec![],
            ..LoraConfig::default()
        },
        LoraConfig {
            targets: vec![LoraTarget::Q, LoraTarget::Q],
            ..LoraConfig::default()
        },
    ];
    for c in bad {
        assert!(c.validate().is_err(), "{c:?}");
    }
    let c: LoraConfig = serde_json::from_str(r#"{"rank": 8, "targets": ["q_proj", "up_proj"]}"#)?;
    assert_eq!(c.targets, vec![LoraTarget::Q, LoraTarget::Up]);
    assert_eq!(c.alpha, 32.0);
    assert!(serde_json::from_str::<LoraConfig>(r#"{"rnak": 8}"#).is_err());
    assert!(serde_json::from_str::<LoraConfig>(r#"{"targets": ["lm_head"]}"#).is_err());
    // A full fine-tune cannot take adapters.
    let mut full = model(
        &tiny(),
        LlamaOptions {
            finetune: Finetune::Full,
            ..LlamaOptions::default()
        },
    )?;
    assert!(full.load_adapters(Path::new("/nonexistent")).is_err());
    Ok(())
}

/// A 4-layer version of the tiny model (for layer subsets).
fn tiny4() -> thinkjudge_model::ModelConfig {
    thinkjudge_model::ModelConfig {
        num_layers: 4,
        ..tiny()
    }
}

fn subset(layers: &[usize]) -> LoraConfig {
    LoraConfig {
        layers: Some(layers.to_vec()),
        ..qv()
    }
}

#[test]
fn layer_subset_adapts_only_those_layers_and_round_trips_as_peft() -> Result<()> {
    let m = model(&tiny4(), lora_options(subset(&[3, 1]), 1))?;
    randomize(&m.trainable_vars(), 0.2, 4)?;
    // Kept sorted; adapters only in layers 1 and 3.
    assert_eq!(m.lora_config(), Some(&subset(&[1, 3])));
    let names: Vec<String> = m.trainable_vars().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names.len(), 2 * 3 * 2);
    assert!(names
        .iter()
        .all(|n| n.contains("layers.1.") || n.contains("layers.3.")));
    assert_eq!(m.first_trainable_layer(), 1);

    let dir = tempfile::tempdir()?;
    m.save_adapters(dir.path())?;
    let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        dir.path().join(ADAPTER_CONFIG_FILE),
    )?)?;
    assert_eq!(cfg["layers_to_transform"], serde_json::json!([1, 3]));
    assert_eq!(cfg["layers_pattern"], "layers");
    let tensors =
        candle_core::safetensors::load(dir.path().join(ADAPTER_WEIGHTS_FILE), &Device::Cpu)?;
    assert_eq!(tensors.len(), 12);

    let mut b = model(&tiny4(), LlamaOptions::default())?;
    b.load_adapters(dir.path())?;
    assert_eq!(b.lora_config(), Some(&subset(&[1, 3])));
    assert_eq!(
        max_abs_diff(&logits(&m, Mode::Infer)?, &logits(&b, Mode::Infer)?)?,
        0.0
    );
    // Layers 0 and 2 are the base model's.
    let base = model(&tiny4(), LlamaOptions::default())?;
    assert!(max_abs_diff(&logits(&m, Mode::Infer)?, &logits(&base, Mode::Infer)?)? > 1e-3);
    assert_eq!(
        max_abs_diff(&logits(&m, Mode::Reference)?, &logits(&base, Mode::Infer)?)?,
        0.0
    );

    // Without `layers` the config JSON says null and loading expects every layer.
    let dir_all = tempfile::tempdir()?;
    trained(qv())?.save_adapters(dir_all.path())?;
    let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        dir_all.path().join(ADAPTER_CONFIG_FILE),
    )?)?;
    assert!(cfg["layers_to_transform"].is_null());
    Ok(())
}

#[test]
fn layer_subset_out_of_range_is_a_clear_error() -> Result<()> {
    let err = model(&tiny4(), lora_options(subset(&[1, 4]), 1))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("index 4") && err.contains("4-layer") && err.contains("layers"),
        "{err}"
    );
    for bad in [subset(&[]), subset(&[2, 2])] {
        assert!(bad.validate().is_err(), "{bad:?}");
    }
    let c: LoraConfig = serde_json::from_str(r#"{"layers": [5, 2]}"#)?;
    assert_eq!(c.layers, Some(vec![5, 2]));
    assert!(c.validate().is_ok() && c.validate_for(6).is_ok() && c.validate_for(5).is_err());
    // Serialized without the field when None (TOML has no null).
    assert!(!serde_json::to_string(&LoraConfig::default())?.contains("layers"));
    Ok(())
}

#[test]
fn peft_layers_to_transform_forms_are_read() -> Result<()> {
    // An adapter of layer 1 only, saved; then the JSON is edited into PEFT's other forms.
    let dir = tempfile::tempdir()?;
    let m = model(&tiny(), lora_options(subset(&[1]), 1))?;
    randomize(&m.trainable_vars(), 0.2, 4)?;
    m.save_adapters(dir.path())?;
    let path = dir.path().join(ADAPTER_CONFIG_FILE);
    let original = std::fs::read_to_string(&path)?;
    let load_with =
        |key: &str, value: serde_json::Value| -> Result<std::result::Result<Llama, String>> {
            let mut cfg: serde_json::Value = serde_json::from_str(&original)?;
            cfg[key] = value;
            std::fs::write(&path, cfg.to_string())?;
            let mut b = model(&tiny(), LlamaOptions::default())?;
            Ok(b.load_adapters(dir.path())
                .map(|()| b)
                .map_err(|e| e.to_string()))
        };
    // A bare integer, as PEFT allows.
    let b = load_with("layers_to_transform", 1.into())?.unwrap();
    assert_eq!(b.lora_config().unwrap().layers, Some(vec![1]));
    assert_eq!(
        max_abs_diff(&logits(&m, Mode::Infer)?, &logits(&b, Mode::Infer)?)?,
        0.0
    );
    let b = load_with("layers_pattern", serde_json::json!(["layers"]))?.unwrap();
    assert_eq!(b.lora_config().unwrap().layers, Some(vec![1]));
    let err = load_with("layers_pattern", "h".into())?.unwrap_err();
    assert!(err.contains("layers_pattern"), "{err}");
    let err = load_with("layers_to_transform", serde_json::json!([1, 2]))?.unwrap_err();
    assert!(
        err.contains("index 2") && err.contains(&path.display().to_string()),
        "{err}"
    );
    let err = load_with("layers_to_transform", serde_json::json!(["x"]))?.unwrap_err();
    assert!(err.contains("layers_to_transform"), "{err}");
    // The file holds layer 1's tensors: claiming every layer finds layer 0's missing.
    let err = load_with("layers_to_transform", serde_json::Value::Null)?.unwrap_err();
    assert!(
        err.contains("layers.0.") && err.contains("missing"),
        "{err}"
    );
    Ok(())
}

#[test]
fn train_forward_count_restores_the_dropout_stream() -> Result<()> {
    let config = LoraConfig {
        dropout: 0.3,
        ..LoraConfig::default()
    };
    let a = trained(config.clone())?;
    assert_eq!(a.train_forward_count(), 0);
    for _ in 0..3 {
        logits(&a, Mode::Train)?;
    }
    logits(&a, Mode::Infer)?; // inference forwards do not count
    assert_eq!(a.train_forward_count(), 3);
    let fourth = logits(&a, Mode::Train)?;

    let b = trained(config)?;
    b.set_train_forward_count(3);
    assert_eq!(max_abs_diff(&logits(&b, Mode::Train)?, &fourth)?, 0.0);
    assert_eq!(b.train_forward_count(), 4);
    Ok(())
}

#[test]
fn logits_mode_matches_logits_and_records_no_graph_when_inferring() -> Result<()> {
    let full = model(
        &tiny_tied(),
        LlamaOptions {
            finetune: Finetune::Full,
            ..LlamaOptions::default()
        },
    )?;
    // 2 rows (the small-batch orientation) and 70 rows (the plain one).
    for rows in [2usize, 70] {
        let seqs: Vec<Vec<u32>> = (0..rows).map(|r| tokens(1, 300 + r as u32)).collect();
        let (ids, mask) = batch(&seqs, false)?;
        let h = full.forward(&ids, &mask, &mut full.new_cache(), Mode::Infer)?;
        let train = full.logits(&h)?;
        assert!(train.track_op(), "a trainable head records its graph");
        for mode in [Mode::Infer, Mode::Reference] {
            let l = full.logits_mode(&h, mode)?;
            assert!(!l.track_op(), "{mode:?} recorded a graph");
            assert_eq!(l.dims(), train.dims());
            assert!(max_abs_diff(&l, &train)? <= F32_TOL, "{rows} rows {mode:?}");
        }
        assert!(full.logits_mode(&h, Mode::Train)?.track_op());
    }
    Ok(())
}
