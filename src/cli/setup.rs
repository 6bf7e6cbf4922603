//! Loading a judge for `eval` and `judge`: the model (a source, a checkpoint, or an adapter
//! directory on top of a base) and the config its prompts and decoding come from.
//!
//! Where the prompt settings come from, first match wins: `--config`; the checkpoint's own
//! `config.toml` (so a trained judge is asked exactly as it was trained); the CPU default
//! config ([`TrainConfig::cpu_default`]). Flags then override single values.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::Device;
use clap::Args;
use thinkjudge::bench_length::Rendering;
use thinkjudge::config::{DeviceSpec, FinetuneKind};
use thinkjudge::models::resolve_model;
use thinkjudge::trainer::{ADAPTER_DIR, CONFIG_FILE, MODEL_DIR};
use thinkjudge::TrainConfig;
use thinkjudge_data::TemplateKind;
use thinkjudge_model::lora::ADAPTER_CONFIG_FILE;
use thinkjudge_model::{load, Finetune, JudgeTokenizer, Llama, LlamaOptions, ModelSource};

/// Options shared by `eval` and `judge`: which judge, asked how.
#[derive(Debug, Clone, Args)]
pub struct JudgeModelArgs {
    /// Base model: `default` (SmolLM2-135M-Instruct), an HF directory, a .gguf file or
    /// hf:org/name [default: the checkpoint's, else `default`].
    #[arg(long)]
    pub model: Option<String>,
    /// A trained judge: a run directory (its newest checkpoint), a checkpoint directory
    /// (`checkpoints/step-N`), or a PEFT adapter directory.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// A run config whose prompt and decoding settings to use [default: the checkpoint's
    /// config.toml, else the CPU default config].
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Judgment template: pav (verdict), pas (scores), pavs (scores + verdict), pos
    /// (pointwise score) [default: from the config].
    #[arg(long, value_parser = parse_template)]
    pub template: Option<TemplateKind>,
    /// Thought budget in tokens: the thought is closed by force after this many.
    #[arg(long)]
    pub max_thought_tokens: Option<usize>,
    /// Most new tokens per judgment.
    #[arg(long)]
    pub max_new_tokens: Option<usize>,
    /// Device: cpu or cuda:N [default: from the config].
    #[arg(long)]
    pub device: Option<String>,
}

fn parse_template(s: &str) -> Result<TemplateKind, String> {
    match s {
        "pav" => Ok(TemplateKind::PairwiseVerdict),
        "pas" => Ok(TemplateKind::PairwiseScores),
        "pavs" => Ok(TemplateKind::PairwiseVerdictScores),
        "pos" => Ok(TemplateKind::PointwiseScore),
        other => Err(format!(
            "unknown template `{other}`; expected pav, pas, pavs or pos"
        )),
    }
}

/// A judge ready to run.
pub struct Judge {
    /// Prompt, decoding and reward settings.
    pub config: TrainConfig,
    /// The model (adapters loaded).
    pub model: Llama,
    /// Its tokenizer.
    pub tokenizer: JudgeTokenizer,
    /// One line saying what was loaded.
    pub description: String,
}

/// What `--checkpoint` points at.
struct Checkpoint {
    /// Full fine-tuned weights (HF directory).
    model_dir: Option<PathBuf>,
    /// LoRA adapters (PEFT directory).
    adapter_dir: Option<PathBuf>,
    /// The config saved with it.
    config: Option<PathBuf>,
}

fn find_checkpoint(path: &Path) -> Result<Checkpoint> {
    let mut dir = path.to_path_buf();
    if dir.join(ADAPTER_CONFIG_FILE).is_file() {
        let config = dir.parent().map(|p| p.join(CONFIG_FILE));
        return Ok(Checkpoint {
            model_dir: None,
            adapter_dir: Some(dir),
            config: config.filter(|c| c.is_file()),
        });
    }
    let checkpoints = dir.join("checkpoints");
    if checkpoints.is_dir() {
        let (found, refused) = thinkjudge::checkpoint::latest_valid(&checkpoints)?;
        for problem in refused {
            tracing::warn!("refusing checkpoint {problem}");
        }
        dir = match found {
            Some((step, d)) => {
                tracing::info!("using checkpoint step {step}: {}", d.display());
                d
            }
            None => bail!("{} holds no valid checkpoint", checkpoints.display()),
        };
    }
    let has = |sub: &str| Some(dir.join(sub)).filter(|d| d.is_dir());
    let found = Checkpoint {
        model_dir: has(MODEL_DIR),
        adapter_dir: has(ADAPTER_DIR),
        config: Some(dir.join(CONFIG_FILE)).filter(|c| c.is_file()),
    };
    if found.model_dir.is_none() && found.adapter_dir.is_none() {
        bail!(
            "{} is not a run directory, a checkpoint (with {ADAPTER_DIR}/ or {MODEL_DIR}/) or an \
             adapter directory ({ADAPTER_CONFIG_FILE})",
            path.display()
        );
    }
    Ok(found)
}

/// Loads the judge `args` describe.
pub fn open_judge(args: &JudgeModelArgs) -> Result<Judge> {
    let checkpoint = args
        .checkpoint
        .as_deref()
        .map(find_checkpoint)
        .transpose()?;
    let config_path = args
        .config
        .clone()
        .or_else(|| checkpoint.as_ref().and_then(|c| c.config.clone()));
    let mut config = match &config_path {
        Some(p) => TrainConfig::from_file(p)?,
        None => TrainConfig::cpu_default(),
    };
    apply_overrides(&mut config, args)?;

    // The weights: --model, else the checkpoint's full weights, else the config's source.
    let source = match (
        &args.model,
        checkpoint.as_ref().and_then(|c| c.model_dir.clone()),
    ) {
        (Some(spec), _) => resolve_model(spec)?,
        (None, Some(dir)) => ModelSource::Dir(dir),
        (None, None) if config_path.is_some() => config.model.source.clone(),
        (None, None) => resolve_model("default")?,
    };
    let device = device(config.model.device)?;
    let loaded = load(&source, &device).with_context(|| format!("loading model {source}"))?;
    let adapter_dir = checkpoint.as_ref().and_then(|c| c.adapter_dir.clone());
    let finetune = match &adapter_dir {
        Some(_) => Finetune::Lora {
            config: config.model.lora.clone(),
            seed: 0,
        },
        None => Finetune::Frozen,
    };
    let options = LlamaOptions {
        compute_dtype: config.model.compute_dtype.dtype(),
        finetune,
        ..LlamaOptions::default()
    };
    let mut model = Llama::from_weights(&loaded.config, loaded.weights, &device, options)?;
    let mut description = format!("model {source}");
    if let Some(dir) = &adapter_dir {
        model
            .load_adapters(dir)
            .with_context(|| format!("loading adapters from {}", dir.display()))?;
        description.push_str(&format!(" + LoRA adapters {}", dir.display()));
    }
    if let Some(p) = &config_path {
        description.push_str(&format!(", prompts as in {}", p.display()));
    }
    config.model.source = source;
    config.model.finetune = match adapter_dir {
        Some(_) => FinetuneKind::Lora,
        None => FinetuneKind::Full,
    };
    Ok(Judge {
        config,
        model,
        tokenizer: loaded.tokenizer,
        description,
    })
}

fn apply_overrides(config: &mut TrainConfig, args: &JudgeModelArgs) -> Result<()> {
    if let Some(kind) = args.template {
        let old = config.data.prompt.template.kind;
        config.data.prompt.template.kind = kind;
        let sampling = &mut config.rollout.sampling;
        // A forced close that opens `<answer>` only suits verdict templates: the others are
        // put inside their first judgment tag instead (small judges forced out of their
        // thought then write the score).
        if kind != old && sampling.thinking.forced_close.contains("<answer>") && !has_verdict(kind)
        {
            let tag = match kind {
                TemplateKind::PointwiseScore => "<score>",
                _ => "<score_A>",
            };
            sampling.thinking.forced_close = format!("\n</think>\n{tag}");
        }
        // Stop at the new template's last tag when the config stopped at the old one's.
        if kind != old && sampling.stop_strings == Rendering::default_stop_strings(old) {
            sampling.stop_strings = Rendering::default_stop_strings(kind);
        }
        config.reward.task = match kind {
            TemplateKind::PairwiseVerdict | TemplateKind::PairwiseVerdictScores => {
                thinkjudge_rl::TaskReward::Verdict {}
            }
            TemplateKind::PairwiseScores => thinkjudge_rl::TaskReward::Scores {},
            TemplateKind::PointwiseScore => thinkjudge_rl::TaskReward::PointwiseLabel {
                threshold: thinkjudge::judging::label_threshold(&config.reward),
            },
        };
    }
    if let Some(n) = args.max_thought_tokens {
        let thinking = &mut config.rollout.sampling.thinking;
        thinking.max_thought_tokens = Some(n);
        thinking.min_thought_tokens = thinking.min_thought_tokens.min(n);
    }
    if let Some(n) = args.max_new_tokens {
        config.rollout.sampling.max_new_tokens = n;
        config.eval.max_new_tokens = Some(n);
    }
    if let Some(d) = &args.device {
        config.model.device = d.parse::<DeviceSpec>()?;
    }
    config.validate()?;
    Ok(())
}

fn has_verdict(kind: TemplateKind) -> bool {
    matches!(
        kind,
        TemplateKind::PairwiseVerdict | TemplateKind::PairwiseVerdictScores
    )
}

/// The candle device of `spec`.
pub fn device(spec: DeviceSpec) -> Result<Device> {
    Ok(match spec {
        DeviceSpec::Cpu => Device::Cpu,
        DeviceSpec::Cuda(n) => Device::new_cuda(n).with_context(|| {
            format!("opening cuda:{n} (the binary must be built with CUDA support)")
        })?,
    })
}
