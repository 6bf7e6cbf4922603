//! The Llama decoder layer: attention (GQA, rotary, padding- and cache-aware), SwiGLU MLP,
//! RMSNorms, and the linear projections that may carry LoRA adapters. Field names are the HF
//! module names, so a safetensors key greps straight to the field that holds it.

use std::sync::{Arc, OnceLock};

use candle_core::{DType, Tensor, Var};

use crate::error::Result;
use crate::kv_cache::{KvCache, StepPlan};
use crate::llama::Mode;
use crate::lora::{Adapter, LoraTarget};
use crate::ops::panel::PackedWeight;
use crate::ops::{self, Kernels};

/// One weight: the master tensor (a `Var`'s tensor when trainable) and its HF name.
#[derive(Debug, Clone)]
pub(crate) struct Param {
    pub name: String,
    /// Master dtype; shares storage with `var` when trainable.
    pub tensor: Tensor,
    pub var: Option<Var>,
    /// A frozen weight cast to a compute dtype other than its own (bf16 on CUDA), made on first
    /// use ([`Param::in_dtype`]) instead of on every forward. Never set for a trainable weight,
    /// which changes under the optimizer.
    pub cast: OnceLock<Tensor>,
    /// A frozen weight prepared for decode products ([`Param::packed`]), made on first use.
    pub packed: OnceLock<Option<Arc<DecodeWeight>>>,
}

impl Param {
    pub fn new(name: String, tensor: Tensor, trainable: bool) -> candle_core::Result<Self> {
        let var = trainable.then(|| Var::from_tensor(&tensor)).transpose()?;
        let tensor = var.as_ref().map_or(tensor, |v| v.as_tensor().clone());
        Ok(Self {
            name,
            tensor,
            var,
            cast: OnceLock::new(),
            packed: OnceLock::new(),
        })
    }

    /// The weight in `dtype` prepared for decode products, built on first use: packed into
    /// panels ([`PackedWeight`]) where that applies (f32 on an AVX-512 CPU), else its
    /// contiguous transpose. `None` for a trainable weight (it changes under the optimizer,
    /// which would leave the copy stale) and off the CPU.
    pub fn packed(&self, dtype: DType) -> candle_core::Result<Option<Arc<DecodeWeight>>> {
        if self.var.is_some() || !self.tensor.device().is_cpu() {
            return Ok(None);
        }
        if let Some(p) = self.packed.get() {
            return Ok(p.clone());
        }
        let w = self.in_dtype(dtype, false)?;
        let p = match PackedWeight::pack(&w)? {
            Some(p) => DecodeWeight::Panels(p),
            None => DecodeWeight::Transposed(w.t()?.contiguous()?),
        };
        Ok(self.packed.get_or_init(|| Some(Arc::new(p))).clone())
    }

    /// The weight in `dtype`: with its graph when `graph` and trainable, detached otherwise. A
    /// frozen weight's cast is cached (it carries no graph either way).
    pub fn in_dtype(&self, dtype: DType, graph: bool) -> candle_core::Result<Tensor> {
        if self.var.is_some() || self.tensor.dtype() == dtype {
            let t = if graph {
                self.tensor.clone()
            } else {
                self.tensor.detach()
            };
            return t.to_dtype(dtype);
        }
        match self.cast.get() {
            Some(t) if t.dtype() == dtype => Ok(t.clone()),
            Some(_) => self.tensor.detach().to_dtype(dtype), // one model, one compute dtype
            None => {
                let t = self.tensor.detach().to_dtype(dtype)?;
                Ok(self.cast.get_or_init(|| t).clone())
            }
        }
    }
}

/// Everything a forward step shares across layers.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub mode: Mode,
    /// dtype of matmuls and activations.
    pub compute: DType,
    /// dtype of norm statistics, attention scores and softmax.
    pub float: DType,
    pub kernels: Kernels,
    pub rms_eps: f64,
    /// (B, T, D/2) in the compute dtype.
    pub cos: Tensor,
    pub sin: Tensor,
    /// Padding + causal additive bias, (B, T, S) in the float dtype.
    pub bias: Tensor,
    /// Seed for this forward's LoRA dropout masks.
    pub dropout_seed: u64,
    pub batch: usize,
    pub seq: usize,
}

impl Ctx {
    /// The same step run in another mode (shares the angles and the bias).
    pub fn with_mode(&self, mode: Mode) -> Self {
        Self {
            mode,
            ..self.clone()
        }
    }

    /// The weight as this mode uses it: with its graph in training, detached otherwise; in
    /// the compute dtype (a differentiable cast from the master dtype).
    pub fn weight(&self, p: &Param) -> candle_core::Result<Tensor> {
        p.in_dtype(self.compute, self.mode == Mode::Train)
    }

    pub fn rms_norm(&self, x: &Tensor, w: &Param) -> candle_core::Result<Tensor> {
        ops::rms_norm(x, &self.weight(w)?, self.rms_eps, self.float, self.kernels)
    }
}

/// A bias-free projection `y = x·Wᵀ`, plus an optional LoRA adapter.
#[derive(Debug, Clone)]
pub(crate) struct Linear {
    pub weight: Param,
    pub lora: Option<Adapter>,
}

impl Linear {
    /// # Shapes
    /// `x` (N, in) → (N, out).
    pub fn forward(&self, x: &Tensor, ctx: &Ctx, salt: u64) -> candle_core::Result<Tensor> {
        let w = ctx.weight(&self.weight)?;
        let frozen_train = ctx.mode == Mode::Train && self.weight.var.is_none();
        if let Some(adapter) = &self.lora {
            if frozen_train && adapter.dropout == 0.0 && ctx.kernels == Kernels::Fused {
                let (a, b) = adapter.weights(ctx)?;
                return ops::lora_linear(x, &w, &a, &b, adapter.scale);
            }
        }
        let y = if frozen_train {
            // Frozen base under a graph: skip candle's unconditional weight-gradient matmul.
            ops::frozen_linear(x, &w)?
        } else if let Some(y) = packed_matmul(&self.weight, x, ctx.compute)? {
            y
        } else {
            x.matmul(&w.t()?)?
        };
        match &self.lora {
            Some(adapter) if ctx.mode != Mode::Reference => adapter.apply(x, &y, ctx, salt),
            _ => Ok(y),
        }
    }
}

/// A frozen CPU weight prepared for decode products ([`Param::packed`]).
#[derive(Debug)]
pub(crate) enum DecodeWeight {
    /// Packed into panels for the AVX-512 kernel.
    Panels(PackedWeight),
    /// `Wᵀ` contiguous, where the kernel does not apply: gemm then skips repacking `W` on every
    /// call (about 1.7× faster at 32 rows on 1536×576 than `x·Wᵀ` on the row-major `W`).
    Transposed(Tensor),
}

/// `x·Wᵀ` through the prepared weight for a decode batch (at most [`ops::panel::MAX_ROWS`]
/// rows, no graph) of a frozen CPU weight; `None` otherwise.
pub(crate) fn packed_matmul(
    w: &Param,
    x: &Tensor,
    dtype: DType,
) -> candle_core::Result<Option<Tensor>> {
    if x.dim(0)? > ops::panel::MAX_ROWS || x.track_op() {
        return Ok(None);
    }
    match w.packed(dtype)?.as_deref() {
        Some(DecodeWeight::Panels(p)) => p.matmul(x),
        Some(DecodeWeight::Transposed(wt)) => ops::split_matmul(x, wt).map(Some),
        None => Ok(None),
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Attention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
}

impl Attention {
    /// # Shapes
    /// `x` (B·T, H) → (B·T, H).
    fn forward(
        &self,
        x: &Tensor,
        layer: usize,
        ctx: &Ctx,
        cache: &mut KvCache,
        plan: &StepPlan,
    ) -> Result<Tensor> {
        let (b, t, d) = (ctx.batch, ctx.seq, self.head_dim);
        let (nh, nkv) = (self.num_heads, self.num_kv_heads);
        let rep = nh / nkv;
        let salt = |target: LoraTarget| (layer * LoraTarget::ALL.len() + target as usize) as u64;
        let heads = |y: Tensor, n: usize| -> candle_core::Result<Tensor> {
            y.reshape((b, t, n, d))?.transpose(1, 2)?.contiguous() // (B, n, T, D)
        };
        let q = heads(self.q_proj.forward(x, ctx, salt(LoraTarget::Q))?, nh)?;
        let k = heads(self.k_proj.forward(x, ctx, salt(LoraTarget::K))?, nkv)?;
        let v = heads(self.v_proj.forward(x, ctx, salt(LoraTarget::V))?, nkv)?;
        let q = ops::rope(&q, &ctx.cos, &ctx.sin, ctx.kernels)?;
        let k = ops::rope(&k, &ctx.cos, &ctx.sin, ctx.kernels)?;
        let (kt, v) = cache.append(layer, &k, &v, plan)?; // (B, n_kv, D, S), (B, n_kv, S, D)
        let s = plan.seq_len;
        if t == 1 && ctx.float == ctx.compute && ops::decode_attention::applies(&q, &kt, &v) {
            // A decode step: one fused pass per (row, kv head) instead of 2·B·n_kv tiny matmuls.
            let scale = (d as f64).powf(-0.5);
            let y = ops::decode_attention::decode_attention(&q, &kt, &v, &ctx.bias, scale)?
                .reshape((b, nh * d))?;
            return Ok(self.o_proj.forward(&y, ctx, salt(LoraTarget::O))?);
        }
        // GQA without repeating K/V: head h uses kv head h / rep (HF `repeat_kv`), so the rep
        // query heads of one kv head stack into one (rep·T, D) matrix against its keys.
        let q = q
            .affine((d as f64).powf(-0.5), 0.0)?
            .reshape((b, nkv, rep * t, d))?;
        let scores = q
            .matmul(&kt)? // (B, n_kv, rep·T, S)
            .to_dtype(ctx.float)?
            .reshape((b, nh, t, s))?;
        let probs = ops::masked_softmax(&scores, &ctx.bias, ctx.kernels)?
            .to_dtype(ctx.compute)?
            .reshape((b, nkv, rep * t, s))?;
        let y = probs
            .matmul(&v)? // (B, n_kv, rep·T, D)
            .reshape((b, nh, t, d))?
            .transpose(1, 2)?
            .reshape((b * t, nh * d))?;
        Ok(self.o_proj.forward(&y, ctx, salt(LoraTarget::O))?)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Mlp {
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
}

impl Mlp {
    /// SwiGLU: `down(silu(gate(x)) ⊙ up(x))`. # Shapes: (N, H) → (N, H).
    fn forward(&self, x: &Tensor, layer: usize, ctx: &Ctx) -> candle_core::Result<Tensor> {
        let salt = |target: LoraTarget| (layer * LoraTarget::ALL.len() + target as usize) as u64;
        let gate = self.gate_proj.forward(x, ctx, salt(LoraTarget::Gate))?;
        let up = self.up_proj.forward(x, ctx, salt(LoraTarget::Up))?;
        let hidden = ops::silu_mul(&gate, &up, ctx.kernels)?;
        self.down_proj.forward(&hidden, ctx, salt(LoraTarget::Down))
    }
}

#[derive(Debug, Clone)]
pub(crate) struct DecoderLayer {
    pub input_layernorm: Param,
    pub self_attn: Attention,
    pub post_attention_layernorm: Param,
    pub mlp: Mlp,
}

impl DecoderLayer {
    /// Pre-norm residual block. # Shapes: (B·T, H) → (B·T, H).
    pub fn forward(
        &self,
        x: &Tensor,
        layer: usize,
        ctx: &Ctx,
        cache: &mut KvCache,
        plan: &StepPlan,
    ) -> Result<Tensor> {
        let attn_in = ctx.rms_norm(x, &self.input_layernorm)?;
        let h = (x + self.self_attn.forward(&attn_in, layer, ctx, cache, plan)?)?;
        let mlp_in = ctx.rms_norm(&h, &self.post_attention_layernorm)?;
        Ok((&h + self.mlp.forward(&mlp_in, layer, ctx)?)?)
    }

    pub fn linear(&self, target: LoraTarget) -> &Linear {
        match target {
            LoraTarget::Q => &self.self_attn.q_proj,
            LoraTarget::K => &self.self_attn.k_proj,
            LoraTarget::V => &self.self_attn.v_proj,
            LoraTarget::O => &self.self_attn.o_proj,
            LoraTarget::Gate => &self.mlp.gate_proj,
            LoraTarget::Up => &self.mlp.up_proj,
            LoraTarget::Down => &self.mlp.down_proj,
        }
    }

    pub fn linear_mut(&mut self, target: LoraTarget) -> &mut Linear {
        match target {
            LoraTarget::Q => &mut self.self_attn.q_proj,
            LoraTarget::K => &mut self.self_attn.k_proj,
            LoraTarget::V => &mut self.self_attn.v_proj,
            LoraTarget::O => &mut self.self_attn.o_proj,
            LoraTarget::Gate => &mut self.mlp.gate_proj,
            LoraTarget::Up => &mut self.mlp.up_proj,
            LoraTarget::Down => &mut self.mlp.down_proj,
        }
    }

    /// Whether any weight of the layer is a `Var` or any projection carries an adapter.
    pub fn has_trainable(&self) -> bool {
        self.params().iter().any(|p| p.var.is_some())
            || LoraTarget::ALL
                .iter()
                .any(|&t| self.linear(t).lora.is_some())
    }

    /// Every parameter of the layer, in HF order.
    pub fn params(&self) -> Vec<&Param> {
        let mut out = vec![&self.input_layernorm];
        out.extend(LoraTarget::ALL.iter().map(|&t| &self.linear(t).weight));
        out.push(&self.post_attention_layernorm);
        out
    }
}
