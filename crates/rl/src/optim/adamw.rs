//! AdamW (Loshchilov & Hutter) with the update order and arithmetic of `torch.optim.AdamW`
//! (single-tensor path), moments in f32 whatever the parameter dtype:
//!
//! ```text
//! θ ← θ (1 − lr λ)                      (decayed parameters only)
//! m ← m + (1 − β1)(g − m)                (torch `lerp_`)
//! v ← β2 v + (1 − β2) g²
//! θ ← θ − (lr / (1 − β1^t)) · m / (√v / √(1 − β2^t) + ε)
//! ```
//!
//! t counts applied updates. A parameter without a gradient in a step is skipped (torch
//! skips `grad is None`), but t is global, so its bias correction uses the optimizer's t.

use super::{clip_scale, global_grad_norm, GradAccumulator, OptimizerConfig};
use crate::error::{Result, RlError};
use candle_core::{DType, Tensor, TensorId, Var};

/// One named parameter and its state.
#[derive(Debug)]
pub(super) struct Param {
    pub name: String,
    pub var: Var,
    pub decay: bool,
    /// First and second moments (f32), `None` before the first update that saw a gradient.
    pub moments: Option<(Tensor, Tensor)>,
}

/// AdamW over named parameters.
#[derive(Debug)]
pub struct AdamW {
    pub(super) params: Vec<Param>,
    pub(super) cfg: OptimizerConfig,
    pub(super) step: u64,
}

/// What one [`AdamW::step`] did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepReport {
    /// False when the gradient norm was not finite: no weight or state was changed and the
    /// step counter did not advance.
    pub applied: bool,
    /// The global gradient norm before clipping.
    pub grad_norm: f64,
    /// The factor gradients were multiplied by (1 = not clipped).
    pub clip_scale: f64,
    /// The learning rate of this update (from the schedule).
    pub lr: f64,
    /// Updates applied so far, this one included.
    pub step: u64,
}

impl AdamW {
    /// An optimizer over `params`, validated; names must be unique.
    pub fn new(params: Vec<(String, Var)>, cfg: OptimizerConfig) -> Result<Self> {
        cfg.validate()?;
        let mut seen = std::collections::HashSet::new();
        if let Some((dup, _)) = params.iter().find(|(n, _)| !seen.insert(n.as_str())) {
            return Err(RlError::config(
                "params",
                format!("parameter name {dup:?} appears twice"),
            ));
        }
        let params = params
            .into_iter()
            .map(|(name, var)| Param {
                decay: cfg.decays(&name),
                name,
                var,
                moments: None,
            })
            .collect();
        Ok(AdamW {
            params,
            cfg,
            step: 0,
        })
    }

    /// An empty gradient accumulator aligned with this optimizer's parameters.
    pub fn accumulator(&self) -> GradAccumulator {
        let named: Vec<(String, Var)> = self
            .params
            .iter()
            .map(|p| (p.name.clone(), p.var.clone()))
            .collect();
        GradAccumulator::new(&named)
    }

    /// Updates applied so far.
    pub fn steps_done(&self) -> u64 {
        self.step
    }

    /// The optimizer's settings.
    pub fn config(&self) -> &OptimizerConfig {
        &self.cfg
    }

    /// The learning rate the next update will use.
    pub fn next_lr(&self) -> f64 {
        self.cfg.schedule.lr_at(self.step)
    }

    /// Each parameter's name and whether it gets weight decay (for logging the mask).
    pub fn decay_mask(&self) -> Vec<(&str, bool)> {
        self.params
            .iter()
            .map(|p| (p.name.as_str(), p.decay))
            .collect()
    }

    /// The first and second moments of a parameter, if it has been updated.
    pub fn moments(&self, name: &str) -> Option<(&Tensor, &Tensor)> {
        let p = self.params.iter().find(|p| p.name == name)?;
        p.moments.as_ref().map(|(m, v)| (m, v))
    }

    /// Clips and applies the accumulated gradients. A non-finite gradient norm skips the
    /// update entirely (see [`StepReport::applied`]). An accumulator that received no
    /// micro-batch is an error: skip the step instead (e.g. when dynamic sampling dropped
    /// every group), so the schedule does not advance without an update.
    pub fn step(&mut self, grads: &GradAccumulator) -> Result<StepReport> {
        let ids: Vec<TensorId> = self.params.iter().map(|p| p.var.id()).collect();
        grads.check_params(&ids)?;
        if grads.micro_batches() == 0 {
            return Err(RlError::MissingInput(
                "gradients: the accumulator is empty (no micro-batch was added)".into(),
            ));
        }
        let present: Vec<&Tensor> = grads.grads().iter().flatten().collect();
        let grad_norm = global_grad_norm(&present)?;
        let lr = self.next_lr();
        if !grad_norm.is_finite() {
            return Ok(StepReport {
                applied: false,
                grad_norm,
                clip_scale: 1.0,
                lr,
                step: self.step,
            });
        }
        let scale = self
            .cfg
            .max_grad_norm
            .map_or(1.0, |max| clip_scale(grad_norm, max));
        let t = self.step + 1;
        for (p, g) in self.params.iter_mut().zip(grads.grads()) {
            let Some(g) = g else { continue };
            let g = if scale < 1.0 {
                g.affine(scale, 0.0)?
            } else {
                g.clone()
            };
            update(p, &g, &self.cfg, lr, t)?;
        }
        self.step = t;
        Ok(StepReport {
            applied: true,
            grad_norm,
            clip_scale: scale,
            lr,
            step: t,
        })
    }
}

/// One AdamW update of one parameter, in f32. `t` ≥ 1 is the update count.
fn update(p: &mut Param, g: &Tensor, cfg: &OptimizerConfig, lr: f64, t: u64) -> Result<()> {
    let dims = p.var.dims();
    if g.dims() != dims {
        return Err(RlError::Shape(format!(
            "gradient of {} is {:?} but the parameter is {dims:?}",
            p.name,
            g.dims()
        )));
    }
    let (m, v) = match &p.moments {
        Some((m, v)) => (m.clone(), v.clone()),
        None => (g.zeros_like()?, g.zeros_like()?),
    };
    let m = m.add(&g.sub(&m)?.affine(1.0 - cfg.beta1, 0.0)?)?;
    let v = v
        .affine(cfg.beta2, 0.0)?
        .add(&g.sqr()?.affine(1.0 - cfg.beta2, 0.0)?)?;
    let mut theta = p.var.as_detached_tensor().to_dtype(DType::F32)?;
    if p.decay && cfg.weight_decay > 0.0 {
        theta = theta.affine(1.0 - lr * cfg.weight_decay, 0.0)?;
    }
    let t = t as i32;
    let bc1 = 1.0 - cfg.beta1.powi(t);
    let bc2_sqrt = (1.0 - cfg.beta2.powi(t)).sqrt();
    let denom = v.sqrt()?.affine(1.0 / bc2_sqrt, cfg.eps)?;
    let theta = theta.sub(&m.div(&denom)?.affine(lr / bc1, 0.0)?)?;
    p.var.set(&theta.to_dtype(p.var.dtype())?)?;
    p.moments = Some((m, v));
    Ok(())
}
