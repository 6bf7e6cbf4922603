//! Teacher-forced scoring with the shared prefix: it recomputes the sampler's recorded
//! log-probs (forced tokens included) in `Mode::Train` and `Mode::Infer`, equals an unshared
//! full forward, and is differentiable in `Mode::Train`.

mod common;

use anyhow::Result;
use candle_core::{Tensor, D};
use common::*;
use thinkjudge_model::{Llama, Mode};
use thinkjudge_rollout::{score_completions, Engine, RolloutBatch, SamplingConfig};

/// f32 on CPU: the decode step and the teacher-forced forward differ only in op order.
const TOL: f32 = 1e-5;

fn rollouts(m: &Llama, cfg: SamplingConfig, g: usize) -> Result<(Vec<Vec<u32>>, RolloutBatch)> {
    let tok = tokenizer();
    let prompts = prompts(&tok)?;
    let batch = Engine::new(m, &tok, cfg)?.generate(&prompts, g)?;
    Ok((prompts, batch))
}

fn assert_recomputed(m: &Llama, cfg: SamplingConfig, mode: Mode) -> Result<()> {
    let (g, t) = (3, cfg.temperature);
    let (prompts, batch) = rollouts(m, cfg, g)?;
    let s = score_completions(m, &prompts, &batch.completion_ids(), g, t, mode)?;
    let lp = s.logprobs.to_vec2::<f32>()?;
    let mask = s.mask.to_vec2::<f32>()?;
    let lc = batch
        .rollouts
        .iter()
        .map(|r| r.completion_ids.len())
        .max()
        .unwrap_or(0);
    assert_eq!(s.logprobs.dims(), [prompts.len() * g, lc]);
    for (i, r) in batch.rollouts.iter().enumerate() {
        let n = r.completion_ids.len();
        assert!(mask[i][..n].iter().all(|&v| v == 1.0));
        assert!(mask[i][n..].iter().all(|&v| v == 0.0));
        assert!(lp[i][n..].iter().all(|&v| v == 0.0));
        for (j, (&rec, &got)) in r.logprobs.iter().zip(&lp[i]).enumerate() {
            assert!(
                (rec - got).abs() <= TOL,
                "{mode:?} T={t} rollout {i} token {j} (forced {}): recorded {rec}, recomputed {got}",
                r.forced[j]
            );
        }
    }
    Ok(())
}

#[test]
fn recorded_logprobs_equal_teacher_forced_scores() -> Result<()> {
    let m = model(true)?;
    let base = SamplingConfig {
        max_new_tokens: 14,
        seed: 9,
        ..SamplingConfig::default()
    };
    let mut forced = SamplingConfig {
        temperature: 0.7,
        top_p: 0.9,
        ..base.clone()
    };
    forced.thinking.max_thought_tokens = Some(5);
    // Greedy records log-probs under its temperature too.
    let greedy = SamplingConfig {
        temperature: 1.3,
        max_new_tokens: 14,
        ..SamplingConfig::greedy()
    };
    for cfg in [base, forced, greedy] {
        for mode in [Mode::Train, Mode::Infer] {
            assert_recomputed(&m, cfg.clone(), mode)?;
        }
    }
    Ok(())
}

#[test]
fn train_mode_scores_are_differentiable() -> Result<()> {
    let m = model(true)?;
    let (prompts, batch) = rollouts(
        &m,
        SamplingConfig {
            max_new_tokens: 6,
            ..SamplingConfig::default()
        },
        2,
    )?;
    let s = score_completions(&m, &prompts, &batch.completion_ids(), 2, 1.0, Mode::Train)?;
    let grads = s.logprobs.sum_all()?.backward()?;
    let vars = m.trainable_vars();
    assert!(!vars.is_empty());
    for (name, v) in &vars {
        let g = grads
            .get(v)
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        let norm = g.sqr()?.sum_all()?.to_scalar::<f32>()?;
        assert!(norm.is_finite() && norm > 0.0, "{name}: |grad|² = {norm}");
    }
    // Infer-mode scores carry no graph.
    let s = score_completions(&m, &prompts, &batch.completion_ids(), 2, 1.0, Mode::Infer)?;
    assert!(!s.logprobs.track_op());
    Ok(())
}

/// Log-probs of `completion` after `prompt` from one uncached full forward.
fn unshared(m: &Llama, prompt: &[u32], completion: &[u32], t: f64) -> Result<Vec<f32>> {
    let seq = [prompt, completion].concat();
    let logits = (full_logits(m, &seq)? / t)?;
    let lsm = log_softmax_rows(&logits)?;
    Ok((0..completion.len())
        .map(|j| lsm[prompt.len() - 1 + j][completion[j] as usize])
        .collect())
}

fn log_softmax_rows(x: &Tensor) -> Result<Vec<Vec<f32>>> {
    let max = x.max_keepdim(D::Minus1)?;
    let shifted = x.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    Ok(shifted.broadcast_sub(&lse)?.to_vec2::<f32>()?)
}

#[test]
fn shared_prefix_equals_unshared_forward_with_one_token_prompts_and_empty_completions() -> Result<()>
{
    let m = model(false)?;
    // One-token prompts: no prefix forward at all; then a mix (an all-pad prefix row).
    for prompts in [
        vec![vec![5u32], vec![7]],
        vec![vec![5u32], vec![7, 8, 9, 10]],
    ] {
        let completions = vec![vec![1u32, 2, 3], vec![], vec![4], vec![6, 6, 6, 6, 6]];
        let t = 0.8;
        let s = score_completions(&m, &prompts, &completions, 2, t, Mode::Infer)?;
        assert_eq!(s.logprobs.dims(), [4, 5]);
        let got = s.logprobs.to_vec2::<f32>()?;
        for (i, c) in completions.iter().enumerate() {
            let want = unshared(&m, &prompts[i / 2], c, t)?;
            for (j, w) in want.iter().enumerate() {
                assert!(
                    (got[i][j] - w).abs() <= TOL,
                    "row {i} token {j}: {} vs {w}",
                    got[i][j]
                );
            }
        }
        let ent = s.entropy.to_vec2::<f32>()?;
        assert_eq!(ent[1], vec![0.0; 5]);
        assert!(ent[3].iter().all(|&e| e > 0.0));
    }
    // All completions empty: (N, 0) tensors.
    let s = score_completions(&m, &[vec![5]], &[vec![], vec![]], 2, 1.0, Mode::Infer)?;
    assert_eq!(s.mask.dims(), [2, 0]);
    Ok(())
}

#[test]
fn scoring_rejects_bad_shapes() -> Result<()> {
    let m = model(false)?;
    let e = score_completions(&m, &[vec![1]], &[vec![2]], 2, 1.0, Mode::Infer).unwrap_err();
    assert!(
        e.to_string().contains("exactly group_size x prompts"),
        "{e}"
    );
    let e = score_completions(&m, &[vec![]], &[vec![2]], 1, 1.0, Mode::Infer).unwrap_err();
    assert!(e.to_string().contains("prompt 0 is empty"), "{e}");
    let big = m.config().vocab_size as u32;
    let e = score_completions(&m, &[vec![1]], &[vec![big]], 1, 1.0, Mode::Infer).unwrap_err();
    assert!(e.to_string().contains("completion 0 has token id"), "{e}");
    Ok(())
}
