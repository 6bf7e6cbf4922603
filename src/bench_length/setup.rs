//! Loading the judge (base model, optional LoRA adapters) and the pairs.

use std::path::{Path, PathBuf};

use candle_core::Device;
use thinkjudge_model::lora::ADAPTER_CONFIG_FILE;
use thinkjudge_model::{load, JudgeTokenizer, Llama, LlamaOptions, LoadedModel};

use super::config::{DataSpec, LengthBenchConfig};
use super::measure::{BenchData, Rendering};
use crate::config::{DataSource, DeviceSpec, TrainConfig};
use crate::dataset;
use crate::error::{Result, TrainError};
use crate::judging::label_threshold;
use crate::models::resolve_model;

/// A judge ready to sample.
#[derive(Debug)]
pub struct Judge {
    /// The model (inference only; adapters applied).
    pub model: Llama,
    /// Its tokenizer.
    pub tokenizer: JudgeTokenizer,
    /// The model spec and the path it was read from.
    pub description: String,
}

/// Loads `cfg.model` (or uses `preloaded`) on `cfg.device` and applies `cfg.adapter`.
///
/// # Errors
/// [`TrainError::Device`], model loading and adapter errors.
pub fn load_judge(cfg: &LengthBenchConfig, preloaded: Option<LoadedModel>) -> Result<Judge> {
    let device = device(cfg.device)?;
    let loaded = match preloaded {
        Some(m) => m,
        None => load(&resolve_model(&cfg.model)?, &device)?,
    };
    let description = format!(
        "{} ({})",
        loaded.origin.source,
        loaded.origin.path.display()
    );
    let options = LlamaOptions {
        compute_dtype: cfg.compute_dtype.dtype(),
        ..LlamaOptions::default()
    };
    let mut model = Llama::from_weights(&loaded.config, loaded.weights, &device, options)?;
    if let Some(dir) = &cfg.adapter {
        model.load_adapters(&adapter_dir(dir)?)?;
    }
    Ok(Judge {
        model,
        tokenizer: loaded.tokenizer,
        description,
    })
}

/// `dir` itself when it holds `adapter_config.json`, else `dir/adapter` (a checkpoint).
///
/// # Errors
/// [`TrainError::InvalidConfig`] (field `adapter`) when neither does.
pub fn adapter_dir(dir: &Path) -> Result<PathBuf> {
    [dir.to_path_buf(), dir.join("adapter")]
        .into_iter()
        .find(|d| d.join(ADAPTER_CONFIG_FILE).is_file())
        .ok_or_else(|| {
            TrainError::config(
                "adapter",
                format!(
                    "no {ADAPTER_CONFIG_FILE} in {} or {}/adapter (pass a PEFT adapter \
                     directory, e.g. <run>/checkpoints/step-N/adapter)",
                    dir.display(),
                    dir.display()
                ),
            )
        })
}

fn device(spec: DeviceSpec) -> Result<Device> {
    match spec {
        DeviceSpec::Cpu => Ok(Device::Cpu),
        DeviceSpec::Cuda(n) => Device::new_cuda(n).map_err(|e| TrainError::Device {
            spec: spec.to_string(),
            problem: e.to_string(),
        }),
    }
}

/// Builds and tokenizes the pairs of `cfg.data` (at most `cfg.pairs`).
///
/// # Errors
/// Loader, template and tokenizer errors; [`TrainError::DataSetup`] when no pair is left.
pub fn load_data(cfg: &LengthBenchConfig, tokenizer: &JudgeTokenizer) -> Result<BenchData> {
    let (mut units, rendering, description) = match &cfg.data {
        DataSpec::Sources { sources } => {
            let mut tc = TrainConfig::default();
            tc.data.prompt = cfg.prompt.clone();
            tc.data.chat_template = cfg.chat_template.clone();
            tc.data.max_prompt_tokens = cfg.max_prompt_tokens;
            let units = dataset::build_units(&tc, sources, Some(cfg.pairs), tokenizer)?;
            let kind = cfg.prompt.template.kind;
            let rendering = Rendering {
                kind,
                prompt_opens_thought: cfg.prompt.prefill_think,
                stop_strings: Rendering::default_stop_strings(kind),
                forced_close: cfg
                    .forced_close
                    .clone()
                    .unwrap_or_else(|| Rendering::default_forced_close(kind)),
                threshold: cfg.threshold,
            };
            let names: Vec<String> = sources.iter().map(describe).collect();
            (units, rendering, names.join(" + "))
        }
        DataSpec::Run { dir } => {
            let tc = TrainConfig::from_file(&dir.join("config.toml"))?;
            let units = dataset::build(&tc, tokenizer)?.eval;
            let thinking = &tc.rollout.sampling.thinking;
            let rendering = Rendering {
                kind: tc.data.prompt.template.kind,
                prompt_opens_thought: thinking.prompt_opens_thought,
                stop_strings: tc.rollout.sampling.stop_strings.clone(),
                forced_close: thinking.forced_close.clone(),
                threshold: label_threshold(&tc.reward),
            };
            let names: Vec<String> = tc.data.train.iter().map(describe).collect();
            let what = format!(
                "held-out pairs of the run {} ({})",
                dir.display(),
                names.join(" + ")
            );
            (units, rendering, what)
        }
    };
    units.truncate(cfg.pairs);
    if units.is_empty() {
        return Err(TrainError::DataSetup(format!(
            "no pairs to judge from {description}"
        )));
    }
    Ok(BenchData {
        units,
        rendering,
        description,
    })
}

fn describe(source: &DataSource) -> String {
    match source {
        DataSource::Procedural { generator: g, .. } => format!(
            "procedural ({}-{} steps, operands {}-{}, seed {})",
            g.min_steps, g.max_steps, g.min_operand, g.max_operand, g.seed
        ),
        DataSource::Gsm8k { path, .. } => format!("GSM8K pairs from {}", path.display()),
        DataSource::Math { path, .. } => format!("MATH pairs from {}", path.display()),
        DataSource::File { path, format, .. } => {
            format!("{} ({})", path.display(), format.name())
        }
    }
}
