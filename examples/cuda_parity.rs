//! CPU-vs-CUDA parity of a small random Llama: the check to run first on a GPU machine.
//!
//! ```bash
//! scripts/build-cuda.sh                       # on the build machine (no GPU needed)
//! ./cuda_parity --device cuda:0               # on the GPU machine (scripts/gpu-check.sh)
//! cargo run --release --example cuda_parity -- --device cpu   # the harness itself, on CPU
//! ```
//!
//! The same weights (host-generated, so identical on both devices) run on the CPU in f32 (the
//! reference) and on `--device`:
//! * f32 on the device vs the CPU: inference logits, training log-probs and every gradient
//!   under both kernel sets (`fused`: the attach ops' `cuda_fwd` path; `composed`: plain
//!   differentiable ops), one AdamW update, and greedy sampling (identical tokens);
//! * bf16 compute on the device (the GPU training configuration: f32 master weights and
//!   AdamW state) vs the f32 CPU reference, within bf16 tolerances;
//! * on the device alone: KV-cached decode vs a full forward, LoRA gradients in bf16, and the
//!   sampler's recorded log-probs vs teacher-forced rescoring.
//!
//! Prints one line per check (value, tolerance, ok) and a JSON summary line. Exit status: 0 all
//! passed, 1 a check failed, 2 it could not run (e.g. no CUDA device: the error says why).

#[path = "common/gpu.rs"]
mod gpu;

use std::process::ExitCode;

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use clap::Parser;
use serde_json::json;
use thinkjudge_model::{
    Finetune, Kernels, Llama, LlamaOptions, LoraConfig, Mode, ModelConfig, WeightMap,
};
use thinkjudge_rl::{AdamW, LrSchedule, OptimizerConfig};
use thinkjudge_rollout::{score_completions, Decoding, Engine, SamplingConfig};

#[derive(Debug, Parser)]
#[command(about = "CPU-vs-CUDA parity of a small random Llama (exit 0 = all checks pass)")]
struct Args {
    /// The device under test: cuda:N (or cpu, to check the harness).
    #[arg(long, default_value = "cuda:0")]
    device: String,
    /// Scales every tolerance (e.g. 2 to see what a looser bound would pass).
    #[arg(long, default_value_t = 1.0)]
    tol_scale: f64,
}

const VOCAB: usize = 512;

/// 3 layers, GQA 8/2, head_dim 16, untied head: small, but every code path of the real model.
fn config() -> ModelConfig {
    ModelConfig {
        hidden_size: 128,
        intermediate_size: 352,
        num_layers: 3,
        num_heads: 8,
        num_kv_heads: 2,
        head_dim: 16,
        ..ModelConfig::tiny(VOCAB)
    }
}

/// Rows of lengths 24, 17, 9, 20 (left-padded to 24) of deterministic ids.
fn rows() -> Vec<Vec<u32>> {
    [24usize, 17, 9, 20]
        .iter()
        .enumerate()
        .map(|(r, &n)| {
            (0..n)
                .map(|i| ((i * 131 + r * 977 + 7) % (VOCAB - 2) + 1) as u32)
                .collect()
        })
        .collect()
}

/// `(ids, mask, next-token targets, loss weights)` of the left-padded batch on `dev`.
fn batch(dev: &Device) -> Result<(Tensor, Tensor, Tensor, Tensor)> {
    let rows = rows();
    let t = rows.iter().map(Vec::len).max().unwrap_or(1);
    let (mut ids, mut mask, mut targets, mut w) = (vec![], vec![], vec![], vec![]);
    for (r, row) in rows.iter().enumerate() {
        let pad = t - row.len();
        for i in 0..t {
            let real = i >= pad;
            ids.push(if real { row[i - pad] } else { 0 });
            mask.push(real as u32);
            let next_real = real && i + 1 < t;
            targets.push(if next_real { row[i + 1 - pad] } else { 0 });
            w.push(if next_real {
                ((i + 3 * r) as f32 * 0.37).cos()
            } else {
                0.0
            });
        }
    }
    let b = rows.len();
    Ok((
        Tensor::from_vec(ids, (b, t), dev)?,
        Tensor::from_vec(mask, (b, t), dev)?,
        Tensor::from_vec(targets, (b, t), dev)?,
        Tensor::from_vec(w, (b, t), dev)?,
    ))
}

struct Checks {
    tol_scale: f64,
    rows: Vec<serde_json::Value>,
    failed: usize,
}

impl Checks {
    /// Records `value <= tol` (NaN fails).
    fn check(&mut self, name: &str, value: f64, tol: f64) {
        let tol = tol * self.tol_scale;
        let ok = value <= tol;
        self.failed += usize::from(!ok);
        println!(
            "{:<44} {value:>12.3e}  tol {tol:>9.2e}  {}",
            name,
            if ok { "ok" } else { "FAIL" }
        );
        self.rows
            .push(json!({ "check": name, "value": value, "tol": tol, "ok": ok }));
    }
}

fn model(weights: &WeightMap, dev: &Device, opts: LlamaOptions) -> Result<Llama> {
    Ok(Llama::from_weights(&config(), weights.clone(), dev, opts)?)
}

fn opts(compute_dtype: DType, finetune: Finetune, kernels: Kernels) -> LlamaOptions {
    LlamaOptions {
        compute_dtype,
        finetune,
        kernels,
        ..LlamaOptions::default()
    }
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f64> {
    let (a, b) = (a.to_device(&Device::Cpu)?, b.to_device(&Device::Cpu)?);
    Ok((a.to_dtype(DType::F64)? - b.to_dtype(DType::F64)?)?
        .abs()?
        .flatten_all()?
        .max(0)?
        .to_scalar::<f64>()?)
}

/// `‖a − b‖ / ‖a‖` (a on any device).
fn rel_err(a: &Tensor, b: &Tensor) -> Result<f64> {
    let a = a.to_device(&Device::Cpu)?.to_dtype(DType::F64)?;
    let b = b.to_device(&Device::Cpu)?.to_dtype(DType::F64)?;
    let num = (&a - &b)?.sqr()?.sum_all()?.to_scalar::<f64>()?.sqrt();
    let den = a.sqr()?.sum_all()?.to_scalar::<f64>()?.sqrt();
    Ok(num / den.max(1e-30))
}

/// Inference logits at the real positions (pads zeroed), on the CPU.
fn infer_logits(m: &Llama) -> Result<Tensor> {
    let (ids, mask, _, _) = batch(m.device())?;
    let h = m.forward(&ids, &mask, &mut m.new_cache(), Mode::Infer)?;
    let logits = m.logits_mode(&h, Mode::Infer)?;
    let real = mask.to_dtype(logits.dtype())?.unsqueeze(2)?;
    Ok(logits.broadcast_mul(&real)?.to_device(&Device::Cpu)?)
}

/// One training step: `(log-probs, gradients by var, weights after one AdamW update)`, all on
/// the CPU.
struct Step {
    logprobs: Tensor,
    grads: Vec<(String, Tensor)>,
    updated: Vec<Tensor>,
}

fn train_step(m: &Llama) -> Result<Step> {
    let (ids, mask, targets, w) = batch(m.device())?;
    let h = m.forward(&ids, &mask, &mut m.new_cache(), Mode::Train)?;
    let lp = m.token_logprobs(&h, &targets, Mode::Train)?.logprobs;
    let lp = (lp * w.ne(0f32)?.to_dtype(DType::F32)?)?;
    let loss = (lp.mul(&w)?.sum_all()? * -0.1)?;
    let store = loss.backward()?;
    let vars = m.trainable_vars();
    let mut grads = vec![];
    for (name, var) in &vars {
        let g = store
            .get(var)
            .ok_or_else(|| anyhow::anyhow!("{name}: no gradient"))?;
        anyhow::ensure!(
            g.dtype() == DType::F32,
            "{name}: gradient is {:?}",
            g.dtype()
        );
        grads.push((name.clone(), g.to_device(&Device::Cpu)?));
    }
    let cfg = OptimizerConfig {
        schedule: LrSchedule::Constant { lr: 1e-3 },
        max_grad_norm: None,
        ..OptimizerConfig::default()
    };
    let mut opt = AdamW::new(vars.clone(), cfg)?;
    let mut acc = opt.accumulator();
    acc.add(&store)?;
    opt.step(&acc)?;
    let updated = vars
        .iter()
        .map(|(_, v)| v.as_tensor().to_device(&Device::Cpu))
        .collect::<candle_core::Result<_>>()?;
    Ok(Step {
        logprobs: lp.to_device(&Device::Cpu)?,
        grads,
        updated,
    })
}

/// Worst relative gradient error over the trainable tensors.
fn worst_grad_err(a: &Step, b: &Step) -> Result<f64> {
    let mut worst: f64 = 0.0;
    for ((name, ga), (_, gb)) in a.grads.iter().zip(&b.grads) {
        let e = rel_err(ga, gb)?;
        if !e.is_finite() {
            println!("  non-finite gradient error in {name}");
            return Ok(f64::INFINITY);
        }
        worst = worst.max(e);
    }
    Ok(worst)
}

/// Relative difference of the two AdamW updates.
fn update_err(a: &Step, b: &Step, before: &[Tensor]) -> Result<f64> {
    let (mut diff, mut size) = (0.0, 0.0);
    for ((wa, wb), w0) in a.updated.iter().zip(&b.updated).zip(before) {
        let (da, db) = ((wa - w0)?, (wb - w0)?);
        diff += (&da - &db)?.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
        size += da.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
    }
    Ok((diff / size.max(1e-30)).sqrt())
}

/// Logits of the last 4 positions computed with a KV cache (prefill, then 4 one-token steps)
/// vs one full forward; first row of the batch (no padding).
fn cached_decode_err(m: &Llama) -> Result<f64> {
    let row = &rows()[0];
    let dev = m.device();
    let n = row.len();
    let ids = Tensor::new(row.as_slice(), dev)?.unsqueeze(0)?;
    let full = m.forward(&ids, &ids.ones_like()?, &mut m.new_cache(), Mode::Infer)?;
    let full = m.logits_mode(&full.narrow(1, n - 4, 4)?, Mode::Infer)?;
    let mut cache = m.new_cache();
    let head = ids.narrow(1, 0, n - 4)?;
    m.forward(&head, &head.ones_like()?, &mut cache, Mode::Infer)?;
    let mut steps = vec![];
    for i in n - 4..n {
        let t = ids.narrow(1, i, 1)?;
        let h = m.forward(&t, &t.ones_like()?, &mut cache, Mode::Infer)?;
        steps.push(m.logits_mode(&h, Mode::Infer)?);
    }
    max_abs_diff(&full, &Tensor::cat(&steps, 1)?)
}

fn engine_config(decoding: Decoding) -> SamplingConfig {
    SamplingConfig {
        decoding,
        max_new_tokens: 24,
        ignore_eos: true,
        seed: 3,
        max_memory_bytes: None,
        ..SamplingConfig::default()
    }
}

/// Greedy completions of 4 prompts × G = 2.
fn greedy(m: &Llama) -> Result<Vec<Vec<u32>>> {
    let tok = gpu::tokenizer(VOCAB)?;
    let engine = Engine::new(m, &tok, engine_config(Decoding::Greedy))?;
    let batch = engine.generate(&rows(), 2)?;
    Ok(batch
        .rollouts
        .into_iter()
        .map(|r| r.completion_ids)
        .collect())
}

/// Worst |sampling log-prob − teacher-forced log-prob| of sampled completions on `m`.
fn sampled_vs_rescored(m: &Llama) -> Result<f64> {
    let tok = gpu::tokenizer(VOCAB)?;
    let engine = Engine::new(m, &tok, engine_config(Decoding::Sample))?;
    let prompts = rows();
    let batch = engine.generate(&prompts, 2)?;
    let completions: Vec<Vec<u32>> = batch
        .rollouts
        .iter()
        .map(|r| r.completion_ids.clone())
        .collect();
    let scores = score_completions(m, &prompts, &completions, 2, 1.0, Mode::Infer)?;
    let lp = scores.logprobs.to_device(&Device::Cpu)?.to_vec2::<f32>()?;
    let mut worst: f64 = 0.0;
    for (r, rollout) in batch.rollouts.iter().enumerate() {
        for (j, &recorded) in rollout.logprobs.iter().enumerate() {
            worst = worst.max((recorded as f64 - lp[r][j] as f64).abs());
        }
    }
    Ok(worst)
}

fn run(args: &Args) -> Result<Checks> {
    let dev = gpu::open_device(&args.device)?;
    println!(
        "cuda_parity: device {} ({}), model {} params",
        args.device,
        if dev.is_cpu() {
            "CPU: checking the harness"
        } else {
            "CUDA"
        },
        config().num_params()
    );
    let weights = thinkjudge_model::init::random_weights(&config(), 17, DType::F32, &Device::Cpu)?;
    let cpu = Device::Cpu;
    let mut c = Checks {
        tol_scale: args.tol_scale,
        rows: vec![],
        failed: 0,
    };
    let frozen =
        |dtype, d: &Device| model(&weights, d, opts(dtype, Finetune::Frozen, Kernels::Fused));

    // Inference, f32 and bf16.
    let reference = infer_logits(&frozen(DType::F32, &cpu)?)?;
    c.check(
        "infer logits f32 |dev - cpu|",
        max_abs_diff(&reference, &infer_logits(&frozen(DType::F32, &dev)?)?)?,
        1e-3,
    );
    c.check(
        "infer logits bf16 (dev) |bf16 - f32 cpu|",
        max_abs_diff(&reference, &infer_logits(&frozen(DType::BF16, &dev)?)?)?,
        0.25,
    );

    // Training steps: f32 on the device equals the CPU; bf16 within bf16 tolerances.
    let before: Vec<Tensor> = model(
        &weights,
        &cpu,
        opts(DType::F32, Finetune::Full, Kernels::Fused),
    )?
    .trainable_vars()
    .iter()
    .map(|(_, v)| v.as_tensor().copy())
    .collect::<candle_core::Result<_>>()?;
    for (kernels, kname) in [(Kernels::Fused, "fused"), (Kernels::Composed, "composed")] {
        let full = |dtype, d: &Device| model(&weights, d, opts(dtype, Finetune::Full, kernels));
        let ref_step = train_step(&full(DType::F32, &cpu)?)?;
        let f32_step = train_step(&full(DType::F32, &dev)?)?;
        let bf16_step = train_step(&full(DType::BF16, &dev)?)?;
        c.check(
            &format!("train logprobs f32 {kname} |dev - cpu|"),
            max_abs_diff(&ref_step.logprobs, &f32_step.logprobs)?,
            1e-3,
        );
        c.check(
            &format!("grads f32 {kname} rel err (worst var)"),
            worst_grad_err(&ref_step, &f32_step)?,
            1e-3,
        );
        c.check(
            &format!("adamw update f32 {kname} rel err"),
            update_err(&ref_step, &f32_step, &before)?,
            1e-2,
        );
        c.check(
            &format!("train logprobs bf16 {kname} |bf16 - f32|"),
            max_abs_diff(&ref_step.logprobs, &bf16_step.logprobs)?,
            0.15,
        );
        c.check(
            &format!("grads bf16 {kname} rel err (worst var)"),
            worst_grad_err(&ref_step, &bf16_step)?,
            0.15,
        );
        c.check(
            &format!("adamw update bf16 {kname} rel err"),
            update_err(&ref_step, &bf16_step, &before)?,
            0.35,
        );
    }

    // LoRA on the device in bf16: finite f32 adapter gradients (B is zero at init, so A's
    // gradient is zero: only B's is required to be non-zero).
    let lora = Finetune::Lora {
        config: LoraConfig::default(),
        seed: 5,
    };
    let step = train_step(&model(
        &weights,
        &dev,
        opts(DType::BF16, lora, Kernels::Fused),
    )?)?;
    let mut bad: f64 = 0.0;
    for (name, g) in &step.grads {
        let v = g.flatten_all()?.to_vec1::<f32>()?;
        let zero_b = name.contains("lora_B") && v.iter().all(|&x| x == 0.0);
        if zero_b || v.iter().any(|x| !x.is_finite()) {
            println!("  bad LoRA gradient: {name}");
            bad += 1.0;
        }
    }
    c.check("lora bf16 bad adapter grads (count)", bad, 0.0);

    // Device alone: KV-cached decode, sampling vs rescoring.
    for (dtype, tol, dname) in [(DType::F32, 1e-3, "f32"), (DType::BF16, 0.25, "bf16")] {
        let m = frozen(dtype, &dev)?;
        c.check(
            &format!("kv-cached decode vs full {dname} (dev)"),
            cached_decode_err(&m)?,
            tol,
        );
        c.check(
            &format!("sampled vs rescored logprobs {dname} (dev)"),
            sampled_vs_rescored(&m)?,
            if dtype == DType::F32 { 1e-3 } else { 0.1 },
        );
    }

    // Greedy sampling: identical tokens (f32; random logits have no near-ties at 1e-3).
    let a = greedy(&frozen(DType::F32, &cpu)?)?;
    let b = greedy(&frozen(DType::F32, &dev)?)?;
    let differ = a
        .iter()
        .zip(&b)
        .map(|(x, y)| x.iter().zip(y).filter(|(p, q)| p != q).count() + x.len().abs_diff(y.len()))
        .sum::<usize>();
    c.check("greedy tokens f32 differing (count)", differ as f64, 0.0);
    Ok(c)
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(c) => {
            let summary = json!({
                "cuda_parity": if c.failed == 0 { "pass" } else { "fail" },
                "device": args.device, "failed": c.failed, "checks": c.rows,
            });
            println!("{summary}");
            if c.failed == 0 {
                println!("cuda_parity: all {} checks passed", c.rows.len());
                ExitCode::SUCCESS
            } else {
                println!(
                    "cuda_parity: {} of {} checks FAILED",
                    c.failed,
                    c.rows.len()
                );
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("cuda_parity: could not run: {e:#}");
            ExitCode::from(2)
        }
    }
}
