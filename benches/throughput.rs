//! End-to-end throughput of thinkjudge on the real SmolLM2-135M-Instruct, on the workloads of
//! the PyTorch peer (`scripts/peer/peer_torch.py`), printing the same JSON lines so the two can
//! be compared side by side (README, "Throughput next to PyTorch").
//!
//! ```text
//! cargo bench --bench throughput                      # every workload
//! cargo bench --bench throughput -- forward sample_b8 # some of them
//! cargo bench --bench throughput -- --reps 5
//! ```
//!
//! Workloads (`--threads`, default 2, sets `RAYON_NUM_THREADS` for candle's matmuls):
//! * `forward`: a `Mode::Infer` forward of 4×256 tokens plus the log-probs of the next tokens
//!   (what an old-policy or reference pass does; the peer computes `log_softmax` of the logits);
//! * `train_full`, `train_lora`: one optimizer step on 4×256 tokens: `Mode::Train` forward,
//!   log-probs, a policy-gradient-shaped loss `−mean(adv · logp)`, backward, and
//!   `thinkjudge_rl::AdamW` (full fine-tuning, lr 1e-6; LoRA r=16 α=32 on every projection,
//!   lr 1e-5), 2 warm-up steps then `reps + 2` timed ones, as the peer does;
//! * `sample_b1`, `sample_b8`, `sample_b32`: `thinkjudge_rollout::Engine` sampling 128 new
//!   tokens (temperature 1, no top-p/top-k, eos ignored) after 128-token prompts; batch 8 and
//!   32 are 2 and 8 prompts × G = 4 (the prompt is prefilled once and its cache forked), batch 1
//!   is one prompt. `generate_tok_s` = new tokens / (prefill + decode) wall time.
//!
//! Each child first calls `thinkjudge_model::tune_allocator` and `tune_barrier_pool` as the
//! binary and the examples do; `--default-malloc` leaves glibc's defaults and
//! `CANDLE_BARRIER_POOL_SPIN_LIMIT=25000` candle's, to measure what each is worth.
//!
//! Each workload runs in its own child process so that its peak RSS (`VmHWM`) is its own;
//! `load_peak_rss_mib` is the peak right after loading the model. Every rate has a wall-clock
//! `…_tok_s` (min/median/max over reps) and a `…_cpu_tok_s` (tokens per CPU-second / threads,
//! the wall rate an otherwise idle machine would show; on a shared machine the wall rate
//! measures the neighbours too). `loadavg` is `/proc/loadavg`'s 1-minute value before and after.
//!
//! Not a test: `cargo test` does not build it, and run without `--bench` (as
//! `cargo test --all-targets` would) it only prints how to run it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use thinkjudge_model::{
    default_model, load, Finetune, JudgeTokenizer, Llama, LlamaOptions, LoraConfig, Mode,
    ModelSource,
};
use thinkjudge_rl::{AdamW, LrSchedule, OptimizerConfig};
use thinkjudge_rollout::{Engine, SamplingConfig};

const WORKLOADS: [&str; 6] = [
    "forward",
    "train_full",
    "train_lora",
    "sample_b1",
    "sample_b8",
    "sample_b32",
];
const BATCH: usize = 4;
const SEQ: usize = 256;
const PROMPT: usize = 128;
const NEW: usize = 128;

struct Args {
    workloads: Vec<String>,
    child: Option<String>,
    reps: usize,
    threads: usize,
    default_malloc: bool,
}

fn parse_args() -> Result<Option<Args>> {
    let mut args = std::env::args().skip(1);
    let (mut workloads, mut child, mut reps, mut threads, mut bench, mut default_malloc) =
        (Vec::new(), None, 3, 2, false, false);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--bench" => bench = true,
            "--default-malloc" => default_malloc = true,
            "--workload" => child = Some(args.next().context("--workload needs a name")?),
            "--reps" => reps = args.next().context("--reps needs a number")?.parse()?,
            "--threads" => threads = args.next().context("--threads needs a number")?.parse()?,
            w if WORKLOADS.contains(&w) => workloads.push(w.to_string()),
            other if other.starts_with('-') => {} // cargo's own flags
            other => bail!("unknown workload {other:?}; expected some of {WORKLOADS:?}"),
        }
    }
    if !bench && child.is_none() {
        return Ok(None);
    }
    if workloads.is_empty() {
        workloads = WORKLOADS.iter().map(|w| w.to_string()).collect();
    }
    Ok(Some(Args {
        workloads,
        child,
        reps: reps.max(1),
        threads,
        default_malloc,
    }))
}

fn main() -> Result<()> {
    let Some(args) = parse_args()? else {
        println!("throughput: a benchmark, not a test; run `cargo bench --bench throughput`");
        return Ok(());
    };
    match &args.child {
        Some(w) => run_workload(w, &args),
        None => run_all(&args),
    }
}

/// Spawns one child per workload and forwards its JSON lines.
fn run_all(args: &Args) -> Result<()> {
    let exe = std::env::current_exe()?;
    let dm = default_model::ensure(None)?;
    println!(
        "{}",
        json!({
            "impl": "thinkjudge",
            "candle": "0.11.1",
            "threads": args.threads,
            "model": dm.hf_dir,
            "cpu": cpu_model(),
            "loadavg": loadavg(),
        })
    );
    for w in &args.workloads {
        let mut child = Command::new(&exe)
            .args(["--workload", w, "--reps", &args.reps.to_string()])
            .args(["--threads", &args.threads.to_string()])
            .args(args.default_malloc.then_some("--default-malloc"))
            .env("RAYON_NUM_THREADS", args.threads.to_string())
            .stdout(Stdio::piped())
            .spawn()?;
        let out = child.stdout.take().context("child stdout")?;
        for line in BufReader::new(out).lines() {
            println!("{}", line?);
        }
        let status = child.wait()?;
        if !status.success() {
            bail!("workload {w} failed: {status}");
        }
    }
    Ok(())
}

fn run_workload(w: &str, args: &Args) -> Result<()> {
    if !args.default_malloc {
        thinkjudge_model::tune_allocator();
    }
    let spin_limit = thinkjudge_model::tune_barrier_pool();
    let load0 = loadavg();
    let dm = default_model::ensure(None)?;
    let finetune = match w {
        "train_full" => Finetune::Full,
        "train_lora" => Finetune::Lora {
            config: LoraConfig::default(), // r 16, α 32, dropout 0, all 7 projections (as peer)
            seed: 0,
        },
        _ => Finetune::Frozen,
    };
    let loaded = load(&ModelSource::Dir(dm.hf_dir), &Device::Cpu)?;
    let model = Llama::from_weights(
        &loaded.config,
        loaded.weights,
        &Device::Cpu,
        LlamaOptions {
            finetune,
            ..LlamaOptions::default()
        },
    )?;
    let load_peak = peak_rss_mib();
    let threads = candle_core::utils::get_num_threads();
    let mut out = match w {
        "forward" => bench_forward(&model, args.reps)?,
        "train_full" => bench_train(&model, args.reps, 1e-6)?,
        "train_lora" => bench_train(&model, args.reps, 1e-5)?,
        _ => {
            let b: usize = w.trim_start_matches("sample_b").parse()?;
            bench_sample(&model, &loaded.tokenizer, b, args.reps)?
        }
    };
    let obj = out.as_object_mut().context("object")?;
    obj.insert("threads".into(), json!(threads));
    obj.insert("tuned_malloc".into(), json!(!args.default_malloc));
    obj.insert("barrier_spin_limit".into(), json!(spin_limit));
    obj.insert("load_peak_rss_mib".into(), json!(load_peak));
    obj.insert("peak_rss_mib".into(), json!(peak_rss_mib()));
    obj.insert("loadavg".into(), json!([load0, loadavg()]));
    println!("{out}");
    Ok(())
}

/// `b` rows of `t` random ids in [100, 40000), like the peer's `torch.randint(100, 40000, …)`.
fn random_ids(b: usize, t: usize, seed: u64) -> Vec<Vec<u32>> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..b)
        .map(|_| (0..t).map(|_| rng.random_range(100..40_000)).collect())
        .collect()
}

fn batch_tensor(rows: &[Vec<u32>]) -> Result<Tensor> {
    let (b, t) = (rows.len(), rows[0].len());
    Ok(Tensor::from_vec(rows.concat(), (b, t), &Device::Cpu)?)
}

/// Wall and CPU-normalised rates of `reps` timed calls of `f`, each returning its token count.
struct Rates {
    wall: Vec<f64>,
    cpu: Vec<f64>,
}

impl Rates {
    fn new() -> Self {
        Rates {
            wall: Vec::new(),
            cpu: Vec::new(),
        }
    }

    fn time<T>(&mut self, tokens: usize, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let (c0, t0) = (cpu_seconds(), Instant::now());
        let r = f()?;
        self.record(tokens, t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
        Ok(r)
    }

    fn record(&mut self, tokens: usize, wall_s: f64, cpu_s: f64) {
        let threads = candle_core::utils::get_num_threads() as f64;
        self.wall.push(tokens as f64 / wall_s);
        self.cpu.push(tokens as f64 / (cpu_s / threads));
    }
}

fn bench_forward(m: &Llama, reps: usize) -> Result<Value> {
    let ids = batch_tensor(&random_ids(BATCH, SEQ, 0))?;
    let mask = ids.ones_like()?;
    let targets = ids.narrow(1, 1, SEQ - 1)?;
    let step = || -> Result<Tensor> {
        let h = m.forward(&ids, &mask, &mut m.new_cache(), Mode::Infer)?;
        let h = h.narrow(1, 0, SEQ - 1)?;
        Ok(m.token_logprobs(&h, &targets, Mode::Infer)?.logprobs)
    };
    step()?; // warm-up
    let mut r = Rates::new();
    for _ in 0..reps {
        r.time(BATCH * SEQ, step)?;
    }
    Ok(json!({
        "bench": "forward_logprobs", "batch": BATCH, "seq": SEQ,
        "forward_tok_s": stats(&r.wall), "forward_cpu_tok_s": stats(&r.cpu),
    }))
}

fn bench_train(m: &Llama, reps: usize, lr: f64) -> Result<Value> {
    let vars = m.trainable_vars();
    let trainable: usize = vars.iter().map(|(_, v)| v.elem_count()).sum();
    let what = if matches!(m.options().finetune, Finetune::Full) {
        "train_full"
    } else {
        "train_lora_r16"
    };
    let cfg = OptimizerConfig {
        schedule: LrSchedule::Constant { lr },
        ..OptimizerConfig::default()
    };
    let mut opt = AdamW::new(vars, cfg)?;
    let mut acc = opt.accumulator();
    let ids = batch_tensor(&random_ids(BATCH, SEQ, 1))?;
    let mask = ids.ones_like()?;
    let targets = ids.narrow(1, 1, SEQ - 1)?;
    let adv = Tensor::randn(0f32, 1.0, (BATCH, 1), &Device::Cpu)?;
    let mut step = || -> Result<()> {
        let h = m.forward(&ids, &mask, &mut m.new_cache(), Mode::Train)?;
        let h = h.narrow(1, 0, SEQ - 1)?;
        let logp = m.token_logprobs(&h, &targets, Mode::Train)?.logprobs;
        let loss = logp.broadcast_mul(&adv)?.mean_all()?.neg()?;
        acc.add(&loss.backward()?)?;
        let report = opt.step(&acc)?;
        acc.clear();
        anyhow::ensure!(report.applied, "non-finite gradient norm");
        Ok(())
    };
    let (warmup, steps) = (2, reps + 2);
    let mut r = Rates::new();
    for i in 0..warmup + steps {
        if i < warmup {
            step()?;
        } else {
            r.time(BATCH * SEQ, &mut step)?;
        }
    }
    Ok(json!({
        "bench": what, "batch": BATCH, "seq": SEQ,
        "train_tok_s": stats(&r.wall), "train_cpu_tok_s": stats(&r.cpu),
        "trainable_params": trainable,
    }))
}

fn bench_sample(m: &Llama, tok: &JudgeTokenizer, batch: usize, reps: usize) -> Result<Value> {
    let g = if batch >= 4 { 4 } else { 1 };
    let prompts = random_ids(batch / g, PROMPT, 2);
    let config = SamplingConfig {
        max_new_tokens: NEW,
        ignore_eos: true,
        ..SamplingConfig::default()
    };
    let engine = Engine::new(m, tok, config)?;
    engine.generate(&random_ids(1, 16, 3), 2)?; // warm-up
    let (mut prefill, mut generate, mut decode) = (Rates::new(), Rates::new(), Rates::new());
    for _ in 0..reps {
        let c0 = cpu_seconds();
        let s = engine.generate(&prompts, g)?.stats;
        let cpu = cpu_seconds() - c0;
        // CPU time is not split between prefill and decode; attribute it by wall share.
        let share = |secs: f64| cpu * secs / s.seconds();
        prefill.record(
            s.prefill_tokens,
            s.prefill_seconds,
            share(s.prefill_seconds),
        );
        generate.record(s.decode_tokens, s.seconds(), cpu);
        decode.record(s.decode_tokens, s.decode_seconds, share(s.decode_seconds));
    }
    Ok(json!({
        "bench": "sample", "batch": batch, "prompts": batch / g, "group": g,
        "prompt": PROMPT, "new": NEW,
        "prefill_tok_s": stats(&prefill.wall),
        "generate_tok_s": stats(&generate.wall), "generate_cpu_tok_s": stats(&generate.cpu),
        "decode_tok_s": stats(&decode.wall),
    }))
}

fn stats(xs: &[f64]) -> Value {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let median = if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    json!({ "min": v[0], "median": median, "max": v[v.len() - 1] })
}

/// Peak resident set of this process in MiB (`VmHWM`), 0 where `/proc` is missing.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// User + system CPU seconds of this process (all threads), from `/proc/self/stat`.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // utime and stime are fields 14 and 15 of stat, 11 and 12 after the command name.
    let ticks_per_s = 100.0; // USER_HZ on Linux
    (f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0)) / ticks_per_s
}

fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|s| s.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_default()
}
