//! Mixed precision, run on the CPU (candle widens bf16 matmuls to f32 there: slow but exact
//! enough): a tiny model with `compute_dtype = BF16` goes through a full training step (train
//! forward, chunked log-probs, loss, backward, AdamW) and must
//! * keep f32 master weights, f32 gradients and f32 optimizer moments;
//! * compute activations in bf16 and log-probs in f32;
//! * give finite gradients for every trainable tensor;
//! * agree with the same model in f32 within bf16 tolerance (log-probs, gradients, update).
//!
//! This is the CUDA configuration (docs/gpu.md) minus the device; `examples/cuda_parity.rs`
//! checks the device itself.

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use thinkjudge_model::{Finetune, Kernels, Llama, LlamaOptions, LoraConfig, Mode, ModelConfig};
use thinkjudge_rl::{AdamW, LrSchedule, OptimizerConfig};

const VOCAB: usize = 61;

/// A left-padded batch: (ids (3, 9) u32, mask (3, 9) u32, loss weights (3, 9) f32).
fn batch() -> Result<(Tensor, Tensor, Tensor)> {
    let lens = [9usize, 5, 7];
    let t = 9;
    let (mut ids, mut mask, mut w) = (vec![], vec![], vec![]);
    for (r, &n) in lens.iter().enumerate() {
        for i in 0..t {
            let real = i >= t - n;
            ids.push(if real {
                ((i * 17 + r * 29 + 3) % (VOCAB - 1) + 1) as u32
            } else {
                0
            });
            mask.push(real as u32);
            // Weight the positions whose next token is real (the last position predicts pad).
            w.push(if real && i + 1 < t {
                ((i + r) as f32 * 0.37).cos()
            } else {
                0.0
            });
        }
    }
    let dev = &Device::Cpu;
    Ok((
        Tensor::from_vec(ids, (3, t), dev)?,
        Tensor::from_vec(mask, (3, t), dev)?,
        Tensor::from_vec(w, (3, t), dev)?,
    ))
}

fn model(compute_dtype: DType, finetune: Finetune, kernels: Kernels) -> Result<Llama> {
    let options = LlamaOptions {
        compute_dtype,
        finetune,
        kernels,
        ..LlamaOptions::default()
    };
    Ok(Llama::random(
        &ModelConfig::tiny(VOCAB),
        11,
        &Device::Cpu,
        options,
    )?)
}

/// `(hidden, log-probs, loss)` of one `Mode::Train` forward.
fn forward(m: &Llama) -> Result<(Tensor, Tensor, Tensor)> {
    let (ids, mask, w) = batch()?;
    let t = ids.dim(1)?;
    let hidden = m.forward(&ids, &mask, &mut m.new_cache(), Mode::Train)?;
    let targets = Tensor::cat(&[ids.narrow(1, 1, t - 1)?, ids.narrow(1, 0, 1)?], 1)?;
    let lp = m.token_logprobs(&hidden, &targets, Mode::Train)?.logprobs;
    let loss = (lp.mul(&w)?.sum_all()? * -0.1)?;
    Ok((hidden, lp, loss))
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f64> {
    Ok((a.to_dtype(DType::F64)? - b.to_dtype(DType::F64)?)?
        .abs()?
        .flatten_all()?
        .max(0)?
        .to_scalar::<f64>()?)
}

fn norm(a: &Tensor) -> Result<f64> {
    Ok(a.to_dtype(DType::F64)?
        .sqr()?
        .sum_all()?
        .to_scalar::<f64>()?
        .sqrt())
}

fn optimizer(m: &Llama) -> Result<AdamW> {
    let cfg = OptimizerConfig {
        schedule: LrSchedule::Constant { lr: 1e-3 },
        max_grad_norm: None,
        ..OptimizerConfig::default()
    };
    Ok(AdamW::new(m.trainable_vars(), cfg)?)
}

/// One training step of `m`: returns `(log-probs, grads by name, weights after the update)`.
#[allow(clippy::type_complexity)]
fn train_step(m: &Llama) -> Result<(Tensor, Vec<(String, Tensor)>, Vec<(String, Tensor)>)> {
    let (hidden, lp, loss) = forward(m)?;
    assert_eq!(hidden.dtype(), m.options().compute_dtype, "activations");
    assert_eq!(
        lp.dtype(),
        DType::F32,
        "log-probs are f32 whatever the compute dtype"
    );
    assert_eq!(loss.dtype(), DType::F32, "the loss is f32");
    let store = loss.backward()?;
    let mut opt = optimizer(m)?;
    let mut acc = opt.accumulator();
    acc.add(&store)?;
    let mut grads = vec![];
    for (name, var) in m.trainable_vars() {
        assert_eq!(var.dtype(), DType::F32, "{name}: master weight");
        let g = store
            .get(&var)
            .unwrap_or_else(|| panic!("{name}: no gradient"));
        assert_eq!(
            g.dtype(),
            DType::F32,
            "{name}: gradient of an f32 master weight"
        );
        let v = g.flatten_all()?.to_vec1::<f32>()?;
        assert!(
            v.iter().all(|x| x.is_finite()),
            "{name}: non-finite gradient"
        );
        assert!(v.iter().any(|&x| x != 0.0), "{name}: all-zero gradient");
        grads.push((name, g.detach()));
    }
    let report = opt.step(&acc)?;
    assert!(report.applied && report.grad_norm.is_finite());
    let mut after = vec![];
    for (name, var) in m.trainable_vars() {
        assert_eq!(
            var.dtype(),
            DType::F32,
            "{name}: master weight after the update"
        );
        let (m1, m2) = opt.moments(&name).expect("moments after a step");
        assert_eq!((m1.dtype(), m2.dtype()), (DType::F32, DType::F32), "{name}");
        after.push((name, var.as_tensor().copy()?));
    }
    Ok((lp, grads, after))
}

#[test]
fn a_bf16_training_step_keeps_f32_state_and_matches_f32() -> Result<()> {
    for kernels in [Kernels::Fused, Kernels::Composed] {
        let f32_model = model(DType::F32, Finetune::Full, kernels)?;
        let bf16_model = model(DType::BF16, Finetune::Full, kernels)?;
        let before: Vec<Tensor> = f32_model
            .trainable_vars()
            .iter()
            .map(|(_, v)| v.as_tensor().copy())
            .collect::<candle_core::Result<_>>()?;
        let (lp32, g32, w32) = train_step(&f32_model)?;
        let (lp16, g16, w16) = train_step(&bf16_model)?;

        // Log-probs: about ln(61) = 4.1 in magnitude; bf16 keeps 8 bits of mantissa.
        let d = max_abs_diff(&lp32, &lp16)?;
        assert!(d < 0.05, "{kernels:?}: log-probs differ by {d}");

        // Gradients: direction and size agree to a few bf16 ulps of accumulated rounding.
        for ((name, a), (_, b)) in g32.iter().zip(&g16) {
            let rel = norm(&(a - b)?)? / norm(a)?.max(1e-12);
            assert!(
                rel < 0.1,
                "{kernels:?} {name}: relative gradient error {rel}"
            );
        }

        // The update: Adam's first step moves each weight by about ±lr (the sign of its
        // gradient), so the two updates agree except where a gradient is near zero.
        let mut moved = 0.0;
        let mut disagree = 0.0;
        for (((name, a), (_, b)), w0) in w32.iter().zip(&w16).zip(&before) {
            let (da, db) = ((a - w0)?, (b - w0)?);
            moved += norm(&da)?.powi(2);
            disagree += norm(&(&da - &db)?)?.powi(2);
            assert!(
                max_abs_diff(&da, &db)? <= 2.1e-3,
                "{kernels:?} {name}: update differs"
            );
        }
        let rel = (disagree / moved).sqrt();
        assert!(
            rel < 0.25,
            "{kernels:?}: the updates differ by {rel} (relative)"
        );
    }
    Ok(())
}

#[test]
fn bf16_inference_matches_bf16_training_and_f32() -> Result<()> {
    let (ids, mask, _) = batch()?;
    let m32 = model(DType::F32, Finetune::Frozen, Kernels::Fused)?;
    let m16 = model(DType::BF16, Finetune::Frozen, Kernels::Fused)?;
    let run = |m: &Llama, mode: Mode| -> Result<Tensor> {
        let h = m.forward(&ids, &mask, &mut m.new_cache(), mode)?;
        Ok(m.logits_mode(&h, mode)?)
    };
    let f32_logits = run(&m32, Mode::Infer)?;
    // Twice: the second forward reuses the cached bf16 copies of the frozen weights.
    let first = run(&m16, Mode::Infer)?;
    let second = run(&m16, Mode::Infer)?;
    assert_eq!(
        first.dtype(),
        DType::F32,
        "logits are f32 under bf16 compute"
    );
    assert_eq!(
        max_abs_diff(&first, &second)?,
        0.0,
        "cached weights changed the result"
    );
    let train = run(&m16, Mode::Train)?;
    let real = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
    let d_modes = max_abs_diff(&first.broadcast_mul(&real)?, &train.broadcast_mul(&real)?)?;
    assert!(
        d_modes < 0.05,
        "bf16 infer vs train logits differ by {d_modes}"
    );
    let d = max_abs_diff(
        &f32_logits.broadcast_mul(&real)?,
        &first.broadcast_mul(&real)?,
    )?;
    assert!(d < 0.05, "bf16 vs f32 logits differ by {d}");
    Ok(())
}

#[test]
fn bf16_lora_training_gives_finite_f32_adapter_gradients() -> Result<()> {
    let lora = Finetune::Lora {
        config: LoraConfig::default(),
        seed: 5,
    };
    let m = model(DType::BF16, lora, Kernels::Fused)?;
    // B starts at zero, so A's gradient is zero on the first step: train twice.
    let mut opt = optimizer(&m)?;
    for step in 0..2 {
        let (_, _, loss) = forward(&m)?;
        let store = loss.backward()?;
        let mut acc = opt.accumulator();
        acc.add(&store)?;
        for (name, var) in m.trainable_vars() {
            assert_eq!(var.dtype(), DType::F32, "{name}");
            let g = store.get(&var).unwrap_or_else(|| panic!("{name}: no grad"));
            assert_eq!(g.dtype(), DType::F32, "{name}");
            let v = g.flatten_all()?.to_vec1::<f32>()?;
            assert!(v.iter().all(|x| x.is_finite()), "step {step} {name}");
            if step == 1 {
                assert!(v.iter().any(|&x| x != 0.0), "{name}: all-zero gradient");
            }
        }
        opt.step(&acc)?;
    }
    Ok(())
}
