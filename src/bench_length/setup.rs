//! Loading the judge (base model, optional LoRA adapters) and the pairs.

use std::path::{Path, PathBuf};

use thinkjudge_model::lora::ADAPTER_CONFIG_FILE;
use thinkjudge_model::{load, JudgeTokenizer, Llama, LlamaOptions};

use super::config::{DataSpec, LengthBenchConfig};
use super::measure::{BenchData, Rendering};
use crate::config::{DataSource, TrainConfig};
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
    /// The adapter directory applied ([`adapter_dir`] of `cfg.adapter`).
    pub adapter: Option<PathBuf>,
}

/// Loads `cfg.model` on `cfg.device` and applies the adapters of `cfg.adapter`.
///
/// # Errors
/// [`TrainError::Device`], model loading and adapter errors.
pub fn load_judge(cfg: &LengthBenchConfig) -> Result<Judge> {
    let device = cfg.device.resolve()?;
    let loaded = load(&resolve_model(&cfg.model)?, &device)?;
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
    let adapter = cfg.adapter.as_deref().map(adapter_dir).transpose()?;
    if let Some(dir) = &adapter {
        model.load_adapters(dir)?;
    }
    Ok(Judge {
        model,
        tokenizer: loaded.tokenizer,
        description,
        adapter,
    })
}

/// The PEFT adapter directory of `path`: `path` itself when it holds `adapter_config.json`,
/// else `path/adapter` (a checkpoint); a run directory (holding `checkpoints/`) is replaced
/// by its newest checkpoint that verifies first.
///
/// # Errors
/// [`TrainError::InvalidConfig`] (field `adapter`) when there is none; checkpoint listing
/// errors.
pub fn adapter_dir(path: &Path) -> Result<PathBuf> {
    let mut dir = path.to_path_buf();
    let checkpoints = dir.join("checkpoints");
    if checkpoints.is_dir() {
        let (found, refused) = crate::checkpoint::latest_valid(&checkpoints)?;
        for problem in refused {
            tracing::warn!("refusing checkpoint {problem}");
        }
        if let Some((step, d)) = found {
            tracing::info!("using checkpoint step {step}: {}", d.display());
            dir = d;
        }
    }
    [dir.clone(), dir.join(crate::trainer::ADAPTER_DIR)]
        .into_iter()
        .find(|d| d.join(ADAPTER_CONFIG_FILE).is_file())
        .ok_or_else(|| {
            TrainError::config(
                "adapter",
                format!(
                    "no {ADAPTER_CONFIG_FILE} in {} or {}/adapter (pass a run directory, a \
                     checkpoint directory or a PEFT adapter directory)",
                    dir.display(),
                    dir.display()
                ),
            )
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adapter_dir_takes_an_adapter_or_a_checkpoint_directory() -> Result<()> {
        let tmp = tempfile::tempdir().map_err(|e| TrainError::io(Path::new("tmp"), e))?;
        let ckpt = tmp.path().join("step-5");
        let adapter = ckpt.join("adapter");
        std::fs::create_dir_all(&adapter).map_err(|e| TrainError::io(&adapter, e))?;
        let e = adapter_dir(&ckpt).unwrap_err().to_string();
        assert!(
            e.contains(ADAPTER_CONFIG_FILE) && e.contains("step-5"),
            "{e}"
        );
        let cfg = adapter.join(ADAPTER_CONFIG_FILE);
        std::fs::write(&cfg, "{}").map_err(|e| TrainError::io(&cfg, e))?;
        assert_eq!(adapter_dir(&ckpt)?, adapter);
        assert_eq!(adapter_dir(&adapter)?, adapter);
        Ok(())
    }
}
