//! The run directory: its files, the write probe run before anything is loaded, the free
//! space check run once the model is built, choosing the checkpoint to resume from, and small
//! atomic writes.

use std::path::{Path, PathBuf};

use thinkjudge_model::Llama;

use super::Resume;
use crate::checkpoint::{self, StepDir};
use crate::error::{Result, TrainError};

/// Files of a run directory.
#[derive(Debug, Clone)]
pub struct RunPaths {
    /// The run directory.
    pub run_dir: PathBuf,
    /// `checkpoints/`.
    pub checkpoints: PathBuf,
    /// `metrics.jsonl`.
    pub metrics: PathBuf,
    /// `summary.json`.
    pub summary: PathBuf,
}

impl RunPaths {
    /// The paths under `run_dir`.
    pub fn new(run_dir: &Path) -> Self {
        RunPaths {
            run_dir: run_dir.to_path_buf(),
            checkpoints: run_dir.join("checkpoints"),
            metrics: run_dir.join("metrics.jsonl"),
            summary: run_dir.join("summary.json"),
        }
    }
}

/// Writes and removes a probe file, so that a read-only or full disk fails now, not at the
/// first checkpoint.
pub(super) fn probe_writable(run_dir: &Path) -> Result<()> {
    let fail = |source| TrainError::OutputNotWritable {
        path: run_dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(run_dir).map_err(fail)?;
    let probe = run_dir.join(format!(".write-probe-{}", std::process::id()));
    let written = checkpoint::write_synced(&probe, &[0u8; 1 << 16]);
    let _ = std::fs::remove_file(&probe);
    written.map_err(|e| match e {
        TrainError::Io { source, .. } => fail(source),
        other => other,
    })
}

/// Room for the tokenizer, configs, trainer state and metrics of a checkpoint, beyond its
/// tensors.
const CHECKPOINT_SLACK_BYTES: u64 = 16 << 20;

/// The estimated size of one checkpoint of `model`: the f32 weights (full fine-tuning: the
/// whole model; LoRA: the adapters), the optimizer's two f32 moments per trainable value, and
/// [`CHECKPOINT_SLACK_BYTES`].
pub(super) fn checkpoint_bytes(model: &Llama) -> u64 {
    let trainable: u64 = model
        .trainable_vars()
        .iter()
        .map(|(_, v)| v.elem_count() as u64)
        .sum();
    let saved = match model.lora_config() {
        Some(_) => trainable,
        None => model.config().num_params() as u64,
    };
    4 * saved + 8 * trainable + CHECKPOINT_SLACK_BYTES
}

/// Refuses to start when the run directory's file system has less free space than the
/// checkpoints still to be written need at once: `keep_last` plus the one being written
/// (the newest is complete before the oldest is pruned), less the `existing` ones.
pub(super) fn check_free_space(
    paths: &RunPaths,
    per_checkpoint: u64,
    keep_last: usize,
    existing: usize,
) -> Result<()> {
    let available =
        fs2::available_space(&paths.run_dir).map_err(|e| TrainError::io(&paths.run_dir, e))?;
    let checkpoints = (keep_last as u64 + 1)
        .saturating_sub(existing as u64)
        .max(1);
    let needed = checkpoints.saturating_mul(per_checkpoint);
    if available < needed {
        return Err(TrainError::InsufficientSpace {
            path: paths.run_dir.clone(),
            available,
            needed,
            checkpoints,
            per_checkpoint,
        });
    }
    Ok(())
}

/// The checkpoint to resume from, per `resume`.
pub(super) fn find_checkpoint(paths: &RunPaths, resume: Resume) -> Result<Option<StepDir>> {
    if resume == Resume::Never {
        if let Some(step) = checkpoint::list(&paths.checkpoints)?
            .iter()
            .map(|c| c.0)
            .max()
        {
            return Err(TrainError::RunExists {
                dir: paths.checkpoints.clone(),
                step,
            });
        }
        return Ok(None);
    }
    let (found, refused) = checkpoint::latest_valid(&paths.checkpoints)?;
    for problem in &refused {
        tracing::warn!("refusing checkpoint {problem}");
    }
    match (found, resume) {
        (Some((step, dir)), _) => {
            if !refused.is_empty() {
                tracing::warn!(
                    "using the newest valid checkpoint: {} (step {step})",
                    dir.display()
                );
            }
            Ok(Some((step, dir)))
        }
        (None, Resume::Required) => Err(TrainError::NoCheckpoint {
            dir: paths.checkpoints.clone(),
            problems: refused,
        }),
        (None, _) => {
            tracing::warn!(
                "no valid checkpoint in {}; starting fresh",
                paths.checkpoints.display()
            );
            Ok(None)
        }
    }
}

/// Moves an old `metrics.jsonl` out of the way of a fresh run (nothing written is lost).
pub(super) fn set_aside(path: &Path) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let aside = path.with_file_name(format!("metrics.before-{secs}.jsonl"));
    tracing::warn!(
        "a fresh run: moving the old {} to {}",
        path.display(),
        aside.display()
    );
    std::fs::rename(path, &aside).map_err(|e| TrainError::io(path, e))
}

/// Writes a text file atomically (temporary file, then rename).
pub(super) fn write_text(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    checkpoint::write_synced(&tmp, text.as_bytes())?;
    std::fs::rename(&tmp, path).map_err(|e| TrainError::io(path, e))
}
