//! Throughput of the model's hot paths on a SmolLM2-135M-sized Llama (hidden 576,
//! intermediate 1536, 30 layers, 9 heads, 3 kv heads, vocab 49152, tied): random weights, or
//! the real SmolLM2-135M-Instruct with `--real`. Prints numbers; not a test.
//!
//! ```text
//! cargo run --release -p thinkjudge-model --example bench_forward -- \
//!     [forward|full|lora|lora8|decode|retain|head|linear]... [--real] [--composed] [--runs N]
//! ```
//! With no section named, runs them all. `--composed` trains with composed kernels instead of
//! the fused attach ops; `--real` loads the default model (`default_model::ensure`, cached);
//! `--runs N` times N runs after a warm-up (default 2) and reports the fastest.
//!
//! Every line reports the fastest wall time, the mean CPU time (user + system, all threads)
//! divided by the thread count — what an idle machine would show, since on a shared machine
//! wall time measures the neighbours too — the peak RSS of the section (Linux: `VmHWM`, reset
//! per section), and the load average. Targets (PyTorch on the same 2 cores, idle): 148 train
//! tok/s full, 210 LoRA, 134 sampled tok/s at batch 32.

use std::time::Instant;

use anyhow::Result;
use candle_core::{DType, Device, Tensor, Var, D};
use thinkjudge_model::{
    ops, Finetune, Kernels, Llama, LlamaOptions, LoraConfig, Mode, ModelConfig, ModelSource,
    WeightMap,
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
/// (0 where unavailable).
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

fn threads() -> f64 {
    candle_core::utils::get_num_threads() as f64
}

/// A `/proc/self/status` field in MiB (`VmHWM`: peak RSS, `VmRSS`: current).
fn status_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// Resets the peak-RSS counter (`VmHWM`) to the current RSS (Linux ≥ 4.0).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Wall and CPU time of a phase.
#[derive(Clone, Copy)]
struct Phase {
    wall: f64,
    cpu: f64,
}

impl Phase {
    fn measure<T>(f: impl FnOnce() -> Result<T>) -> Result<(T, Phase)> {
        let (t0, c0) = (Instant::now(), cpu_seconds());
        let out = f()?;
        Ok((
            out,
            Phase {
                wall: t0.elapsed().as_secs_f64(),
                cpu: cpu_seconds() - c0,
            },
        ))
    }
}

/// Best wall time and mean CPU time (per thread) of each phase over `runs` runs of `f`
/// after one warm-up. `f` returns its phases; the first is the whole run.
struct Timing {
    best_wall: Vec<f64>,
    mean_cpu: Vec<f64>,
}

impl Timing {
    fn run(runs: usize, mut f: impl FnMut() -> Result<Vec<Phase>>) -> Result<Self> {
        f()?;
        let mut t: Option<Self> = None;
        for _ in 0..runs {
            let phases = f()?;
            let t = t.get_or_insert_with(|| Self {
                best_wall: vec![f64::INFINITY; phases.len()],
                mean_cpu: vec![0.0; phases.len()],
            });
            for (i, p) in phases.iter().enumerate() {
                t.best_wall[i] = t.best_wall[i].min(p.wall);
                t.mean_cpu[i] += p.cpu / threads() / runs as f64;
            }
        }
        t.ok_or_else(|| anyhow::anyhow!("no runs"))
    }

    /// "wall W s / cpu C s" of phase `i`.
    fn show(&self, i: usize) -> String {
        format!(
            "{:.2} s (cpu/thr {:.2} s)",
            self.best_wall[i], self.mean_cpu[i]
        )
    }

    /// Tokens per second from the wall time and from the CPU-time estimate.
    fn rate(&self, tokens: usize) -> String {
        format!(
            "{:.0} tok/s wall, {:.0} tok/s by cpu",
            tokens as f64 / self.best_wall[0],
            tokens as f64 / self.mean_cpu[0]
        )
    }
}

fn footer() -> String {
    format!(
        "peak RSS {:.0} MiB, load {}",
        status_mib("VmHWM:"),
        load_average()
    )
}

fn bench_forward(m: &Llama, runs: usize, b: usize, t: usize) -> Result<()> {
    let (ids, mask) = inputs(b, t, m.config().vocab_size)?;
    let timing = Timing::run(runs, || {
        let (fwd, all) = Phase::measure(|| {
            let (h, fwd) =
                Phase::measure(|| Ok(m.forward(&ids, &mask, &mut m.new_cache(), Mode::Infer)?))?;
            m.token_logprobs(&h, &ids, Mode::Infer)?;
            Ok(fwd)
        })?;
        Ok(vec![all, fwd])
    })?;
    println!(
        "forward+logprobs (Infer) {b}x{t}: {} (forward {}), {}; {}",
        timing.show(0),
        timing.show(1),
        timing.rate(b * t),
        footer()
    );
    Ok(())
}

/// Forward + log-prob loss + backward.
fn bench_train(m: &Llama, runs: usize, b: usize, t: usize, what: &str) -> Result<()> {
    let (ids, mask) = inputs(b, t, m.config().vocab_size)?;
    let vars = m.trainable_vars();
    let timing = Timing::run(runs, || {
        let ((fwd, bwd), all) = Phase::measure(|| {
            let (loss, fwd) = Phase::measure(|| {
                let h = m.forward(&ids, &mask, &mut m.new_cache(), Mode::Train)?;
                let lp = m.token_logprobs(&h, &ids, Mode::Train)?.logprobs;
                Ok(lp.mean_all()?)
            })?;
            let (grads, bwd) = Phase::measure(|| Ok(loss.backward()?))?;
            anyhow::ensure!(grads.get(&vars[0].1).is_some(), "no gradient");
            Ok((fwd, bwd))
        })?;
        Ok(vec![all, fwd, bwd])
    })?;
    println!(
        "train step {what} {b}x{t} ({} vars): {} (fwd {}, bwd {}), {}; {}",
        vars.len(),
        timing.show(0),
        timing.show(1),
        timing.show(2),
        timing.rate(b * t),
        footer()
    );
    Ok(())
}

fn bench_decode(m: &Llama, runs: usize, b: usize, prompt: usize, steps: usize) -> Result<()> {
    let (ids, mask) = inputs(1, prompt, m.config().vocab_size)?;
    let timing = Timing::run(runs, || {
        let mut cache = m.new_cache();
        cache.reserve(steps)?;
        let (mut cache, prefill) = Phase::measure(|| {
            m.forward(&ids, &mask, &mut cache, Mode::Infer)?;
            Ok(cache.fork(&vec![0; b])?)
        })?;
        let (_, decode) = Phase::measure(|| {
            let mut next = Tensor::zeros((b, 1), DType::U32, &Device::Cpu)?;
            let ones = next.ones_like()?;
            for _ in 0..steps {
                let h = m.forward(&next, &ones, &mut cache, Mode::Infer)?;
                next = m
                    .logits_mode(&h, Mode::Infer)?
                    .argmax_keepdim(D::Minus1)?
                    .squeeze(2)?;
            }
            Ok(())
        })?;
        Ok(vec![decode, prefill])
    })?;
    println!(
        "decode batch {b}, prompt {prompt} (prefilled once, forked): prefill {}, {steps} steps {}, \
         {:.0} sampled tok/s wall, {:.0} by cpu; {}",
        timing.show(1),
        timing.show(0),
        (b * steps) as f64 / timing.best_wall[0],
        (b * steps) as f64 / timing.mean_cpu[0],
        footer()
    );
    Ok(())
}

/// `KvCache::retain` dropping one row of a decode batch (in place) vs `fork` to the same rows.
fn bench_retain(m: &Llama, runs: usize, b: usize, prompt: usize, reserve: usize) -> Result<()> {
    let (ids, mask) = inputs(1, prompt, m.config().vocab_size)?;
    let mut base = m.new_cache();
    base.reserve(reserve)?;
    m.forward(&ids, &mask, &mut base, Mode::Infer)?;
    let keep: Vec<u32> = (1..b as u32).collect();
    let timing = Timing::run(runs, || {
        let cache = base.fork(&vec![0; b])?;
        let (_, fork) = Phase::measure(|| Ok(cache.fork(&keep)?))?;
        let mut cache = cache;
        let (_, retain) = Phase::measure(|| Ok(cache.retain(&keep)?))?;
        Ok(vec![retain, fork])
    })?;
    println!(
        "drop 1 of {b} rows ({prompt} filled of {} slots): retain {:.2} ms, fork {:.2} ms; {}",
        prompt + reserve,
        timing.best_wall[0] * 1e3,
        timing.best_wall[1] * 1e3,
        footer()
    );
    Ok(())
}

/// The LM head at decode batch sizes: `h·Wᵀ` vs `(W·hᵀ)ᵀ` (what `logits_mode` uses).
fn bench_head(m: &Llama, runs: usize) -> Result<()> {
    let (v, h) = (m.config().vocab_size, m.config().hidden_size);
    let w = Tensor::randn(0f32, 0.04, (v, h), &Device::Cpu)?;
    for rows in [1, 8, 32, 64] {
        let x = Tensor::randn(0f32, 1.0, (rows, h), &Device::Cpu)?;
        let plain = Timing::run(runs.max(5), || {
            Ok(vec![Phase::measure(|| Ok(x.matmul(&w.t()?)?))?.1])
        })?;
        let flipped = Timing::run(runs.max(5), || {
            Ok(vec![
                Phase::measure(|| Ok(w.matmul(&x.t()?)?.t()?.contiguous()?))?.1,
            ])
        })?;
        let hid = x.unsqueeze(0)?;
        let api = Timing::run(runs.max(5), || {
            Ok(vec![
                Phase::measure(|| Ok(m.logits_mode(&hid, Mode::Infer)?))?.1,
            ])
        })?;
        println!(
            "LM head {v}x{h} at {rows} rows: x·Wᵀ {:.1} ms, (W·xᵀ)ᵀ {:.1} ms, logits_mode {:.1} ms",
            plain.best_wall[0] * 1e3,
            flipped.best_wall[0] * 1e3,
            api.best_wall[0] * 1e3
        );
    }
    Ok(())
}

/// Backward through a frozen projection: candle's matmul (computes the useless weight
/// gradient) vs `ops::frozen_linear` (input gradient only).
fn bench_frozen_linear(runs: usize) -> Result<()> {
    let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (1024, 576), &Device::Cpu)?)?;
    let w = Tensor::randn(0f32, 0.04, (1536, 576), &Device::Cpu)?;
    let plain = Timing::run(runs.max(5), || {
        Ok(vec![
            Phase::measure(|| Ok(x.matmul(&w.t()?)?.sum_all()?.backward()?))?.1,
        ])
    })?;
    let frozen = Timing::run(runs.max(5), || {
        Ok(vec![
            Phase::measure(|| Ok(ops::frozen_linear(&x, &w)?.sum_all()?.backward()?))?.1,
        ])
    })?;
    println!(
        "frozen 1536x576 projection of 1024 rows, fwd+bwd: matmul {:.1} ms, frozen_linear {:.1} ms",
        plain.best_wall[0] * 1e3,
        frozen.best_wall[0] * 1e3
    );
    Ok(())
}

/// Where the weights come from.
enum Weights {
    Random(ModelConfig),
    Real(ModelConfig, WeightMap),
}

impl Weights {
    fn build(&self, finetune: Finetune, kernels: Kernels) -> Result<Llama> {
        let options = LlamaOptions {
            finetune,
            kernels,
            ..LlamaOptions::default()
        };
        Ok(match self {
            Weights::Random(cfg) => Llama::random(cfg, 0, &Device::Cpu, options)?,
            Weights::Real(cfg, w) => Llama::from_weights(cfg, w.clone(), &Device::Cpu, options)?,
        })
    }

    fn config(&self) -> &ModelConfig {
        match self {
            Weights::Random(cfg) | Weights::Real(cfg, _) => cfg,
        }
    }
}

fn lora(layers: Option<Vec<usize>>) -> Finetune {
    Finetune::Lora {
        config: LoraConfig {
            layers,
            ..LoraConfig::default()
        },
        seed: 0,
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| args.iter().any(|a| a == name);
    let kernels = if flag("--composed") {
        Kernels::Composed
    } else {
        Kernels::Fused
    };
    let runs = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(2);
    let sections: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with("--") && a.parse::<usize>().is_err())
        .map(String::as_str)
        .collect();
    let run = |name: &str| sections.is_empty() || sections.contains(&name);
    let weights = if flag("--real") {
        let m = thinkjudge_model::default_model::ensure(None)?;
        let loaded = thinkjudge_model::load(&ModelSource::Dir(m.hf_dir), &Device::Cpu)?;
        Weights::Real(loaded.config, loaded.weights)
    } else {
        Weights::Random(smollm2_sized())
    };
    let what = match &weights {
        Weights::Random(_) => "SmolLM2-135M-sized random model",
        Weights::Real(..) => "SmolLM2-135M-Instruct (real weights)",
    };
    println!(
        "{what}, {} threads, training kernels {kernels:?}, best of {runs} runs; RSS at start \
         {:.0} MiB, load {}",
        threads(),
        status_mib("VmRSS:"),
        load_average()
    );
    let section = |name: &str, f: &mut dyn FnMut() -> Result<()>| -> Result<()> {
        if run(name) {
            reset_peak_rss();
            f()?;
        }
        Ok(())
    };
    let n_layers = weights.config().num_layers;
    section("forward", &mut || {
        bench_forward(&weights.build(Finetune::Frozen, kernels)?, runs, 4, 256)
    })?;
    section("full", &mut || {
        bench_train(
            &weights.build(Finetune::Full, kernels)?,
            runs,
            4,
            256,
            "full",
        )
    })?;
    section("lora", &mut || {
        let m = weights.build(lora(None), kernels)?;
        bench_train(&m, runs, 4, 256, "LoRA r=16 all layers")
    })?;
    section("lora8", &mut || {
        let top: Vec<usize> = (n_layers.saturating_sub(8)..n_layers).collect();
        let m = weights.build(lora(Some(top)), kernels)?;
        bench_train(&m, runs, 4, 256, "LoRA r=16 top 8 layers")
    })?;
    section("decode", &mut || {
        bench_decode(
            &weights.build(Finetune::Frozen, kernels)?,
            runs,
            32,
            128,
            32,
        )
    })?;
    section("retain", &mut || {
        bench_retain(
            &weights.build(Finetune::Frozen, kernels)?,
            runs,
            32,
            128,
            128,
        )
    })?;
    section("head", &mut || {
        bench_head(&weights.build(Finetune::Frozen, kernels)?, runs)
    })?;
    section("linear", &mut || bench_frozen_linear(runs))?;
    Ok(())
}
