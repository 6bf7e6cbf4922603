//! The command line of the benchmark, shared by `thinkjudge bench-length` and
//! `examples/thought_length.rs`: [`LengthBenchArgs`] (clap) → [`LengthBenchConfig`], and
//! [`run_args`], which runs it and writes the comparisons asked for.
//!
//! Precedence: the built-in defaults, then `--config` (a TOML [`LengthBenchConfig`]), then
//! each flag given.

use std::path::{Path, PathBuf};

use clap::Args;
use thinkjudge_data::{DataFormat, TemplateKind};

use super::config::{parse_budgets, parse_counts, DataSpec, LengthBenchConfig};
use super::report::LengthBenchReport;
use crate::config::{ComputeDtype, DataSource};
use crate::error::{Result, TrainError};

/// Thought length vs accuracy: budget sweep, natural-length buckets, SC@N / Mean-Score@N.
#[derive(Debug, Clone, Default, Args)]
pub struct LengthBenchArgs {
    /// A TOML benchmark config (every field of `LengthBenchConfig`); the flags below override
    /// it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Base model: `default` (SmolLM2-135M-Instruct), an HF directory, a .gguf file or
    /// hf:org/name [default: default].
    #[arg(long)]
    pub model: Option<String>,
    /// A trained LoRA judge on top of --model: a run directory (its newest valid
    /// checkpoint), a checkpoint directory (`checkpoints/step-N`) or a PEFT adapter directory.
    /// (A fully fine-tuned checkpoint is an HF directory: pass `--model <ckpt>/model`.)
    #[arg(long, visible_alias = "adapter")]
    pub checkpoint: Option<PathBuf>,
    /// The pairs: a dataset file (read as --format), `gsm8k:<file>`, `math:<file>`,
    /// `procedural`, or `run:<run dir>` (that run's held-out pairs, rendered as it trains)
    /// [default: GSM8K pairs from ../shared/data/gsm8k/test.jsonl when present, else
    /// procedural].
    #[arg(long)]
    pub data: Option<String>,
    /// Format of a --data file: jsonl, hh-rlhf, pandalm, judgebench, llmbar, rewardbench,
    /// libra; or gsm8k / math [default: jsonl].
    #[arg(long)]
    pub format: Option<String>,
    /// At most this many pairs, each judged in both orders [default: 32].
    #[arg(long)]
    pub pairs: Option<usize>,
    /// Thought budgets in tokens, `none` = unconstrained [default: 0,32,64,128,256,512,none].
    #[arg(long)]
    pub budgets: Option<String>,
    /// The N of SC@N / Mean-Score@N, e.g. `1,3,5` (max(N) samples per prompt) [default: none].
    #[arg(long)]
    pub sc: Option<String>,
    /// Thought budget of the SC@N samples [default: none].
    #[arg(long)]
    pub sc_budget: Option<String>,
    /// Temperature of sampled judgments [default: 1.0].
    #[arg(long)]
    pub temperature: Option<f64>,
    /// Top-p of sampled judgments [default: 0.95].
    #[arg(long)]
    pub top_p: Option<f64>,
    /// Most completion tokens [default: 256, or the largest budget + 64 when larger].
    #[arg(long)]
    pub max_new_tokens: Option<usize>,
    /// Judgment template: pav (verdict), pas (scores), pavs (scores + verdict), pos
    /// (pointwise score) [default: pav].
    #[arg(long)]
    pub template: Option<String>,
    /// Seed of the sampling streams [default: 0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Device: cpu or cuda:N [default: cpu].
    #[arg(long)]
    pub device: Option<String>,
    /// Matmul dtype: f32, bf16 or f16 [default: f32].
    #[arg(long)]
    pub compute_dtype: Option<String>,
    /// A run's metrics.jsonl: adds the training view (thought length and accuracy over steps).
    #[arg(long)]
    pub metrics: Option<PathBuf>,
    /// Name of the judge in tables and plots [default: `trained` with --checkpoint, else
    /// `base`].
    #[arg(long)]
    pub label: Option<String>,
    /// Output directory [default: runs/thought_length].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Earlier `report.json` files (or their directories) to compare with: writes
    /// `comparison.md` and `comparison.png` (accuracy and thought length per budget).
    #[arg(long, num_args = 1..)]
    pub compare: Vec<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// The budgets of the issue's sweep.
pub const DEFAULT_BUDGETS: &str = "0,32,64,128,256,512,none";

impl LengthBenchArgs {
    /// The config these arguments describe (see the module docs for precedence); not yet
    /// validated.
    ///
    /// # Errors
    /// [`TrainError::InvalidConfig`] naming the bad flag; config file errors.
    pub fn to_config(&self) -> Result<LengthBenchConfig> {
        let from_file = self.config.is_some();
        let mut cfg = match &self.config {
            Some(path) => LengthBenchConfig::from_file(path)?,
            None => LengthBenchConfig {
                budgets: parse_budgets(DEFAULT_BUDGETS)?,
                out: Some("runs/thought_length".into()),
                ..LengthBenchConfig::default()
            },
        };
        if let Some(m) = &self.model {
            cfg.model.clone_from(m);
        }
        if self.checkpoint.is_some() {
            cfg.adapter.clone_from(&self.checkpoint);
        }
        if let Some(n) = self.pairs {
            cfg.pairs = n;
        }
        if let Some(spec) = &self.data {
            cfg.data = data_spec(spec, self.format.as_deref(), cfg.pairs)?;
        } else if !from_file {
            cfg.data = default_data(cfg.pairs);
        }
        if let Some(b) = &self.budgets {
            cfg.budgets = parse_budgets(b)?;
        }
        if let Some(n) = &self.sc {
            cfg.samples = parse_counts(n)?;
        }
        if let Some(b) = &self.sc_budget {
            cfg.samples_budget = b.parse()?;
        }
        if let Some(t) = self.temperature {
            cfg.temperature = t;
        }
        if let Some(p) = self.top_p {
            cfg.top_p = p;
        }
        match self.max_new_tokens {
            Some(n) => cfg.max_new_tokens = n,
            None if !from_file => {
                let largest = cfg.budgets.iter().filter_map(|b| b.max_thought_tokens());
                cfg.max_new_tokens = largest.map(|b| b + 64).fold(256, usize::max);
            }
            None => {}
        }
        if let Some(t) = &self.template {
            cfg.prompt.template.kind = parse_template(t)?;
        }
        if let Some(s) = self.seed {
            cfg.seed = s;
        }
        if let Some(d) = &self.device {
            cfg.device = d.parse()?;
        }
        if let Some(d) = &self.compute_dtype {
            cfg.compute_dtype = parse_dtype(d)?;
        }
        if self.metrics.is_some() {
            cfg.metrics.clone_from(&self.metrics);
        }
        match &self.label {
            Some(l) => cfg.label.clone_from(l),
            None if !from_file => {
                cfg.label = if cfg.adapter.is_some() {
                    "trained"
                } else {
                    "base"
                }
                .into();
            }
            None => {}
        }
        if self.out.is_some() {
            cfg.out.clone_from(&self.out);
        }
        if self.quiet {
            cfg.progress = false;
        }
        Ok(cfg)
    }
}

/// Runs the benchmark `args` describe, writes its outputs and, with `--compare`, the
/// comparison with the earlier reports (into the same directory).
///
/// # Errors
/// Those of [`LengthBenchArgs::to_config`], [`super::run`] and [`super::compare`].
pub fn run_args(args: &LengthBenchArgs) -> Result<LengthBenchReport> {
    let cfg = args.to_config()?;
    let report = super::run(&cfg)?;
    if !args.compare.is_empty() {
        let dir = cfg.out.as_ref().ok_or_else(|| {
            TrainError::config("out", "--compare needs an output directory (--out)")
        })?;
        let mut reports = args
            .compare
            .iter()
            .map(|p| super::read_report(&report_path(p)))
            .collect::<Result<Vec<_>>>()?;
        reports.push(report.clone());
        super::compare(&reports, dir)?;
    }
    Ok(report)
}

/// `path` itself, or `path/report.json` for a directory.
fn report_path(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join("report.json")
    } else {
        path.to_path_buf()
    }
}

/// `--data` / `--format` → a [`DataSpec`]; `--format gsm8k` / `math` read the file as
/// GSM8K / MATH-500 JSONL.
fn data_spec(spec: &str, format: Option<&str>, pairs: usize) -> Result<DataSpec> {
    match format.map(str::trim) {
        None => DataSpec::parse(spec, None, pairs),
        Some(f @ ("gsm8k" | "math")) => DataSpec::parse(&format!("{f}:{spec}"), None, pairs),
        Some(f) => DataSpec::parse(spec, Some(f.parse::<DataFormat>()?), pairs),
    }
}

/// GSM8K pairs from the shared data folder when it is there, else procedural pairs.
fn default_data(pairs: usize) -> DataSpec {
    let test = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/gsm8k/test.jsonl");
    let source = if test.is_file() {
        DataSource::Gsm8k {
            path: test,
            synth: Default::default(),
        }
    } else {
        DataSource::Procedural {
            pairs,
            generator: Default::default(),
        }
    };
    DataSpec::Sources {
        sources: vec![source],
    }
}

fn parse_template(s: &str) -> Result<TemplateKind> {
    match s.trim() {
        "pav" => Ok(TemplateKind::PairwiseVerdict),
        "pas" => Ok(TemplateKind::PairwiseScores),
        "pavs" => Ok(TemplateKind::PairwiseVerdictScores),
        "pos" => Ok(TemplateKind::PointwiseScore),
        other => Err(TrainError::config(
            "template",
            format!("`{other}` is not a template; expected pav, pas, pavs or pos"),
        )),
    }
}

fn parse_dtype(s: &str) -> Result<ComputeDtype> {
    match s.trim() {
        "f32" => Ok(ComputeDtype::F32),
        "bf16" => Ok(ComputeDtype::Bf16),
        "f16" => Ok(ComputeDtype::F16),
        other => Err(TrainError::config(
            "compute_dtype",
            format!("`{other}` is not a dtype; expected f32, bf16 or f16"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench_length::Budget;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: LengthBenchArgs,
    }

    fn config(argv: &[&str]) -> Result<LengthBenchConfig> {
        let cli = Cli::try_parse_from(std::iter::once("x").chain(argv.iter().copied()))
            .map_err(|e| TrainError::config("argv", e.to_string()))?;
        cli.args.to_config()
    }

    #[test]
    fn flags_become_config_values() {
        let c = config(&[
            "--data",
            "procedural",
            "--pairs",
            "24",
            "--budgets",
            "0,8,none",
            "--sc",
            "1,3,5",
            "--sc-budget",
            "16",
            "--template",
            "pas",
            "--adapter",
            "runs/x",
            "--seed",
            "7",
        ])
        .unwrap();
        assert_eq!(c.pairs, 24);
        assert!(matches!(
            c.data,
            DataSpec::Sources { ref sources } if matches!(sources[..], [DataSource::Procedural { pairs: 24, .. }])
        ));
        assert_eq!(
            c.budgets,
            vec![Budget::Tokens(0), Budget::Tokens(8), Budget::Unlimited]
        );
        assert_eq!(c.samples, vec![1, 3, 5]);
        assert_eq!(c.samples_budget, Budget::Tokens(16));
        assert_eq!(c.prompt.template.kind, TemplateKind::PairwiseScores);
        assert_eq!(c.adapter, Some(PathBuf::from("runs/x")));
        assert_eq!(c.label, "trained");
        assert_eq!(c.seed, 7);
        assert_eq!(c.max_new_tokens, 256);
        c.validate().unwrap();
    }

    #[test]
    fn defaults_follow_the_issue_and_bad_flags_name_themselves() {
        let c = config(&[]).unwrap();
        assert_eq!(c.budgets, parse_budgets(DEFAULT_BUDGETS).unwrap());
        // The largest budget (512) fits: 512 + 64 new tokens.
        assert_eq!(c.max_new_tokens, 576);
        assert_eq!(c.label, "base");
        let e = config(&["--template", "xyz"]).unwrap_err().to_string();
        assert!(e.contains("`xyz`"), "{e}");
        let e = config(&["--budgets", "4,x"]).unwrap_err().to_string();
        assert!(e.contains("`x`"), "{e}");
        let e = config(&["--data", "f.txt", "--format", "nope"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope"), "{e}");
        let g = config(&["--data", "t.jsonl", "--format", "gsm8k"]).unwrap();
        assert!(matches!(
            g.data,
            DataSpec::Sources { ref sources } if matches!(sources[..], [DataSource::Gsm8k { .. }])
        ));
    }
}
