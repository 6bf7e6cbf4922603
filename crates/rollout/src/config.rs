//! [`SamplingConfig`]: how thoughts and verdicts are sampled (serde, TOML/JSON section
//! `sampling`). Every field has a default; unknown keys are errors.
//!
//! Defaults follow J1 (arXiv 2505.10320) training rollouts: temperature 1.0, top-p 1.0, no
//! top-k. For evaluation use `decoding = "greedy"`, or temperature 1.0 with `top_p = 0.95`.

use serde::{Deserialize, Serialize};

use crate::error::{Result, RolloutError};

/// How the next token is picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Decoding {
    /// Draw from `softmax(logits / temperature)`, truncated by top-k and top-p.
    #[default]
    Sample,
    /// Argmax (temperature 0); on the CPU ties go to the lowest id. Draws no random numbers.
    Greedy,
}

/// What happens when a request's memory estimate exceeds
/// [`SamplingConfig::max_memory_bytes`] (see [`crate::memory`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MemoryPolicy {
    /// Run the prompts in consecutive chunks that each fit (results are identical: every
    /// sample has its own random stream). A single prompt that does not fit is an error.
    #[default]
    Split,
    /// Return [`RolloutError::MemoryBudget`].
    Refuse,
}

/// The thought span and budget forcing.
///
/// The thought runs from the completion's first token to the token that completes
/// `close_tag` (counted in tokens, whether or not the completion itself writes `open_tag`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ThinkingConfig {
    /// Opening tag. Default `"<think>"`.
    pub open_tag: String,
    /// Closing tag, detected in the decoded text (across token boundaries). Default
    /// `"</think>"`.
    pub close_tag: String,
    /// The prompt already ends with an opened thought (thinkjudge-data's `prefill_think`).
    /// When false and the completion has not written `open_tag` by the time the budget forces
    /// a close, `open_tag` is forced before `forced_close`. Default false.
    pub prompt_opens_thought: bool,
    /// Budget forcing: once the thought has this many tokens without closing, the tokens of
    /// `forced_close` are appended (marked forced) and decoding continues with the verdict.
    /// `Some(0)` means no thinking: the thought is closed before the first sampled token.
    /// Default `None` (unlimited).
    pub max_thought_tokens: Option<usize>,
    /// Before the thought has this many tokens it may not close: the tokens whose text would
    /// complete `close_tag` (given how much of the tag the text already ends with; each token
    /// decoded alone) and the eos ids are masked before sampling. Only closing is prevented,
    /// not writing `<` or `</`; the recorded log-probs stay those of the unmasked
    /// distribution. Default 0.
    pub min_thought_tokens: usize,
    /// The text forced at the budget. Must contain `close_tag`; tokenized on its own.
    /// Default `"\n</think>\n"`: only the close, so pairwise (`<answer>`) and pointwise
    /// (scores) templates both continue with their own verdict format. Pairwise J1 judges may
    /// use `"\n</think>\n<answer>"`.
    pub forced_close: String,
}

impl Default for ThinkingConfig {
    fn default() -> Self {
        Self {
            open_tag: "<think>".into(),
            close_tag: "</think>".into(),
            prompt_opens_thought: false,
            max_thought_tokens: None,
            min_thought_tokens: 0,
            forced_close: "\n</think>\n".into(),
        }
    }
}

/// Sampling settings of a rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SamplingConfig {
    /// Sample or argmax. Default [`Decoding::Sample`].
    pub decoding: Decoding,
    /// Softmax temperature, > 0. The recorded log-probs are those of
    /// `softmax(logits / temperature)` under either decoding (what
    /// `Llama::token_logprobs_with_temperature` recomputes). Default 1.0 (J1).
    pub temperature: f64,
    /// Nucleus sampling: keep the most likely tokens whose mass reaches `top_p`, in (0, 1].
    /// Default 1.0 (off; J1).
    pub top_p: f64,
    /// Keep only the `top_k` most likely tokens (applied before `top_p`); 0 = off. Default 0.
    pub top_k: usize,
    /// Most completion tokens per sample, forced tokens included; >= 1. Default 1024.
    pub max_new_tokens: usize,
    /// Stop as soon as the decoded completion contains one of these strings (matched across
    /// token boundaries). The completion keeps the token that completed it. Default none.
    pub stop_strings: Vec<String>,
    /// Keep decoding through the tokenizer's eos ids (benchmarks). Default false.
    pub ignore_eos: bool,
    /// Ids that stop a sample in addition to the tokenizer's eos ids. Default none.
    pub extra_eos_ids: Vec<u32>,
    /// Seed of the per-sample random streams (see [`crate::rng`]). Default 0.
    pub seed: u64,
    /// Thought span and budget forcing.
    pub thinking: ThinkingConfig,
    /// Budget for the memory estimate of one decode batch (see [`crate::memory`]); `None`
    /// disables the guard. Default 16 GiB.
    pub max_memory_bytes: Option<u64>,
    /// What to do over budget. Default [`MemoryPolicy::Split`].
    pub memory_policy: MemoryPolicy,
    /// Finished rows stay in the decode batch (fed a pad token) until they are at least this
    /// fraction of it; then the KV cache is compacted with `KvCache::retain` (a copy of the
    /// whole cache, so compacting on every finish costs more than it saves). In [0, 1];
    /// results do not depend on it. Default 0.25.
    pub retain_fraction: f64,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self {
            decoding: Decoding::Sample,
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            max_new_tokens: 1024,
            stop_strings: Vec::new(),
            ignore_eos: false,
            extra_eos_ids: Vec::new(),
            seed: 0,
            thinking: ThinkingConfig::default(),
            max_memory_bytes: Some(16 << 30),
            memory_policy: MemoryPolicy::Split,
            retain_fraction: 0.25,
        }
    }
}

impl SamplingConfig {
    /// Greedy decoding with the other defaults.
    pub fn greedy() -> Self {
        Self {
            decoding: Decoding::Greedy,
            ..Self::default()
        }
    }

    /// Checks every value; the message names the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(RolloutError::InvalidConfig(msg));
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return bad(format!(
                "temperature = {} must be finite and > 0 (use decoding = \"greedy\" for argmax)",
                self.temperature
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!("top_p = {} must be in (0, 1]", self.top_p));
        }
        if self.max_new_tokens == 0 {
            return bad("max_new_tokens must be >= 1".into());
        }
        if let Some(s) = self.stop_strings.iter().find(|s| s.is_empty()) {
            return bad(format!("stop_strings contains an empty string ({s:?})"));
        }
        if !(0.0..=1.0).contains(&self.retain_fraction) {
            return bad(format!(
                "retain_fraction = {} must be in [0, 1]",
                self.retain_fraction
            ));
        }
        if self.max_memory_bytes == Some(0) {
            return bad("max_memory_bytes must be > 0 (or absent to disable the guard)".into());
        }
        self.thinking.validate()
    }
}

impl ThinkingConfig {
    /// Checks the tags and budgets.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(RolloutError::InvalidConfig(format!("thinking.{msg}")));
        if self.close_tag.is_empty() {
            return bad("close_tag must not be empty".into());
        }
        if self.open_tag.is_empty() {
            return bad("open_tag must not be empty".into());
        }
        if !self.forced_close.contains(&self.close_tag) {
            return bad(format!(
                "forced_close = {:?} must contain close_tag = {:?}",
                self.forced_close, self.close_tag
            ));
        }
        if let Some(max) = self.max_thought_tokens {
            if self.min_thought_tokens > max {
                return bad(format!(
                    "min_thought_tokens = {} exceeds max_thought_tokens = {max}",
                    self.min_thought_tokens
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_follow_j1() {
        let c = SamplingConfig::default();
        c.validate().unwrap();
        assert_eq!((c.temperature, c.top_p, c.top_k), (1.0, 1.0, 0));
        assert_eq!(c.decoding, Decoding::Sample);
        SamplingConfig::greedy().validate().unwrap();
    }

    #[test]
    fn toml_round_trip_and_unknown_keys() {
        let text = r#"
            decoding = "greedy"
            max_new_tokens = 64
            stop_strings = ["</answer>"]
            memory_policy = "refuse"
            [thinking]
            max_thought_tokens = 32
            prompt_opens_thought = true
        "#;
        let c: SamplingConfig = toml::from_str(text).unwrap();
        assert_eq!(c.decoding, Decoding::Greedy);
        assert_eq!(c.thinking.max_thought_tokens, Some(32));
        assert_eq!(c.thinking.close_tag, "</think>");
        assert_eq!(c.memory_policy, MemoryPolicy::Refuse);
        let back: SamplingConfig = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        let e = toml::from_str::<SamplingConfig>("temprature = 0.7").unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
        let e = toml::from_str::<SamplingConfig>("decoding = \"beam\"").unwrap_err();
        assert!(e.to_string().contains("unknown variant"), "{e}");
    }

    #[test]
    fn validate_names_the_field() {
        let msg = |c: SamplingConfig| c.validate().unwrap_err().to_string();
        let d = SamplingConfig::default;
        assert!(msg(SamplingConfig {
            temperature: 0.0,
            ..d()
        })
        .contains("greedy"));
        assert!(msg(SamplingConfig { top_p: 0.0, ..d() }).contains("top_p"));
        assert!(msg(SamplingConfig {
            max_new_tokens: 0,
            ..d()
        })
        .contains("max_new_tokens"));
        assert!(msg(SamplingConfig {
            stop_strings: vec![String::new()],
            ..d()
        })
        .contains("stop_strings"));
        assert!(msg(SamplingConfig {
            retain_fraction: 1.5,
            ..d()
        })
        .contains("retain_fraction"));
        let thinking = ThinkingConfig {
            max_thought_tokens: Some(4),
            min_thought_tokens: 5,
            ..ThinkingConfig::default()
        };
        assert!(msg(SamplingConfig { thinking, ..d() }).contains("min_thought_tokens"));
        let thinking = ThinkingConfig {
            forced_close: "\n<answer>".into(),
            ..ThinkingConfig::default()
        };
        assert!(msg(SamplingConfig { thinking, ..d() }).contains("forced_close"));
    }
}
