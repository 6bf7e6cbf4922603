//! [`LengthBenchConfig`]: what a thought-length benchmark measures (serde; every field has a
//! default; unknown keys are errors), and the parsers of its command-line spellings
//! ([`parse_budgets`], [`parse_counts`], [`DataSpec::parse`]).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thinkjudge_data::{DataFormat, Gsm8kConfig, MathConfig, ProceduralConfig, PromptConfig};
use thinkjudge_rollout::Decoding;

use crate::config::{ChatTemplateChoice, ComputeDtype, DataSource, DeviceSpec};
use crate::error::{Result, TrainError};

/// A thought budget: the thought is forced closed after this many tokens
/// (`thinking.max_thought_tokens`), or never (`Unlimited`, written `none`; the completion is
/// then bounded by `max_new_tokens` only). Ordered with `Unlimited` last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Budget {
    /// At most this many thought tokens; 0 closes the thought before the first sampled token.
    Tokens(usize),
    /// No budget.
    Unlimited,
}

impl Budget {
    /// `thinking.max_thought_tokens` for this budget.
    pub fn max_thought_tokens(self) -> Option<usize> {
        match self {
            Budget::Tokens(n) => Some(n),
            Budget::Unlimited => None,
        }
    }
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Budget::Tokens(n) => write!(f, "{n}"),
            Budget::Unlimited => f.write_str("none"),
        }
    }
}

impl FromStr for Budget {
    type Err = TrainError;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "none" | "unlimited" => Ok(Budget::Unlimited),
            t => t.parse().map(Budget::Tokens).map_err(|_| {
                TrainError::config(
                    "budgets",
                    format!("`{t}` is not a budget: a number of tokens or `none`"),
                )
            }),
        }
    }
}

/// JSON/TOML: a number, or the string `"none"`.
impl Serialize for Budget {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Budget::Tokens(n) => s.serialize_u64(*n as u64),
            Budget::Unlimited => s.serialize_str("none"),
        }
    }
}

impl<'de> Deserialize<'de> for Budget {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(usize),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(Budget::Tokens(n)),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// `"0,32,64,none"` → budgets, in the order given.
///
/// # Errors
/// [`TrainError::InvalidConfig`] naming the bad entry.
pub fn parse_budgets(list: &str) -> Result<Vec<Budget>> {
    list.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(str::parse)
        .collect()
}

/// `"1,3,5"` → counts (N of SC@N).
///
/// # Errors
/// [`TrainError::InvalidConfig`] naming the bad entry.
pub fn parse_counts(list: &str) -> Result<Vec<usize>> {
    list.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.trim().parse().map_err(|_| {
                TrainError::config("samples", format!("`{}` is not a count", s.trim()))
            })
        })
        .collect()
}

/// How natural thought lengths are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Buckets {
    /// `count` buckets holding about equal numbers of samples (quantiles; equal lengths
    /// never straddle two buckets, so there may be fewer).
    Quantile {
        /// Buckets wanted, ≥ 1.
        count: usize,
    },
    /// Buckets `[0, w)`, `[w, 2w)`, …; empty ones are left out.
    Width {
        /// Width in tokens, ≥ 1.
        width: usize,
    },
}

/// Which pairs are judged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum DataSpec {
    /// Pairs from these sources, rendered with the benchmark's `prompt` settings.
    Sources {
        /// Concatenated, then capped at `pairs`.
        sources: Vec<DataSource>,
    },
    /// The held-out pairs of a training run, rendered exactly as the run renders them: its
    /// `config.toml` gives the data, the split, the prompt and chat templates, the stop
    /// strings, the forced close and the pointwise threshold (the benchmark's own `prompt`,
    /// `chat_template`, `max_prompt_tokens` and `forced_close` are then not used).
    Run {
        /// The run directory (holding `config.toml`).
        dir: PathBuf,
    },
}

impl DataSpec {
    /// The command-line spelling: `procedural` (the built-in generator, `pairs` pairs),
    /// `gsm8k:<path>`, `math:<path>`, `run:<run dir>`, or a dataset file read as `format`
    /// (default `jsonl`).
    ///
    /// # Errors
    /// [`TrainError::InvalidConfig`] for an empty spec.
    pub fn parse(spec: &str, format: Option<DataFormat>, pairs: usize) -> Result<Self> {
        let spec = spec.trim();
        let one = |source| {
            Ok(DataSpec::Sources {
                sources: vec![source],
            })
        };
        if spec.is_empty() {
            return Err(TrainError::config("data", "is empty"));
        }
        if spec == "procedural" {
            return one(DataSource::Procedural {
                pairs,
                generator: ProceduralConfig::default(),
            });
        }
        if let Some(path) = spec.strip_prefix("gsm8k:") {
            return one(DataSource::Gsm8k {
                path: path.into(),
                synth: Gsm8kConfig::default(),
            });
        }
        if let Some(path) = spec.strip_prefix("math:") {
            return one(DataSource::Math {
                path: path.into(),
                synth: MathConfig::default(),
            });
        }
        if let Some(dir) = spec.strip_prefix("run:") {
            return Ok(DataSpec::Run { dir: dir.into() });
        }
        one(DataSource::File {
            path: spec.into(),
            format: format.unwrap_or(DataFormat::Jsonl),
            load: Default::default(),
        })
    }
}

/// A thought-length benchmark (see the [module docs](super)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LengthBenchConfig {
    /// `default` (SmolLM2-135M-Instruct), an HF directory, a `.gguf` file, or `hf:org/name`.
    pub model: String,
    /// PEFT LoRA adapters to apply (a run's `checkpoints/step-N/adapter`, or the checkpoint
    /// directory holding `adapter/`). Default none (the base model).
    pub adapter: Option<PathBuf>,
    /// `cpu` or `cuda:N`. Default `cpu`.
    pub device: DeviceSpec,
    /// Matmul dtype. Default f32 (use bf16 on CUDA).
    pub compute_dtype: ComputeDtype,
    /// The pairs. Default: 32 procedural pairs.
    pub data: DataSpec,
    /// At most this many pairs (each judged in both orders). Default 32.
    pub pairs: usize,
    /// Judgment template, think prefill, system prompt. Default: PaV, `<think>` prefilled.
    pub prompt: PromptConfig,
    /// Chat formatting. Default `model`.
    pub chat_template: ChatTemplateChoice,
    /// Longer prompts are dropped (and counted in the log). Default 1024.
    pub max_prompt_tokens: usize,
    /// Text forced at the budget; must contain `</think>`. Default: `"\n</think>\n<answer>"`
    /// for PaV, `"\n</think>\n"` for the score templates.
    pub forced_close: Option<String>,
    /// Thought budgets of the sweep, in any order. Default 0, 16, 32, 64, 128, none.
    pub budgets: Vec<Budget>,
    /// Decoding of the sweep. Default greedy.
    pub decoding: Decoding,
    /// Temperature of sampled decoding (the sweep when sampled, and SC@N). Default 1.0.
    pub temperature: f64,
    /// Top-p of sampled decoding. Default 0.95 (J1's sampled evaluation).
    pub top_p: f64,
    /// The N of SC@N / Mean-Score@N; one sampled run of max(N) samples per prompt is made,
    /// and SC@n uses the first n. Empty (default): no test-time-scaling run.
    pub samples: Vec<usize>,
    /// Thought budget of the SC@N samples. Default none.
    pub samples_budget: Budget,
    /// Most completion tokens (thought, forced close and verdict). Default 256.
    pub max_new_tokens: usize,
    /// Natural-length buckets. Default 4 quantile buckets.
    pub buckets: Buckets,
    /// Buckets with fewer samples are flagged `small`. Default 10.
    pub min_bucket_samples: usize,
    /// Take a budget's result for a prompt from the next larger budget's run when the
    /// thought there ended within this budget (the decode would be identical; see the module
    /// docs). Default true.
    pub reuse: bool,
    /// Score at or above which a pointwise judgment means "good". Default 5.
    pub threshold: f64,
    /// Seed of the sampling streams. Default 0.
    pub seed: u64,
    /// A training run's `metrics.jsonl`: adds the training view. Default none.
    pub metrics: Option<PathBuf>,
    /// Output directory (CSV, JSON, Markdown, PNG); none writes nothing. Default none.
    pub out: Option<PathBuf>,
    /// Name of the judge in tables and plots (`base`, `trained`, …). Default `judge`.
    pub label: String,
    /// Draw a progress bar on a terminal. Default true.
    pub progress: bool,
}

impl Default for LengthBenchConfig {
    fn default() -> Self {
        LengthBenchConfig {
            model: "default".into(),
            adapter: None,
            device: DeviceSpec::Cpu,
            compute_dtype: ComputeDtype::F32,
            data: DataSpec::Sources {
                sources: vec![DataSource::Procedural {
                    pairs: 32,
                    generator: ProceduralConfig::default(),
                }],
            },
            pairs: 32,
            prompt: PromptConfig {
                prefill_think: true,
                ..PromptConfig::default()
            },
            chat_template: ChatTemplateChoice::Model,
            max_prompt_tokens: 1024,
            forced_close: None,
            budgets: [0, 16, 32, 64, 128]
                .map(Budget::Tokens)
                .into_iter()
                .chain([Budget::Unlimited])
                .collect(),
            decoding: Decoding::Greedy,
            temperature: 1.0,
            top_p: 0.95,
            samples: Vec::new(),
            samples_budget: Budget::Unlimited,
            max_new_tokens: 256,
            buckets: Buckets::Quantile { count: 4 },
            min_bucket_samples: 10,
            reuse: true,
            threshold: 5.0,
            seed: 0,
            metrics: None,
            out: None,
            label: "judge".into(),
            progress: true,
        }
    }
}

impl LengthBenchConfig {
    /// Reads a TOML config (not yet validated).
    ///
    /// # Errors
    /// [`TrainError::Io`]; [`TrainError::ConfigParse`] with toml's line, column and key.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        toml::from_str(&text).map_err(|e| TrainError::ConfigParse {
            path: Some(path.to_path_buf()),
            message: e.to_string().trim_end().to_string(),
        })
    }

    /// Checks every value; the error names the field.
    ///
    /// # Errors
    /// [`TrainError::InvalidConfig`] for the first problem found.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, problem: String| Err(TrainError::config(field, problem));
        if self.budgets.is_empty() && self.samples.is_empty() && self.metrics.is_none() {
            return bad(
                "budgets",
                "nothing to do: give budgets, samples (SC@N) or a metrics.jsonl".into(),
            );
        }
        let mut seen = self.budgets.clone();
        seen.sort_unstable();
        if let Some(w) = seen.windows(2).find(|w| w[0] == w[1]) {
            return bad("budgets", format!("{} is listed twice", w[0]));
        }
        if let Some(n) = self.samples.iter().find(|&&n| n == 0) {
            return bad("samples", format!("N = {n}: every N must be >= 1"));
        }
        if self.pairs == 0 {
            return bad("pairs", "must be >= 1".into());
        }
        if self.max_new_tokens == 0 || self.max_prompt_tokens == 0 {
            return bad(
                "max_new_tokens",
                "max_new_tokens and max_prompt_tokens must be >= 1".into(),
            );
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return bad("temperature", format!("{} must be > 0", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p", format!("{} must be in (0, 1]", self.top_p));
        }
        match self.buckets {
            Buckets::Quantile { count: 0 } => bad("buckets.count", "must be >= 1".into()),
            Buckets::Width { width: 0 } => bad("buckets.width", "must be >= 1".into()),
            _ => Ok(()),
        }?;
        if let Some(close) = &self.forced_close {
            if !close.contains("</think>") {
                return bad("forced_close", format!("{close:?} must contain </think>"));
            }
        }
        Ok(())
    }

    /// Whether a model is needed (budgets or samples to run).
    pub fn needs_model(&self) -> bool {
        !self.budgets.is_empty() || !self.samples.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_parse_print_and_order() {
        let b = parse_budgets("0, 32,none ,8").unwrap();
        assert_eq!(
            b,
            vec![
                Budget::Tokens(0),
                Budget::Tokens(32),
                Budget::Unlimited,
                Budget::Tokens(8)
            ]
        );
        let mut sorted = b.clone();
        sorted.sort();
        assert_eq!(sorted.last(), Some(&Budget::Unlimited));
        assert_eq!(sorted[1], Budget::Tokens(8));
        let text: Vec<String> = b.iter().map(Budget::to_string).collect();
        assert_eq!(text, ["0", "32", "none", "8"]);
        let e = parse_budgets("0,lots").unwrap_err().to_string();
        assert!(e.contains("`lots`"), "{e}");
        assert_eq!(parse_counts("1,3, 5").unwrap(), vec![1, 3, 5]);
        assert!(parse_counts("1,x").is_err());
    }

    #[test]
    fn config_round_trips_and_validates() {
        let cfg = LengthBenchConfig {
            samples: vec![1, 3],
            buckets: Buckets::Width { width: 16 },
            ..LengthBenchConfig::default()
        };
        cfg.validate().unwrap();
        let json = serde_json::to_string(&cfg).unwrap();
        assert!(
            json.contains(r#""budgets":[0,16,32,64,128,"none"]"#),
            "{json}"
        );
        let back: LengthBenchConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, cfg);
        let toml_text = toml::to_string(&cfg).unwrap();
        let back: LengthBenchConfig = toml::from_str(&toml_text).unwrap();
        assert_eq!(back, cfg);
        let e = toml::from_str::<LengthBenchConfig>("budgetz = [1]").unwrap_err();
        assert!(e.to_string().contains("budgetz"), "{e}");

        let field = |c: LengthBenchConfig| match c.validate() {
            Err(TrainError::InvalidConfig { field, .. }) => field,
            other => format!("{other:?}"),
        };
        let d = LengthBenchConfig::default;
        let twice = vec![Budget::Tokens(4), Budget::Tokens(4)];
        assert_eq!(
            field(LengthBenchConfig {
                budgets: twice,
                ..d()
            }),
            "budgets"
        );
        assert_eq!(
            field(LengthBenchConfig {
                samples: vec![0],
                ..d()
            }),
            "samples"
        );
        assert_eq!(field(LengthBenchConfig { pairs: 0, ..d() }), "pairs");
        assert_eq!(field(LengthBenchConfig { top_p: 0.0, ..d() }), "top_p");
        let none = LengthBenchConfig {
            budgets: vec![],
            ..d()
        };
        assert_eq!(field(none), "budgets");
        let zero = LengthBenchConfig {
            buckets: Buckets::Quantile { count: 0 },
            ..d()
        };
        assert_eq!(field(zero), "buckets.count");
        let close = LengthBenchConfig {
            forced_close: Some("<answer>".into()),
            ..d()
        };
        assert_eq!(field(close), "forced_close");
    }

    #[test]
    fn data_specs() {
        let p = DataSpec::parse("procedural", None, 12).unwrap();
        assert!(matches!(
            p,
            DataSpec::Sources { ref sources } if matches!(sources[..], [DataSource::Procedural { pairs: 12, .. }])
        ));
        let g = DataSpec::parse("gsm8k:data/test.jsonl", None, 5).unwrap();
        assert!(matches!(
            g,
            DataSpec::Sources { ref sources } if matches!(&sources[..], [DataSource::Gsm8k { path, .. }] if path.ends_with("test.jsonl"))
        ));
        let r = DataSpec::parse("run:runs/x", None, 5).unwrap();
        assert_eq!(
            r,
            DataSpec::Run {
                dir: "runs/x".into()
            }
        );
        let f = DataSpec::parse("rb.jsonl", Some(DataFormat::Rewardbench), 5).unwrap();
        assert!(matches!(
            f,
            DataSpec::Sources { ref sources } if matches!(sources[..], [DataSource::File { format: DataFormat::Rewardbench, .. }])
        ));
        assert!(DataSpec::parse(" ", None, 5).is_err());
    }
}
