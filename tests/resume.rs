//! Checkpoints end to end: a run stopped after step k and resumed equals the uninterrupted
//! run bit for bit (weights, optimizer moments, metrics), for full fine-tuning with a KL
//! reference and for LoRA with adapter dropout; a corrupt newest checkpoint is refused for
//! the previous one.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use thinkjudge::config::FinetuneKind;
use thinkjudge::{Resume, StartOptions, TrainConfig, TrainError, Trainer};

/// A short run of the test task: 6 steps, checkpoints every 2 (keep all).
fn short_config(dir: &Path, finetune: FinetuneKind) -> Result<TrainConfig> {
    let mut cfg = common::task_config(dir, 9)?;
    cfg.model.finetune = finetune;
    cfg.model.lora.rank = 4;
    cfg.model.lora.dropout = 0.1;
    cfg.loss.kl_coef = 0.05; // exercise the reference forward
    cfg.trainer.steps = 6;
    cfg.trainer.pairs_per_step = 6;
    cfg.trainer.micro_batch_prompts = 5; // uneven micro-batches
    cfg.trainer.mini_batches = 2;
    cfg.trainer.ppo_epochs = 2;
    cfg.trainer.checkpoint_every = 2;
    cfg.trainer.keep_last = 10;
    cfg.trainer.eval_every = 3;
    cfg.trainer.eval_pairs = Some(4);
    cfg.trainer.log_examples_every = 1;
    cfg.validate()?;
    Ok(cfg)
}

fn options(resume: Resume, stop_after: Option<u64>) -> StartOptions {
    StartOptions {
        resume,
        quiet: true,
        stop_after,
        ..StartOptions::default()
    }
}

/// Every trainable weight and optimizer moment, as raw f32 bits.
fn snapshot(t: &Trainer) -> Result<BTreeMap<String, Vec<u32>>> {
    let mut out = BTreeMap::new();
    for (name, var) in t.model().trainable_vars() {
        let bits = var
            .as_tensor()
            .flatten_all()?
            .to_vec1::<f32>()?
            .iter()
            .map(|x| x.to_bits())
            .collect();
        out.insert(name.clone(), bits);
        if let Some((m, v)) = t.optimizer().moments(&name) {
            for (k, x) in [("m", m), ("v", v)] {
                let bits = x
                    .flatten_all()?
                    .to_vec1::<f32>()?
                    .iter()
                    .map(|x| x.to_bits())
                    .collect();
                out.insert(format!("{name}.{k}"), bits);
            }
        }
    }
    Ok(out)
}

fn kill_and_resume_equals_uninterrupted(finetune: FinetuneKind) -> Result<()> {
    // Uninterrupted.
    let a = tempfile::tempdir()?;
    let mut full = Trainer::open(
        short_config(a.path(), finetune)?,
        options(Resume::Never, None),
    )?;
    let summary = full.run()?;
    assert!(summary.completed);
    let want = snapshot(&full)?;
    assert_eq!(
        full.optimizer().steps_done(),
        6 * 4,
        "2 epochs x 2 mini-batches per step"
    );

    // Stopped after step 5 (the newest checkpoint is step 4; step 5's records are redone).
    let b = tempfile::tempdir()?;
    let cfg = short_config(b.path(), finetune)?;
    let mut first = Trainer::open(cfg.clone(), options(Resume::Never, Some(5)))?;
    assert!(!first.run()?.completed);
    drop(first);
    let mut resumed = Trainer::open(cfg, options(Resume::Required, None))?;
    assert_eq!(resumed.state().step, 4);
    resumed.run()?;
    let got = snapshot(&resumed)?;
    assert_eq!(got.len(), want.len());
    for (name, bits) in &want {
        assert!(got.get(name) == Some(bits), "{name} differs after resume");
    }
    let (ma, mb) = (
        common::deterministic_metrics(&full.paths().metrics)?,
        common::deterministic_metrics(&resumed.paths().metrics)?,
    );
    assert_eq!(ma.len(), mb.len());
    for (x, y) in ma.iter().zip(&mb) {
        assert_eq!(x, y);
    }
    assert!(
        b.path().join("run/metrics.discarded.jsonl").exists(),
        "step 5's first try is kept aside"
    );
    Ok(())
}

#[test]
fn full_finetuning_resumes_bit_for_bit() -> Result<()> {
    kill_and_resume_equals_uninterrupted(FinetuneKind::Full)
}

#[test]
fn lora_with_dropout_resumes_bit_for_bit() -> Result<()> {
    kill_and_resume_equals_uninterrupted(FinetuneKind::Lora)
}

#[test]
fn a_corrupt_newest_checkpoint_is_refused_for_the_previous_one() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cfg = short_config(dir.path(), FinetuneKind::Lora)?;
    cfg.trainer.steps = 4;
    cfg.trainer.ppo_epochs = 1;
    cfg.trainer.mini_batches = 1;
    Trainer::open(cfg.clone(), options(Resume::Never, None))?.run()?;
    let ckpts = dir.path().join("run/checkpoints");
    // Truncate a file of the newest checkpoint; leave a partial save behind too.
    let weights = ckpts.join("step-000004/adapter/adapter_model.safetensors");
    let len = std::fs::metadata(&weights)?.len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&weights)?
        .set_len(len / 2)?;
    std::fs::create_dir(ckpts.join("step-000006.tmp-4242"))?;

    // A fresh start is refused: the run exists.
    let e = Trainer::open(cfg.clone(), options(Resume::Never, None)).unwrap_err();
    assert!(matches!(e, TrainError::RunExists { step: 4, .. }), "{e}");
    let resumed = Trainer::open(cfg.clone(), options(Resume::Required, None))?;
    assert_eq!(
        resumed.state().step,
        2,
        "fell back to the previous checkpoint"
    );
    drop(resumed);
    assert!(
        !ckpts.join("step-000006.tmp-4242").exists(),
        "partial saves are cleaned up"
    );

    // Nothing valid left: a clear error listing why each was refused.
    std::fs::remove_file(ckpts.join("step-000002/manifest.json"))?;
    let e = Trainer::open(cfg, options(Resume::Required, None)).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, TrainError::NoCheckpoint { .. }), "{msg}");
    assert!(
        msg.contains("step-000004") && msg.contains("adapter_model.safetensors"),
        "{msg}"
    );
    assert!(
        msg.contains("step-000002") && msg.contains("manifest.json"),
        "{msg}"
    );
    Ok(())
}
