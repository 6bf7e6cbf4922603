//! Thought budgets: the close is forced at exactly N thought tokens (marked forced), budget 0
//! closes before the first token, the open tag is forced when the thought never opened, and a
//! minimum of M thought tokens keeps the thought (and the sample) from ending early.

mod common;

use anyhow::Result;
use common::*;
use thinkjudge_model::JudgeTokenizer;
use thinkjudge_rollout::{Engine, FinishReason, Rollout, SamplingConfig, ThoughtEnd};

fn config(max_thought: Option<usize>, min_thought: usize, opened: bool) -> SamplingConfig {
    let mut cfg = SamplingConfig {
        max_new_tokens: 20,
        ignore_eos: true,
        seed: 4,
        ..SamplingConfig::default()
    };
    cfg.thinking.max_thought_tokens = max_thought;
    cfg.thinking.min_thought_tokens = min_thought;
    cfg.thinking.prompt_opens_thought = opened;
    cfg
}

fn run(cfg: SamplingConfig, g: usize) -> Result<Vec<Rollout>> {
    let (tok, m) = (tokenizer(), model(false)?);
    Ok(Engine::new(&m, &tok, cfg)?
        .generate(&prompts(&tok)?, g)?
        .rollouts)
}

/// Whether the decoded first `j` tokens contain `tag`.
fn closed_within(tok: &JudgeTokenizer, r: &Rollout, j: usize, tag: &str) -> Result<bool> {
    Ok(tok.decode(&r.completion_ids[..j], true)?.contains(tag))
}

#[test]
fn budget_forces_the_close_at_exactly_n_tokens() -> Result<()> {
    let tok = tokenizer();
    let n = 6;
    for opened in [true, false] {
        let forced_text = if opened {
            "\n</think>\n"
        } else {
            "<think>\n</think>\n"
        };
        let forced_ids = tok.encode(forced_text)?;
        let k = forced_ids.len();
        for r in run(config(Some(n), 0, opened), 3)? {
            if closed_within(&tok, &r, n, "</think>")? {
                continue; // closed on its own (not expected from a random model)
            }
            assert_eq!(r.thought, ThoughtEnd::Forced);
            assert!(r.budget_forced());
            assert_eq!(r.thought_tokens, n);
            assert_eq!(
                r.completion_ids[n..n + k],
                forced_ids[..],
                "opened={opened}"
            );
            let want: Vec<bool> = (0..r.forced.len())
                .map(|j| (n..n + k).contains(&j))
                .collect();
            assert_eq!(r.forced, want);
            // Decoding continues after the forced close, up to max_new_tokens.
            assert_eq!(r.completion_ids.len(), 20);
            assert_eq!(r.sampled_tokens(), 20 - k);
            assert!(r.logprobs.iter().all(|l| l.is_finite() && *l <= 0.0));
        }
    }
    Ok(())
}

#[test]
fn budget_zero_means_no_thinking() -> Result<()> {
    let tok = tokenizer();
    let forced_ids = tok.encode("\n</think>\n")?;
    for r in run(config(Some(0), 0, true), 2)? {
        assert_eq!(r.completion_ids[..forced_ids.len()], forced_ids[..]);
        assert_eq!(r.thought, ThoughtEnd::Forced);
        assert_eq!(r.thought_tokens, 0);
        assert!(r.text.starts_with("\n</think>\n"));
        assert!(r.forced[..forced_ids.len()].iter().all(|f| *f));
        assert!(r.forced[forced_ids.len()..].iter().all(|f| !*f));
    }
    Ok(())
}

#[test]
fn a_natural_close_is_counted_and_not_forced() -> Result<()> {
    // Make the greedy model's own early text the closing tag.
    let (tok, m) = (tokenizer(), model(false)?);
    let prompts = prompts(&tok)?;
    let greedy = |cfg: SamplingConfig| -> Result<Rollout> {
        Ok(Engine::new(&m, &tok, cfg)?
            .generate(&prompts[..1], 1)?
            .rollouts[0]
            .clone())
    };
    let mut cfg = SamplingConfig {
        max_new_tokens: 30,
        ignore_eos: true,
        ..SamplingConfig::greedy()
    };
    let free = greedy(cfg.clone())?;
    let offsets = token_offsets(&tok, &free.completion_ids)?;
    let tag = free.text[offsets[2]..offsets[4]].to_string();
    let first = (1..=free.completion_ids.len())
        .find(|&j| closed_within(&tok, &free, j, &tag).unwrap_or(false))
        .expect("tag in text");
    cfg.thinking.close_tag = tag.clone();
    cfg.thinking.forced_close = tag.clone();
    cfg.thinking.max_thought_tokens = Some(25);
    let closed = greedy(cfg.clone())?;
    assert_eq!(closed.completion_ids, free.completion_ids);
    assert_eq!(closed.thought, ThoughtEnd::Closed);
    assert_eq!(closed.thought_tokens, first);
    assert!(closed.forced.iter().all(|f| !f));

    // With a minimum of M thought tokens the tag can't complete before M tokens.
    let m_min = first + 4;
    cfg.thinking.min_thought_tokens = m_min;
    let held = greedy(cfg.clone())?;
    assert_ne!(held.completion_ids, free.completion_ids);
    for j in 1..m_min {
        assert!(
            !closed_within(&tok, &held, j, &tag)?,
            "tag {tag:?} closed after {j} < {m_min} tokens: {:?}",
            held.text
        );
    }
    assert!(held.thought_tokens >= m_min);
    if held.thought == ThoughtEnd::Forced {
        assert_eq!(held.thought_tokens, 25);
    }
    Ok(())
}

#[test]
fn minimum_thought_masks_eos() -> Result<()> {
    let (tok, m) = (tokenizer(), model(false)?);
    let prompts = prompts(&tok)?;
    let mut cfg = SamplingConfig {
        max_new_tokens: 12,
        ..SamplingConfig::greedy()
    };
    cfg.ignore_eos = true;
    let free = Engine::new(&m, &tok, cfg.clone())?
        .generate(&prompts[..1], 1)?
        .rollouts[0]
        .clone();
    // Declare the greedy second token an eos id: it stops at once without a minimum ...
    cfg.ignore_eos = false;
    cfg.extra_eos_ids = vec![free.completion_ids[1]];
    let stops = Engine::new(&m, &tok, cfg.clone())?
        .generate(&prompts[..1], 1)?
        .rollouts[0]
        .clone();
    assert_eq!(stops.finish, FinishReason::Eos);
    assert!(stops.completion_ids.len() <= 2);
    // ... and can't before 6 thought tokens with one.
    cfg.thinking.min_thought_tokens = 6;
    let held = Engine::new(&m, &tok, cfg)?
        .generate(&prompts[..1], 1)?
        .rollouts[0]
        .clone();
    let eos = [free.completion_ids[1], eos_id()];
    assert!(held.completion_ids.len() >= 7 || held.finish == FinishReason::Length);
    assert!(held.completion_ids[..6].iter().all(|t| !eos.contains(t)));
    Ok(())
}
