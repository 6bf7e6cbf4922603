//! thinkjudge-rollout: batched sampling of a thinking judge's thoughts and verdicts, and
//! teacher-forced scoring of them, with the trainer's own model code (`thinkjudge_model::Llama`).
//!
//! * [`Engine`] samples G completions per prompt: one prefill per prompt, the KV cache forked
//!   G ways, every prompt's samples decoded together, finished rows dropped as they stop.
//!   Stops on eos, stop strings (matched across token boundaries) and `max_new_tokens`;
//!   optional thought-budget forcing (max and min thought tokens). See [`engine`].
//! * [`score_completions`] recomputes per-token log-probs and entropies of completions with
//!   the shared-prefix forward: differentiable in `Mode::Train` for the policy loss,
//!   `Mode::Reference` for the KL term. See [`score`].
//! * [`memory`] estimates the memory of a rollout and splits or refuses oversize requests.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use thinkjudge_model::{load, Llama, LlamaOptions, ModelSource, Mode};
//! use thinkjudge_rollout::{score_completions, Engine, SamplingConfig};
//!
//! let loaded = load(&ModelSource::Default, &candle_core::Device::Cpu)?;
//! let model = Llama::from_weights(&loaded.config, loaded.weights, &candle_core::Device::Cpu,
//!     LlamaOptions::default())?;
//! let config = SamplingConfig { stop_strings: vec!["</answer>".into()], max_new_tokens: 256,
//!     ..SamplingConfig::default() };
//! let engine = Engine::new(&model, &loaded.tokenizer, config)?;
//! let prompts = vec![loaded.tokenizer.encode("Which answer is better? ...")?];
//! let batch = engine.generate(&prompts, 4)?;
//! for r in batch.group(0) {
//!     println!("{:?} {:?}", r.finish, r.text);
//! }
//! let scores = score_completions(&model, &prompts, &batch.completion_ids(), 4, 1.0, Mode::Infer)?;
//! # Ok(()) }
//! ```
//!
//! Not implemented: beam search, repetition penalties, speculative decoding, and groups with
//! different numbers of samples per prompt.

#![warn(missing_docs)]

pub mod config;
pub mod engine;
pub mod error;
pub mod memory;
mod padding;
pub mod rng;
mod row;
mod rules;
mod sampler;
pub mod score;
pub mod types;

pub use config::{Decoding, MemoryPolicy, SamplingConfig, ThinkingConfig};
pub use engine::{Engine, RolloutRequest};
pub use error::{Result, RolloutError};
pub use memory::{estimate as estimate_memory, MemoryEstimate};
pub use score::{score_completions, CompletionScores};
pub use types::{FinishReason, Progress, Rollout, RolloutBatch, RolloutStats, ThoughtEnd};
