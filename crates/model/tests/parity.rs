//! Our Llama against candle-transformers' (the reference implementation of the tensor layout,
//! RoPE and Llama 3 scaling), Train vs Infer kernels, HF export, and bad weights.

mod common;

use std::collections::HashMap;

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::llama as ct;
use common::*;
use thinkjudge_model::{
    init, Finetune, Kernels, Llama, LlamaOptions, LoraConfig, Mode, ModelConfig, ModelError,
    WeightMap,
};

/// candle-transformers' f32 reference vs ours: same math, different op order.
const PARITY_TOL: f64 = 1e-4;

fn ct_config(cfg: &ModelConfig) -> Result<ct::Config> {
    let c: ct::LlamaConfig = serde_json::from_value(cfg.to_hf_json())?;
    Ok(c.into_config(false))
}

/// candle-transformers only returns last-position logits, so feed one token at a time through
/// its KV cache and stack them: (T, V).
fn ct_logits(model: &ct::Llama, cfg: &ct::Config, ids: &[u32]) -> Result<Tensor> {
    let mut cache = ct::Cache::new(true, DType::F32, cfg, &Device::Cpu)?;
    let mut rows = Vec::new();
    for (pos, &id) in ids.iter().enumerate() {
        let x = Tensor::new(&[[id]], &Device::Cpu)?;
        rows.push(model.forward(&x, pos, &mut cache)?.squeeze(0)?);
    }
    Ok(Tensor::stack(&rows, 0)?)
}

fn ct_model(weights: Vec<(String, Tensor)>, cfg: &ct::Config) -> Result<ct::Llama> {
    let map: HashMap<String, Tensor> = weights.into_iter().collect();
    let vb = VarBuilder::from_tensors(map, DType::F32, &Device::Cpu);
    Ok(ct::Llama::load(vb, cfg)?)
}

fn check_parity(cfg: &ModelConfig) -> Result<()> {
    let ours = model(cfg, LlamaOptions::default())?;
    let ctc = ct_config(cfg)?;
    let reference = ct_model(ours.named_weights()?, &ctc)?;
    let ids = tokens(13, 1);
    let expected = ct_logits(&reference, &ctc, &ids)?;
    for mode in [Mode::Infer, Mode::Train] {
        let logits = ours.logits(&run_alone(&ours, &ids, mode)?)?.squeeze(0)?;
        let d = max_abs_diff(&logits, &expected)?;
        assert!(d < PARITY_TOL, "{mode:?}: max |Δlogit| = {d}");
    }
    Ok(())
}

#[test]
fn logits_match_candle_transformers_untied() -> Result<()> {
    check_parity(&tiny())
}

#[test]
fn logits_match_candle_transformers_tied_embeddings() -> Result<()> {
    check_parity(&tiny_tied())
}

#[test]
fn logits_match_candle_transformers_llama3_rope_scaling() -> Result<()> {
    // Guard: the scaling must actually change the model, or this test proves nothing.
    let plain = model(&tiny(), LlamaOptions::default())?;
    let scaled = model(&tiny_llama3(), LlamaOptions::default())?;
    let ids = tokens(13, 1);
    let d = max_abs_diff(
        &plain.logits(&run_alone(&plain, &ids, Mode::Infer)?)?,
        &scaled.logits(&run_alone(&scaled, &ids, Mode::Infer)?)?,
    )?;
    assert!(d > 1e-3, "rope scaling had no effect ({d})");
    check_parity(&tiny_llama3())
}

#[test]
fn train_and_infer_modes_agree() -> Result<()> {
    let rows = vec![tokens(9, 2), tokens(5, 3), tokens(7, 4)];
    let (ids, mask) = batch(&rows, true)?;
    for kernels in [Kernels::Fused, Kernels::Composed] {
        let m = model(
            &tiny(),
            LlamaOptions {
                finetune: Finetune::Full,
                kernels,
                ..LlamaOptions::default()
            },
        )?;
        let train = m.forward(&ids, &mask, &mut m.new_cache(), Mode::Train)?;
        let infer = m.forward(&ids, &mask, &mut m.new_cache(), Mode::Infer)?;
        assert!(train.track_op() && !infer.track_op());
        let d = max_abs_diff(&m.logits(&train)?, &m.logits(&infer)?)?;
        assert!(
            d <= F32_TOL,
            "{kernels:?}: Train vs Infer logits differ by {d}"
        );
    }
    Ok(())
}

#[test]
fn saved_weights_load_in_candle_transformers() -> Result<()> {
    // LoRA with non-zero B: named_weights must fold the adapters in.
    let cfg = tiny_tied();
    let ours = model(
        &cfg,
        LlamaOptions {
            finetune: Finetune::Lora {
                config: LoraConfig::default(),
                seed: 3,
            },
            ..LlamaOptions::default()
        },
    )?;
    randomize(&ours.trainable_vars(), 0.05, 1)?;
    let dir = tempfile::tempdir()?;
    let weights: HashMap<String, Tensor> = ours.named_weights()?.into_iter().collect();
    candle_core::safetensors::save(&weights, dir.path().join("model.safetensors"))?;
    std::fs::write(
        dir.path().join("config.json"),
        serde_json::to_string(&cfg.to_hf_json())?,
    )?;

    let text = std::fs::read_to_string(dir.path().join("config.json"))?;
    let ctc = serde_json::from_str::<ct::LlamaConfig>(&text)?.into_config(false);
    let loaded =
        candle_core::safetensors::load(dir.path().join("model.safetensors"), &Device::Cpu)?;
    let reference = ct_model(loaded.into_iter().collect(), &ctc)?;
    let ids = tokens(11, 5);
    let expected = ct_logits(&reference, &ctc, &ids)?;
    let logits = ours
        .logits(&run_alone(&ours, &ids, Mode::Infer)?)?
        .squeeze(0)?;
    let d = max_abs_diff(&logits, &expected)?;
    assert!(d < PARITY_TOL, "max |Δlogit| = {d}");
    Ok(())
}

fn weights_from(cfg: &ModelConfig, origin: &str) -> Result<WeightMap> {
    let random = init::random_weights(cfg, 1, DType::F32, &Device::Cpu)?;
    let mut map = WeightMap::new(origin);
    for (name, t) in random.iter() {
        map.insert(name, t.clone());
    }
    Ok(map)
}

#[test]
fn missing_tensor_error_names_file_and_tensor() -> Result<()> {
    let cfg = tiny();
    let mut w = weights_from(&cfg, "/ckpt/model.safetensors")?;
    w.remove("model.layers.1.mlp.up_proj.weight");
    let err = Llama::from_weights(&cfg, w, &Device::Cpu, LlamaOptions::default()).unwrap_err();
    assert!(matches!(err, ModelError::Tensor { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("/ckpt/model.safetensors"), "{msg}");
    assert!(msg.contains("model.layers.1.mlp.up_proj.weight"), "{msg}");
    assert!(msg.contains("missing"), "{msg}");
    Ok(())
}

#[test]
fn misshaped_tensor_error_names_file_tensor_and_shapes() -> Result<()> {
    let cfg = tiny();
    let mut w = weights_from(&cfg, "/ckpt/model.safetensors")?;
    w.insert(
        "model.layers.0.self_attn.k_proj.weight",
        Tensor::zeros((32, 32), DType::F32, &Device::Cpu)?,
    );
    let msg = Llama::from_weights(&cfg, w, &Device::Cpu, LlamaOptions::default())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("/ckpt/model.safetensors"), "{msg}");
    assert!(
        msg.contains("model.layers.0.self_attn.k_proj.weight"),
        "{msg}"
    );
    assert!(
        msg.contains("expected shape [16, 32], found [32, 32]"),
        "{msg}"
    );
    Ok(())
}

#[test]
fn bad_forward_inputs_are_errors() -> Result<()> {
    let m = model(&tiny(), LlamaOptions::default())?;
    let ids = Tensor::new(&[[1u32, 2, 3]], &Device::Cpu)?;
    let short_mask = Tensor::new(&[[1u32, 1]], &Device::Cpu)?;
    let msg = m
        .forward(&ids, &short_mask, &mut m.new_cache(), Mode::Infer)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("attention_mask"), "{msg}");
    let float_ids = ids.to_dtype(DType::F32)?;
    let mask = ids.ones_like()?;
    assert!(m
        .forward(&float_ids, &mask, &mut m.new_cache(), Mode::Infer)
        .is_err());
    let out_of_vocab = Tensor::new(&[[1u32, VOCAB as u32, 3]], &Device::Cpu)?;
    assert!(m
        .forward(&out_of_vocab, &mask, &mut m.new_cache(), Mode::Infer)
        .is_err());
    let bad_options = LlamaOptions {
        master_dtype: DType::BF16,
        ..LlamaOptions::default()
    };
    let msg = model(&tiny(), bad_options).unwrap_err().to_string();
    assert!(msg.contains("master_dtype"), "{msg}");
    Ok(())
}

#[test]
fn bf16_compute_is_close_to_f32() -> Result<()> {
    // Matmuls and activations in bf16, norms/softmax/log-probs in f32, master weights f32.
    let f32_model = model(&tiny(), LlamaOptions::default())?;
    let bf16_model = model(
        &tiny(),
        LlamaOptions {
            compute_dtype: DType::BF16,
            finetune: Finetune::Full,
            ..LlamaOptions::default()
        },
    )?;
    let rows = vec![tokens(9, 2), tokens(5, 3)];
    let (ids, mask) = batch(&rows, true)?;
    let reference = f32_model.forward(&ids, &mask, &mut f32_model.new_cache(), Mode::Infer)?;
    for mode in [Mode::Infer, Mode::Train] {
        let h = bf16_model.forward(&ids, &mask, &mut bf16_model.new_cache(), mode)?;
        assert_eq!(h.dtype(), DType::BF16);
        let lp = bf16_model.token_logprobs(&h, &ids, mode)?.logprobs;
        assert_eq!(lp.dtype(), DType::F32);
        // bf16 keeps 8 bits of mantissa: hidden states agree to a few 1e-2.
        let d = max_abs_diff(&h, &reference)?;
        assert!(d < 0.1, "{mode:?}: bf16 vs f32 hidden differ by {d}");
        if mode == Mode::Train {
            let grads = lp.sum_all()?.backward()?;
            let (_, var) = &bf16_model.trainable_vars()[1];
            assert_eq!(
                grads.get(var).unwrap().dtype(),
                DType::F32,
                "master grads are f32"
            );
        }
    }
    Ok(())
}
