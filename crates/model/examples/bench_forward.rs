//! Throughput of the model's hot paths on a random SmolLM2-135M-sized Llama (hidden 576,
//! intermediate 1536, 30 layers, 9 heads, 3 kv heads, vocab 49152, tied). Prints numbers; not
//! a test.
//!
//! ```text
//! cargo run --release -p thinkjudge-model --example bench_forward -- \
//!     [forward|full|lora|decode|linear]... [--composed]
//! ```
//! With no section named, runs them all. `--composed` trains with composed kernels instead of
//! the fused attach ops. Targets (PyTorch on the same 2 cores): 148 train tok/s full,
//! 210 LoRA, 134 sampled tok/s at batch 32.

use std::time::Instant;

use anyhow::Result;
use candle_core::{DType, Device, Tensor, Var, D};
use thinkjudge_model::{
    ops, Finetune, Kernels, Llama, LlamaOptions, LoraConfig, Mode, ModelConfig,
};

fn smollm2_sized() -> ModelConfig {
    ModelConfig {
        hidden_size: 576,
        intermediate_size: 1536,
        num_layers: 30,
        num_heads: 9,
        num_kv_heads: 3,
        head_dim: 64,
        vocab_size: 49152,
        rope_theta: 100_000.0,
        max_position_embeddings: 8192,
        tie_word_embeddings: true,
        ..ModelConfig::tiny(49152)
    }
}

/// Random ids (B, T) and an all-ones mask.
fn inputs(b: usize, t: usize, vocab: usize) -> Result<(Tensor, Tensor)> {
    let ids: Vec<u32> = (0..b * t)
        .map(|i| ((i as u64 * 2_654_435_761) % vocab as u64) as u32)
        .collect();
    let ids = Tensor::from_vec(ids, (b, t), &Device::Cpu)?;
    let mask = ids.ones_like()?;
    Ok((ids, mask))
}

/// CPU seconds (user + system) this process has used so far, from `/proc/self/stat`
/// (0 where unavailable). On a shared machine, wall time measures the neighbours too.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0 // utime, stime: fields 14, 15 of stat, in 1/100 s
}

/// Seconds of the fastest of `runs` calls after one warm-up call. Also prints the CPU time
/// of the runs divided by the thread count: the wall time an idle machine would show.
fn time<T>(runs: usize, mut f: impl FnMut() -> Result<T>) -> Result<f64> {
    f()?;
    let mut best = f64::INFINITY;
    let cpu0 = cpu_seconds();
    for _ in 0..runs {
        let t0 = Instant::now();
        f()?;
        best = best.min(t0.elapsed().as_secs_f64());
    }
    let threads = candle_core::utils::get_num_threads() as f64;
    println!(
        "  (mean CPU time / {threads} threads: {:.2} s per run)",
        (cpu_seconds() - cpu0) / threads / runs as f64
    );
    Ok(best)
}

fn bench_forward(m: &Llama, b: usize, t: usize) -> Result<()> {
    let (ids, mask) = inputs(b, t, m.config().vocab_size)?;
    let mut fwd_s = f64::INFINITY;
    let s = time(2, || {
        let t0 = Instant::now();
        let h = m.forward(&ids, &mask, &mut m.new_cache(), Mode::Infer)?;
        fwd_s = fwd_s.min(t0.elapsed().as_secs_f64());
        Ok(m.token_logprobs(&h, &ids, Mode::Infer)?)
    })?;
    println!(
        "forward+logprobs (Infer) {b}x{t}: {:.2} s (forward {:.2} s), {:.0} tok/s",
        s,
        fwd_s,
        (b * t) as f64 / s
    );
    Ok(())
}

/// Forward + log-prob loss + backward; returns seconds of the fastest step.
fn bench_train(m: &Llama, b: usize, t: usize, what: &str) -> Result<()> {
    let (ids, mask) = inputs(b, t, m.config().vocab_size)?;
    let vars = m.trainable_vars();
    let (mut fwd_s, mut bwd_s) = (f64::INFINITY, f64::INFINITY);
    let s = time(2, || {
        let t0 = Instant::now();
        let h = m.forward(&ids, &mask, &mut m.new_cache(), Mode::Train)?;
        let lp = m.token_logprobs(&h, &ids, Mode::Train)?.logprobs;
        let loss = lp.mean_all()?;
        let t1 = Instant::now();
        let grads = loss.backward()?;
        fwd_s = fwd_s.min((t1 - t0).as_secs_f64());
        bwd_s = bwd_s.min(t1.elapsed().as_secs_f64());
        anyhow::ensure!(grads.get(&vars[0].1).is_some(), "no gradient");
        Ok(())
    })?;
    println!(
        "train step {what} {b}x{t} ({} vars): {:.2} s (fwd {:.2} s, bwd {:.2} s), {:.0} tok/s",
        vars.len(),
        s,
        fwd_s,
        bwd_s,
        (b * t) as f64 / s
    );
    Ok(())
}

fn bench_decode(m: &Llama, b: usize, prompt: usize, steps: usize) -> Result<()> {
    let (ids, mask) = inputs(1, prompt, m.config().vocab_size)?;
    let mut prefill_s = 0.0;
    let s = time(1, || {
        let mut cache = m.new_cache();
        cache.reserve(steps)?;
        let t0 = Instant::now();
        m.forward(&ids, &mask, &mut cache, Mode::Infer)?;
        let mut cache = cache.fork(&vec![0; b])?;
        prefill_s = t0.elapsed().as_secs_f64();
        let mut next = Tensor::zeros((b, 1), DType::U32, &Device::Cpu)?;
        let ones = next.ones_like()?;
        for _ in 0..steps {
            let h = m.forward(&next, &ones, &mut cache, Mode::Infer)?;
            next = m.logits(&h)?.argmax_keepdim(D::Minus1)?.squeeze(2)?;
        }
        Ok(())
    })?;
    let decode_s = s - prefill_s;
    println!(
        "decode batch {b}, prompt {prompt} (prefilled once, forked): prefill {:.2} s, \
         {steps} steps {:.2} s, {:.0} sampled tok/s",
        prefill_s,
        decode_s,
        (b * steps) as f64 / decode_s
    );
    Ok(())
}

/// Backward through a frozen projection: candle's matmul (computes the useless weight
/// gradient) vs `ops::frozen_linear` (input gradient only).
fn bench_frozen_linear() -> Result<()> {
    let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (1024, 576), &Device::Cpu)?)?;
    let w = Tensor::randn(0f32, 0.04, (1536, 576), &Device::Cpu)?;
    let plain = time(5, || Ok(x.matmul(&w.t()?)?.sum_all()?.backward()?))?;
    let frozen = time(5, || {
        Ok(ops::frozen_linear(&x, &w)?.sum_all()?.backward()?)
    })?;
    println!(
        "frozen 1536x576 projection of 1024 rows, fwd+bwd: matmul {:.1} ms, frozen_linear {:.1} ms",
        plain * 1e3,
        frozen * 1e3
    );
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let kernels = if args.iter().any(|a| a == "--composed") {
        Kernels::Composed
    } else {
        Kernels::Fused
    };
    let sections: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with("--"))
        .map(String::as_str)
        .collect();
    let run = |name: &str| sections.is_empty() || sections.contains(&name);
    let cfg = smollm2_sized();
    let threads = candle_core::utils::get_num_threads();
    println!("SmolLM2-135M-sized random model, {threads} threads, training kernels {kernels:?}");
    let build = |finetune: Finetune| {
        Llama::random(
            &cfg,
            0,
            &Device::Cpu,
            LlamaOptions {
                finetune,
                kernels,
                ..LlamaOptions::default()
            },
        )
    };
    if run("forward") {
        bench_forward(&build(Finetune::Frozen)?, 4, 256)?;
    }
    if run("full") {
        bench_train(&build(Finetune::Full)?, 4, 256, "full")?;
    }
    if run("lora") {
        let lora = Finetune::Lora {
            config: LoraConfig::default(),
            seed: 0,
        };
        bench_train(&build(lora)?, 4, 256, "LoRA r=16 all projections")?;
    }
    if run("decode") {
        bench_decode(&build(Finetune::Frozen)?, 32, 128, 32)?;
    }
    if run("linear") {
        bench_frozen_linear()?;
    }
    Ok(())
}
