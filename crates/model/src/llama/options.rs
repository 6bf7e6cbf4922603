//! [`LlamaOptions`] (with [`Finetune`]), and [`tensor_shapes`], the tensors a checkpoint holds.

use candle_core::DType;

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::logprobs;
use crate::lora::{LoraConfig, LoraTarget};
use crate::ops::Kernels;

/// What is trained.
#[derive(Debug, Clone, PartialEq)]
pub enum Finetune {
    /// Nothing: every weight is a plain tensor.
    Frozen,
    /// Every weight is a `Var` (HF names in
    /// [`Llama::trainable_vars`](super::Llama::trainable_vars)).
    Full,
    /// Frozen base plus LoRA adapters initialised from `seed` (PEFT names).
    Lora { config: LoraConfig, seed: u64 },
}

/// Construction options of a [`Llama`](super::Llama).
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaOptions {
    /// dtype of the master weights and trainable `Var`s. Default F32; F64 for finite-difference
    /// checks. Loaded weights are converted.
    pub master_dtype: DType,
    /// dtype of matmuls and activations. Default F32 (CPU); BF16 is meant for CUDA.
    pub compute_dtype: DType,
    /// What is trained. Default [`Finetune::Frozen`].
    pub finetune: Finetune,
    /// Kernels of the training forward. Default [`Kernels::Fused`].
    pub kernels: Kernels,
    /// On a CPU device, call [`crate::ops::flush_denormals`] when the model is built and on
    /// each calling thread. Default true (several-fold faster backward; see there).
    pub flush_denormals: bool,
    /// Most logits elements `token_logprobs` materialises at once. Default
    /// [`logprobs::DEFAULT_CHUNK_ELEMS`] (16 Mi, 64 MiB in f32).
    pub logprob_chunk_elems: usize,
}

impl Default for LlamaOptions {
    fn default() -> Self {
        Self {
            master_dtype: DType::F32,
            compute_dtype: DType::F32,
            finetune: Finetune::Frozen,
            kernels: Kernels::Fused,
            flush_denormals: true,
            logprob_chunk_elems: logprobs::DEFAULT_CHUNK_ELEMS,
        }
    }
}

impl LlamaOptions {
    /// Checks the dtypes, the chunk size and the LoRA config.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| ModelError::InvalidConfig {
            section: "llama options",
            msg,
        };
        if !matches!(self.master_dtype, DType::F32 | DType::F64) {
            return Err(bad(format!(
                "master_dtype {:?} must be F32 or F64 (optimizer updates vanish in half types)",
                self.master_dtype
            )));
        }
        if !matches!(
            self.compute_dtype,
            DType::F32 | DType::F64 | DType::BF16 | DType::F16
        ) {
            return Err(bad(format!(
                "compute_dtype {:?} must be F32, F64, BF16 or F16",
                self.compute_dtype
            )));
        }
        if self.logprob_chunk_elems == 0 {
            return Err(bad("logprob_chunk_elems must be > 0".into()));
        }
        if let Finetune::Lora { config, .. } = &self.finetune {
            config.validate()?;
        }
        Ok(())
    }

    /// The dtype of norm statistics, softmax and log-probs.
    pub fn float_dtype(&self) -> DType {
        match self.compute_dtype {
            DType::BF16 | DType::F16 => DType::F32,
            other => other,
        }
    }
}

/// Every tensor of a Llama checkpoint, by HF name, with its shape (no `lm_head.weight` when the
/// embeddings are tied).
pub fn tensor_shapes(cfg: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
    let q = cfg.num_heads * cfg.head_dim;
    let kv = cfg.num_kv_heads * cfg.head_dim;
    let mut out = vec![(
        "model.embed_tokens.weight".to_string(),
        vec![cfg.vocab_size, h],
    )];
    for l in 0..cfg.num_layers {
        let p = format!("model.layers.{l}");
        out.push((format!("{p}.input_layernorm.weight"), vec![h]));
        for t in LoraTarget::ALL {
            let shape = match t {
                LoraTarget::Q => vec![q, h],
                LoraTarget::K | LoraTarget::V => vec![kv, h],
                LoraTarget::O => vec![h, q],
                LoraTarget::Gate | LoraTarget::Up => vec![i, h],
                LoraTarget::Down => vec![h, i],
            };
            out.push((format!("{}.weight", t.hf_path(l)), shape));
        }
        out.push((format!("{p}.post_attention_layernorm.weight"), vec![h]));
    }
    out.push(("model.norm.weight".to_string(), vec![h]));
    if !cfg.tie_word_embeddings {
        out.push(("lm_head.weight".to_string(), vec![cfg.vocab_size, h]));
    }
    out
}
