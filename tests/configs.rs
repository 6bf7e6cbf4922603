//! The example configs in `examples/configs/` parse and validate, and say what their
//! comments claim: `cpu_default.toml` is [`TrainConfig::cpu_default`] exactly, and
//! `j1_8b_gpu.toml` keeps J1-Llama-8B's published hyperparameters (recipe.md §5).
//!
//! `UPDATE_CONFIGS=1 cargo test --release --test configs` rewrites `cpu_default.toml` from
//! [`TrainConfig::cpu_default`] (after a deliberate change of the CPU defaults).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use thinkjudge::config::{ComputeDtype, DeviceSpec, FinetuneKind};
use thinkjudge::TrainConfig;
use thinkjudge_data::TemplateKind;
use thinkjudge_model::ModelSource;
use thinkjudge_rl::{KlEstimator, LossAggregation, LrSchedule, TaskReward};
use thinkjudge_rollout::Decoding;

fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/configs")
}

/// The header of `cpu_default.toml`; the body is `TrainConfig::cpu_default()` as TOML.
const CPU_DEFAULT_HEADER: &str = "\
# TrainConfig::cpu_default(): LoRA on SmolLM2-135M-Instruct, procedural math pairs, sized for
# a laptop CPU. Every field is written out (the resolved config), so this file doubles as a
# reference of the keys; edit a copy and run it with
#   cargo run --release -- train --config examples/configs/cpu_default.toml
# Regenerate after a change of the defaults: UPDATE_CONFIGS=1 cargo test --release --test configs
";

#[test]
fn every_example_config_parses_and_validates() -> Result<()> {
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(configs_dir())? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let cfg = TrainConfig::from_file(&path)
            .with_context(|| format!("{} does not load", path.display()))?;
        // The resolved config round-trips, as the trainer writes it to every run directory.
        let again = TrainConfig::from_toml_str(&cfg.to_toml_string()?)?;
        assert_eq!(again, cfg, "{} does not round-trip", path.display());
        seen.push(path.file_name().map(|n| n.to_string_lossy().into_owned()));
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            Some("cpu_default.toml".into()),
            Some("j1_8b_gpu.toml".into())
        ],
        "examples/configs/ should hold exactly the documented configs"
    );
    Ok(())
}

#[test]
fn cpu_default_file_is_the_cpu_default() -> Result<()> {
    let path = configs_dir().join("cpu_default.toml");
    let expected = TrainConfig::cpu_default();
    if std::env::var_os("UPDATE_CONFIGS").is_some() {
        let text = format!("{CPU_DEFAULT_HEADER}\n{}", expected.to_toml_string()?);
        std::fs::write(&path, text)?;
    }
    let got = TrainConfig::from_file(&path)?;
    assert!(
        got == expected,
        "{} differs from TrainConfig::cpu_default(); regenerate it with UPDATE_CONFIGS=1 \
         cargo test --release --test configs",
        path.display()
    );
    Ok(())
}

#[test]
fn j1_8b_config_keeps_the_paper_values() -> Result<()> {
    let c = TrainConfig::from_file(&configs_dir().join("j1_8b_gpu.toml"))?;
    // recipe.md §5: Llama-3.1-8B-Instruct, full fine-tuning, G = 5 at temperature 1.0,
    // lr 1e-6, batch 512 (prompts), 4096 tokens in and out, KL 0.01, ~300 steps.
    assert_eq!(
        c.model.source,
        ModelSource::Hub {
            id: "meta-llama/Llama-3.1-8B-Instruct".into(),
            revision: None
        }
    );
    assert_eq!(c.model.finetune, FinetuneKind::Full);
    assert_eq!(c.model.device, DeviceSpec::Cuda(0));
    assert_eq!(c.model.compute_dtype, ComputeDtype::Bf16);
    assert_eq!(c.rollout.group_size, 5);
    assert_eq!(c.rollout.sampling.temperature, 1.0);
    assert_eq!(c.rollout.sampling.top_p, 1.0);
    assert_eq!(c.rollout.sampling.max_new_tokens, 4096);
    assert_eq!(c.data.max_prompt_tokens, 4096);
    assert_eq!(c.data.prompt.template.kind, TemplateKind::PairwiseVerdict);
    assert_eq!(c.reward.task, TaskReward::Verdict {});
    assert_eq!((c.reward.incorrect, c.reward.unparseable), (0.0, 0.0));
    assert_eq!(c.optim.schedule, LrSchedule::Constant { lr: 1e-6 });
    assert_eq!(c.loss.kl_coef, 0.01);
    assert_eq!(c.loss.kl_estimator, KlEstimator::K3);
    assert_eq!(c.loss.entropy_coef, 0.0);
    assert_eq!(c.loss.aggregation, LossAggregation::TokenMean);
    assert_eq!(c.trainer.pairs_per_step * 2, 512);
    assert_eq!(c.trainer.steps, 300);
    assert_eq!(c.eval.decoding, Decoding::Greedy);
    Ok(())
}

#[test]
fn a_broken_config_is_refused_with_the_field_named() {
    // The checks above can fail: a typo and an out-of-range value are both caught.
    let text = std::fs::read_to_string(configs_dir().join("j1_8b_gpu.toml")).unwrap_or_default();
    assert!(
        text.contains("group_size = 5"),
        "j1_8b_gpu.toml lost its group size"
    );
    let typo = text.replace("group_size = 5", "group_sise = 5");
    let e = TrainConfig::from_toml_str(&typo).map(|_| ()).unwrap_err();
    assert!(e.to_string().contains("group_sise"), "{e}");
    let bad = text.replace("group_size = 5", "group_size = 1");
    let e = TrainConfig::from_toml_str(&bad).map(|_| ()).unwrap_err();
    assert!(e.to_string().contains("rollout.group_size"), "{e}");
}
