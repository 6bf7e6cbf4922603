//! The KV cache: incremental decode, padded batches, fork/retain, and the shared-prefix
//! training forward (values and gradients).

mod common;

use anyhow::Result;
use candle_core::{Device, Tensor};
use common::*;
use thinkjudge_model::{Finetune, Kernels, Llama, LlamaOptions, LoraConfig, Mode};

/// Hidden states of row `row`, positions `from..from + len`, as (len, H).
fn rows_of(h: &Tensor, row: usize, from: usize, len: usize) -> Result<Tensor> {
    Ok(h.get(row)?.narrow(0, from, len)?)
}

#[test]
fn cached_incremental_decode_matches_full_forward() -> Result<()> {
    let m = model(
        &tiny(),
        LlamaOptions {
            finetune: Finetune::Full,
            ..LlamaOptions::default()
        },
    )?;
    let ids = tokens(10, 1);
    for mode in [Mode::Infer, Mode::Train] {
        let full = run_alone(&m, &ids, mode)?;
        let mut cache = m.new_cache();
        let mut parts = Vec::new();
        for (a, b) in [(0, 4), (4, 7), (7, 8), (8, 9), (9, 10)] {
            parts.push(step(&m, &mut cache, &[ids[a..b].to_vec()], mode)?);
        }
        let incremental = Tensor::cat(&parts, 1)?;
        let d = max_abs_diff(&incremental, &full)?;
        assert!(d <= F32_TOL, "{mode:?}: cached decode differs by {d}");
        assert_eq!(cache.len(), 10);
        assert_eq!(cache.next_positions(), &[10]);
    }
    Ok(())
}

#[test]
fn padded_batches_match_sequences_alone_then_decode() -> Result<()> {
    let m = model(&tiny(), LlamaOptions::default())?;
    let rows = vec![tokens(9, 2), tokens(5, 3), tokens(7, 4)];
    let next = [tokens(2, 10), tokens(2, 11), tokens(2, 12)];
    for left in [true, false] {
        let (ids, mask) = batch(&rows, left)?;
        let mut cache = m.new_cache();
        let h = m.forward(&ids, &mask, &mut cache, Mode::Infer)?;
        assert!(h
            .flatten_all()?
            .to_vec1::<f32>()?
            .iter()
            .all(|v| v.is_finite()));
        // Two decode steps after the padding (a gap in the middle for right padding).
        let mut steps = Vec::new();
        for s in 0..2 {
            let col: Vec<Vec<u32>> = next.iter().map(|n| vec![n[s]]).collect();
            steps.push(step(&m, &mut cache, &col, Mode::Infer)?);
        }
        for (i, r) in rows.iter().enumerate() {
            let mut all = r.clone();
            all.extend(&next[i]);
            let alone = run_alone(&m, &all, Mode::Infer)?.squeeze(0)?;
            let start = if left { 9 - r.len() } else { 0 };
            let d = max_abs_diff(
                &rows_of(&h, i, start, r.len())?,
                &alone.narrow(0, 0, r.len())?,
            )?;
            assert!(d <= F32_TOL, "left={left} row {i}: prefill differs by {d}");
            for (s, hs) in steps.iter().enumerate() {
                let d = max_abs_diff(&hs.get(i)?.get(0)?, &alone.get(r.len() + s)?)?;
                assert!(
                    d <= F32_TOL,
                    "left={left} row {i} decode {s}: differs by {d}"
                );
            }
        }
    }
    Ok(())
}

#[test]
fn fork_retain_and_decode_match_independent_runs() -> Result<()> {
    let m = model(&tiny_tied(), LlamaOptions::default())?;
    let prompts = [tokens(6, 20), tokens(4, 21)];
    let (ids, mask) = batch(&prompts, true)?;
    let mut prompt_cache = m.new_cache();
    prompt_cache.reserve(8)?;
    m.forward(&ids, &mask, &mut prompt_cache, Mode::Infer)?;
    let owners = [0u32, 0, 1, 1, 1];
    let mut cache = prompt_cache.fork(&owners)?;
    let mut alive: Vec<usize> = (0..owners.len()).collect();
    let mut seqs: Vec<Vec<u32>> = owners
        .iter()
        .map(|&p| prompts[p as usize].clone())
        .collect();
    for s in 0..4 {
        if s == 2 {
            // Rows 1 and 3 finish: keep 0, 2, 4.
            cache.retain(&[0, 2, 4])?;
            alive = vec![0, 2, 4];
        }
        let col: Vec<Vec<u32>> = alive
            .iter()
            .map(|&r| vec![tokens(1, (100 + 10 * r + s) as u32)[0]])
            .collect();
        let h = step(&m, &mut cache, &col, Mode::Infer)?;
        for (k, &r) in alive.iter().enumerate() {
            seqs[r].push(col[k][0]);
            let alone = run_alone(&m, &seqs[r], Mode::Infer)?.squeeze(0)?;
            let d = max_abs_diff(&h.get(k)?.get(0)?, &alone.get(seqs[r].len() - 1)?)?;
            assert!(d <= F32_TOL, "step {s} row {r}: differs by {d}");
        }
    }
    // The prompt cache is untouched by decoding on its fork.
    assert_eq!(prompt_cache.rows(), 2);
    assert_eq!(prompt_cache.next_positions(), &[6, 4]);
    Ok(())
}

#[test]
fn cache_rejects_mode_and_row_mismatches() -> Result<()> {
    let m = model(&tiny(), LlamaOptions::default())?;
    let mut cache = m.new_cache();
    step(&m, &mut cache, &[tokens(3, 1), tokens(3, 2)], Mode::Infer)?;
    let msg = step(&m, &mut cache, &[vec![1], vec![2]], Mode::Reference)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("Infer mode"), "{msg}");
    let msg = step(&m, &mut cache, &[vec![1], vec![2], vec![3]], Mode::Infer)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("3 rows but the KvCache has 2"), "{msg}");
    assert!(cache.fork(&[0, 2]).is_err());
    Ok(())
}

/// One group layout: prompts (some of length 1, so the prefix forward has an all-pad row),
/// and per sample its prompt index and completion.
struct Groups {
    prompts: Vec<Vec<u32>>,
    owner: Vec<u32>,
    completions: Vec<Vec<u32>>,
}

fn groups() -> Groups {
    let prompts = vec![tokens(6, 30), tokens(4, 31), tokens(1, 32)];
    let g = 3;
    let owner: Vec<u32> = (0..prompts.len() as u32).flat_map(|p| vec![p; g]).collect();
    let completions = (0..owner.len())
        .map(|i| tokens(1 + (i * 7) % 4, 40 + i as u32))
        .collect();
    Groups {
        prompts,
        owner,
        completions,
    }
}

/// Completion log-probs `(N, Lc)` (zero-padded) and the loss `Σ c · logprob` over completion
/// tokens, computed with every sequence run in full.
fn unshared(m: &Llama, gr: &Groups) -> Result<(Vec<Vec<f32>>, Tensor)> {
    let seqs: Vec<Vec<u32>> = gr
        .owner
        .iter()
        .zip(&gr.completions)
        .map(|(&p, c)| [gr.prompts[p as usize].clone(), c.clone()].concat())
        .collect();
    let (ids, mask) = batch(&seqs, false)?;
    let t = ids.dim(1)?;
    let h = m.forward(&ids, &mask, &mut m.new_cache(), Mode::Train)?;
    let targets = Tensor::cat(
        &[ids.narrow(1, 1, t - 1)?, ids.narrow(1, 0, 1)?.zeros_like()?],
        1,
    )?;
    let lp = m.token_logprobs(&h, &targets, Mode::Train)?.logprobs;
    let mut weights = vec![0f32; seqs.len() * t];
    let mut values = Vec::new();
    let lp_host = lp.to_vec2::<f32>()?;
    for (i, c) in gr.completions.iter().enumerate() {
        let lp_start = gr.prompts[gr.owner[i] as usize].len() - 1;
        values.push(lp_host[i][lp_start..lp_start + c.len()].to_vec());
        for j in 0..c.len() {
            weights[i * t + lp_start + j] = loss_weight(i, j);
        }
    }
    let w = Tensor::from_vec(weights, (seqs.len(), t), &Device::Cpu)?;
    Ok((values, (lp * w)?.sum_all()?))
}

/// The same, with each prompt's prefix run once and forked into its samples.
fn shared(m: &Llama, gr: &Groups) -> Result<(Vec<Vec<f32>>, Tensor)> {
    let heads: Vec<Vec<u32>> = gr
        .prompts
        .iter()
        .map(|p| p[..p.len() - 1].to_vec())
        .collect();
    let (ids, mask) = batch(&heads, true)?;
    let mut cache = m.new_cache();
    m.forward(&ids, &mask, &mut cache, Mode::Train)?;
    let mut cache = cache.fork(&gr.owner)?;
    let chunks: Vec<Vec<u32>> = gr
        .owner
        .iter()
        .zip(&gr.completions)
        .map(|(&p, c)| {
            [
                vec![*gr.prompts[p as usize].last().unwrap_or(&0)],
                c.clone(),
            ]
            .concat()
        })
        .collect();
    let (ids, mask) = batch(&chunks, false)?;
    let t = ids.dim(1)?;
    let h = m.forward(&ids, &mask, &mut cache, Mode::Train)?;
    let targets = Tensor::cat(
        &[ids.narrow(1, 1, t - 1)?, ids.narrow(1, 0, 1)?.zeros_like()?],
        1,
    )?;
    let lp = m.token_logprobs(&h, &targets, Mode::Train)?.logprobs;
    let lp_host = lp.to_vec2::<f32>()?;
    let mut weights = vec![0f32; chunks.len() * t];
    let mut values = Vec::new();
    for (i, c) in gr.completions.iter().enumerate() {
        values.push(lp_host[i][..c.len()].to_vec());
        for j in 0..c.len() {
            weights[i * t + j] = loss_weight(i, j);
        }
    }
    let w = Tensor::from_vec(weights, (chunks.len(), t), &Device::Cpu)?;
    Ok((values, (lp * w)?.sum_all()?))
}

fn loss_weight(i: usize, j: usize) -> f32 {
    ((i * 5 + j * 3) as f32).sin() + 0.2
}

#[test]
fn shared_prefix_training_forward_matches_unshared() -> Result<()> {
    let gr = groups();
    let lora = Finetune::Lora {
        config: LoraConfig {
            rank: 4,
            ..LoraConfig::default()
        },
        seed: 5,
    };
    for (finetune, kernels) in [
        (Finetune::Full, Kernels::Fused),
        (Finetune::Full, Kernels::Composed),
        (lora, Kernels::Fused),
    ] {
        let m = model(
            &tiny(),
            LlamaOptions {
                finetune: finetune.clone(),
                kernels,
                ..LlamaOptions::default()
            },
        )?;
        let vars = m.trainable_vars();
        if matches!(finetune, Finetune::Lora { .. }) {
            randomize(&vars, 0.1, 2)?;
        }
        let (v_full, loss_full) = unshared(&m, &gr)?;
        let (v_shared, loss_shared) = shared(&m, &gr)?;
        for (a, b) in v_full.iter().zip(&v_shared) {
            for (x, y) in a.iter().zip(b) {
                assert!((x - y).abs() as f64 <= F32_TOL, "log-prob {x} vs {y}");
            }
        }
        let g_full = loss_full.backward()?;
        let g_shared = loss_shared.backward()?;
        for (name, var) in &vars {
            let (a, b) = (g_full.get(var).unwrap(), g_shared.get(var).unwrap());
            let scale = max_abs(a)?.max(1.0);
            let d = max_abs_diff(a, b)?;
            assert!(
                d <= F32_TOL * scale,
                "{finetune:?} {kernels:?} {name}: grads differ by {d}"
            );
        }
    }
    Ok(())
}

/// Decodes `steps` tokens on a forked cache, dropping (or repeating) rows on the way with
/// `retain(keep)` (each `keep` indexes the rows alive at that point), and checks every step
/// against the row's sequence run alone.
fn decode_with_retains(m: &Llama, retains: &[(usize, Vec<u32>)], steps: usize) -> Result<()> {
    let prompts = [tokens(6, 20), tokens(4, 21), tokens(5, 22)];
    let (ids, mask) = batch(&prompts, true)?;
    let mut prompt_cache = m.new_cache();
    prompt_cache.reserve(3)?; // decoding past it makes the retained buffers grow
    m.forward(&ids, &mask, &mut prompt_cache, Mode::Infer)?;
    let owners = [0u32, 1, 1, 2, 0, 2];
    let mut cache = prompt_cache.fork(&owners)?;
    // The token sequence of each current row.
    let mut seqs: Vec<Vec<u32>> = owners
        .iter()
        .map(|&p| prompts[p as usize].clone())
        .collect();
    for s in 0..steps {
        if let Some((_, keep)) = retains.iter().find(|(at, _)| *at == s) {
            cache.retain(keep)?;
            seqs = keep.iter().map(|&k| seqs[k as usize].clone()).collect();
            assert_eq!(cache.rows(), seqs.len());
        }
        let col: Vec<Vec<u32>> = (0..seqs.len())
            .map(|r| vec![tokens(1, (100 + 10 * r + s) as u32)[0]])
            .collect();
        let h = step(m, &mut cache, &col, Mode::Infer)?;
        for (r, seq) in seqs.iter_mut().enumerate() {
            seq.push(col[r][0]);
            let alone = run_alone(m, seq, Mode::Infer)?.squeeze(0)?;
            let d = max_abs_diff(&h.get(r)?.get(0)?, &alone.get(seq.len() - 1)?)?;
            assert!(d <= F32_TOL, "step {s} row {r}: differs by {d}");
        }
    }
    assert_eq!(prompt_cache.rows(), 3);
    Ok(())
}

#[test]
fn retain_every_step_in_place_and_reordered_match_independent_runs() -> Result<()> {
    let m = model(&tiny_tied(), LlamaOptions::default())?;
    // Increasing rows: compacted in place, several times, then past the reserved capacity.
    decode_with_retains(
        &m,
        &[
            (1, vec![0, 2, 3, 4, 5]),
            (2, vec![1, 2, 3, 4]),
            (3, vec![0, 3]),
            (4, vec![0, 1]),
        ],
        7,
    )?;
    // Reordered and repeated rows: gathered into new buffers.
    decode_with_retains(&m, &[(1, vec![5, 0, 3]), (3, vec![2, 2, 0])], 6)?;
    // Every row (a no-op) and no rows at all.
    let mut cache = m.new_cache();
    step(&m, &mut cache, &[tokens(3, 1), tokens(3, 2)], Mode::Infer)?;
    cache.retain(&[0, 1])?;
    assert_eq!(cache.rows(), 2);
    cache.retain(&[])?;
    assert_eq!(cache.rows(), 0);
    assert!(cache.retain(&[0]).is_err(), "an empty cache has no rows");
    Ok(())
}
