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
use candle_core::{CpuStorage, DType, Device, Storage, Tensor, TensorId, Var};
use rayon::prelude::*;

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
    let (m, v, theta) = match fused_cpu_update(p, g, cfg, lr, t)? {
        Some(updated) => updated,
        None => op_update(p, g, cfg, lr, t)?,
    };
    p.var.set(&theta.to_dtype(p.var.dtype())?)?;
    p.moments = Some((m, v));
    Ok(())
}

/// [`update`] as tensor ops, on any device and dtype. Returns the new `(m, v, θ)` (θ in f32).
fn op_update(
    p: &Param,
    g: &Tensor,
    cfg: &OptimizerConfig,
    lr: f64,
    t: u64,
) -> Result<(Tensor, Tensor, Tensor)> {
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
    Ok((m, v, theta))
}

/// Elements per thread task of [`fused_cpu_update`].
const FUSED_CHUNK: usize = 1 << 15;

/// The f32 constants of one [`fused_cpu_update`].
struct Consts {
    b1c: f32,
    b2: f32,
    b2c: f32,
    inv_bc2: f32,
    eps: f32,
    step: f32,
}

/// One chunk of [`fused_cpu_update`]: inputs `(g, m, v, θ)`, outputs `(m, v, θ)`.
#[inline(always)]
fn fused_chunk(
    (g, m, v, th): (&[f32], &[f32], &[f32], &[f32]),
    (mo, vo, to): (&mut [f32], &mut [f32], &mut [f32]),
    k: &Consts,
    decay: impl Fn(f32) -> f32,
) {
    let outs = mo.iter_mut().zip(vo.iter_mut()).zip(to.iter_mut());
    let ins = g.iter().zip(m).zip(v).zip(th);
    for (((mo, vo), to), (((&g, &m), &v), &th)) in outs.zip(ins) {
        let m = m + ((g - m) * k.b1c + 0.0);
        let v = (v * k.b2 + 0.0) + ((g * g) * k.b2c + 0.0);
        let denom = v.sqrt() * k.inv_bc2 + k.eps;
        (*mo, *vo, *to) = (m, v, decay(th) - ((m / denom) * k.step + 0.0));
    }
}

/// [`update`] in one threaded pass for contiguous f32 CPU tensors; `None` otherwise (then the
/// tensor ops run). The op path makes ~13 passes over each parameter, mostly single-threaded,
/// which on CPU made the optimizer a large part of a full fine-tuning step. The arithmetic is
/// the op path's, in f32 and in the same order (constants rounded to f32 as candle's `affine`
/// does), so both give the same bits.
fn fused_cpu_update(
    p: &Param,
    g: &Tensor,
    cfg: &OptimizerConfig,
    lr: f64,
    t: u64,
) -> Result<Option<(Tensor, Tensor, Tensor)>> {
    let theta = p.var.as_tensor();
    let moments = p.moments.as_ref().map(|(m, v)| [m, v]);
    let mut inputs = vec![theta, g];
    inputs.extend(moments.iter().flatten());
    let guards: Vec<_> = inputs.iter().map(|x| x.storage_and_layout()).collect();
    let mut slices = Vec::with_capacity(guards.len());
    for (storage, layout) in &guards {
        match (&**storage, layout.contiguous_offsets()) {
            (Storage::Cpu(CpuStorage::F32(data)), Some((start, end))) => {
                slices.push(&data[start..end])
            }
            _ => return Ok(None),
        }
    }
    let zeros;
    let (th, gr, m0, v0) = match slices[..] {
        [th, gr, m0, v0] => (th, gr, m0, v0),
        _ => {
            zeros = vec![0f32; slices[0].len()];
            (slices[0], slices[1], &zeros[..], &zeros[..])
        }
    };
    // The op path's constants, each rounded to f32 where candle's `affine` rounds it.
    let decay = (p.decay && cfg.weight_decay > 0.0).then_some((1.0 - lr * cfg.weight_decay) as f32);
    let t = t as i32;
    let bc1 = 1.0 - cfg.beta1.powi(t);
    let bc2_sqrt = (1.0 - cfg.beta2.powi(t)).sqrt();
    let k = Consts {
        b1c: (1.0 - cfg.beta1) as f32,
        b2: cfg.beta2 as f32,
        b2c: (1.0 - cfg.beta2) as f32,
        inv_bc2: (1.0 / bc2_sqrt) as f32,
        eps: cfg.eps as f32,
        step: (lr / bc1) as f32,
    };
    let n = th.len();
    let (mut m_out, mut v_out, mut th_out) = (vec![0f32; n], vec![0f32; n], vec![0f32; n]);
    m_out
        .par_chunks_mut(FUSED_CHUNK)
        .zip(v_out.par_chunks_mut(FUSED_CHUNK))
        .zip(th_out.par_chunks_mut(FUSED_CHUNK))
        .enumerate()
        .for_each(|(c, ((mo, vo), to))| {
            let r = c * FUSED_CHUNK..c * FUSED_CHUNK + mo.len();
            let inputs = (&gr[r.clone()], &m0[r.clone()], &v0[r.clone()], &th[r]);
            // Two monomorphic loops without a branch inside, so that they vectorize.
            match decay {
                Some(d) => fused_chunk(inputs, (mo, vo, to), &k, |th| th * d + 0.0),
                None => fused_chunk(inputs, (mo, vo, to), &k, |th| th),
            }
        });
    drop(guards);
    let shape = theta.shape();
    let tensor = |data: Vec<f32>| Tensor::from_vec(data, shape, &Device::Cpu);
    Ok(Some((tensor(m_out)?, tensor(v_out)?, tensor(th_out)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fused pass and the tensor ops give the same bits, with and without decay and
    /// moments, over several chunks and a ragged tail.
    #[test]
    fn fused_cpu_update_equals_the_op_path_bit_for_bit() {
        let n = 3 * FUSED_CHUNK + 17;
        let dev = Device::Cpu;
        let theta = Tensor::randn(0f32, 1.0, n, &dev).unwrap();
        let g = Tensor::randn(0f32, 1e-2, n, &dev).unwrap();
        let m = Tensor::randn(0f32, 1e-3, n, &dev).unwrap();
        let v = Tensor::randn(0f32, 1e-3, n, &dev).unwrap().abs().unwrap();
        let cfg = OptimizerConfig {
            weight_decay: 0.1,
            ..OptimizerConfig::default()
        };
        for (decay, moments, t) in [(true, None, 1), (false, Some((m.clone(), v.clone())), 7)] {
            let p = Param {
                name: "w".into(),
                var: Var::from_tensor(&theta).unwrap(),
                decay,
                moments,
            };
            let fused = fused_cpu_update(&p, &g, &cfg, 3e-4, t).unwrap().unwrap();
            let ops = op_update(&p, &g, &cfg, 3e-4, t).unwrap();
            for (a, b) in [(&fused.0, &ops.0), (&fused.1, &ops.1), (&fused.2, &ops.2)] {
                let (a, b) = (a.to_vec1::<f32>().unwrap(), b.to_vec1::<f32>().unwrap());
                assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
            }
        }
        // Not f32 on CPU: the tensor ops run instead.
        let p = Param {
            name: "w".into(),
            var: Var::from_tensor(&theta.to_dtype(DType::F64).unwrap()).unwrap(),
            decay: false,
            moments: None,
        };
        let g64 = g.to_dtype(DType::F64).unwrap();
        assert!(fused_cpu_update(&p, &g64, &cfg, 3e-4, 1).unwrap().is_none());
    }
}
