//! thinkjudge-model: a trainable, batched Llama-family judge on candle.
//!
//! candle-transformers' Llama is inference-only (last-position logits, no padding mask, fused
//! ops without gradients), so this crate owns its model.

pub mod config;
pub mod error;
pub mod weights;

pub use config::{LlamaConfig, ModelConfig};
pub use error::{ModelError, Result};
pub use weights::WeightMap;
