//! LoRA adapters (Hu et al., arXiv 2106.09685) in PEFT's layout.
//!
//! A targeted projection computes `y = x·Wᵀ + (α/r)·dropout(x)·Aᵀ·Bᵀ` with `A` (r, in) drawn
//! from PEFT's Kaiming-uniform (`a = √5`, i.e. `U(±1/√in)`, seeded) and `B` (out, r) = 0, so
//! training starts from the base model. `A` and `B` are `Var`s in the master dtype; the base
//! weights are plain tensors, and the training forward multiplies them through
//! [`crate::ops::frozen_linear`], so no weight gradient is ever computed for them.
//!
//! Adapters save and load as PEFT does: `adapter_model.safetensors` with keys
//! `base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight` (and `lora_B`) and an
//! `adapter_config.json` (`peft_type: "LORA"`, `r`, `lora_alpha`, `lora_dropout`,
//! `target_modules`, `task_type: "CAUSAL_LM"`, `bias: "none"`).
//!
//! [`LoraConfig::layers`] restricts the adapters to some decoder layers (PEFT's
//! `layers_to_transform`, saved and loaded under that key). Layers below the lowest adapted one
//! then hold nothing trainable: a `Mode::Train` forward runs them like `Mode::Infer` (detached
//! weights, fused kernels, no autograd graph), so the backward stops at the first adapted layer.
//!
//! Not supported: rsLoRA / DoRA scaling, per-layer rank or alpha patterns, biases, and
//! targets other than the seven Llama projections (each rejected with a clear error on load).

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::init::{mix_seed, uniform};
use crate::llama::layers::Ctx;
use crate::llama::{Finetune, Llama, Mode};
use crate::ops;

/// Adapter weights file name (PEFT).
pub const ADAPTER_WEIGHTS_FILE: &str = "adapter_model.safetensors";
/// Adapter config file name (PEFT).
pub const ADAPTER_CONFIG_FILE: &str = "adapter_config.json";

/// A projection LoRA can adapt; serialized as the HF module name (`"q_proj"`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum LoraTarget {
    /// `self_attn.q_proj`
    #[serde(rename = "q_proj")]
    Q,
    /// `self_attn.k_proj`
    #[serde(rename = "k_proj")]
    K,
    /// `self_attn.v_proj`
    #[serde(rename = "v_proj")]
    V,
    /// `self_attn.o_proj`
    #[serde(rename = "o_proj")]
    O,
    /// `mlp.gate_proj`
    #[serde(rename = "gate_proj")]
    Gate,
    /// `mlp.up_proj`
    #[serde(rename = "up_proj")]
    Up,
    /// `mlp.down_proj`
    #[serde(rename = "down_proj")]
    Down,
}

impl LoraTarget {
    /// All seven projections of a Llama layer.
    pub const ALL: [LoraTarget; 7] = [
        LoraTarget::Q,
        LoraTarget::K,
        LoraTarget::V,
        LoraTarget::O,
        LoraTarget::Gate,
        LoraTarget::Up,
        LoraTarget::Down,
    ];

    /// The HF module name (`"q_proj"`, …), as PEFT's `target_modules` lists it.
    pub fn module_name(self) -> &'static str {
        match self {
            LoraTarget::Q => "q_proj",
            LoraTarget::K => "k_proj",
            LoraTarget::V => "v_proj",
            LoraTarget::O => "o_proj",
            LoraTarget::Gate => "gate_proj",
            LoraTarget::Up => "up_proj",
            LoraTarget::Down => "down_proj",
        }
    }

    /// Parses an HF module name.
    pub fn from_module_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.module_name() == name)
    }

    /// The HF path of this projection in `layer`, e.g. `model.layers.3.self_attn.q_proj`.
    pub fn hf_path(self, layer: usize) -> String {
        let parent = match self {
            LoraTarget::Q | LoraTarget::K | LoraTarget::V | LoraTarget::O => "self_attn",
            LoraTarget::Gate | LoraTarget::Up | LoraTarget::Down => "mlp",
        };
        format!("model.layers.{layer}.{parent}.{}", self.module_name())
    }

    /// The PEFT tensor name of `lora_A` (`a = true`) or `lora_B` for this projection.
    pub fn peft_key(self, layer: usize, a: bool) -> String {
        let which = if a { "lora_A" } else { "lora_B" };
        format!("base_model.model.{}.{which}.weight", self.hf_path(layer))
    }
}

/// LoRA hyperparameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoraConfig {
    /// Rank `r` of the update `B·A`. Default 16. Must be > 0.
    pub rank: usize,
    /// Scale numerator: the update is multiplied by `alpha / rank`. Default 32. Must be > 0.
    pub alpha: f64,
    /// Dropout on the adapter input, training forward only. Default 0. In `[0, 1)`. The mask
    /// is drawn on the host (seeded), which costs time on large batches.
    pub dropout: f64,
    /// Adapted projections. Default: all seven (`q_proj` … `down_proj`). Non-empty, no
    /// duplicates.
    pub targets: Vec<LoraTarget>,
    /// Adapted decoder layers (0-based, PEFT's `layers_to_transform`). Default `None`: every
    /// layer. Non-empty, no duplicates, each below the model's layer count (checked when the
    /// model is built); kept sorted by the model. Adapting only the top layers makes training
    /// cheaper: the layers below the lowest adapted one build no autograd graph.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layers: Option<Vec<usize>>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            rank: 16,
            alpha: 32.0,
            dropout: 0.0,
            targets: LoraTarget::ALL.to_vec(),
            layers: None,
        }
    }
}

impl LoraConfig {
    /// Checks every field; the message names the field and the allowed range.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| ModelError::InvalidConfig {
            section: "lora",
            msg,
        };
        if self.rank == 0 {
            return Err(bad("rank must be > 0".into()));
        }
        if !(self.alpha > 0.0 && self.alpha.is_finite()) {
            return Err(bad(format!("alpha ({}) must be > 0", self.alpha)));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(bad(format!("dropout ({}) must be in [0, 1)", self.dropout)));
        }
        if self.targets.is_empty() {
            return Err(bad("targets must not be empty".into()));
        }
        let unique: BTreeSet<_> = self.targets.iter().collect();
        if unique.len() != self.targets.len() {
            return Err(bad(format!("targets has duplicates: {:?}", self.targets)));
        }
        if let Some(layers) = &self.layers {
            if layers.is_empty() {
                return Err(bad(
                    "layers must not be empty (omit it to adapt every layer)".into(),
                ));
            }
            let unique: BTreeSet<_> = layers.iter().collect();
            if unique.len() != layers.len() {
                return Err(bad(format!("layers has duplicates: {layers:?}")));
            }
        }
        Ok(())
    }

    /// [`LoraConfig::validate`], plus: every entry of `layers` is below `num_layers`.
    pub fn validate_for(&self, num_layers: usize) -> Result<()> {
        self.validate()?;
        if let Some(&bad) = self.layers.iter().flatten().find(|&&l| l >= num_layers) {
            return Err(ModelError::InvalidConfig {
                section: "lora",
                msg: format!(
                    "layers: index {bad} is out of range for a {num_layers}-layer model \
                     (valid: 0..={})",
                    num_layers.saturating_sub(1)
                ),
            });
        }
        Ok(())
    }

    /// Whether decoder layer `layer` carries adapters.
    pub fn adapts_layer(&self, layer: usize) -> bool {
        self.layers.as_ref().is_none_or(|l| l.contains(&layer))
    }

    /// The config with `layers` sorted (the form the model keeps and saves).
    fn normalized(&self) -> Self {
        let mut cfg = self.clone();
        if let Some(l) = &mut cfg.layers {
            l.sort_unstable();
        }
        cfg
    }

    /// The update's scale `alpha / rank`.
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }
}

/// One projection's adapter.
#[derive(Debug, Clone)]
pub(crate) struct Adapter {
    /// (r, in)
    pub a: Var,
    /// (out, r)
    pub b: Var,
    pub scale: f64,
    pub dropout: f64,
}

impl Adapter {
    /// PEFT's initialisation: `A ~ U(±1/√in)` (Kaiming-uniform, `a = √5`), `B = 0`.
    pub fn init(
        shape: (usize, usize),
        cfg: &LoraConfig,
        seed: u64,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let (out, inp) = shape;
        let bound = (inp as f32).sqrt().recip();
        let a = uniform(&[cfg.rank, inp], 0.0, bound, seed, dtype, device)?;
        let b = Tensor::zeros((out, cfg.rank), dtype, device)?;
        Self::from_tensors(a, b, cfg)
    }

    pub fn from_tensors(a: Tensor, b: Tensor, cfg: &LoraConfig) -> Result<Self> {
        Ok(Self {
            a: Var::from_tensor(&a)?,
            b: Var::from_tensor(&b)?,
            scale: cfg.scale(),
            dropout: cfg.dropout,
        })
    }

    /// `A` and `B` as `ctx`'s mode uses them: with their graph in training, detached
    /// otherwise; in the compute dtype.
    pub fn weights(&self, ctx: &Ctx) -> candle_core::Result<(Tensor, Tensor)> {
        let cast = |v: &Var| {
            let t = if ctx.mode == Mode::Train {
                v.as_tensor().clone()
            } else {
                v.as_tensor().detach()
            };
            t.to_dtype(ctx.compute)
        };
        Ok((cast(&self.a)?, cast(&self.b)?))
    }

    /// `y + scale · dropout(x)·Aᵀ·Bᵀ`. # Shapes: `x` (N, in), `y` (N, out) → (N, out).
    pub fn apply(
        &self,
        x: &Tensor,
        y: &Tensor,
        ctx: &Ctx,
        salt: u64,
    ) -> candle_core::Result<Tensor> {
        let (a, b) = self.weights(ctx)?;
        let x = if ctx.mode == Mode::Train && self.dropout > 0.0 {
            ops::dropout(x, self.dropout, mix_seed(ctx.dropout_seed, salt))?
        } else {
            x.clone()
        };
        // (N, r) first: the rank is the small dimension.
        let low = x.matmul(&a.t()?)?.affine(self.scale, 0.0)?;
        y + low.matmul(&b.t()?)?
    }

    /// The dense update `scale · B·A` in the adapter's dtype, (out, in).
    pub fn delta(&self) -> candle_core::Result<Tensor> {
        self.b
            .as_tensor()
            .detach()
            .matmul(&self.a.as_tensor().detach())?
            .affine(self.scale, 0.0)
    }
}

/// The subset of PEFT's `adapter_config.json` we read (PEFT writes many more keys; they are
/// accepted and the ones that would change the math are checked).
#[derive(Debug, Deserialize)]
struct PeftConfigJson {
    peft_type: String,
    r: usize,
    lora_alpha: f64,
    #[serde(default)]
    lora_dropout: f64,
    target_modules: serde_json::Value,
    #[serde(default)]
    bias: Option<String>,
    #[serde(default)]
    use_rslora: Option<bool>,
    #[serde(default)]
    use_dora: Option<bool>,
    #[serde(default)]
    layers_to_transform: Option<serde_json::Value>,
    #[serde(default)]
    layers_pattern: Option<serde_json::Value>,
    #[serde(default)]
    rank_pattern: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    alpha_pattern: Option<serde_json::Map<String, serde_json::Value>>,
}

impl PeftConfigJson {
    fn into_config(self, path: &Path) -> Result<LoraConfig> {
        let bad = |msg: String| ModelError::Config {
            path: path.display().to_string(),
            msg,
        };
        if self.peft_type != "LORA" {
            return Err(bad(format!(
                "peft_type {:?} is not supported (only \"LORA\")",
                self.peft_type
            )));
        }
        if self.bias.as_deref().is_some_and(|b| b != "none") {
            return Err(bad(format!(
                "bias {:?} is not supported (only \"none\")",
                self.bias
            )));
        }
        for (key, on) in [("use_rslora", self.use_rslora), ("use_dora", self.use_dora)] {
            if on == Some(true) {
                return Err(bad(format!("{key} = true is not supported")));
            }
        }
        let layers = parse_layers_to_transform(self.layers_to_transform.as_ref())
            .map_err(|m| bad(format!("layers_to_transform: {m}")))?;
        // PEFT needs `layers_pattern` only to find the layer list of unusual models; a Llama's
        // is `layers`.
        match &self.layers_pattern {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::String(p)) if p == "layers" => {}
            Some(serde_json::Value::Array(a)) if a.iter().all(|p| p == "layers") => {}
            Some(other) => {
                return Err(bad(format!(
                    "layers_pattern {other} is not supported (only \"layers\")"
                )))
            }
        }
        for (key, map) in [
            ("rank_pattern", &self.rank_pattern),
            ("alpha_pattern", &self.alpha_pattern),
        ] {
            if map.as_ref().is_some_and(|m| !m.is_empty()) {
                return Err(bad(format!("a non-empty {key} is not supported")));
            }
        }
        let names = self.target_modules.as_array().ok_or_else(|| {
            bad(
                "target_modules must be a list of module names (a regex string is not supported)"
                    .into(),
            )
        })?;
        let targets = names
            .iter()
            .map(|n| {
                n.as_str()
                    .and_then(LoraTarget::from_module_name)
                    .ok_or_else(|| {
                        bad(format!(
                            "target_modules entry {n} is not a Llama projection (q_proj … down_proj)"
                        ))
                    })
            })
            .collect::<Result<BTreeSet<_>>>()?;
        let cfg = LoraConfig {
            rank: self.r,
            alpha: self.lora_alpha,
            dropout: self.lora_dropout,
            targets: targets.into_iter().collect(),
            layers,
        };
        cfg.validate().map_err(|e| bad(e.to_string()))?;
        Ok(cfg)
    }
}

/// PEFT's `layers_to_transform`: absent or null (every layer), one index, or a list of them.
fn parse_layers_to_transform(
    v: Option<&serde_json::Value>,
) -> std::result::Result<Option<Vec<usize>>, String> {
    let index = |v: &serde_json::Value| {
        v.as_u64()
            .and_then(|i| usize::try_from(i).ok())
            .ok_or_else(|| format!("{v} is not a layer index"))
    };
    match v {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Array(a)) => {
            let mut layers = a
                .iter()
                .map(index)
                .collect::<std::result::Result<Vec<_>, _>>()?;
            layers.sort_unstable();
            Ok(Some(layers))
        }
        Some(one) => Ok(Some(vec![index(one)?])),
    }
}

impl Llama {
    /// The LoRA configuration, when the model carries adapters.
    pub fn lora_config(&self) -> Option<&LoraConfig> {
        self.lora.as_ref()
    }

    /// Adds freshly initialised adapters (`B = 0`, `A` seeded by `seed`) to the targets.
    pub(crate) fn init_adapters(&mut self, cfg: &LoraConfig, seed: u64) -> Result<()> {
        cfg.validate_for(self.layers.len())?;
        let cfg = &cfg.normalized();
        let (dtype, device) = (self.options.master_dtype, self.device.clone());
        for (i, layer) in self.layers.iter_mut().enumerate() {
            if !cfg.adapts_layer(i) {
                continue;
            }
            for &target in &cfg.targets {
                let linear = layer.linear_mut(target);
                let salt = (i * LoraTarget::ALL.len() + target as usize) as u64;
                let shape = linear.weight.tensor.dims2()?;
                linear.lora = Some(Adapter::init(
                    shape,
                    cfg,
                    mix_seed(seed, salt),
                    dtype,
                    &device,
                )?);
            }
        }
        self.lora = Some(cfg.clone());
        Ok(())
    }

    /// Writes `adapter_model.safetensors` and `adapter_config.json` (PEFT format) into `dir`.
    pub fn save_adapters(&self, dir: &Path) -> Result<()> {
        let cfg = self.lora.as_ref().ok_or_else(|| {
            ModelError::InvalidArgument("save_adapters: the model has no LoRA adapters".into())
        })?;
        std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
        let mut tensors = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            for &target in &cfg.targets {
                if let Some(ad) = &layer.linear(target).lora {
                    tensors.push((target.peft_key(i, true), ad.a.as_tensor().detach()));
                    tensors.push((target.peft_key(i, false), ad.b.as_tensor().detach()));
                }
            }
        }
        let path = dir.join(ADAPTER_WEIGHTS_FILE);
        let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
        safetensors::serialize_to_file(tensors, Some(metadata), &path)
            .map_err(|e| ModelError::format(&path, e.to_string()))?;
        let json = serde_json::json!({
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "r": cfg.rank,
            "lora_alpha": cfg.alpha,
            "lora_dropout": cfg.dropout,
            "target_modules": cfg.targets.iter().map(|t| t.module_name()).collect::<Vec<_>>(),
            "bias": "none",
            "fan_in_fan_out": false,
            "inference_mode": true,
            "init_lora_weights": true,
            "use_rslora": false,
            "use_dora": false,
            "modules_to_save": null,
            "layers_to_transform": cfg.layers,
            "layers_pattern": cfg.layers.as_ref().map(|_| "layers"),
            "base_model_name_or_path": null,
        });
        let path = dir.join(ADAPTER_CONFIG_FILE);
        let text = serde_json::to_string_pretty(&json)
            .map_err(|e| ModelError::format(&path, e.to_string()))?;
        std::fs::write(&path, text).map_err(|e| ModelError::io(&path, e))
    }

    /// Replaces the model's adapters with the PEFT adapters in `dir`. Every expected tensor
    /// must be present with the right shape and no unexpected tensor may be left over; the
    /// model is unchanged when loading fails.
    pub fn load_adapters(&mut self, dir: &Path) -> Result<()> {
        if matches!(self.options.finetune, Finetune::Full) {
            return Err(ModelError::InvalidArgument(
                "load_adapters: the model is set up for full fine-tuning, not LoRA".into(),
            ));
        }
        let cfg_path = dir.join(ADAPTER_CONFIG_FILE);
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| ModelError::io(&cfg_path, e))?;
        let raw: PeftConfigJson = serde_json::from_str(&text).map_err(|e| ModelError::Config {
            path: cfg_path.display().to_string(),
            msg: e.to_string(),
        })?;
        let cfg = raw.into_config(&cfg_path)?;
        cfg.validate_for(self.layers.len())
            .map_err(|e| ModelError::Config {
                path: cfg_path.display().to_string(),
                msg: e.to_string(),
            })?;
        let path = dir.join(ADAPTER_WEIGHTS_FILE);
        if !path.exists() {
            return Err(ModelError::format(&path, "file not found"));
        }
        let mut tensors = candle_core::safetensors::load(&path, &self.device)
            .map_err(|e| ModelError::format(&path, e.to_string()))?;
        let dtype = self.options.master_dtype;
        let mut adapters = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            if !cfg.adapts_layer(i) {
                continue;
            }
            for &target in &cfg.targets {
                let (out, inp) = layer.linear(target).weight.tensor.dims2()?;
                let mut take = |a: bool, shape: [usize; 2]| -> Result<Tensor> {
                    let key = target.peft_key(i, a);
                    let t = tensors
                        .remove(&key)
                        .ok_or_else(|| ModelError::tensor(&path, &key, "missing"))?;
                    if t.dims() != shape {
                        return Err(ModelError::tensor(
                            &path,
                            &key,
                            format!("expected shape {shape:?}, found {:?}", t.dims()),
                        ));
                    }
                    Ok(t.to_dtype(dtype)?)
                };
                let a = take(true, [cfg.rank, inp])?;
                let b = take(false, [out, cfg.rank])?;
                adapters.push((i, target, Adapter::from_tensors(a, b, &cfg)?));
            }
        }
        if let Some(extra) = tensors.keys().min() {
            return Err(ModelError::tensor(
                &path,
                extra,
                format!(
                    "unexpected tensor ({} left over): not an adapter of {:?} in a {}-layer model",
                    tensors.len(),
                    cfg.targets,
                    self.layers.len()
                ),
            ));
        }
        for layer in &mut self.layers {
            for target in LoraTarget::ALL {
                layer.linear_mut(target).lora = None;
            }
        }
        for (i, target, adapter) in adapters {
            self.layers[i].linear_mut(target).lora = Some(adapter);
        }
        self.lora = Some(cfg);
        Ok(())
    }

    /// Folds every adapter into its base weight (`W ← W + (α/r)·B·A`) and drops the adapters:
    /// afterwards the model computes what the adapted model did, with plain projections.
    pub fn merge_adapters(&mut self) -> Result<()> {
        for layer in &mut self.layers {
            for target in LoraTarget::ALL {
                let linear = layer.linear_mut(target);
                if let Some(adapter) = linear.lora.take() {
                    let merged = (linear.weight.tensor.detach() + adapter.delta()?)?;
                    let trainable = linear.weight.var.is_some();
                    linear.weight = crate::llama::layers::Param::new(
                        std::mem::take(&mut linear.weight.name),
                        merged,
                        trainable,
                    )?;
                }
            }
        }
        self.lora = None;
        if matches!(self.options.finetune, Finetune::Lora { .. }) {
            self.options.finetune = Finetune::Frozen;
        }
        Ok(())
    }
}
