//! Sampling throughput on the real SmolLM2-135M-Instruct (fetched into the cache by
//! `default_model::ensure` if needed). Prints numbers; not a test.
//!
//! ```text
//! cargo run --release -p thinkjudge-rollout --example bench_sampling -- [--raw] [BATCH...]
//! ```
//! Batches 1, 8, 32 by default (8 = 2 prompts × G 4, 32 = 8 prompts × G 4): 128-token prompts,
//! 128 new tokens, no stopping, temperature 1, top-p 1. `--raw` also times the bare decode
//! loop (forward + LM head + argmax, no sampling) for the same shapes, to separate model time
//! from sampling overhead. When other processes share the cores, the wall-clock numbers drop;
//! the "per CPU-second" column (tokens / (this process's CPU time / threads), from
//! `/proc/self/stat`) estimates the idle-machine figure. Goal: ≥ 1.5 × the 134 sampled tok/s that PyTorch eager
//! `model.generate` reaches at batch 32 on the same 2 cores.

use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor, D};
use thinkjudge_model::{default_model, load, Llama, LlamaOptions, Mode, ModelSource};
use thinkjudge_rollout::{Engine, SamplingConfig};

const PROMPT_LEN: usize = 128;
const NEW_TOKENS: usize = 128;

/// `n` distinct 128-token prompts cut from a repeated text.
fn prompts(tok: &thinkjudge_model::JudgeTokenizer, n: usize) -> Result<Vec<Vec<u32>>> {
    let text = "Compare the two answers to the question and decide which is more accurate, \
                helpful and honest. Think step by step before giving the verdict. "
        .repeat(40);
    let ids = tok.encode(&text)?;
    (0..n)
        .map(|i| {
            ids.get(i * 7..i * 7 + PROMPT_LEN)
                .map(<[u32]>::to_vec)
                .context("text too short")
        })
        .collect()
}

/// Forward + LM head + argmax for the same shapes, without sampling or per-row bookkeeping.
fn raw_decode(m: &Llama, prompts: &[Vec<u32>], g: usize) -> Result<f64> {
    let p = prompts.len();
    let ids = Tensor::new(prompts.concat(), &Device::Cpu)?.reshape((p, PROMPT_LEN))?;
    let mut cache = m.new_cache();
    cache.reserve(NEW_TOKENS)?;
    m.forward(&ids, &ids.ones_like()?, &mut cache, Mode::Infer)?;
    let owners: Vec<u32> = (0..p as u32).flat_map(|i| vec![i; g]).collect();
    let mut cache = cache.fork(&owners)?;
    let mut next = Tensor::zeros((p * g, 1), DType::U32, &Device::Cpu)?;
    let ones = next.ones_like()?;
    let t0 = Instant::now();
    for _ in 1..NEW_TOKENS {
        let h = m.forward(&next, &ones, &mut cache, Mode::Infer)?;
        next = m
            .logits_mode(&h, Mode::Infer)?
            .argmax_keepdim(D::Minus1)?
            .squeeze(2)?;
    }
    Ok((p * g * (NEW_TOKENS - 1)) as f64 / t0.elapsed().as_secs_f64())
}

/// CPU time (user + system) of this process in seconds, if `/proc` has it (100 Hz ticks).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn main() -> Result<()> {
    thinkjudge_model::tune_allocator();
    thinkjudge_model::tune_barrier_pool();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let raw = args.iter().any(|a| a == "--raw");
    let mut batches: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    if batches.is_empty() {
        batches = vec![1, 8, 32];
    }
    default_model::ensure(None)?;
    let loaded = load(&ModelSource::Default, &Device::Cpu)?;
    let model = Llama::from_weights(
        &loaded.config,
        loaded.weights,
        &Device::Cpu,
        LlamaOptions::default(),
    )?;
    let tok = &loaded.tokenizer;
    let threads = candle_core::utils::get_num_threads();
    println!(
        "SmolLM2-135M-Instruct, {threads} threads, prompts {PROMPT_LEN} tokens, {NEW_TOKENS} new \
         tokens, T=1 top-p=1, no stopping"
    );
    let config = SamplingConfig {
        max_new_tokens: NEW_TOKENS,
        ignore_eos: true,
        ..SamplingConfig::default()
    };
    let engine = Engine::new(&model, tok, config)?;
    // Warm-up (allocator, page faults).
    engine.generate(&prompts(tok, 1)?, 2)?;
    for b in batches {
        let g = if b >= 4 { 4 } else { 1 };
        let p = b.div_ceil(g);
        let prompts = prompts(tok, p)?;
        let cpu0 = cpu_seconds();
        let s = engine.generate(&prompts, g)?.stats;
        let per_cpu = cpu_seconds()
            .zip(cpu0)
            .map(|(b, a)| s.decode_tokens as f64 / ((b - a) / threads as f64));
        println!(
            "batch {:>3} ({p} prompts x G {g}): prefill {:>6.0} tok/s ({:.2} s), generate \
             {:>6.1} tok/s ({:.2} s decode), overall {:>6.1} sampled tok/s, per CPU-second \
             {:>6.1}",
            p * g,
            s.prefill_tokens_per_s(),
            s.prefill_seconds,
            s.decode_tokens_per_s(),
            s.decode_seconds,
            s.tokens_per_s(),
            per_cpu.unwrap_or(f64::NAN)
        );
        if raw {
            println!(
                "           raw decode loop (forward + head + argmax): {:>6.1} tok/s",
                raw_decode(&model, &prompts, g)?
            );
        }
    }
    Ok(())
}
