//! Fuzz tests of the RL config sections read from TOML: [`RewardConfig`],
//! [`PolicyLossConfig`], [`AdvantageConfig`] and [`OptimizerConfig`] (with its schedule).
//!
//! Mutated documents (keys dropped, renamed, retyped; extreme numbers, NaN, infinities;
//! truncated or salted text) must parse or fail, and validate or fail, without panicking;
//! a valid config must round-trip through TOML, build (rewards) and give finite,
//! non-negative learning rates (schedules). Separately, an unknown key added to any table
//! must be rejected by an error that names it.
//!
//! CI runs a quick subset; the long run (≥ 100k documents per target):
//!
//! ```sh
//! FUZZ_CASES=100000 cargo test --release -p thinkjudge-rl --test fuzz_config -- --nocapture
//! ```
//!
//! The harness is shared with the data crate (`crates/data/tests/fuzz_support/mod.rs`),
//! which documents its knobs (`FUZZ_SEED`, `FUZZ_ONLY`, …).

#[path = "../../data/tests/fuzz_support/mod.rs"]
mod fuzz_support;

use fuzz_support::toml_fuzz::{self, Spec};
use fuzz_support::{run, Rng};
use thinkjudge_rl::*;

fn reward_spec() -> Spec<RewardConfig> {
    Spec::from_seeds(
        vec![RewardConfig::default()],
        &[
            "incorrect = -1.0\ntask = { kind = \"consistency\", pairing = \"index\" }\n",
            "task = { kind = \"scores\" }\nunparseable = -0.5\n",
            "task = { kind = \"pointwise_label\", threshold = 0.5 }\n",
            "task = { kind = \"distant_supervision\" }\n",
            "[length_penalty]\nexpected_len = 100\nmax_len = 200\nfactor = 0.5\nbasis = \"thought\"\n",
            "[overlong]\nmax_len = 4096\nbuffer_len = 512\n",
        ],
        |c| {
            c.validate().map_err(|e| e.to_string())?;
            // A valid config builds.
            c.build().map(|_| ()).map_err(|e| format!("validated but does not build: {e}"))
        },
    )
}

fn loss_spec() -> Spec<PolicyLossConfig> {
    Spec::from_seeds(
        vec![PolicyLossConfig::default()],
        &[
            "clip_eps_high = 0.28\ndual_clip = 3.0\naggregation = \"seq_mean_token_sum_norm\"\nkl_coef = 0.0\nkl_estimator = \"k1\"\n",
            "ratio_level = \"sequence\"\naggregation = \"seq_mean_token_mean\"\nentropy_coef = 0.01\n",
        ],
        |c| c.validate().map_err(|e| e.to_string()),
    )
}

fn advantage_spec() -> Spec<AdvantageConfig> {
    Spec::from_seeds(
        vec![AdvantageConfig::default()],
        &["estimator = \"dr_grpo\"\ngroup_key = \"pair\"\ndynamic_sampling = true\n"],
        |c| c.validate().map_err(|e| e.to_string()),
    )
}

fn optimizer_spec() -> Spec<OptimizerConfig> {
    Spec::from_seeds(
        vec![OptimizerConfig::default()],
        &[
            "schedule = { kind = \"warmup_cosine\", peak_lr = 1e-6, min_lr = 3e-7, warmup_steps = 10, total_steps = 300 }\nno_decay = [\"norm\"]\nmax_grad_norm = 0.5\n",
            "schedule = { kind = \"warmup_constant\", lr = 1e-6, warmup_steps = 10 }\nweight_decay = 0.1\n",
            "[schedule]\nkind = \"constant\"\nlr = 2e-5\n",
        ],
        |c| {
            c.validate().map_err(|e| e.to_string())?;
            // A valid schedule gives finite, non-negative rates, at most its peak.
            let peak = match c.schedule {
                LrSchedule::Constant { lr } | LrSchedule::WarmupConstant { lr, .. } => lr,
                LrSchedule::WarmupCosine { peak_lr, .. } => peak_lr,
            };
            for step in [0, 1, 9, 10, 11, 299, 300, 301, 1 << 20, 1 << 40] {
                let lr = c.schedule.lr_at(step);
                if !(lr.is_finite() && (0.0..=peak).contains(&lr)) {
                    return Err(format!("validated {:?} gives lr {lr} at step {step}", c.schedule));
                }
            }
            Ok(())
        },
    )
}

fn target(rng: &mut Rng, unknown_key: bool) -> Result<(), String> {
    match rng.below(4) {
        0 => toml_fuzz::check_case(rng, &reward_spec(), unknown_key),
        1 => toml_fuzz::check_case(rng, &loss_spec(), unknown_key),
        2 => toml_fuzz::check_case(rng, &advantage_spec(), unknown_key),
        _ => toml_fuzz::check_case(rng, &optimizer_spec(), unknown_key),
    }
}

/// Mutated TOML for every RL section: parse, validate, build and schedules never panic;
/// valid configs round-trip and behave.
#[test]
fn fuzz_rl_toml_configs() {
    run("rl_toml_configs", 4_000, |rng| target(rng, false));
}

/// An unknown key in any RL table (tagged `task` and `schedule` tables included) is
/// rejected, and the error names it.
#[test]
fn fuzz_rl_toml_unknown_keys_are_named() {
    run("rl_toml_unknown_keys", 1_000, |rng| target(rng, true));
}
