//! Gradients: every trainable tensor receives one (the guard against candle's silent no-grad
//! fused ops), frozen weights receive none, f64 finite differences agree with backprop, and
//! the chunked log-prob op agrees with a plain log_softmax + gather.

mod common;

use anyhow::Result;
use candle_core::{DType, Device, Tensor, Var, D};
use common::*;
use thinkjudge_model::{
    Finetune, Kernels, Llama, LlamaOptions, LoraConfig, LoraTarget, Mode, ModelConfig,
};

/// `Σ c · logprob(next token)` over the real tokens of a left-padded batch, at temperature τ.
fn loss(m: &Llama, temperature: f64) -> Result<Tensor> {
    let rows = vec![tokens(7, 50), tokens(4, 51), tokens(6, 52)];
    let (ids, mask) = batch(&rows, true)?;
    let (b, t) = ids.dims2()?;
    let h = m.forward(&ids, &mask, &mut m.new_cache(), Mode::Train)?;
    let targets = Tensor::cat(&[ids.narrow(1, 1, t - 1)?, ids.narrow(1, 0, 1)?], 1)?;
    let lp = m
        .token_logprobs_with_temperature(&h, &targets, temperature, Mode::Train)?
        .logprobs;
    // Weights: non-uniform, and zero unless both the position and its target are real tokens
    // (a pad query attends to masked keys only: its output is junk, and in f64 the −1e9 bias
    // quantises its scores, so finite differences through it are noise).
    let mask_next = Tensor::cat(
        &[
            mask.narrow(1, 1, t - 1)?,
            mask.narrow(1, 0, 1)?.zeros_like()?,
        ],
        1,
    )?;
    let real = (mask_next * &mask)?.to_dtype(lp.dtype())?;
    let c: Vec<f64> = (0..b * t).map(|i| (i as f64 * 0.37).cos()).collect();
    let w = (Tensor::from_vec(c, (b, t), &Device::Cpu)?.to_dtype(lp.dtype())? * real)?;
    Ok((lp * w)?.sum_all()?)
}

fn assert_all_grads(m: &Llama, grads: &candle_core::backprop::GradStore, what: &str) -> Result<()> {
    let vars = m.trainable_vars();
    assert!(!vars.is_empty());
    for (name, var) in &vars {
        let g = grads
            .get(var)
            .unwrap_or_else(|| panic!("{what}: {name} got no gradient"));
        let v = g.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
        assert!(
            v.iter().all(|x| x.is_finite()),
            "{what}: {name} has a non-finite gradient"
        );
        assert!(max_abs(g)? > 0.0, "{what}: {name} has an all-zero gradient");
    }
    Ok(())
}

#[test]
fn every_weight_gets_a_gradient_under_full_finetuning() -> Result<()> {
    for cfg in [tiny(), tiny_tied()] {
        for kernels in [Kernels::Fused, Kernels::Composed] {
            let m = model(
                &cfg,
                LlamaOptions {
                    finetune: Finetune::Full,
                    kernels,
                    ..LlamaOptions::default()
                },
            )?;
            // Every checkpoint tensor is a variable, once (the tied head is the embedding).
            let names: Vec<String> = m.trainable_vars().into_iter().map(|(n, _)| n).collect();
            let expected: Vec<String> = m.named_weights()?.into_iter().map(|(n, _)| n).collect();
            assert_eq!(names, expected);
            let grads = loss(&m, 1.0)?.backward()?;
            assert_all_grads(
                &m,
                &grads,
                &format!("tied={} {kernels:?}", cfg.tie_word_embeddings),
            )?;
        }
    }
    Ok(())
}

fn lora_model(cfg: &ModelConfig) -> Result<Llama> {
    model(
        cfg,
        LlamaOptions {
            finetune: Finetune::Lora {
                config: LoraConfig {
                    rank: 4,
                    ..LoraConfig::default()
                },
                seed: 11,
            },
            ..LlamaOptions::default()
        },
    )
}

#[test]
fn every_adapter_gets_a_gradient_and_the_base_none() -> Result<()> {
    let m = lora_model(&tiny_tied())?;
    let vars = m.trainable_vars();
    assert_eq!(vars.len(), 2 * 7 * tiny().num_layers);
    assert!(vars
        .iter()
        .all(|(n, _)| n.starts_with("base_model.model.model.layers.")));

    // At init B = 0: only B gets a gradient signal, A's is exactly zero.
    let grads = loss(&m, 1.0)?.backward()?;
    for (name, var) in &vars {
        let g = max_abs(grads.get(var).unwrap())?;
        if name.contains("lora_B") {
            assert!(g > 0.0, "{name}: no gradient at init");
        } else {
            assert_eq!(g, 0.0, "{name}: A cannot get a gradient while B = 0");
        }
    }

    randomize(&vars, 0.1, 3)?;
    let grads = loss(&m, 1.0)?.backward()?;
    assert_all_grads(&m, &grads, "lora")?;
    // Frozen and detached: no gradient is even computed for a base weight.
    for (name, w) in m.named_weights()? {
        if !name.contains("proj") {
            assert!(grads.get(&w).is_none(), "{name} got a gradient");
        }
    }
    Ok(())
}

/// Central differences vs backprop for entries `(variable name, flat index)` of an f64 model.
fn check_finite_differences(m: &Llama, picks: &[(String, usize)], what: &str) -> Result<()> {
    const EPS: f64 = 1e-5;
    // f64 central differences: truncation O(EPS²) and round-off O(|loss| · 1e-16 / EPS), both
    // about 1e-10 here.
    const REL_TOL: f64 = 1e-6;
    let grads = loss(m, 0.8)?.backward()?;
    let vars = m.trainable_vars();
    for (name, idx) in picks {
        let var: &Var = &vars.iter().find(|(n, _)| n == name).unwrap().1;
        let analytic = grads.get(var).unwrap().flatten_all()?.to_vec1::<f64>()?[*idx];
        let orig = var.as_tensor().detach().copy()?;
        let at = |delta: f64| -> Result<f64> {
            let mut v = orig.flatten_all()?.to_vec1::<f64>()?;
            v[*idx] += delta;
            var.set(&Tensor::from_vec(v, orig.shape(), &Device::Cpu)?)?;
            Ok(loss(m, 0.8)?.to_scalar::<f64>()?)
        };
        let fd = (at(EPS)? - at(-EPS)?) / (2.0 * EPS);
        var.set(&orig)?;
        assert!(
            (fd - analytic).abs() <= REL_TOL * fd.abs().max(1e-2),
            "{what} {name}[{idx}]: backprop {analytic} vs finite difference {fd}"
        );
    }
    Ok(())
}

fn f64_options(finetune: Finetune, kernels: Kernels) -> LlamaOptions {
    LlamaOptions {
        master_dtype: DType::F64,
        compute_dtype: DType::F64,
        finetune,
        kernels,
        ..LlamaOptions::default()
    }
}

#[test]
fn gradients_match_finite_differences_in_f64() -> Result<()> {
    let picks: Vec<(String, usize)> = [
        // A row of a token in the batch (other rows get no gradient).
        (
            "model.embed_tokens.weight",
            tokens(7, 50)[2] as usize * 32 + 5,
        ),
        ("model.layers.0.input_layernorm.weight", 3),
        ("model.layers.0.self_attn.q_proj.weight", 77),
        ("model.layers.0.self_attn.k_proj.weight", 5),
        ("model.layers.1.self_attn.v_proj.weight", 200),
        ("model.layers.1.self_attn.o_proj.weight", 31),
        ("model.layers.1.post_attention_layernorm.weight", 17),
        ("model.layers.0.mlp.gate_proj.weight", 900),
        ("model.layers.1.mlp.up_proj.weight", 1500),
        ("model.layers.1.mlp.down_proj.weight", 1023),
        ("model.norm.weight", 9),
        ("lm_head.weight", 400),
    ]
    .into_iter()
    .map(|(n, i)| (n.to_string(), i))
    .collect();
    for kernels in [Kernels::Fused, Kernels::Composed] {
        let m = model(&tiny_llama3(), f64_options(Finetune::Full, kernels))?;
        check_finite_differences(&m, &picks, &format!("full {kernels:?}"))?;
    }
    Ok(())
}

#[test]
fn lora_gradients_match_finite_differences_in_f64() -> Result<()> {
    let lora = Finetune::Lora {
        config: LoraConfig {
            rank: 4,
            ..LoraConfig::default()
        },
        seed: 9,
    };
    let picks: Vec<(String, usize)> = [
        (LoraTarget::Q, 0, true, 17),
        (LoraTarget::K, 1, false, 5),
        (LoraTarget::V, 0, false, 30),
        (LoraTarget::O, 1, true, 100),
        (LoraTarget::Gate, 0, true, 64),
        (LoraTarget::Up, 1, false, 200),
        (LoraTarget::Down, 0, true, 250),
    ]
    .into_iter()
    .map(|(t, layer, a, i)| (t.peft_key(layer, a), i))
    .collect();
    for kernels in [Kernels::Fused, Kernels::Composed] {
        let m = model(&tiny(), f64_options(lora.clone(), kernels))?;
        randomize(&m.trainable_vars(), 0.1, 6)?;
        check_finite_differences(&m, &picks, &format!("lora {kernels:?}"))?;
    }
    Ok(())
}

/// The chunked attach op against `log_softmax(logits / τ)` + `gather` with full autograd.
#[test]
fn token_logprobs_match_composed_log_softmax() -> Result<()> {
    for cfg in [tiny(), tiny_tied()] {
        let m = model(
            &cfg,
            LlamaOptions {
                finetune: Finetune::Full,
                // 3 rows per chunk over 12 rows: several chunks, uneven last one.
                logprob_chunk_elems: 3 * VOCAB + 5,
                ..LlamaOptions::default()
            },
        )?;
        let head_name = if cfg.tie_word_embeddings {
            "model.embed_tokens.weight"
        } else {
            "lm_head.weight"
        };
        let head = m
            .trainable_vars()
            .into_iter()
            .find(|(n, _)| n == head_name)
            .unwrap()
            .1;
        let (ids, mask) = batch(&[tokens(4, 60), tokens(4, 61), tokens(4, 62)], false)?;
        let h = m.forward(&ids, &mask, &mut m.new_cache(), Mode::Infer)?;
        let hidden = Var::from_tensor(&h)?;
        let targets = Tensor::from_vec(tokens(12, 63), (3, 4), &Device::Cpu)?;
        let c = Tensor::from_vec(
            (0..12).map(|i| (i as f32).sin() + 0.5).collect::<Vec<_>>(),
            (3, 4),
            &Device::Cpu,
        )?;
        for temperature in [1.0, 0.7] {
            let stats =
                m.token_logprobs_with_temperature(&hidden, &targets, temperature, Mode::Train)?;
            let logp =
                candle_nn::ops::log_softmax(&(m.logits(&hidden)? / temperature)?, D::Minus1)?;
            let reference = logp.gather(&targets.unsqueeze(2)?, D::Minus1)?.squeeze(2)?;
            let entropy = (logp.exp()? * &logp)?.sum(D::Minus1)?.neg()?.detach();
            assert!(max_abs_diff(&stats.logprobs, &reference)? <= F32_TOL);
            assert!(max_abs_diff(&stats.entropy, &entropy)? <= F32_TOL);
            assert!(!stats.entropy.track_op());
            let g = (&stats.logprobs * &c)?.sum_all()?.backward()?;
            let g_ref = (&reference * &c)?.sum_all()?.backward()?;
            for (what, v) in [("hidden", &hidden), ("head", &head)] {
                let d = max_abs_diff(g.get(v).unwrap(), g_ref.get(v).unwrap())?;
                assert!(
                    d <= F32_TOL,
                    "τ={temperature} {what}: gradient differs by {d}"
                );
                assert!(max_abs(g.get(v).unwrap())? > 1e-3);
            }
        }
    }
    Ok(())
}

#[test]
fn token_logprobs_reject_bad_targets() -> Result<()> {
    let m = model(&tiny(), LlamaOptions::default())?;
    let h = Tensor::zeros((2, 3, 32), DType::F32, &Device::Cpu)?;
    let ok = Tensor::zeros((2, 3), DType::U32, &Device::Cpu)?;
    assert!(m.token_logprobs(&h, &ok, Mode::Infer).is_ok());
    let wrong_shape = Tensor::zeros((2, 4), DType::U32, &Device::Cpu)?;
    assert!(m.token_logprobs(&h, &wrong_shape, Mode::Infer).is_err());
    let out_of_vocab = Tensor::full(VOCAB as u32, (2, 3), &Device::Cpu)?;
    let msg = m
        .token_logprobs(&h, &out_of_vocab, Mode::Infer)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("out of range"), "{msg}");
    assert!(m
        .token_logprobs_with_temperature(&h, &ok, 0.0, Mode::Infer)
        .is_err());
    Ok(())
}

fn lora_subset(layers: &[usize], dtype: DType) -> LlamaOptions {
    LlamaOptions {
        master_dtype: dtype,
        compute_dtype: dtype,
        finetune: Finetune::Lora {
            config: LoraConfig {
                rank: 4,
                layers: Some(layers.to_vec()),
                ..LoraConfig::default()
            },
            seed: 11,
        },
        ..LlamaOptions::default()
    }
}

fn layers(n: usize) -> ModelConfig {
    ModelConfig {
        num_layers: n,
        ..tiny_tied()
    }
}

#[test]
fn layer_subset_gradients_reach_every_adapter_and_no_graph_below() -> Result<()> {
    let m = model(&layers(4), lora_subset(&[2, 3], DType::F32))?;
    let vars = m.trainable_vars();
    assert_eq!(vars.len(), 2 * 7 * 2);
    assert!(vars
        .iter()
        .all(|(n, _)| n.contains("layers.2.") || n.contains("layers.3.")));
    randomize(&vars, 0.1, 3)?;
    let grads = loss(&m, 1.0)?.backward()?;
    assert_all_grads(&m, &grads, "lora layers [2, 3]")?;
    for (name, w) in m.named_weights()? {
        assert!(grads.get(&w).is_none(), "{name} got a gradient");
    }

    // The graph of a model adapted in its top layer only does not depend on how many frozen
    // layers run below it: none of them records a node.
    for kernels in [Kernels::Fused, Kernels::Composed] {
        let nodes = |n: usize, adapted: &[usize]| -> Result<usize> {
            let m = model(
                &layers(n),
                LlamaOptions {
                    kernels,
                    ..lora_subset(adapted, DType::F32)
                },
            )?;
            Ok(loss(&m, 1.0)?.sorted_nodes().len())
        };
        let (one, four) = (nodes(1, &[0])?, nodes(4, &[3])?);
        assert_eq!(one, four, "{kernels:?}: graph nodes {one} vs {four}");
        assert!(nodes(4, &[2, 3])? > four);
    }
    Ok(())
}

#[test]
fn layer_subset_gradients_match_finite_differences_in_f64() -> Result<()> {
    let m = model(&layers(3), lora_subset(&[1], DType::F64))?;
    randomize(&m.trainable_vars(), 0.1, 6)?;
    let picks: Vec<(String, usize)> = [
        (LoraTarget::Q, true, 17),
        (LoraTarget::K, false, 5),
        (LoraTarget::O, true, 100),
        (LoraTarget::Down, false, 30),
    ]
    .into_iter()
    .map(|(t, a, i)| (t.peft_key(1, a), i))
    .collect();
    check_finite_differences(&m, &picks, "lora layers [1]")
}
