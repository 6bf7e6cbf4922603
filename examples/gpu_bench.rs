//! Training and rollout throughput on a GPU (or, slowly, the CPU), with MFU and peak device
//! memory: the numbers docs/gpu.md asks a GPU session to measure. Random weights (no download:
//! the GPU machine has no network), so only speed is meaningful, not the text.
//!
//! ```bash
//! ./gpu_bench --device cuda:0                                  # defaults below
//! ./gpu_bench --device cuda:0 --models smollm2-135m --workloads rollout --rollout-batches 64,256
//! cargo run --release --example gpu_bench -- --device cpu --models tiny --steps 1   # harness
//! ```
//!
//! Workloads, per model (`smollm2-135m`: SmolLM2-135M's shape; `1b`: a synthetic 1.2B
//! Llama-3.2-1B-shaped model; `tiny`: for checking the harness):
//! * `train_full`, `train_lora`: one optimizer step on `--batch × --seq` tokens: `Mode::Train`
//!   forward, chunked f32 log-probs, a policy-gradient-shaped loss, backward, AdamW (f32 master
//!   weights and moments) — full fine-tuning, or LoRA r=16 on all seven projections. Reports
//!   tokens/s, model TFLOP/s and MFU = achieved / `--peak-tflops` (FLOPs per token: see
//!   `flops_per_token` in examples/common/gpu.rs: 6·N + 12·L·q·T for full fine-tuning, 4·N +
//!   8·L·q·T with frozen weights, N = matmul parameters including the head).
//! * `rollout`: `Engine` sampling `--new` tokens after `--prompt`-token prompts, G = 8 samples
//!   per prompt, for each batch (rows) in `--rollout-batches`; temperature 1, eos ignored.
//!   Reports generated tokens/s (prefill included) and decode-only tokens/s.
//!
//! Every line is JSON; `peak_mib` is the device-wide peak of `total − free` memory sampled
//! every 5 ms during the workload (null on the CPU).

#[path = "common/gpu.rs"]
mod gpu;

use std::time::Instant;

use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor};
use clap::Parser;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use thinkjudge_model::{Finetune, Llama, LlamaOptions, LoraConfig, Mode, ModelConfig};
use thinkjudge_rl::{AdamW, LrSchedule, OptimizerConfig};
use thinkjudge_rollout::{Engine, SamplingConfig};

#[derive(Debug, Parser)]
#[command(about = "Train and rollout throughput (tokens/s, MFU, peak memory) on random weights")]
struct Args {
    /// cuda:N or cpu.
    #[arg(long, default_value = "cuda:0")]
    device: String,
    /// Models: smollm2-135m, 1b, tiny (comma-separated).
    #[arg(long, default_value = "smollm2-135m,1b", value_delimiter = ',')]
    models: Vec<String>,
    /// Workloads: train_full, train_lora, rollout (comma-separated).
    #[arg(
        long,
        default_value = "train_full,train_lora,rollout",
        value_delimiter = ','
    )]
    workloads: Vec<String>,
    /// Compute dtype: bf16 or f32 (master weights and AdamW state are f32 either way).
    #[arg(long, default_value = "bf16")]
    dtype: String,
    /// Sequences per training step.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Tokens per training sequence.
    #[arg(long, default_value_t = 1024)]
    seq: usize,
    /// Timed training steps (after 2 warm-up steps).
    #[arg(long, default_value_t = 3)]
    steps: usize,
    /// Rollout batch sizes in rows (prompts × G = 8; comma-separated).
    #[arg(long, default_value = "64,128,256", value_delimiter = ',')]
    rollout_batches: Vec<usize>,
    /// Prompt tokens per rollout prompt.
    #[arg(long, default_value_t = 256)]
    prompt: usize,
    /// New tokens per rollout sample.
    #[arg(long, default_value_t = 256)]
    new: usize,
    /// Peak dense bf16 TFLOP/s of the device for MFU [default: 989, H100/H200 SXM spec; the
    /// workplace notes report about 790 for a large bf16 matmul through PyTorch on its H200;
    /// not measured by this project].
    #[arg(long)]
    peak_tflops: Option<f64>,
    /// Logits elements `token_logprobs` materialises at once [default: 2^27 on CUDA, the model
    /// default (2^24) on the CPU].
    #[arg(long)]
    logprob_chunk_elems: Option<usize>,
}

fn model_config(name: &str) -> Result<ModelConfig> {
    Ok(match name {
        "smollm2-135m" => gpu::smollm2_135m(),
        "1b" => gpu::synthetic_1b(),
        "tiny" => ModelConfig::tiny(512),
        other => bail!("unknown model {other}: expected smollm2-135m, 1b or tiny"),
    })
}

fn main() -> Result<()> {
    let args = Args::parse();
    let dev = gpu::open_device(&args.device)?;
    let compute_dtype = match args.dtype.as_str() {
        "bf16" => DType::BF16,
        "f32" => DType::F32,
        other => bail!("--dtype {other}: expected bf16 or f32"),
    };
    let peak_tflops = args
        .peak_tflops
        .or((!dev.is_cpu()).then_some(989.0))
        .filter(|p| *p > 0.0);
    let chunk = args.logprob_chunk_elems.unwrap_or(if dev.is_cpu() {
        LlamaOptions::default().logprob_chunk_elems
    } else {
        1 << 27
    });
    for name in &args.models {
        let cfg = model_config(name)?;
        let t0 = Instant::now();
        let weights = thinkjudge_model::init::random_weights(&cfg, 1, DType::F32, &Device::Cpu)?;
        eprintln!(
            "gpu_bench: {name}: {:.1}M params, random weights in {:.1}s",
            cfg.num_params() as f64 / 1e6,
            t0.elapsed().as_secs_f64()
        );
        for w in &args.workloads {
            let finetune = match w.as_str() {
                "train_full" => Finetune::Full,
                "train_lora" => Finetune::Lora {
                    config: LoraConfig::default(),
                    seed: 0,
                },
                "rollout" => Finetune::Frozen,
                other => bail!("unknown workload {other}"),
            };
            let options = LlamaOptions {
                compute_dtype,
                finetune,
                logprob_chunk_elems: chunk,
                ..LlamaOptions::default()
            };
            let model = Llama::from_weights(&cfg, weights.clone(), &dev, options)?;
            let base = json!({
                "model": name, "params": cfg.num_params(), "device": args.device,
                "dtype": args.dtype,
            });
            if w == "rollout" {
                for &b in &args.rollout_batches {
                    let out = bench_rollout(&model, b, &args)?;
                    println!("{}", merge(&base, out));
                }
            } else {
                let out = bench_train(&model, w, &args, peak_tflops)?;
                println!("{}", merge(&base, out));
            }
            drop(model);
            gpu::sync(&dev)?;
        }
    }
    Ok(())
}

fn merge(a: &Value, b: Value) -> Value {
    let mut out = a.clone();
    if let (Some(o), Value::Object(b)) = (out.as_object_mut(), b) {
        o.extend(b);
    }
    out
}

fn random_rows(b: usize, t: usize, vocab: usize, seed: u64) -> Vec<Vec<u32>> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..b)
        .map(|_| {
            (0..t)
                .map(|_| rng.random_range(96..vocab as u32 - 1))
                .collect()
        })
        .collect()
}

fn stats(xs: &[f64]) -> Value {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    json!({ "min": v[0], "median": v[v.len() / 2], "max": v[v.len() - 1] })
}

fn bench_train(m: &Llama, what: &str, args: &Args, peak_tflops: Option<f64>) -> Result<Value> {
    let dev = m.device().clone();
    let (b, t) = (args.batch, args.seq);
    let cfg = m.config();
    let vars = m.trainable_vars();
    let trainable: usize = vars.iter().map(|(_, v)| v.elem_count()).sum();
    let lr = if what == "train_full" { 1e-6 } else { 1e-5 };
    let mut opt = AdamW::new(
        vars,
        OptimizerConfig {
            schedule: LrSchedule::Constant { lr },
            ..OptimizerConfig::default()
        },
    )?;
    let mut acc = opt.accumulator();
    let rows = random_rows(b, t + 1, cfg.vocab_size, 1);
    let all = Tensor::from_vec(rows.concat(), (b, t + 1), &dev)?;
    let ids = all.narrow(1, 0, t)?;
    let targets = all.narrow(1, 1, t)?;
    let mask = ids.ones_like()?;
    let adv = Tensor::randn(0f32, 1.0, (b, 1), &Device::Cpu)?.to_device(&dev)?;
    let peak = gpu::PeakMemory::start(&dev);
    let mut step = || -> Result<f64> {
        let t0 = Instant::now();
        let h = m.forward(&ids, &mask, &mut m.new_cache(), Mode::Train)?;
        let logp = m.token_logprobs(&h, &targets, Mode::Train)?.logprobs;
        let loss = logp.broadcast_mul(&adv)?.mean_all()?.neg()?;
        acc.add(&loss.backward()?)?;
        let report = opt.step(&acc)?;
        acc.clear();
        anyhow::ensure!(report.applied, "non-finite gradient norm");
        gpu::sync(&dev)?;
        Ok(t0.elapsed().as_secs_f64())
    };
    let warm: Vec<f64> = (0..2).map(|_| step()).collect::<Result<_>>()?;
    let secs: Vec<f64> = (0..args.steps).map(|_| step()).collect::<Result<_>>()?;
    let tok_s: Vec<f64> = secs.iter().map(|s| (b * t) as f64 / s).collect();
    let median_tok_s = stats(&tok_s)["median"].as_f64().unwrap_or(0.0);
    let flops = gpu::flops_per_token(cfg, t, what == "train_full");
    let tflops = median_tok_s * flops / 1e12;
    Ok(json!({
        "bench": what, "batch": b, "seq": t, "trainable_params": trainable,
        "warmup_s": warm, "step_s": secs, "train_tok_s": stats(&tok_s),
        "flops_per_token": flops, "model_tflops": tflops,
        "peak_tflops": peak_tflops, "mfu": peak_tflops.map(|p| tflops / p),
        "peak_mib": peak.peak_mib(),
    }))
}

fn bench_rollout(m: &Llama, rows: usize, args: &Args) -> Result<Value> {
    let g = 8.min(rows);
    anyhow::ensure!(
        rows.is_multiple_of(g),
        "rollout batch {rows} is not a multiple of G = {g}"
    );
    let vocab = m.config().vocab_size;
    let tok = gpu::tokenizer(vocab)?;
    let config = SamplingConfig {
        max_new_tokens: args.new,
        ignore_eos: true,
        max_memory_bytes: None,
        ..SamplingConfig::default()
    };
    let engine = Engine::new(m, &tok, config)?;
    engine.generate(&random_rows(2, 16, vocab, 3), 2)?; // warm-up (kernel loading)
    let prompts = random_rows(rows / g, args.prompt, vocab, 2);
    let peak = gpu::PeakMemory::start(m.device());
    let t0 = Instant::now();
    let s = engine.generate(&prompts, g)?.stats;
    let wall = t0.elapsed().as_secs_f64();
    Ok(json!({
        "bench": "rollout", "rows": rows, "prompts": rows / g, "group": g,
        "prompt": args.prompt, "new": args.new,
        "generated_tokens": s.decode_tokens, "wall_s": wall,
        "generate_tok_s": s.decode_tokens as f64 / wall,
        "decode_tok_s": s.decode_tokens as f64 / s.decode_seconds,
        "prefill_tok_s": s.prefill_tokens as f64 / s.prefill_seconds,
        "peak_mib": peak.peak_mib(),
    }))
}
