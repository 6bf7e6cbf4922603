//! Failing clearly and early, and skipping safely: a read-only run directory, a file system
//! without room for the run's checkpoints, config files with unknown keys or bad values, steps whose loss turns non-finite (skipped without
//! touching the weights, aborted after K in a row), steps with no learning signal left.

mod common;

use std::path::Path;

use anyhow::Result;
use thinkjudge::{SkipReason, StartOptions, TrainConfig, TrainError, Trainer};
use thinkjudge_rl::{Reward, RlError, Sample};

fn quiet() -> StartOptions {
    StartOptions {
        quiet: true,
        ..StartOptions::default()
    }
}

#[test]
fn a_read_only_run_directory_fails_before_training() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cfg = common::task_config(dir.path(), 1)?;
    let locked = dir.path().join("locked");
    std::fs::create_dir(&locked)?;
    let mut perms = std::fs::metadata(&locked)?.permissions();
    perms.set_readonly(true);
    std::fs::set_permissions(&locked, perms)?;
    // Root ignores permission bits: then use a directory on a read-only file system.
    let read_only = if std::fs::write(locked.join("probe"), b"x").is_ok() {
        Path::new("/proc/thinkjudge-run").to_path_buf()
    } else {
        locked.join("run")
    };
    cfg.output.run_dir = read_only.clone();
    cfg.model.source = thinkjudge_model::ModelSource::Dir(dir.path().join("no-such-model"));
    // The probe comes first: the missing model is never reached.
    let e = Trainer::open(cfg, quiet()).unwrap_err();
    assert!(matches!(e, TrainError::OutputNotWritable { .. }), "{e}");
    assert!(
        e.to_string().contains(&read_only.display().to_string()),
        "{e}"
    );
    Ok(())
}

#[test]
fn too_little_free_space_for_the_checkpoints_fails_before_training() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cfg = common::task_config(dir.path(), 1)?;
    // No disk holds a billion checkpoints of even the tiny model (16 MiB each with slack).
    cfg.trainer.keep_last = 1_000_000_000;
    let run_dir = cfg.output.run_dir.clone();
    let e = Trainer::open(cfg.clone(), quiet()).unwrap_err();
    assert!(
        matches!(
            e,
            TrainError::InsufficientSpace {
                checkpoints: 1_000_000_001,
                ..
            }
        ),
        "{e}"
    );
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!("output directory {} has ", run_dir.display())),
        "{msg}"
    );
    assert!(
        msg.contains("MiB free, but the run's checkpoints need about")
            && msg.contains("lower trainer.keep_last"),
        "{msg}"
    );
    assert!(
        !run_dir.join("metrics.jsonl").exists(),
        "nothing was started"
    );
    // The default keep_last fits on the same disk.
    cfg.trainer.keep_last = 3;
    Trainer::open(cfg, quiet())?;
    Ok(())
}

#[test]
fn config_files_name_the_file_and_the_key() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("train.toml");
    std::fs::write(
        &path,
        "[trainer]\nsteps = 10\n\n[optim]\nlearning_rate = 1e-6\n",
    )?;
    let msg = TrainConfig::from_file(&path).unwrap_err().to_string();
    assert!(msg.starts_with(&path.display().to_string()), "{msg}");
    assert!(
        msg.contains("unknown field `learning_rate`") && msg.contains("line 5"),
        "{msg}"
    );

    std::fs::write(&path, "[optim]\nweight_decay = -1.0\n")?;
    let msg = TrainConfig::from_file(&path).unwrap_err().to_string();
    assert!(msg.contains("optim.weight_decay"), "{msg}");

    // A saved resolved config loads back to the same config.
    let cfg = common::task_config(dir.path(), 1)?;
    std::fs::write(&path, cfg.to_toml_string()?)?;
    assert_eq!(TrainConfig::from_file(&path)?, cfg);
    Ok(())
}

/// A reward that is the same value for every sample.
struct ConstantReward(f32);

impl Reward for ConstantReward {
    fn name(&self) -> &str {
        "constant"
    }
    fn score(&self, samples: &[Sample]) -> Result<Vec<f32>, RlError> {
        Ok(vec![self.0; samples.len()])
    }
}

#[test]
fn non_finite_steps_are_skipped_then_abort() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cfg = common::task_config(dir.path(), 1)?;
    cfg.trainer.steps = 10;
    cfg.trainer.pairs_per_step = 2;
    cfg.trainer.max_consecutive_nonfinite = 3;
    let options = StartOptions {
        reward: Some(Box::new(ConstantReward(f32::NAN))),
        ..quiet()
    };
    let mut trainer = Trainer::open(cfg, options)?;
    let before: Vec<Vec<f32>> = weights(&trainer)?;
    for step in 1..=2 {
        let m = trainer.step()?;
        assert_eq!(m.skipped, Some(SkipReason::NonFiniteLoss), "step {step}");
        assert_eq!(m.updates, 0);
    }
    assert_eq!(
        weights(&trainer)?,
        before,
        "skipped steps leave the weights alone"
    );
    assert_eq!(trainer.optimizer().steps_done(), 0);
    let e = trainer.step().unwrap_err();
    assert!(
        matches!(
            e,
            TrainError::NonFinite {
                step: 3,
                consecutive: 3,
                ..
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string().contains("max_consecutive_nonfinite = 3"),
        "{e}"
    );
    Ok(())
}

fn weights(t: &Trainer) -> Result<Vec<Vec<f32>>> {
    t.model()
        .trainable_vars()
        .iter()
        .map(|(_, v)| Ok(v.as_tensor().flatten_all()?.to_vec1::<f32>()?))
        .collect()
}

#[test]
fn a_cuda_device_without_cuda_support_is_refused_clearly() -> Result<()> {
    if candle_core::utils::cuda_is_available() {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let mut cfg = common::task_config(dir.path(), 1)?;
    cfg.model.device = "cuda:0".parse()?;
    let e = Trainer::open(cfg, quiet()).unwrap_err();
    assert!(e.to_string().contains("built without CUDA support"), "{e}");
    Ok(())
}

#[test]
fn a_step_whose_groups_are_all_dropped_makes_no_update() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cfg = common::task_config(dir.path(), 1)?;
    cfg.trainer.pairs_per_step = 2;
    cfg.advantage.dynamic_sampling = true;
    let options = StartOptions {
        reward: Some(Box::new(ConstantReward(1.0))),
        ..quiet()
    };
    let mut trainer = Trainer::open(cfg, options)?;
    let m = trainer.step()?;
    assert_eq!(m.skipped, Some(SkipReason::AllGroupsDropped));
    assert_eq!((m.groups, m.dropped_groups, m.updates), (4, 4, 0));
    assert_eq!(trainer.optimizer().steps_done(), 0);
    assert_eq!(trainer.state().skipped_steps, 1);
    assert_eq!(
        trainer.state().consecutive_nonfinite,
        0,
        "not a numerical failure"
    );
    Ok(())
}
