//! Shared by the training examples (`train_pairwise.rs`, `train_pointwise.rs`; included with
//! `#[path]`): the run directory, the compute-dtype flag, `summary.json` extras and
//! one-line printing of judgments.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use thinkjudge::config::{ComputeDtype, DeviceSpec};
use thinkjudge::eval::JudgedPrompt;
use thinkjudge::models::resolve_model;
use thinkjudge::TrainConfig;
use thinkjudge_model::ModelSource;

/// The flags both training examples share (each adds `--steps`, `--out`, `--eval-pairs` with
/// its own defaults, and its data flags).
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Model: `default` (SmolLM2-135M-Instruct), an HF directory, a .gguf file, or hf:org/name.
    #[arg(long, default_value = "default")]
    pub model: String,
    /// Device: cpu or cuda:N (CUDA needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// dtype of matmuls and activations: f32, bf16 or f16 [default: the config's; f32 on the
    /// CPU, bf16 on a CUDA device]. Master weights and optimizer state stay f32.
    #[arg(long)]
    pub compute_dtype: Option<String>,
    /// Replace an earlier run in --out.
    #[arg(long)]
    pub overwrite: bool,
    /// Seed of data order, sampling and LoRA initialisation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// A TOML run config replacing the built-in one and its data (the other flags still
    /// apply, except the examples' data flags).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Print the resolved run config (TOML) and exit: a starting point for --config.
    #[arg(long)]
    pub print_config: bool,
}

impl RunArgs {
    /// The run config: `--config` or `builtin()`, with the flags applied and validated. With
    /// `--print-config` it is printed and `None` returned; otherwise the run directory `out`
    /// is prepared (see [`prepare_run_dir`]).
    pub fn resolve(
        &self,
        builtin: impl FnOnce() -> TrainConfig,
        out: &Path,
        steps: u64,
        eval_pairs: usize,
    ) -> Result<Option<TrainConfig>> {
        let mut cfg = match &self.config {
            Some(path) => TrainConfig::from_file(path)?,
            None => builtin(),
        };
        cfg.model.source = resolve_model(&self.model)?;
        cfg.model.device = self.device.parse::<DeviceSpec>()?;
        cfg.model.compute_dtype = compute_dtype(
            self.compute_dtype.as_deref(),
            cfg.model.compute_dtype,
            cfg.model.device,
            self.config.is_none(),
        )?;
        cfg.output.run_dir = out.to_path_buf();
        cfg.trainer.seed = self.seed;
        cfg.trainer.steps = steps;
        cfg.trainer.eval_pairs = Some(eval_pairs);
        cfg.validate()?;
        if self.print_config {
            print!("{}", cfg.to_toml_string()?);
            return Ok(None);
        }
        prepare_run_dir(out, self.overwrite)?;
        Ok(Some(cfg))
    }
}

/// One line naming the model.
pub fn describe_model(source: &ModelSource) -> String {
    match source {
        ModelSource::Default => {
            "SmolLM2-135M-Instruct (PyPI-packaged GGUF, fetched once into the thinkjudge cache)"
                .into()
        }
        ModelSource::Dir(d) => format!("{} (HF directory)", d.display()),
        other => other.to_string(),
    }
}

/// The compute dtype: the `--compute-dtype` flag when given; else bf16 on a CUDA device when
/// the config is the example's built-in one (CPU-sized f32), else the config's own.
pub fn compute_dtype(
    flag: Option<&str>,
    configured: ComputeDtype,
    device: DeviceSpec,
    builtin_config: bool,
) -> Result<ComputeDtype> {
    Ok(match flag {
        Some("f32") => ComputeDtype::F32,
        Some("bf16") => ComputeDtype::Bf16,
        Some("f16") => ComputeDtype::F16,
        Some(other) => bail!("--compute-dtype {other}: expected f32, bf16 or f16"),
        // bf16 is the GPU's fast path (tensor cores).
        None if builtin_config && device != DeviceSpec::Cpu => ComputeDtype::Bf16,
        None => configured,
    })
}

/// Refuses to mix two runs in one directory unless `overwrite`, which removes the old one.
pub fn prepare_run_dir(dir: &Path, overwrite: bool) -> Result<()> {
    let used = dir.join("checkpoints").exists() || dir.join("metrics.jsonl").exists();
    if !used {
        return Ok(());
    }
    if !overwrite {
        bail!(
            "{} already holds a run; pass --overwrite to replace it, or --out to pick another directory",
            dir.display()
        );
    }
    std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    Ok(())
}

/// Adds `entries` to the JSON object in `summary.json` (the trainer writes it).
pub fn extend_summary(
    path: &Path,
    entries: serde_json::Map<String, serde_json::Value>,
) -> Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    if let Some(obj) = value.as_object_mut() {
        obj.extend(entries);
    }
    std::fs::write(path, serde_json::to_string_pretty(&value)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// `right`, `wrong` or `unparseable`.
pub fn mark(j: &JudgedPrompt) -> &'static str {
    match j.correct {
        Some(true) => "right",
        Some(false) => "wrong",
        None => "unparseable",
    }
}

/// `text` on one line (whitespace runs collapsed), cut to `max` characters.
pub fn one_line(text: &str, max: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        flat
    } else {
        format!("{}…", flat.chars().take(max).collect::<String>())
    }
}
