//! The trainer's own config sections: `[model]`, `[data]`, `[rollout]`, `[trainer]`,
//! `[eval]` and `[output]`. The `[reward]`, `[advantage]`, `[loss]` and `[optim]` sections are
//! the rl crate's types. Defaults are J1's (recipe.md §5, §10) where the paper states them.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use candle_core::DType;
use serde::{Deserialize, Serialize};
use thinkjudge_data::{
    DataFormat, Gsm8kConfig, LoadOptions, MathConfig, Overflow, ProceduralConfig, PromptConfig,
};
use thinkjudge_model::{LoraConfig, ModelSource};
use thinkjudge_rollout::{Decoding, SamplingConfig};

use crate::error::TrainError;

/// `[model]`: what is trained, on what device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSection {
    /// `"default"` (SmolLM2-135M-Instruct), an HF directory, a `.gguf` file or
    /// `"hf:org/name"`. Default `"default"`.
    pub source: ModelSource,
    /// `full` (J1) or `lora`. Default `full`.
    pub finetune: FinetuneKind,
    /// LoRA settings, used when `finetune = "lora"`. Defaults: rank 16, alpha 32, dropout 0,
    /// all seven projections.
    pub lora: LoraConfig,
    /// dtype of matmuls and activations: `f32`, `bf16` or `f16`. Master weights and
    /// optimizer state stay f32. Default `f32` (CPU); use `bf16` on CUDA.
    pub compute_dtype: ComputeDtype,
    /// `"cpu"` or `"cuda:N"`. Default `"cpu"`.
    pub device: DeviceSpec,
}

impl Default for ModelSection {
    fn default() -> Self {
        ModelSection {
            source: ModelSource::Default,
            finetune: FinetuneKind::Full,
            lora: LoraConfig::default(),
            compute_dtype: ComputeDtype::F32,
            device: DeviceSpec::Cpu,
        }
    }
}

/// What is trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinetuneKind {
    /// Every weight (J1). The KL reference is a frozen copy of the initial weights.
    Full,
    /// LoRA adapters on a frozen base; the KL reference is the base (adapters off).
    Lora,
}

/// The compute dtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComputeDtype {
    /// 32-bit float.
    F32,
    /// bfloat16 (CUDA).
    Bf16,
    /// float16.
    F16,
}

impl ComputeDtype {
    /// The candle dtype.
    pub fn dtype(self) -> DType {
        match self {
            ComputeDtype::F32 => DType::F32,
            ComputeDtype::Bf16 => DType::BF16,
            ComputeDtype::F16 => DType::F16,
        }
    }
}

/// A device, written `"cpu"` or `"cuda:N"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceSpec {
    /// The CPU.
    Cpu,
    /// CUDA device N.
    Cuda(usize),
}

impl DeviceSpec {
    /// Whether this binary was built with CUDA support (`--features cuda`). A CUDA build may
    /// still fail to open a device: [`DeviceSpec::resolve`] says why.
    pub const CUDA_BUILT: bool = cfg!(feature = "cuda");

    /// Opens the device. Errors name the device and the cause: a binary built without the
    /// `cuda` feature (rebuild with `scripts/build-cuda.sh`, docs/gpu.md), or the driver's
    /// error for the index (no NVIDIA driver, no such device, out of memory, …).
    pub fn resolve(self) -> Result<candle_core::Device, TrainError> {
        let n = match self {
            DeviceSpec::Cpu => return Ok(candle_core::Device::Cpu),
            DeviceSpec::Cuda(n) => n,
        };
        let problem = if !Self::CUDA_BUILT {
            "this binary was built without CUDA support; rebuild with `--features cuda` \
             (scripts/build-cuda.sh, docs/gpu.md) or set model.device = \"cpu\""
                .to_string()
        } else {
            match candle_core::Device::new_cuda(n) {
                Ok(device) => return Ok(device),
                Err(e) => format!(
                    "cannot open CUDA device {n}: {e} (is the NVIDIA driver loaded and does \
                     device {n} exist? `nvidia-smi -L` lists the devices)"
                ),
            }
        };
        Err(TrainError::Device {
            spec: self.to_string(),
            problem,
        })
    }
}

impl FromStr for DeviceSpec {
    type Err = TrainError;

    fn from_str(s: &str) -> Result<Self, TrainError> {
        let bad = || {
            TrainError::config(
                "model.device",
                format!("`{s}` is not a device; expected \"cpu\" or \"cuda:N\" (e.g. \"cuda:0\")"),
            )
        };
        match s.trim() {
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceSpec::Cuda)
                .ok_or_else(bad),
        }
    }
}

impl TryFrom<String> for DeviceSpec {
    type Error = TrainError;
    fn try_from(s: String) -> Result<Self, TrainError> {
        s.parse()
    }
}

impl From<DeviceSpec> for String {
    fn from(d: DeviceSpec) -> String {
        d.to_string()
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// One source of preference pairs (or pointwise items).
///
/// ```toml
/// [[data.train]]
/// kind = "procedural"
/// pairs = 2000
/// [[data.train]]
/// kind = "file"
/// path = "data/rewardbench.jsonl"
/// format = "rewardbench"
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[allow(missing_docs)] // the variant docs describe their fields
pub enum DataSource {
    /// `pairs` pairs from the seeded [`thinkjudge_data::ProceduralGenerator`] (`generator`
    /// defaults: 2–3 steps, operands 2–20).
    Procedural {
        pairs: usize,
        #[serde(default)]
        generator: ProceduralConfig,
    },
    /// GSM8K JSONL (`question`, `answer`) → correct-vs-corrupted solution pairs.
    Gsm8k {
        path: PathBuf,
        #[serde(default)]
        synth: Gsm8kConfig,
    },
    /// MATH-500 JSONL → gold-vs-wrong answer statement pairs.
    Math {
        path: PathBuf,
        #[serde(default)]
        synth: MathConfig,
    },
    /// A dataset file in one of the data crate's formats (`jsonl`, `hh-rlhf`, `rewardbench`,
    /// `libra`, …).
    File {
        path: PathBuf,
        format: DataFormat,
        #[serde(default)]
        load: LoadOptions,
    },
}

/// Where evaluation pairs come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[allow(missing_docs)] // the variant docs describe their fields
pub enum EvalData {
    /// A share of the training pairs, held out by pair (both orders of a pair are always on
    /// the same side). `fraction` in (0, 1), default 0.1; `seed` of the split, default 0.
    HeldOut {
        #[serde(default = "default_eval_fraction")]
        fraction: f64,
        #[serde(default)]
        seed: u64,
    },
    /// Separate sources (all training pairs are then used for training).
    Sources { sources: Vec<DataSource> },
    /// No evaluation.
    None {},
}

fn default_eval_fraction() -> f64 {
    0.1
}

/// Which chat template formats prompts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatTemplateChoice {
    /// The tokenizer's own template, ChatML when it ships none. Default.
    Model,
    /// Plain ChatML.
    Chatml,
    /// A Jinja chat template given inline (`chat_template = { inline = "…" }`).
    Inline(String),
}

/// `[data]`: training and evaluation pairs and how they become prompts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataSection {
    /// Training sources, concatenated. Default: 22,000 procedural pairs (J1 trains on 22K
    /// synthetic pairs, recipe.md §2).
    pub train: Vec<DataSource>,
    /// Evaluation pairs. Default: 10% of the training pairs, held out by pair.
    pub eval: EvalData,
    /// Judgment template (`kind = "pav"` J1's default), think prefill and system prompt.
    pub prompt: PromptConfig,
    /// Chat formatting. Default `model`.
    pub chat_template: ChatTemplateChoice,
    /// Longest prompt in tokens (chat formatting included), > 0; longer pairs are dropped or
    /// trimmed per `overflow`, and counted in the log. Default 4096 (J1).
    pub max_prompt_tokens: usize,
    /// `drop` (default) or `trim_history` for too-long prompts.
    pub overflow: Overflow,
}

impl Default for DataSection {
    fn default() -> Self {
        DataSection {
            train: vec![DataSource::Procedural {
                pairs: 22_000,
                generator: ProceduralConfig::default(),
            }],
            eval: EvalData::HeldOut {
                fraction: default_eval_fraction(),
                seed: 0,
            },
            prompt: PromptConfig::default(),
            chat_template: ChatTemplateChoice::Model,
            max_prompt_tokens: 4096,
            overflow: Overflow::Drop,
        }
    }
}

/// `[rollout]`: how training samples are drawn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RolloutSection {
    /// Samples per prompt, G ≥ 2. Default 5 (J1).
    pub group_size: usize,
    /// Sampling: temperature 1.0 and top-p 1.0 (J1), at most 4096 new tokens (J1), stop at
    /// `</answer>`. The thought budget is `sampling.thinking.max_thought_tokens` (default
    /// none). `sampling.seed` must stay 0: per-step seeds derive from `trainer.seed`.
    pub sampling: SamplingConfig,
}

impl Default for RolloutSection {
    fn default() -> Self {
        RolloutSection {
            group_size: 5,
            sampling: SamplingConfig {
                max_new_tokens: 4096,
                stop_strings: vec!["</answer>".into()],
                ..SamplingConfig::default()
            },
        }
    }
}

/// `[trainer]`: the loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainerSection {
    /// Training steps (rollout + update rounds). Default 300 (J1's curves end near 300).
    pub steps: u64,
    /// Pairs (or pointwise items) per step; both orders of a pair always go in the same step.
    /// Default 256 pairs = 512 prompts (J1's batch of 512).
    pub pairs_per_step: usize,
    /// Prompts per forward/backward of the update (with their G completions each); a memory
    /// knob that does not change the result. Default 8.
    pub micro_batch_prompts: usize,
    /// Passes over each step's samples. Default 1 (on-policy; verl default, J1 unstated).
    pub ppo_epochs: usize,
    /// Optimizer updates per pass (the step's prompts split evenly). Default 1.
    pub mini_batches: usize,
    /// Evaluate every N steps (also at step 0 and at the end); 0 = only at the start and
    /// the end. Default 50.
    pub eval_every: u64,
    /// Evaluate on at most this many pairs. Default: all of them.
    pub eval_pairs: Option<usize>,
    /// Write a checkpoint every N steps (and at the end); 0 = only at the end. Default 50.
    pub checkpoint_every: u64,
    /// Checkpoints kept (oldest deleted first), ≥ 1. Default 3.
    pub keep_last: usize,
    /// Log example judgments every N steps; 0 = never. Default 10.
    pub log_examples_every: u64,
    /// Seed of every random stream (data order, rollouts, LoRA init; see `seeds`). Default 0.
    pub seed: u64,
    /// Abort after this many consecutive steps with a non-finite loss or gradient (each one
    /// is skipped without touching weights or optimizer state), ≥ 1. Default 3.
    pub max_consecutive_nonfinite: u32,
}

impl Default for TrainerSection {
    fn default() -> Self {
        TrainerSection {
            steps: 300,
            pairs_per_step: 256,
            micro_batch_prompts: 8,
            ppo_epochs: 1,
            mini_batches: 1,
            eval_every: 50,
            eval_pairs: None,
            checkpoint_every: 50,
            keep_last: 3,
            log_examples_every: 10,
            seed: 0,
            max_consecutive_nonfinite: 3,
        }
    }
}

/// `[eval]`: decoding of evaluation rollouts. Thought budget, stop strings and (unless set
/// here) `max_new_tokens` follow `[rollout.sampling]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalSection {
    /// `greedy` (J1 v1 main results, default) or `sample`.
    pub decoding: Decoding,
    /// Temperature when sampling. Default 1.0 (J1 v3, Llama).
    pub temperature: f64,
    /// Top-p when sampling. Default 1.0; J1 v3 uses 0.95.
    pub top_p: f64,
    /// N of SC@N: verdicts sampled per prompt and majority-voted (scores are averaged,
    /// Mean-Score@N). Default 1; N > 1 needs `decoding = "sample"`.
    pub samples_per_prompt: usize,
    /// Most new tokens per evaluation sample; absent = `rollout.sampling.max_new_tokens`.
    pub max_new_tokens: Option<usize>,
}

impl Default for EvalSection {
    fn default() -> Self {
        EvalSection {
            decoding: Decoding::Greedy,
            temperature: 1.0,
            top_p: 1.0,
            samples_per_prompt: 1,
            max_new_tokens: None,
        }
    }
}

impl EvalSection {
    /// The sampling config of evaluation rollouts: the training one with this section's
    /// decoding, and the evaluation seed.
    pub fn sampling(&self, training: &SamplingConfig, seed: u64) -> SamplingConfig {
        SamplingConfig {
            decoding: self.decoding,
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: 0,
            max_new_tokens: self.max_new_tokens.unwrap_or(training.max_new_tokens),
            seed,
            ..training.clone()
        }
    }
}

/// `[output]`: where the run writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutputSection {
    /// Run directory: `config.toml`, `metrics.jsonl`, `summary.json`, `checkpoints/`.
    /// Default `runs/thinkjudge`.
    pub run_dir: PathBuf,
}

impl Default for OutputSection {
    fn default() -> Self {
        OutputSection {
            run_dir: PathBuf::from("runs/thinkjudge"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_and_print() {
        assert_eq!("cpu".parse::<DeviceSpec>().ok(), Some(DeviceSpec::Cpu));
        assert_eq!(
            "cuda:1".parse::<DeviceSpec>().ok(),
            Some(DeviceSpec::Cuda(1))
        );
        assert_eq!(DeviceSpec::Cuda(3).to_string(), "cuda:3");
        let e = "gpu".parse::<DeviceSpec>().err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("model.device") && e.contains("cuda:N")));
    }

    #[test]
    fn devices_resolve_or_say_why_not() {
        assert!(DeviceSpec::Cpu.resolve().is_ok_and(|d| d.is_cpu()));
        assert_eq!("cuda".parse::<DeviceSpec>().ok(), Some(DeviceSpec::Cuda(0)));
        assert_eq!(
            " cuda:12 ".parse::<DeviceSpec>().ok(),
            Some(DeviceSpec::Cuda(12))
        );
        for bad in ["cuda:", "cuda:-1", "cuda:x", "CUDA:0", "gpu:0", ""] {
            assert!(bad.parse::<DeviceSpec>().is_err(), "{bad:?} parsed");
        }
        let e = DeviceSpec::Cuda(7).resolve().err().map(|e| e.to_string());
        let e = e.unwrap_or_default();
        if DeviceSpec::CUDA_BUILT {
            // A CUDA build on a machine without device 7 (or without a driver at all).
            assert!(
                e.starts_with("device `cuda:7`: cannot open CUDA device 7: "),
                "{e}"
            );
        } else {
            assert!(
                e.starts_with("device `cuda:7`: this binary was built without CUDA support"),
                "{e}"
            );
            assert!(e.contains("--features cuda"), "{e}");
        }
    }

    #[test]
    fn eval_sampling_inherits_the_thought_budget() {
        let mut training = SamplingConfig::default();
        training.thinking.max_thought_tokens = Some(7);
        let s = EvalSection::default().sampling(&training, 9);
        assert_eq!(s.decoding, Decoding::Greedy);
        assert_eq!(s.thinking.max_thought_tokens, Some(7));
        assert_eq!(s.seed, 9);
    }
}
