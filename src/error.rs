//! [`TrainError`]: every way a training run can fail, each naming what it was working on (the
//! config field, the file, the step). The crates' errors are wrapped unchanged.

use std::path::{Path, PathBuf};

/// Errors of the trainer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// The config file does not parse: TOML syntax, an unknown key or a wrong type. The
    /// message is toml's, with the line, column and key.
    #[error("{}: {message}", path.as_deref().map_or("config".into(), |p| p.display().to_string()))]
    ConfigParse {
        /// The file, when read from one.
        path: Option<PathBuf>,
        /// What is wrong, and where.
        message: String,
    },
    /// A config value is out of range or inconsistent with another.
    #[error("config `{field}`: {problem}")]
    InvalidConfig {
        /// The field, as a dotted TOML path (`trainer.group_size`).
        field: String,
        /// What is wrong and what is allowed.
        problem: String,
    },
    /// The run directory cannot be written (read-only, full, or not a directory). Raised
    /// before training starts.
    #[error("output directory {} is not writable: {source}", path.display())]
    OutputNotWritable {
        /// The run directory.
        path: PathBuf,
        /// The failed write.
        source: std::io::Error,
    },
    /// The run directory's file system has less free space than the run's checkpoints need
    /// at once (`trainer.keep_last` plus the one being written). Raised before training
    /// starts.
    #[error(
        "output directory {} has {:.1} MiB free, but the run's checkpoints need about {:.1} MiB \
         ({checkpoints} x {:.1} MiB: trainer.keep_last plus the one being written, less those \
         already there); free some space, lower trainer.keep_last or choose another \
         output.run_dir",
        path.display(),
        mib(*available),
        mib(*needed),
        mib(*per_checkpoint)
    )]
    InsufficientSpace {
        /// The run directory.
        path: PathBuf,
        /// Bytes available to this user on its file system.
        available: u64,
        /// Bytes the checkpoints still to be written need at once.
        needed: u64,
        /// How many checkpoints that is.
        checkpoints: u64,
        /// The estimated size of one checkpoint.
        per_checkpoint: u64,
    },
    /// A config file's value is out of range or inconsistent: [`TrainError::InvalidConfig`]
    /// (or a crate's validation error) with the file it came from.
    #[error("{}: {source}", path.display())]
    ConfigFile {
        /// The config file.
        path: PathBuf,
        /// The problem.
        source: Box<TrainError>,
    },
    /// Reading or writing a file.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A JSON file (trainer state, manifest, metrics) does not parse.
    #[error("{}: {message}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// serde_json's message, with line and column.
        message: String,
    },
    /// A checkpoint is incomplete, corrupt or does not fit the model.
    #[error("checkpoint {}: {problem}", path.display())]
    Checkpoint {
        /// The checkpoint directory.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// Resuming found no checkpoint that verifies.
    #[error("no valid checkpoint in {}{}", dir.display(), list_problems(problems))]
    NoCheckpoint {
        /// The checkpoints directory.
        dir: PathBuf,
        /// Why each candidate was refused.
        problems: Vec<String>,
    },
    /// A fresh run was asked for in a run directory that already holds checkpoints.
    #[error(
        "{} already holds checkpoints (newest: step {step}); resume the run or choose another output.run_dir",
        dir.display()
    )]
    RunExists {
        /// The checkpoints directory.
        dir: PathBuf,
        /// The newest checkpoint's step.
        step: u64,
    },
    /// The data cannot feed the configured training (too few pairs, wrong kind, …).
    #[error("data: {0}")]
    DataSetup(String),
    /// Too many consecutive steps had a non-finite loss or gradient.
    #[error(
        "aborting at step {step}: {consecutive} consecutive steps had a non-finite loss or \
         gradient (last: {detail}); trainer.max_consecutive_nonfinite = {limit}. Lower the \
         learning rate or check the data; the last checkpoint is intact"
    )]
    NonFinite {
        /// The step that hit the limit.
        step: u64,
        /// Non-finite steps in a row.
        consecutive: u32,
        /// The limit.
        limit: u32,
        /// What was non-finite.
        detail: String,
    },
    /// The requested device cannot be used.
    #[error("device `{spec}`: {problem}")]
    Device {
        /// The device as written in the config.
        spec: String,
        /// Why it cannot be used.
        problem: String,
    },
    /// Drawing a plot failed.
    #[error("plot {}: {message}", path.display())]
    Plot {
        /// The image being drawn.
        path: PathBuf,
        /// plotters' message.
        message: String,
    },
    /// From thinkjudge-data.
    #[error(transparent)]
    Data(#[from] thinkjudge_data::DataError),
    /// From thinkjudge-model.
    #[error(transparent)]
    Model(#[from] thinkjudge_model::ModelError),
    /// From thinkjudge-rollout.
    #[error(transparent)]
    Rollout(#[from] thinkjudge_rollout::RolloutError),
    /// From thinkjudge-rl.
    #[error(transparent)]
    Rl(#[from] thinkjudge_rl::RlError),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

fn list_problems(problems: &[String]) -> String {
    if problems.is_empty() {
        return " (none found)".into();
    }
    problems.iter().map(|p| format!("\n  - {p}")).collect()
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

/// The trainer's result type.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;

impl TrainError {
    /// Shorthand for [`TrainError::InvalidConfig`].
    pub fn config(field: impl Into<String>, problem: impl Into<String>) -> Self {
        TrainError::InvalidConfig {
            field: field.into(),
            problem: problem.into(),
        }
    }

    /// Shorthand for [`TrainError::Io`].
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Shorthand for [`TrainError::Json`].
    pub fn json(path: &Path, err: &serde_json::Error) -> Self {
        TrainError::Json {
            path: path.to_path_buf(),
            message: err.to_string(),
        }
    }

    /// Shorthand for [`TrainError::Checkpoint`].
    pub fn checkpoint(path: &Path, problem: impl Into<String>) -> Self {
        TrainError::Checkpoint {
            path: path.to_path_buf(),
            problem: problem.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_what_failed() {
        let e = TrainError::config("trainer.group_size", "must be >= 2, got 1");
        assert_eq!(
            e.to_string(),
            "config `trainer.group_size`: must be >= 2, got 1"
        );
        let e = TrainError::NoCheckpoint {
            dir: "runs/x/checkpoints".into(),
            problems: vec!["step-000004: manifest.json missing".into()],
        };
        assert_eq!(
            e.to_string(),
            "no valid checkpoint in runs/x/checkpoints\n  - step-000004: manifest.json missing"
        );
    }
}
