//! [`Llama`]: a Llama-family decoder (embedding, RMSNorm, RoPE with optional Llama 3 scaling,
//! GQA attention, SwiGLU, tied or untied LM head) that trains and samples from one set of
//! weights.
//!
//! Follows HF `modeling_llama.py` (and candle-transformers' `llama.rs` for tensor names). Unlike
//! candle-transformers' model it returns hidden states for every position, takes padded
//! batches (left or right padding; positions come from the attention mask), keeps per-row
//! state in an explicit [`KvCache`], and has a differentiable [`Mode::Train`] forward.
//!
//! # Modes
//! * [`Mode::Train`]: builds the autograd graph. Norms, rotary embeddings and softmax use
//!   [`LlamaOptions::kernels`] (fused forward + analytic backward by default, or plain
//!   composed ops); frozen projections skip their weight gradient; LoRA dropout is active.
//! * [`Mode::Infer`]: the policy for sampling and old-policy log-probs. Detached weights, fused
//!   kernels, no graph.
//! * [`Mode::Reference`]: `Infer` with the LoRA adapters switched off, i.e. the base model,
//!   which is the reference policy for the KL term without a second copy of the weights.
//!
//! # Precision
//! Master weights (and trainable `Var`s) are in [`LlamaOptions::master_dtype`] (f32; f64 for
//! gradient checks). Matmuls and activations run in [`LlamaOptions::compute_dtype`]; norm
//! statistics, attention scores, softmax and log-probs run in the *float dtype*: f32 when the
//! compute dtype is a half type, the compute dtype otherwise.

mod head;
pub(crate) mod layers;
mod options;
mod rope;

pub use head::LOGITS_SMALL_ROWS;
pub use options::{tensor_shapes, Finetune, LlamaOptions};

use std::sync::atomic::{AtomicU64, Ordering};

use candle_core::{DType, Device, Tensor, Var};

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::init::{self, mix_seed};
use crate::kv_cache::KvCache;
use crate::lora::{LoraConfig, LoraTarget};
use crate::weights::WeightMap;
use layers::{Attention, Ctx, DecoderLayer, Linear, Mlp, Param};

/// How a forward runs (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Autograd graph, differentiable kernels, LoRA dropout.
    Train,
    /// No graph, fused kernels, adapters on (the current policy).
    Infer,
    /// No graph, fused kernels, adapters off (the reference policy).
    Reference,
}

/// A trainable, batched Llama-family decoder.
#[derive(Debug)]
pub struct Llama {
    pub(crate) cfg: ModelConfig,
    pub(crate) options: LlamaOptions,
    pub(crate) device: Device,
    pub(crate) embed_tokens: Param,
    pub(crate) layers: Vec<DecoderLayer>,
    pub(crate) norm: Param,
    /// `None` when tied to `embed_tokens`.
    pub(crate) lm_head: Option<Param>,
    pub(crate) lora: Option<LoraConfig>,
    /// (1, 1, D/2) in the float dtype.
    inv_freq: Tensor,
    /// Counts training forwards, so each one draws fresh LoRA dropout masks.
    forward_count: AtomicU64,
    dropout_seed: u64,
}

impl Llama {
    /// Builds the model from HF-named tensors. Every missing or mis-shaped tensor is an error
    /// naming the file and the tensor; tensors the model does not use are ignored (logged).
    pub fn from_weights(
        cfg: &ModelConfig,
        weights: WeightMap,
        device: &Device,
        options: LlamaOptions,
    ) -> Result<Self> {
        options.validate()?;
        if options.flush_denormals && device.is_cpu() {
            crate::ops::flush_denormals();
        }
        let full = options.finetune == Finetune::Full;
        let master = options.master_dtype;
        let shapes = tensor_shapes(cfg);
        for name in weights.names() {
            if !shapes.iter().any(|(n, _)| n == name) {
                let origin = weights.origin().display();
                tracing::debug!(tensor = name, origin = %origin, "unused tensor");
            }
        }
        let mut params = shapes
            .iter()
            .map(|(name, shape)| {
                let t = weights
                    .get_shaped(name, shape)?
                    .to_device(device)?
                    .to_dtype(master)?;
                Ok(Param::new(name.clone(), t, full)?)
            })
            .collect::<Result<Vec<_>>>()?
            .into_iter();
        let mut next = || {
            params
                .next()
                .ok_or_else(|| ModelError::InvalidArgument("tensor list exhausted".into()))
        };
        let embed_tokens = next()?;
        let mut layers = Vec::with_capacity(cfg.num_layers);
        for _ in 0..cfg.num_layers {
            let input_layernorm = next()?;
            let mut linear = || -> Result<Linear> {
                Ok(Linear {
                    weight: next()?,
                    lora: None,
                })
            };
            let self_attn = Attention {
                q_proj: linear()?,
                k_proj: linear()?,
                v_proj: linear()?,
                o_proj: linear()?,
                num_heads: cfg.num_heads,
                num_kv_heads: cfg.num_kv_heads,
                head_dim: cfg.head_dim,
            };
            let mlp = Mlp {
                gate_proj: linear()?,
                up_proj: linear()?,
                down_proj: linear()?,
            };
            layers.push(DecoderLayer {
                input_layernorm,
                self_attn,
                post_attention_layernorm: next()?,
                mlp,
            });
        }
        let norm = next()?;
        let lm_head = (!cfg.tie_word_embeddings).then(&mut next).transpose()?;
        let seed = match &options.finetune {
            Finetune::Lora { seed, .. } => *seed,
            _ => 0,
        };
        let mut model = Self {
            inv_freq: rope::inv_freq_tensor(cfg, options.float_dtype(), device)?,
            cfg: cfg.clone(),
            device: device.clone(),
            embed_tokens,
            layers,
            norm,
            lm_head,
            lora: None,
            forward_count: AtomicU64::new(0),
            dropout_seed: mix_seed(seed, 0x0d0d),
            options,
        };
        if let Finetune::Lora { config, seed } = model.options.finetune.clone() {
            model.init_adapters(&config, seed)?;
        }
        Ok(model)
    }

    /// A model with deterministic random weights ([`init::random_weights`]) for tests and
    /// benchmarks.
    pub fn random(
        cfg: &ModelConfig,
        seed: u64,
        device: &Device,
        options: LlamaOptions,
    ) -> Result<Self> {
        let weights = init::random_weights(cfg, seed, options.master_dtype, device)?;
        Self::from_weights(cfg, weights, device, options)
    }

    /// The resolved model configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// The options the model was built with.
    pub fn options(&self) -> &LlamaOptions {
        &self.options
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// An empty cache with one slot per layer.
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.cfg.num_layers)
    }

    /// Runs `input_ids` on top of whatever `cache` holds and appends them to it.
    ///
    /// Rows may be left- or right-padded: a real token's position is its row's number of
    /// earlier real tokens (cached ones included), pad keys are never attended to, and pad
    /// queries produce finite garbage that callers mask out. After an error the cache is in an
    /// unspecified state; start over with a fresh one.
    ///
    /// # Shapes
    /// `input_ids` (B, T) u32; `attention_mask` (B, T) any numeric dtype, 1 = real token,
    /// 0 = pad → hidden states after the final norm, (B, T, H) in the compute dtype.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        cache: &mut KvCache,
        mode: Mode,
    ) -> Result<Tensor> {
        let (b, t) = input_ids.dims2().map_err(|_| {
            ModelError::Shape(format!(
                "input_ids must be (B, T), got {:?}",
                input_ids.dims()
            ))
        })?;
        if input_ids.dtype() != DType::U32 || b == 0 || t == 0 {
            return Err(ModelError::Shape(format!(
                "input_ids must be a non-empty (B, T) u32 tensor, got {:?} {:?}",
                input_ids.dims(),
                input_ids.dtype()
            )));
        }
        if attention_mask.dims() != [b, t] {
            return Err(ModelError::Shape(format!(
                "attention_mask {:?} must have the shape of input_ids ({b}, {t})",
                attention_mask.dims()
            )));
        }
        let mask: Vec<bool> = attention_mask
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?
            .into_iter()
            .map(|m| m != 0.0)
            .collect();
        self.prepare_thread();
        let mut plan = cache.plan(&mask, b, t, mode)?;
        cache.prepare(&plan)?;
        let ctx = self.context(&mut plan, b, t, mode)?;
        let x = self.run_layers(input_ids, &ctx, cache, &plan, &mut |_, _| {})?;
        cache.commit(plan);
        Ok(x.reshape((b, t, self.cfg.hidden_size))?)
    }

    /// Embedding, decoder layers and final norm; `probe(i, x)` sees the input of layer `i`
    /// (tests check where the autograd graph starts).
    ///
    /// In `Mode::Train`, the layers below [`Llama::first_trainable_layer`] hold nothing
    /// trainable: they run as in `Mode::Infer` (detached weights, fused kernels), so no graph
    /// is recorded there and the backward stops at the first layer that trains. The cache
    /// still stores their keys as a training cache (the plan's mode).
    pub(crate) fn run_layers(
        &self,
        input_ids: &Tensor,
        ctx: &Ctx,
        cache: &mut KvCache,
        plan: &crate::kv_cache::StepPlan,
        probe: &mut dyn FnMut(usize, &Tensor),
    ) -> Result<Tensor> {
        let first = match ctx.mode {
            Mode::Train => self.first_trainable_layer(),
            _ => 0,
        };
        let frozen_ctx = (first > 0).then(|| ctx.with_mode(Mode::Infer));
        let ctx_of = |i: usize| match &frozen_ctx {
            Some(f) if i < first => f,
            _ => ctx,
        };
        let mut x = ctx_of(0)
            .weight(&self.embed_tokens)?
            .index_select(&input_ids.flatten_all()?, 0)?; // (B·T, H)
        for (i, layer) in self.layers.iter().enumerate() {
            probe(i, &x);
            x = layer.forward(&x, i, ctx_of(i), cache, plan)?;
        }
        Ok(ctx_of(self.layers.len()).rms_norm(&x, &self.norm)?)
    }

    /// The lowest decoder layer with a trainable tensor (a weight `Var` or a LoRA adapter):
    /// 0 when the embedding trains (full fine-tuning), the number of layers when nothing in
    /// the stack trains. A `Mode::Train` forward records no graph below it.
    pub fn first_trainable_layer(&self) -> usize {
        if self.embed_tokens.var.is_some() {
            return 0;
        }
        self.layers
            .iter()
            .position(DecoderLayer::has_trainable)
            .unwrap_or(self.layers.len())
    }

    fn context(
        &self,
        plan: &mut crate::kv_cache::StepPlan,
        b: usize,
        t: usize,
        mode: Mode,
    ) -> Result<Ctx> {
        let (compute, float) = (self.options.compute_dtype, self.options.float_dtype());
        let s = plan.seq_len;
        let dev = &self.device;
        let positions = Tensor::from_vec(std::mem::take(&mut plan.positions), (b, t), dev)?;
        let (cos, sin) = rope::cos_sin(&positions, &self.inv_freq, compute)?;
        let key_bias = std::mem::take(&mut plan.key_bias);
        let mut bias = Tensor::from_vec(key_bias, (b, 1, s), dev)?.to_dtype(float)?;
        if let Some(causal) = plan.causal_bias.take() {
            let causal = Tensor::from_vec(causal, (1, t, s), dev)?.to_dtype(float)?;
            bias = bias.broadcast_add(&causal)?; // (B, T, S)
        }
        let count = match mode {
            Mode::Train => self.forward_count.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
        Ok(Ctx {
            mode,
            compute,
            float,
            kernels: self.options.kernels,
            rms_eps: self.cfg.rms_norm_eps,
            cos,
            sin,
            bias,
            dropout_seed: mix_seed(self.dropout_seed, count),
            batch: b,
            seq: t,
        })
    }

    /// The calling thread may not be the one that built the model (e.g. a sampler thread).
    fn prepare_thread(&self) {
        if self.options.flush_denormals && self.device.is_cpu() {
            crate::ops::flush_denormals_on_this_thread();
        }
    }

    /// Number of `Mode::Train` forwards run so far. Each one draws its LoRA dropout masks from
    /// a stream seeded by this count, so an exact resume saves it with the checkpoint and
    /// restores it with [`Llama::set_train_forward_count`].
    pub fn train_forward_count(&self) -> u64 {
        self.forward_count.load(Ordering::Relaxed)
    }

    /// Sets the count of [`Llama::train_forward_count`]: the next `Mode::Train` forward draws
    /// the dropout masks that forward number `count` of a fresh model would (with the same
    /// seed). Restoring the saved count makes a resumed run bit-identical to the uninterrupted
    /// one.
    pub fn set_train_forward_count(&self, count: u64) {
        self.forward_count.store(count, Ordering::Relaxed);
    }

    fn params(&self) -> Vec<&Param> {
        let mut out = vec![&self.embed_tokens];
        for layer in &self.layers {
            out.extend(layer.params());
        }
        out.push(&self.norm);
        out.extend(self.lm_head.as_ref());
        out
    }

    /// The trainable variables: every weight (HF names) under full fine-tuning, the adapters
    /// (PEFT names, `…lora_A.weight` / `…lora_B.weight`) under LoRA, nothing when frozen.
    pub fn trainable_vars(&self) -> Vec<(String, Var)> {
        let mut out: Vec<(String, Var)> = self
            .params()
            .into_iter()
            .filter_map(|p| p.var.clone().map(|v| (p.name.clone(), v)))
            .collect();
        for (i, layer) in self.layers.iter().enumerate() {
            for target in LoraTarget::ALL {
                if let Some(ad) = &layer.linear(target).lora {
                    out.push((target.peft_key(i, true), ad.a.clone()));
                    out.push((target.peft_key(i, false), ad.b.clone()));
                }
            }
        }
        out
    }

    /// Every weight by HF name, detached, in the master dtype, with LoRA adapters folded in:
    /// the full model as `Mode::Infer` computes it, ready to be saved as an HF checkpoint.
    pub fn named_weights(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out: Vec<(String, Tensor)> = Vec::new();
        out.push(named(&self.embed_tokens));
        for layer in &self.layers {
            out.push(named(&layer.input_layernorm));
            for target in LoraTarget::ALL {
                let linear = layer.linear(target);
                let (name, w) = named(&linear.weight);
                let w = match &linear.lora {
                    Some(ad) => (w + ad.delta()?)?,
                    None => w,
                };
                out.push((name, w));
            }
            out.push(named(&layer.post_attention_layernorm));
        }
        out.push(named(&self.norm));
        out.extend(self.lm_head.as_ref().map(named));
        Ok(out)
    }
}

fn named(p: &Param) -> (String, Tensor) {
    (p.name.clone(), p.tensor.detach())
}

#[cfg(test)]
mod tests;
