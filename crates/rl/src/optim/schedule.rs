//! Learning-rate schedules, as pure functions of the number of updates already applied.
//!
//! Warm-up is linear and reaches the peak at the end of update `warmup_steps − 1`:
//! lr(s) = peak · (s + 1) / warmup for s < warmup. (Hugging Face uses s / warmup, which wastes
//! the first update on lr = 0.) Cosine decay then runs from the peak at s = warmup to the
//! floor at s = total: lr(s) = floor + (peak − floor) · ½ (1 + cos(π p)),
//! p = min(1, (s − warmup) / (total − warmup)), and stays at the floor afterwards.

use crate::error::{ensure, ensure_positive, Result};
use serde::{Deserialize, Serialize};
use std::f64::consts::PI;

/// A learning-rate schedule.
///
/// ```toml
/// schedule = { kind = "warmup_cosine", peak_lr = 1e-6, min_lr = 3e-7, warmup_steps = 10, total_steps = 300 }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[allow(missing_docs)] // the variant docs describe their fields
pub enum LrSchedule {
    /// A fixed rate. J1: 1e-6 (recipe.md §5; the schedule is not given).
    Constant { lr: f64 },
    /// Linear warm-up to `peak_lr`, then cosine decay to `min_lr` at `total_steps`
    /// (J1-70B decayed 1e-6 → 3e-7 in later steps).
    WarmupCosine {
        peak_lr: f64,
        min_lr: f64,
        warmup_steps: u64,
        total_steps: u64,
    },
    /// Linear warm-up to `lr`, then constant (DAPO: 1e-6 with 10 warm-up steps).
    WarmupConstant { lr: f64, warmup_steps: u64 },
}

impl Default for LrSchedule {
    fn default() -> Self {
        LrSchedule::Constant { lr: 1e-6 }
    }
}

impl LrSchedule {
    /// The rate of the update applied after `step` updates (0-based).
    pub fn lr_at(&self, step: u64) -> f64 {
        let warm = |peak: f64, w: u64| peak * ((step + 1) as f64 / w as f64).min(1.0);
        match *self {
            LrSchedule::Constant { lr } => lr,
            LrSchedule::WarmupConstant { lr, warmup_steps } => warm(lr, warmup_steps.max(1)),
            LrSchedule::WarmupCosine {
                peak_lr,
                min_lr,
                warmup_steps,
                total_steps,
            } => {
                if step < warmup_steps {
                    return warm(peak_lr, warmup_steps);
                }
                let p =
                    ((step - warmup_steps) as f64 / (total_steps - warmup_steps) as f64).min(1.0);
                min_lr + (peak_lr - min_lr) * 0.5 * (1.0 + (PI * p).cos())
            }
        }
    }

    /// Checks every value; the error names the field.
    pub fn validate(&self) -> Result<()> {
        match *self {
            LrSchedule::Constant { lr } | LrSchedule::WarmupConstant { lr, .. } => {
                ensure_positive("optim.schedule.lr", lr)
            }
            LrSchedule::WarmupCosine {
                peak_lr,
                min_lr,
                warmup_steps,
                total_steps,
            } => {
                ensure_positive("optim.schedule.peak_lr", peak_lr)?;
                ensure(
                    (0.0..=peak_lr).contains(&min_lr),
                    "optim.schedule.min_lr",
                    || format!("{min_lr} must be in [0, peak_lr = {peak_lr}]"),
                )?;
                ensure(
                    total_steps > warmup_steps,
                    "optim.schedule.total_steps",
                    || format!("{total_steps} must exceed warmup_steps = {warmup_steps}"),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-14 * b.abs()
    }

    #[test]
    fn warmup_cosine_hits_hand_values() {
        let s = LrSchedule::WarmupCosine {
            peak_lr: 1e-6,
            min_lr: 3e-7,
            warmup_steps: 4,
            total_steps: 8,
        };
        s.validate().unwrap();
        // warm-up: 1e-6 · (s + 1) / 4
        assert!(close(s.lr_at(0), 2.5e-7));
        assert!(close(s.lr_at(3), 1e-6));
        // s = 4: p = 0 → peak
        assert!(close(s.lr_at(4), 1e-6));
        // s = 6: p = ½ → 3e-7 + 7e-7 · ½ = 6.5e-7
        assert!(close(s.lr_at(6), 6.5e-7));
        // s = 5: p = ¼ → 3e-7 + 7e-7 · ½ (1 + cos(π/4)) = 3e-7 + 3.5e-7 · (1 + 0.70710678…)
        assert!(close(s.lr_at(5), 3e-7 + 3.5e-7 * (1.0 + 0.5f64.sqrt())));
        assert!(close(s.lr_at(8), 3e-7));
        assert!(close(s.lr_at(1000), 3e-7));
    }

    #[test]
    fn warmup_constant_and_constant() {
        let s = LrSchedule::WarmupConstant {
            lr: 1e-6,
            warmup_steps: 10,
        };
        assert!(close(s.lr_at(0), 1e-7));
        assert!(close(s.lr_at(9), 1e-6));
        assert!(close(s.lr_at(50), 1e-6));
        let w0 = LrSchedule::WarmupConstant {
            lr: 2e-6,
            warmup_steps: 0,
        };
        assert_eq!(w0.lr_at(0), 2e-6);
        assert_eq!(LrSchedule::default().lr_at(123), 1e-6);
    }

    #[test]
    fn validate_rejects_bad_schedules() {
        let bad = [
            LrSchedule::Constant { lr: 0.0 },
            LrSchedule::WarmupCosine {
                peak_lr: 1e-6,
                min_lr: 2e-6,
                warmup_steps: 0,
                total_steps: 10,
            },
            LrSchedule::WarmupCosine {
                peak_lr: 1e-6,
                min_lr: 0.0,
                warmup_steps: 10,
                total_steps: 10,
            },
        ];
        for s in bad {
            assert!(s.validate().is_err(), "{s:?}");
        }
    }
}
