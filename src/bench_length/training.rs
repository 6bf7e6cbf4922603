//! The training view: thought length and accuracy over the steps of a run, from its
//! `metrics.jsonl`.

use std::path::Path;

use super::report::{EvalPoint, TrainPoint, TrainingView};
use crate::error::Result;
use crate::metrics::{read_records, Record};

/// Reads `metrics` (a run's `metrics.jsonl`): one point per training step (mean thought
/// tokens, accuracy and reward of its rollouts) and per held-out evaluation.
///
/// # Errors
/// [`crate::TrainError::Io`] / [`crate::TrainError::Json`] naming the file (and line).
pub fn training_view(metrics: &Path) -> Result<TrainingView> {
    Ok(view_of(metrics, &read_records(metrics)?))
}

fn view_of(source: &Path, records: &[Record]) -> TrainingView {
    let mut view = TrainingView {
        source: source.to_path_buf(),
        train: Vec::new(),
        eval: Vec::new(),
    };
    for r in records {
        match r {
            Record::Train(m) => view.train.push(TrainPoint {
                step: m.step,
                thought_tokens_mean: m.thought_tokens_mean,
                completion_tokens_mean: m.completion_tokens_mean,
                accuracy: m.accuracy,
                reward_mean: m.reward_mean,
                budget_forced_rate: m.budget_forced_rate,
            }),
            Record::Eval(m) => view.eval.push(EvalPoint {
                step: m.step,
                accuracy: m.accuracy,
                consistent_accuracy: m.consistent_accuracy,
                mean_thought_tokens: m.mean_thought_tokens,
                unparseable_rate: m.unparseable_rate,
            }),
            Record::Example(_) => {}
        }
    }
    view
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{EvalMetrics, EvalTiming, MetricsLog};

    #[test]
    fn reads_train_and_eval_points_in_order() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| crate::TrainError::io(Path::new("tmp"), e))?;
        let path = dir.path().join("metrics.jsonl");
        let eval = |step, accuracy| {
            Record::Eval(EvalMetrics {
                step,
                pairs: 2,
                prompts: 4,
                samples_per_prompt: 1,
                accuracy,
                accuracy_ab: Some(accuracy),
                accuracy_ba: Some(accuracy),
                consistent_accuracy: Some(accuracy / 2.0),
                flip_rate: Some(0.0),
                tie_rate: 0.0,
                unparseable_rate: 0.25,
                mean_thought_tokens: 10.0 + step as f64,
                mean_completion_tokens: 20.0,
                timing: EvalTiming::default(),
            })
        };
        let mut log = MetricsLog::open(&path)?;
        log.write(&eval(0, 0.5))?;
        log.write(&eval(10, 0.75))?;
        let view = training_view(&path)?;
        assert!(view.train.is_empty());
        let steps: Vec<(u64, f64, f64)> = view
            .eval
            .iter()
            .map(|e| (e.step, e.accuracy, e.mean_thought_tokens))
            .collect();
        assert_eq!(steps, vec![(0, 0.5, 10.0), (10, 0.75, 20.0)]);
        assert_eq!(view.eval[1].consistent_accuracy, Some(0.375));
        // A malformed line is an error naming the line.
        std::fs::write(&path, "{\"kind\":\"eval\"}\n")
            .map_err(|e| crate::TrainError::io(&path, e))?;
        let e = training_view(&path).unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
        Ok(())
    }
}
