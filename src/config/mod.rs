//! [`TrainConfig`]: one TOML file per run, the experiment record.
//!
//! Every section has defaults (J1's where the paper states them, recipe.md §5/§10; each
//! field's doc says which), unknown keys are errors naming the key, and
//! [`TrainConfig::validate`] checks ranges and cross-section consistency with messages
//! naming the field. (TOML has no null: an optional field whose default is set cannot be
//! unset from a file, so every optional field here defaults to absent.) The resolved config (every default filled in) is written to the run
//! directory and beside every checkpoint ([`TrainConfig::to_toml_string`]).
//!
//! ```toml
//! [model]
//! source = "default"
//! finetune = "lora"
//!
//! [[data.train]]
//! kind = "procedural"
//! pairs = 2000
//!
//! [rollout]
//! group_size = 4
//! [rollout.sampling.thinking]
//! max_thought_tokens = 128
//!
//! [trainer]
//! steps = 100
//! pairs_per_step = 4
//! ```

mod sections;

use std::path::Path;

use serde::{Deserialize, Serialize};
use thinkjudge_data::{ProceduralConfig, TemplateKind};
use thinkjudge_model::LoraConfig;
use thinkjudge_rl::{
    AdvantageConfig, LrSchedule, OptimizerConfig, PolicyLossConfig, RewardConfig, TaskReward,
    VerdictGradient,
};
use thinkjudge_rollout::Decoding;

pub use sections::{
    ChatTemplateChoice, ComputeDtype, DataSection, DataSource, DeviceSpec, EvalData, EvalSection,
    FinetuneKind, ModelSection, OutputSection, RolloutSection, TrainerSection,
};

use crate::error::{Result, TrainError};

/// The whole training configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// The model and what of it is trained.
    pub model: ModelSection,
    /// Training and evaluation data, prompt template.
    pub data: DataSection,
    /// Group size and sampling of training rollouts.
    pub rollout: RolloutSection,
    /// The reward (default: verdict correctness, J1).
    pub reward: RewardConfig,
    /// Group-relative advantages (default: GRPO per prompt, J1).
    pub advantage: AdvantageConfig,
    /// The policy loss (default: clip 0.2, k3 KL 0.01, token-mean; J1-8B).
    pub loss: PolicyLossConfig,
    /// AdamW (default: constant lr 1e-6, J1).
    pub optim: OptimizerConfig,
    /// The loop: steps, batch sizes, evaluation and checkpoint cadence, seed.
    pub trainer: TrainerSection,
    /// Evaluation decoding (default greedy).
    pub eval: EvalSection,
    /// The run directory.
    pub output: OutputSection,
}

impl TrainConfig {
    /// Parses and validates a TOML config. Unknown keys are errors naming the key.
    ///
    /// # Errors
    /// [`TrainError::ConfigParse`] for TOML problems, [`TrainError::InvalidConfig`] from
    /// [`TrainConfig::validate`].
    pub fn from_toml_str(text: &str) -> Result<Self> {
        Self::parse(text, None)
    }

    /// Reads, parses and validates a TOML config file.
    ///
    /// # Errors
    /// As [`TrainConfig::from_toml_str`], with the file named (validation errors come wrapped
    /// in [`TrainError::ConfigFile`]); [`TrainError::Io`] when it cannot be read.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        Self::parse(&text, Some(path))
    }

    fn parse(text: &str, path: Option<&Path>) -> Result<Self> {
        let cfg: TrainConfig = toml::from_str(text).map_err(|e| TrainError::ConfigParse {
            path: path.map(Path::to_path_buf),
            message: e.to_string().trim_end().to_string(),
        })?;
        cfg.validate().map_err(|e| match path {
            Some(path) => TrainError::ConfigFile {
                path: path.to_path_buf(),
                source: Box::new(e),
            },
            None => e,
        })?;
        Ok(cfg)
    }

    /// The resolved config as TOML: every field written, defaults included. Parses back to
    /// an equal config.
    ///
    /// # Errors
    /// [`TrainError::ConfigParse`] if a value cannot be represented in TOML.
    pub fn to_toml_string(&self) -> Result<String> {
        toml::to_string(self).map_err(|e| TrainError::ConfigParse {
            path: None,
            message: format!("serializing the resolved config: {e}"),
        })
    }

    /// A small config for a laptop CPU: LoRA on SmolLM2-135M, 2,000 procedural pairs, 4
    /// pairs (8 prompts) × 4 samples per step, thoughts prefilled and forced closed (into
    /// `<answer>`) after 128 tokens, 100 steps. Values other than J1's are chosen for CPU
    /// cost, not tuned.
    pub fn cpu_default() -> Self {
        let mut cfg = TrainConfig::default();
        cfg.model.finetune = FinetuneKind::Lora;
        cfg.model.lora = LoraConfig::default();
        cfg.data.train = vec![DataSource::Procedural {
            pairs: 2000,
            generator: ProceduralConfig::default(),
        }];
        cfg.data.prompt.prefill_think = true;
        cfg.data.max_prompt_tokens = 512;
        cfg.rollout.group_size = 4;
        cfg.rollout.sampling.max_new_tokens = 192;
        cfg.rollout.sampling.thinking.prompt_opens_thought = true;
        cfg.rollout.sampling.thinking.max_thought_tokens = Some(128);
        // A small model forced out of its thought is helped by being put inside the answer tag.
        cfg.rollout.sampling.thinking.forced_close = "\n</think>\n<answer>".into();
        cfg.optim.schedule = LrSchedule::WarmupConstant {
            lr: 2e-5,
            warmup_steps: 5,
        };
        cfg.trainer = TrainerSection {
            steps: 100,
            pairs_per_step: 4,
            micro_batch_prompts: 2,
            eval_every: 25,
            eval_pairs: Some(32),
            checkpoint_every: 25,
            log_examples_every: 10,
            ..TrainerSection::default()
        };
        cfg
    }

    /// Checks every value and the consistency between sections; the error names the field.
    ///
    /// # Errors
    /// [`TrainError::InvalidConfig`] for the first problem found.
    pub fn validate(&self) -> Result<()> {
        self.validate_model()?;
        self.validate_data()?;
        self.validate_rollout_and_eval()?;
        self.validate_trainer()?;
        self.validate_rl()
    }

    fn validate_model(&self) -> Result<()> {
        if self.model.finetune == FinetuneKind::Lora {
            self.model
                .lora
                .validate()
                .map_err(|e| TrainError::config("model.lora", e.to_string()))?;
        }
        Ok(())
    }

    fn validate_data(&self) -> Result<()> {
        let d = &self.data;
        if d.train.is_empty() {
            return Err(TrainError::config(
                "data.train",
                "needs at least one source",
            ));
        }
        validate_sources(&d.train, "data.train")?;
        match &d.eval {
            EvalData::HeldOut { fraction, .. } if !(*fraction > 0.0 && *fraction < 1.0) => {
                return Err(TrainError::config(
                    "data.eval.fraction",
                    format!("must be in (0, 1), got {fraction}"),
                ))
            }
            EvalData::Sources { sources } if sources.is_empty() => {
                return Err(TrainError::config(
                    "data.eval.sources",
                    "needs at least one source (or use kind = \"none\")",
                ))
            }
            EvalData::Sources { sources } => validate_sources(sources, "data.eval.sources")?,
            _ => {}
        }
        if d.max_prompt_tokens == 0 {
            return Err(TrainError::config("data.max_prompt_tokens", "must be > 0"));
        }
        let opens = self.rollout.sampling.thinking.prompt_opens_thought;
        if opens != d.prompt.prefill_think {
            return Err(TrainError::config(
                "rollout.sampling.thinking.prompt_opens_thought",
                format!(
                    "is {opens} but data.prompt.prefill_think is {}; they must agree (the \
                     prompt either opens the thought or it does not)",
                    d.prompt.prefill_think
                ),
            ));
        }
        Ok(())
    }

    fn validate_rollout_and_eval(&self) -> Result<()> {
        let r = &self.rollout;
        // The expected-verdict term needs no group; everything else does.
        let min_group = match self.loss.verdict_gradient {
            VerdictGradient::Expected => 1,
            VerdictGradient::Sampled => 2,
        };
        if r.group_size < min_group {
            return Err(TrainError::config(
                "rollout.group_size",
                format!(
                    "must be >= 2 (group-relative advantages of a single sample are 0; only \
                     loss.verdict_gradient = \"expected\" trains with 1), got {}",
                    r.group_size
                ),
            ));
        }
        if r.sampling.seed != 0 {
            return Err(TrainError::config(
                "rollout.sampling.seed",
                "must be left at 0: per-step sampling seeds derive from trainer.seed",
            ));
        }
        r.sampling
            .validate()
            .map_err(|e| TrainError::config("rollout.sampling", e.to_string()))?;
        let e = &self.eval;
        if e.samples_per_prompt == 0 {
            return Err(TrainError::config(
                "eval.samples_per_prompt",
                "must be >= 1",
            ));
        }
        if e.samples_per_prompt > 1 && e.decoding == Decoding::Greedy {
            return Err(TrainError::config(
                "eval.samples_per_prompt",
                format!(
                    "SC@{} with greedy decoding repeats one verdict; set eval.decoding = \"sample\"",
                    e.samples_per_prompt
                ),
            ));
        }
        e.sampling(&r.sampling, 0)
            .validate()
            .map_err(|err| TrainError::config("eval", err.to_string()))
    }

    fn validate_trainer(&self) -> Result<()> {
        let t = &self.trainer;
        let positive = [
            ("trainer.pairs_per_step", t.pairs_per_step),
            ("trainer.micro_batch_prompts", t.micro_batch_prompts),
            ("trainer.ppo_epochs", t.ppo_epochs),
            ("trainer.mini_batches", t.mini_batches),
            ("trainer.keep_last", t.keep_last),
        ];
        for (field, v) in positive {
            if v == 0 {
                return Err(TrainError::config(field, "must be >= 1"));
            }
        }
        if t.mini_batches > t.pairs_per_step {
            return Err(TrainError::config(
                "trainer.mini_batches",
                format!(
                    "{} mini-batches cannot split {} pairs per step",
                    t.mini_batches, t.pairs_per_step
                ),
            ));
        }
        if t.eval_pairs == Some(0) {
            return Err(TrainError::config(
                "trainer.eval_pairs",
                "must be >= 1 (use data.eval = { kind = \"none\" } to skip evaluation)",
            ));
        }
        if t.max_consecutive_nonfinite == 0 {
            return Err(TrainError::config(
                "trainer.max_consecutive_nonfinite",
                "must be >= 1",
            ));
        }
        Ok(())
    }

    fn validate_rl(&self) -> Result<()> {
        self.reward.validate()?;
        self.advantage.validate()?;
        self.loss.validate()?;
        self.optim.validate()?;
        if self.loss.needs_entropy() {
            return Err(TrainError::config(
                "loss.entropy_coef",
                format!(
                    "{} is not supported: the shared-prefix scoring returns detached entropies, \
                     so an entropy bonus would have no gradient (J1 uses 0)",
                    self.loss.entropy_coef
                ),
            ));
        }
        let kind = self.data.prompt.template.kind;
        let fits = match self.reward.task {
            TaskReward::Verdict {} | TaskReward::Consistency { .. } => matches!(
                kind,
                TemplateKind::PairwiseVerdict | TemplateKind::PairwiseVerdictScores
            ),
            TaskReward::Scores {} => matches!(
                kind,
                TemplateKind::PairwiseScores | TemplateKind::PairwiseVerdictScores
            ),
            TaskReward::PointwiseLabel { .. } | TaskReward::DistantSupervision { .. } => {
                kind == TemplateKind::PointwiseScore
            }
        };
        if self.loss.verdict_gradient == VerdictGradient::Expected
            && kind != TemplateKind::PairwiseVerdict
        {
            return Err(TrainError::config(
                "loss.verdict_gradient",
                format!(
                    "\"expected\" needs a one-letter verdict (template kind pav), not `{}`",
                    kind.name()
                ),
            ));
        }
        let verdict_only = self.loss.verdict_gradient == VerdictGradient::Expected
            && self.rollout.sampling.thinking.max_thought_tokens == Some(0);
        if verdict_only {
            // The verdict-only step (trainer/direct.rs): one forward, one update, no reference.
            let t = &self.trainer;
            let unsupported = [
                ("rollout.group_size", self.rollout.group_size != 1),
                ("loss.kl_coef", self.loss.kl_coef != 0.0),
                ("trainer.ppo_epochs", t.ppo_epochs != 1),
                ("trainer.mini_batches", t.mini_batches != 1),
            ];
            if let Some((field, _)) = unsupported.iter().find(|(_, bad)| *bad) {
                return Err(TrainError::config(
                    *field,
                    "must be 1 (0 for kl_coef) with a thought budget of 0 and \
                     loss.verdict_gradient = \"expected\": that step scores both verdicts of \
                     each prompt exactly, with one sample per prompt, one update per step and no \
                     KL term",
                ));
            }
        }
        if !fits {
            return Err(TrainError::config(
                "reward.task",
                format!(
                    "{:?} cannot score `{}` judgments (data.prompt.template.kind); verdict and \
                     consistency need pav/pavs, scores needs pas/pavs, pointwise_label and \
                     distant_supervision need pos",
                    self.reward.task,
                    kind.name()
                ),
            ));
        }
        Ok(())
    }

    /// Optimizer updates per training step.
    pub fn updates_per_step(&self) -> u64 {
        (self.trainer.ppo_epochs * self.trainer.mini_batches) as u64
    }
}

fn validate_sources(sources: &[DataSource], field: &str) -> Result<()> {
    for (i, s) in sources.iter().enumerate() {
        let at = |sub: &str| format!("{field}[{i}].{sub}");
        let data_err =
            |sub: &str, e: thinkjudge_data::DataError| TrainError::config(at(sub), e.to_string());
        match s {
            DataSource::Procedural { pairs, generator } => {
                if *pairs == 0 {
                    return Err(TrainError::config(at("pairs"), "must be >= 1"));
                }
                generator.validate().map_err(|e| data_err("generator", e))?;
            }
            DataSource::Gsm8k { synth, .. } => {
                synth.validate().map_err(|e| data_err("synth", e))?
            }
            DataSource::Math { .. } | DataSource::File { .. } => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(err: TrainError) -> String {
        match err {
            TrainError::InvalidConfig { field, .. } => field,
            other => format!("not a config error: {other}"),
        }
    }

    #[test]
    fn defaults_are_valid_and_follow_j1() {
        let c = TrainConfig::default();
        c.validate().unwrap();
        assert_eq!(c.rollout.group_size, 5);
        assert_eq!(c.trainer.pairs_per_step * 2, 512);
        assert_eq!(c.optim.schedule, LrSchedule::Constant { lr: 1e-6 });
        assert_eq!(c.loss.kl_coef, 0.01);
        TrainConfig::cpu_default().validate().unwrap();
    }

    #[test]
    fn expected_verdict_gradient_settings_are_checked() {
        let mut c = TrainConfig::default();
        c.loss.verdict_gradient = VerdictGradient::Expected;
        c.validate().unwrap(); // after a sampled thought: any G >= 1, KL allowed
        c.rollout.group_size = 1;
        c.validate().unwrap();
        // The verdict-only step (thought budget 0) has one sample, one update, no KL.
        c.rollout.sampling.thinking.max_thought_tokens = Some(0);
        c.rollout.sampling.thinking.min_thought_tokens = 0;
        assert_eq!(field_of(c.validate().unwrap_err()), "loss.kl_coef");
        c.loss.kl_coef = 0.0;
        c.validate().unwrap();
        c.rollout.group_size = 4;
        assert_eq!(field_of(c.validate().unwrap_err()), "rollout.group_size");
        c.rollout.group_size = 1;
        c.trainer.ppo_epochs = 2;
        assert_eq!(field_of(c.validate().unwrap_err()), "trainer.ppo_epochs");
        // Only a one-letter verdict can be taken in expectation.
        let mut c = TrainConfig::default();
        c.loss.verdict_gradient = VerdictGradient::Expected;
        c.data.prompt.template.kind = TemplateKind::PairwiseScores;
        c.reward.task = TaskReward::Scores {};
        assert_eq!(field_of(c.validate().unwrap_err()), "loss.verdict_gradient");
        // The sampled gradient still needs a group.
        let mut c = TrainConfig::default();
        c.rollout.group_size = 1;
        assert_eq!(field_of(c.validate().unwrap_err()), "rollout.group_size");
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = TrainConfig::from_toml_str("[trainer]\nstepz = 3\n").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("unknown field `stepz`"), "{msg}");
        assert!(msg.contains("line 2"), "{msg}");
        let e = TrainConfig::from_toml_str("[rollout.sampling]\ntemprature = 0.5\n").unwrap_err();
        assert!(e.to_string().contains("`temprature`"), "{e}");
        let e = TrainConfig::from_toml_str(
            "[[data.train]]\nkind = \"procedural\"\npairs = 3\nparis = 4\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("`paris`"), "{e}");
    }

    #[test]
    fn out_of_range_values_name_the_field() {
        let cases = [
            ("[rollout]\ngroup_size = 1", "rollout.group_size"),
            ("[trainer]\npairs_per_step = 0", "trainer.pairs_per_step"),
            ("[trainer]\nkeep_last = 0", "trainer.keep_last"),
            (
                "[data.eval]\nkind = \"held_out\"\nfraction = 1.5",
                "data.eval.fraction",
            ),
            (
                "[data.prompt]\nprefill_think = true",
                "rollout.sampling.thinking.prompt_opens_thought",
            ),
            ("[loss]\nentropy_coef = 0.01", "loss.entropy_coef"),
            ("[eval]\nsamples_per_prompt = 4", "eval.samples_per_prompt"),
            ("[reward.task]\nkind = \"scores\"", "reward.task"),
            (
                "[[data.train]]\nkind = \"procedural\"\npairs = 0",
                "data.train[0].pairs",
            ),
            ("[rollout.sampling]\nseed = 3", "rollout.sampling.seed"),
        ];
        for (text, field) in cases {
            let e = TrainConfig::from_toml_str(text).unwrap_err();
            assert_eq!(field_of(e), field, "{text}");
        }
        let e = TrainConfig::from_toml_str("[loss]\nclip_eps_low = 2.0").unwrap_err();
        assert!(e.to_string().contains("loss.clip_eps_low"), "{e}");
        let e = TrainConfig::from_toml_str("[rollout.sampling]\ntop_p = 0.0").unwrap_err();
        assert!(e.to_string().contains("rollout.sampling") && e.to_string().contains("top_p"));
        let e = TrainConfig::from_toml_str("[model]\ndevice = \"tpu\"").unwrap_err();
        assert!(e.to_string().contains("model.device"), "{e}");
    }

    #[test]
    fn resolved_config_round_trips() {
        for cfg in [TrainConfig::default(), TrainConfig::cpu_default()] {
            let text = cfg.to_toml_string().unwrap();
            let back = TrainConfig::from_toml_str(&text).unwrap();
            assert_eq!(back, cfg, "{text}");
        }
        let mut cfg = TrainConfig::cpu_default();
        cfg.data.eval = EvalData::Sources {
            sources: vec![DataSource::File {
                path: "x.jsonl".into(),
                format: thinkjudge_data::DataFormat::Rewardbench,
                load: Default::default(),
            }],
        };
        cfg.data.chat_template = ChatTemplateChoice::Inline("{{ messages[0].content }}".into());
        cfg.model.device = DeviceSpec::Cuda(1);
        let back = TrainConfig::from_toml_str(&cfg.to_toml_string().unwrap()).unwrap();
        assert_eq!(back, cfg);
    }
}
