//! The engine on a tiny random Llama: greedy equals the uncached argmax, seeded
//! reproducibility independent of batch composition, stop conditions, progress, and input
//! validation.

mod common;

use anyhow::Result;
use candle_core::D;
use common::*;
use thinkjudge_model::Mode;
use thinkjudge_rollout::{
    Engine, FinishReason, MemoryPolicy, Progress, Rollout, RolloutError, RolloutRequest,
    SamplingConfig,
};

/// Recorded log-probs of the same token may differ in the last bits between batch
/// compositions (matmul blocking depends on the number of rows).
const LOGPROB_TOL: f32 = 1e-5;

fn sampling(max_new_tokens: usize) -> SamplingConfig {
    SamplingConfig {
        max_new_tokens,
        ignore_eos: true,
        ..SamplingConfig::default()
    }
}

fn same_rollouts(a: &[Rollout], b: &[Rollout]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert_eq!(
            (x.prompt_index, x.sample_index),
            (y.prompt_index, y.sample_index)
        );
        assert_eq!(
            x.completion_ids, y.completion_ids,
            "sample {}",
            x.sample_index
        );
        assert_eq!(x.finish, y.finish);
        for (p, q) in x.logprobs.iter().zip(&y.logprobs) {
            assert!((p - q).abs() <= LOGPROB_TOL, "log-prob {p} vs {q}");
        }
    }
}

#[test]
fn greedy_matches_argmax_of_the_uncached_forward() -> Result<()> {
    let (tok, m) = (tokenizer(), model(false)?);
    let prompts = prompts(&tok)?;
    let engine = Engine::new(&m, &tok, SamplingConfig::greedy())?;
    let cfg = SamplingConfig {
        max_new_tokens: 12,
        ignore_eos: true,
        ..SamplingConfig::greedy()
    };
    let engine2 = Engine::new(&m, &tok, cfg)?;
    assert_eq!(engine.mode(), Mode::Infer);
    let batch = engine2.generate(&prompts, 2)?;
    assert_eq!(batch.rollouts.len(), 6);
    for r in &batch.rollouts {
        assert_eq!(r.completion_ids.len(), 12);
        assert_eq!(r.finish, FinishReason::Length);
        let p = &prompts[r.prompt_index];
        let seq = [p.clone(), r.completion_ids.clone()].concat();
        let argmax = full_logits(&m, &seq)?.argmax(D::Minus1)?.to_vec1::<u32>()?;
        assert_eq!(
            r.completion_ids,
            argmax[p.len() - 1..seq.len() - 1],
            "prompt {}",
            r.prompt_index
        );
        assert_eq!(r.text, tok.decode(&r.completion_ids, true)?);
        assert!(r.forced.iter().all(|f| !f));
    }
    // Greedy samples of one prompt are identical.
    for g in batch.groups() {
        assert_eq!(g[0].completion_ids, g[1].completion_ids);
    }
    Ok(())
}

#[test]
fn same_seed_same_samples_different_seed_different() -> Result<()> {
    let (tok, m) = (tokenizer(), model(false)?);
    let prompts = prompts(&tok)?;
    let run = |seed| -> Result<Vec<Rollout>> {
        let cfg = SamplingConfig {
            seed,
            ..sampling(16)
        };
        Ok(Engine::new(&m, &tok, cfg)?.generate(&prompts, 3)?.rollouts)
    };
    let a = run(5)?;
    same_rollouts(&a, &run(5)?);
    let c = run(6)?;
    assert!(a
        .iter()
        .zip(&c)
        .any(|(x, y)| x.completion_ids != y.completion_ids));
    // The G samples of a prompt differ from each other.
    assert_ne!(a[0].completion_ids, a[1].completion_ids);
    Ok(())
}

#[test]
fn samples_do_not_depend_on_batch_composition() -> Result<()> {
    let (tok, m) = (tokenizer(), model(false)?);
    let prompts = prompts(&tok)?;
    // Finishing at random times (eos on) exercises retain at different points.
    let base = SamplingConfig {
        max_new_tokens: 24,
        seed: 3,
        extra_eos_ids: vec![tok.encode("e")?[0], tok.encode("a")?[0]],
        ..SamplingConfig::default()
    };
    let run = |cfg: SamplingConfig, prompts: &[Vec<u32>], keys: &[u64]| -> Result<Vec<Rollout>> {
        let req = RolloutRequest {
            prompts,
            group_size: 4,
            prompt_keys: Some(keys),
        };
        Ok(Engine::new(&m, &tok, cfg)?
            .generate_with(&req, &mut |_| {})?
            .rollouts)
    };
    let keys = [10, 11, 12];
    let reference = run(base.clone(), &prompts, &keys)?;
    assert!(reference.iter().any(|r| r.finish == FinishReason::Eos));
    assert!(reference.iter().any(|r| r.finish == FinishReason::Length));
    for retain_fraction in [0.0, 1.0] {
        let cfg = SamplingConfig {
            retain_fraction,
            ..base.clone()
        };
        same_rollouts(&reference, &run(cfg, &prompts, &keys)?);
    }
    // Split into one chunk per prompt by the memory guard.
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let one = thinkjudge_rollout::estimate_memory(m.config(), m.options(), 1, longest, 4, 24);
    let split = SamplingConfig {
        max_memory_bytes: Some(one.total_bytes() + 1),
        memory_policy: MemoryPolicy::Split,
        ..base.clone()
    };
    let req = RolloutRequest {
        prompts: &prompts,
        group_size: 4,
        prompt_keys: Some(&keys),
    };
    let batch = Engine::new(&m, &tok, split)?.generate_with(&req, &mut |_| {})?;
    assert_eq!(batch.stats.chunks, 3);
    same_rollouts(&reference, &batch.rollouts);
    // The last prompt alone, with its key.
    let alone = run(base, &prompts[2..], &keys[2..])?;
    let mut expected = reference[8..].to_vec();
    for r in &mut expected {
        r.prompt_index = 0;
    }
    same_rollouts(&expected, &alone);
    Ok(())
}

#[test]
fn stop_strings_straddling_tokens_end_the_sample() -> Result<()> {
    let (tok, m) = (tokenizer(), model(false)?);
    let prompts = prompts(&tok)?;
    let greedy = |stop_strings: Vec<String>, extra_eos_ids: Vec<u32>| -> Result<Rollout> {
        let cfg = SamplingConfig {
            max_new_tokens: 40,
            stop_strings,
            extra_eos_ids,
            ignore_eos: false,
            ..SamplingConfig::greedy()
        };
        Ok(Engine::new(&m, &tok, cfg)?
            .generate(&prompts[..1], 1)?
            .rollouts[0]
            .clone())
    };
    let free = greedy(vec![], vec![])?;
    assert_eq!(free.finish, FinishReason::Length);
    let text = &free.text;
    let offsets = token_offsets(&tok, &free.completion_ids)?;
    // A 3-byte string that starts mid-token or spans a boundary, at its first occurrence.
    let (start, stop) = (1..text.len().saturating_sub(3))
        .filter(|&a| text.is_char_boundary(a) && text.is_char_boundary(a + 3))
        .map(|a| (a, &text[a..a + 3]))
        .find(|&(a, s)| text.find(s) == Some(a) && offsets.iter().any(|&o| o > a && o < a + 3))
        .expect("a straddling substring");
    let end = offsets
        .iter()
        .position(|&o| o >= start + 3)
        .expect("end token");
    let stopped = greedy(vec![stop.to_string()], vec![])?;
    assert_eq!(stopped.finish, FinishReason::StopString, "stop {stop:?}");
    assert_eq!(stopped.completion_ids, free.completion_ids[..end]);
    assert!(stopped.text.contains(stop));

    // An extra eos id stops at its first occurrence and is kept.
    let j = (1..free.completion_ids.len())
        .find(|&j| !free.completion_ids[..j].contains(&free.completion_ids[j]))
        .expect("a fresh token");
    let eos = free.completion_ids[j];
    let stopped = greedy(vec![], vec![eos])?;
    assert_eq!(stopped.finish, FinishReason::Eos);
    assert_eq!(stopped.completion_ids, free.completion_ids[..=j]);
    Ok(())
}

#[test]
fn forced_tokens_can_complete_a_straddling_stop_string() -> Result<()> {
    // Budget 0 forces "</think>" = "</" "think" ">" first; "k>" spans the last two tokens.
    let (tok, m) = (tokenizer(), model(false)?);
    let mut cfg = SamplingConfig {
        stop_strings: vec!["k>".into()],
        ..sampling(10)
    };
    cfg.thinking.max_thought_tokens = Some(0);
    cfg.thinking.prompt_opens_thought = true;
    cfg.thinking.forced_close = "</think>".into();
    let r = &Engine::new(&m, &tok, cfg)?
        .generate(&prompts(&tok)?, 1)?
        .rollouts[0];
    assert_eq!(r.completion_ids, tok.encode("</think>")?);
    assert_eq!(r.completion_ids.len(), 3);
    assert_eq!(r.finish, FinishReason::StopString);
    assert_eq!(r.forced, vec![true; 3]);
    Ok(())
}

#[test]
fn eos_and_length_finish_reasons() -> Result<()> {
    let (tok, m) = (tokenizer(), model(false)?);
    let prompts = prompts(&tok)?;
    let cfg = SamplingConfig {
        max_new_tokens: 5,
        ..SamplingConfig::default()
    };
    let batch = Engine::new(&m, &tok, cfg)?.generate(&prompts, 4)?;
    for r in &batch.rollouts {
        match r.finish {
            FinishReason::Length => assert_eq!(r.completion_ids.len(), 5),
            FinishReason::Eos => assert_eq!(r.completion_ids.last(), Some(&eos_id())),
            FinishReason::StopString => panic!("no stop strings configured"),
        }
        assert!(!r.completion_ids[..r.completion_ids.len() - 1].contains(&eos_id()));
        assert_eq!(r.logprobs.len(), r.completion_ids.len());
    }
    assert_eq!(
        batch.stats.decode_tokens,
        batch
            .rollouts
            .iter()
            .map(|r| r.completion_ids.len())
            .sum::<usize>()
    );
    assert_eq!(
        batch.stats.prefill_tokens,
        prompts.iter().map(Vec::len).sum::<usize>()
    );
    Ok(())
}

#[test]
fn progress_hook_sees_every_step() -> Result<()> {
    let (tok, m) = (tokenizer(), model(false)?);
    let engine = Engine::new(&m, &tok, sampling(7))?;
    let prompts = prompts(&tok)?;
    let mut seen: Vec<Progress> = Vec::new();
    let batch = engine.generate_with(&RolloutRequest::new(&prompts, 2), &mut |p| seen.push(*p))?;
    assert_eq!(seen.len(), 7);
    assert_eq!(seen[0].tokens_generated, 6);
    assert!(seen
        .windows(2)
        .all(|w| w[0].tokens_generated < w[1].tokens_generated));
    let last = seen.last().expect("progress");
    assert_eq!(
        (last.rows_alive, last.rows_finished, last.rows_total),
        (0, 6, 6)
    );
    assert_eq!(last.tokens_generated, batch.stats.decode_tokens);
    assert_eq!(batch.stats.decode_steps, 6);
    Ok(())
}

#[test]
fn bad_requests_are_errors() -> Result<()> {
    let (tok, m) = (tokenizer(), model(false)?);
    let engine = Engine::new(&m, &tok, sampling(4))?;
    let msg = |e: RolloutError| e.to_string();
    assert!(msg(engine.generate(&[vec![]], 2).unwrap_err()).contains("prompt 0 is empty"));
    assert!(msg(engine.generate(&[vec![1]], 0).unwrap_err()).contains("group_size"));
    let vocab = m.config().vocab_size as u32;
    assert!(
        msg(engine.generate(&[vec![1], vec![vocab]], 1).unwrap_err())
            .contains("prompt 1 has token id")
    );
    assert!(engine.generate(&[], 3)?.rollouts.is_empty());
    let e = Engine::new(&m, &tok, sampling(4))?.with_mode(Mode::Train);
    assert!(msg(e.unwrap_err()).contains("Mode::Train"));
    let bad = SamplingConfig {
        temperature: -1.0,
        ..SamplingConfig::default()
    };
    assert!(msg(Engine::new(&m, &tok, bad).unwrap_err()).contains("temperature"));
    Ok(())
}

#[test]
fn memory_guard_refuses_oversize_requests() -> Result<()> {
    let (tok, m) = (tokenizer(), model(false)?);
    let prompts = prompts(&tok)?;
    let cfg = SamplingConfig {
        max_memory_bytes: Some(64 << 10),
        memory_policy: MemoryPolicy::Refuse,
        ..sampling(256)
    };
    let e = Engine::new(&m, &tok, cfg.clone())?
        .generate(&prompts, 8)
        .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, RolloutError::MemoryBudget { .. }), "{msg}");
    assert!(msg.contains("3 prompts x 8 samples"), "{msg}");
    assert!(msg.contains("max_memory_bytes = 0.1 MiB"), "{msg}");
    assert!(msg.contains("KV cache"), "{msg}");
    // Splitting can't help when one prompt alone is too big.
    let split = SamplingConfig {
        memory_policy: MemoryPolicy::Split,
        ..cfg
    };
    let msg = Engine::new(&m, &tok, split)?
        .generate(&prompts, 8)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("prompt 0"), "{msg}");
    Ok(())
}
