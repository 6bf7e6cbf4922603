//! [`TrainerState`]: everything besides weights and optimizer moments that the rest of a run
//! depends on, saved as `trainer_state.json` in every checkpoint.
//!
//! Random streams are pure functions of `(seed, step, …)` (see [`crate::seeds`]), so the
//! state holds no RNG state; the one stateful stream is the model's LoRA-dropout counter,
//! recorded as `lora_train_forwards`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::dataset::DataCursor;
use crate::error::{Result, TrainError};
use crate::metrics::EvalMetrics;

/// Name of the state file inside a checkpoint.
pub const STATE_FILE: &str = "trainer_state.json";
const FORMAT: u32 = 1;

/// Token and time totals over the whole run (all sessions).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    /// Completion tokens sampled for training.
    pub rollout_tokens: u64,
    /// Seconds spent sampling for training.
    pub rollout_seconds: f64,
    /// Tokens through the training forward (prompt and completion, every epoch).
    pub train_tokens: u64,
    /// Seconds spent in updates.
    pub train_seconds: f64,
    /// Wall time of the training loop, evaluations and checkpoints included.
    pub wall_seconds: f64,
}

/// The trainer's progress and counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainerState {
    /// State format version.
    pub format: u32,
    /// Steps done.
    pub step: u64,
    /// The seed the run derives its random streams from (checked on resume).
    pub seed: u64,
    /// Where the training data stands.
    pub cursor: DataCursor,
    /// [`crate::dataset::fingerprint`] of the training units (checked on resume).
    pub data_fingerprint: String,
    /// Non-finite steps in a row at the end of `step`.
    pub consecutive_nonfinite: u32,
    /// Non-finite steps in total.
    pub nonfinite_steps: u64,
    /// Steps whose update was skipped for any reason (non-finite, all groups dropped).
    pub skipped_steps: u64,
    /// Training-mode forwards of the policy so far: the model's LoRA-dropout stream
    /// position, restored on resume.
    pub lora_train_forwards: u64,
    /// The evaluation of the base model (step 0), for the summary.
    pub baseline_eval: Option<EvalMetrics>,
    /// The most recent evaluation.
    pub last_eval: Option<EvalMetrics>,
    /// Throughput totals.
    pub totals: Totals,
}

impl TrainerState {
    /// The state of a fresh run.
    pub fn new(seed: u64, data_fingerprint: String) -> Self {
        TrainerState {
            format: FORMAT,
            step: 0,
            seed,
            cursor: DataCursor::default(),
            data_fingerprint,
            consecutive_nonfinite: 0,
            nonfinite_steps: 0,
            skipped_steps: 0,
            lora_train_forwards: 0,
            baseline_eval: None,
            last_eval: None,
            totals: Totals::default(),
        }
    }

    /// Writes `trainer_state.json` into `dir`.
    ///
    /// # Errors
    /// [`TrainError::Io`] when the file cannot be written.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(STATE_FILE);
        let text = serde_json::to_string_pretty(self).map_err(|e| TrainError::json(&path, &e))?;
        crate::checkpoint::write_synced(&path, text.as_bytes())
    }

    /// Reads `trainer_state.json` from `dir`.
    ///
    /// # Errors
    /// [`TrainError::Io`] / [`TrainError::Json`] naming the file; [`TrainError::Checkpoint`]
    /// for another format version.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(STATE_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
        let state: TrainerState =
            serde_json::from_str(&text).map_err(|e| TrainError::json(&path, &e))?;
        if state.format != FORMAT {
            return Err(TrainError::checkpoint(
                dir,
                format!(
                    "trainer state format {} (this build reads {FORMAT})",
                    state.format
                ),
            ));
        }
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_exactly() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| TrainError::io(Path::new("tmp"), e))?;
        let mut s = TrainerState::new(7, "abc".into());
        s.step = 12;
        s.cursor = DataCursor {
            epoch: 1,
            position: 3,
        };
        s.totals.rollout_seconds = 0.1 + 0.2;
        s.save(dir.path())?;
        assert_eq!(TrainerState::load(dir.path())?, s);
        Ok(())
    }
}
