//! The rollout crate's error type.

use thinkjudge_model::ModelError;

/// Errors from sampling and scoring.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RolloutError {
    /// A [`SamplingConfig`](crate::SamplingConfig) failed `validate()`.
    #[error("invalid sampling config: {0}")]
    InvalidConfig(String),
    /// Bad prompts, completions or arguments.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The memory estimate of a request exceeds `max_memory_bytes`.
    #[error(
        "rollout of {what} needs about {needed_mib:.1} MiB ({detail}), more than \
         max_memory_bytes = {budget_mib:.1} MiB; {advice}"
    )]
    MemoryBudget {
        /// What was estimated ("8 prompts x 4 samples", "prompt 3 x 4 samples").
        what: String,
        /// The estimate in MiB.
        needed_mib: f64,
        /// The budget in MiB.
        budget_mib: f64,
        /// The terms of the estimate.
        detail: String,
        /// How to make it fit.
        advice: &'static str,
    },
    /// The model produced NaN or infinite logits.
    #[error("non-finite logits at decode step {step} (row of prompt {prompt_index})")]
    NonFinite {
        /// Decode step (0 = the token after the prompt).
        step: usize,
        /// The prompt whose sample hit it.
        prompt_index: usize,
    },
    /// The model or tokenizer failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A tensor op failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// `Result` with [`RolloutError`].
pub type Result<T, E = RolloutError> = std::result::Result<T, E>;
