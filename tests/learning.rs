//! End to end: a tiny random Llama learns the even-number judge task (see `common`), and
//! held-out accuracy in both answer orders rises from near 0 to at least 0.8: with sampled
//! GRPO, with the verdict-only step of the expected-verdict gradient (no thought, no rollout)
//! under the verdict and the consistency rewards, and with a sampled thought followed by the
//! expected verdict.
//!
//! These fail when the gradient path is broken: with the advantages zeroed (checked by hand
//! in `trainer/update.rs`), or the expected-verdict term's sign flipped (checked by hand in
//! `rl/src/loss/verdict.rs`), accuracy stays at the base model's.

mod common;

use anyhow::Result;
use thinkjudge::metrics::read_records;
use thinkjudge::{Record, StartOptions, StepMetrics, Trainer};
use thinkjudge_rl::{Pairing, TaskReward};

/// A trainer with no progress bar.
fn open_quiet(cfg: thinkjudge::TrainConfig) -> Result<Trainer> {
    let options = StartOptions {
        quiet: true,
        ..StartOptions::default()
    };
    Ok(Trainer::open(cfg, options)?)
}

#[test]
fn held_out_accuracy_rises_on_a_learnable_task() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = common::task_config(dir.path(), 3)?;
    let mut trainer = open_quiet(cfg)?;
    // Prompts are whole words of the test vocabulary (no [UNK]).
    let unit = &trainer.data().train[0];
    assert_eq!(
        unit.prompts.len(),
        2,
        "both orders of a pair travel together"
    );
    assert!(
        unit.prompts.iter().all(|p| !p.ids.contains(&0)),
        "{:?}",
        unit.prompts[0].prompt.text
    );
    assert_eq!(trainer.data().eval.len(), 20);

    let summary = trainer.run()?;
    let before = summary.before.as_ref().map(|m| m.accuracy);
    let after = summary.after.as_ref().map(|m| m.accuracy);
    eprintln!(
        "{}",
        thinkjudge::EvalMetrics::table(&[
            summary.before.as_ref().unwrap(),
            summary.after.as_ref().unwrap()
        ])
    );
    assert!(before.is_some_and(|a| a < 0.5), "base accuracy {before:?}");
    assert!(
        after.is_some_and(|a| a >= 0.8),
        "trained accuracy {after:?} (base {before:?})"
    );
    let last = summary.after.as_ref().unwrap();
    assert!(
        last.consistent_accuracy.is_some_and(|a| a >= 0.6),
        "{last:?}"
    );
    assert!(summary.completed && summary.steps == 150);

    // The run directory has everything the CLI and plots read.
    let paths = trainer.paths().clone();
    let records = read_records(&paths.metrics)?;
    let train: Vec<_> = records
        .iter()
        .filter_map(|r| match r {
            Record::Train(m) => Some(m),
            _ => None,
        })
        .collect();
    assert_eq!(train.len(), 150);
    let evals = records
        .iter()
        .filter(|r| matches!(r, Record::Eval(_)))
        .count();
    assert_eq!(evals, 4, "steps 0, 50, 100 and 150");
    assert!(records.iter().any(|r| matches!(r, Record::Example(_))));
    let early: f64 = train[..10].iter().map(|m| m.reward_mean).sum::<f64>() / 10.0;
    let late: f64 = train[140..].iter().map(|m| m.reward_mean).sum::<f64>() / 10.0;
    assert!(late > early + 0.3, "mean reward {early} -> {late}");
    assert!(train
        .iter()
        .all(|m| m.updates == 1 && m.grad_norm.is_some_and(f64::is_finite)));
    assert!(paths.summary.exists());
    assert!(paths.run_dir.join("config.toml").exists());
    assert!(paths
        .checkpoints
        .join("step-000150")
        .join("manifest.json")
        .exists());
    let png = dir.path().join("curves.png");
    thinkjudge::plot::plot_metrics(&paths.metrics, &png)?;
    assert!(std::fs::metadata(&png)?.len() > 1000);
    Ok(())
}

/// Runs the even task under `loss.verdict_gradient = "expected"` with thought budget
/// `budget`, G samples per prompt and reward `task`; returns the before/after held-out metrics and the
/// train records.
fn expected_verdict_run(
    budget: usize,
    group_size: usize,
    steps: u64,
    task: TaskReward,
) -> Result<(
    thinkjudge::EvalMetrics,
    thinkjudge::EvalMetrics,
    Vec<StepMetrics>,
)> {
    let dir = tempfile::tempdir()?;
    let mut cfg = common::task_config(dir.path(), 3)?;
    cfg.loss.verdict_gradient = thinkjudge_rl::VerdictGradient::Expected;
    cfg.reward.task = task;
    cfg.rollout.group_size = group_size;
    let thinking = &mut cfg.rollout.sampling.thinking;
    thinking.max_thought_tokens = Some(budget);
    thinking.min_thought_tokens = budget;
    cfg.trainer.steps = steps;
    cfg.trainer.eval_every = 0;
    cfg.validate()?;
    let mut trainer = open_quiet(cfg)?;
    let summary = trainer.run()?;
    let (before, after) = (summary.before.unwrap(), summary.after.unwrap());
    eprintln!("{}", thinkjudge::EvalMetrics::table(&[&before, &after]));
    let train = read_records(&trainer.paths().metrics)?
        .into_iter()
        .filter_map(|r| match r {
            Record::Train(m) => Some(m),
            _ => None,
        })
        .collect();
    Ok((before, after, train))
}

/// No thought and G = 1: the verdict-only step (`trainer/direct.rs`) scores both verdicts in
/// the training forward, with no rollout, and trains only the exact expected reward: of the
/// verdict alone, and of J1's position consistency over both orders of each pair.
#[test]
fn verdict_only_step_learns_the_task() -> Result<()> {
    let consistency = TaskReward::Consistency {
        pairing: Pairing::Index,
    };
    for task in [TaskReward::Verdict {}, consistency] {
        let (before, after, train) = expected_verdict_run(0, 1, 60, task)?;
        assert!(
            before.accuracy < 0.5,
            "{task:?}: base accuracy {}",
            before.accuracy
        );
        assert!(
            after.consistent_accuracy.is_some_and(|a| a >= 0.8),
            "{task:?}: trained {after:?}"
        );
        assert_eq!(train.len(), 60);
        for m in &train {
            assert_eq!(m.timing.rollout_seconds, 0.0, "no rollout");
            let term = m.verdict_loss.expect("every step has the verdict term");
            assert!(term.is_finite() && term <= 0.0, "{term}");
            assert!(m.updates == 1 && m.grad_norm.is_some_and(f64::is_finite));
        }
    }
    Ok(())
}

/// A one-token thought sampled by the rollout, G = 8: the thought keeps the sampled GRPO
/// gradient and the verdict token takes the exact expectation (`trainer/verdict.rs`).
#[test]
fn expected_verdict_gradient_after_a_sampled_thought_learns_the_task() -> Result<()> {
    let (before, after, train) = expected_verdict_run(1, 8, 150, TaskReward::Verdict {})?;
    assert!(before.accuracy < 0.5, "base accuracy {}", before.accuracy);
    assert!(after.accuracy >= 0.8, "trained accuracy {}", after.accuracy);
    // Steps whose samples hold no verdict token (early, random model) have no term.
    let terms: Vec<f64> = train.iter().filter_map(|m| m.verdict_loss).collect();
    assert!(
        terms.len() >= 120,
        "{} of 150 steps had a verdict term",
        terms.len()
    );
    assert!(
        terms.iter().all(|t| t.is_finite() && *t <= 0.0),
        "{terms:?}"
    );
    Ok(())
}
