//! thinkjudge-model: a trainable, batched Llama-family judge on candle.
//!
//! candle-transformers' Llama is inference-only (last-position logits, no padding mask, fused
//! ops without gradients), so this crate owns its model.

pub mod allocator;
pub mod config;
pub mod convert;
pub mod default_model;
pub mod error;
pub mod init;
pub mod kv_cache;
pub mod llama;
pub mod loading;
pub mod logprobs;
pub mod lora;
pub mod ops;
pub mod pool;
pub mod save;
pub mod source;
pub mod tokenizer;
pub mod weights;

pub use allocator::tune_allocator;
pub use config::{LlamaConfig, ModelConfig};
pub use error::{ModelError, Result};
pub use pool::tune_barrier_pool;
pub use weights::WeightMap;

pub use kv_cache::KvCache;
pub use llama::{Finetune, Llama, LlamaOptions, Mode};
pub use logprobs::TokenStats;
pub use lora::{LoraConfig, LoraTarget};
pub use ops::Kernels;

pub use convert::convert_gguf_to_hf;
pub use default_model::DefaultModel;
pub use loading::{load, load_with, LoadOptions, LoadedModel, ModelFormat, ModelOrigin};
pub use save::{save_hf_model, SaveDtype};
pub use source::ModelSource;
pub use tokenizer::{JudgeTokenizer, SpecialIds, TextStream};
